package main

// A command's output: captured in full for the stdout/stderr outputs, streamed line by line to
// the engine while the command runs (as the `logging` input says), and the tail of both
// streams, interleaved, for the failure message.

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

const (
	// How much of a failed command's output goes into the error message.
	tailLines = 60
	tailBytes = 12000
	// How much of the command's first line the error message shows.
	commandChars = 160
	// A line longer than this is logged in pieces.
	maxLogLine = 64 * 1024
)

// loggingMode is the `logging` input: which streams go to the engine while the command runs.
type loggingMode struct{ stdout, stderr bool }

var loggingModes = map[string]loggingMode{
	"stdout":          {stdout: true},
	"stderr":          {stderr: true},
	"stdoutAndStderr": {stdout: true, stderr: true},
	"none":            {},
}

const defaultLogging = "stdoutAndStderr"

func parseLogging(value string, set bool) (loggingMode, error) {
	if !set {
		value = defaultLogging
	}
	mode, ok := loggingModes[value]
	if !ok {
		return loggingMode{}, fmt.Errorf(
			"logging: expected one of stdout, stderr, stdoutAndStderr, none; got %q", value)
	}
	return mode, nil
}

// lineWriter hands each complete line written to it to sink, without its newline; Close hands
// over what is left.
type lineWriter struct {
	mu      sync.Mutex
	pending []byte
	sink    func(string)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pending = append(w.pending, p...)
	for {
		i := bytes.IndexByte(w.pending, '\n')
		if i < 0 {
			break
		}
		w.emit(w.pending[:i])
		w.pending = w.pending[i+1:]
	}
	if len(w.pending) >= maxLogLine { // no end of line in sight: log what there is in pieces
		w.emit(w.pending)
		w.pending = nil
	}
	if len(w.pending) == 0 {
		w.pending = nil // let the buffer go
	}
	return len(p), nil
}

// emit sends one line, in pieces of at most maxLogLine bytes cut at rune boundaries.
func (w *lineWriter) emit(line []byte) {
	line = bytes.TrimSuffix(line, []byte("\r"))
	for len(line) > maxLogLine {
		cut := maxLogLine
		for cut > maxLogLine-utf8.UTFMax && !utf8.RuneStart(line[cut]) {
			cut--
		}
		w.sink(strings.ToValidUTF8(string(line[:cut]), "\uFFFD"))
		line = line[cut:]
	}
	w.sink(strings.ToValidUTF8(string(line), "\uFFFD"))
}

func (w *lineWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.pending) > 0 {
		w.emit(w.pending)
		w.pending = nil
	}
	return nil
}

// capture collects what a command prints.
type capture struct {
	mu       sync.Mutex
	stdout   bytes.Buffer
	stderr   bytes.Buffer
	combined bytes.Buffer // both, in arrival order, for the failure message
	loggers  []*lineWriter
}

type captureWriter struct {
	c   *capture
	own *bytes.Buffer
	log *lineWriter
}

func (w captureWriter) Write(p []byte) (int, error) {
	w.c.mu.Lock()
	w.own.Write(p)
	w.c.combined.Write(p)
	w.c.mu.Unlock()
	if w.log != nil {
		_, _ = w.log.Write(p)
	}
	return len(p), nil
}

// writers returns the writers for the command's stdout and stderr; line receives each line of
// the streams that mode says to log.
func (c *capture) writers(mode loggingMode, line func(string)) (stdout, stderr io.Writer) {
	newLog := func(on bool) *lineWriter {
		if !on || line == nil {
			return nil
		}
		w := &lineWriter{sink: line}
		c.loggers = append(c.loggers, w)
		return w
	}
	return captureWriter{c, &c.stdout, newLog(mode.stdout)}, captureWriter{c, &c.stderr, newLog(mode.stderr)}
}

// finish logs the unterminated last lines; call it once the command's streams are closed.
func (c *capture) finish() {
	for _, w := range c.loggers {
		_ = w.Close()
	}
}

func (c *capture) outputs() (stdout, stderr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return trimOutput(c.stdout.String()), trimOutput(c.stderr.String())
}

func (c *capture) combinedText() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.ToValidUTF8(c.combined.String(), "\uFFFD")
}

// trimOutput is what the stdout/stderr outputs hold: the text with ONE trailing newline dropped
// (as upstream does), made valid UTF-8 so that it can travel as a protobuf string.
func trimOutput(s string) string {
	return strings.ToValidUTF8(strings.TrimSuffix(s, "\n"), "\uFFFD")
}

// describeCommand is how a failure message names the command: its first line, quoted, with "…"
// when there is more; "[secret command]" when the command is a secret.
func describeCommand(command string, secret bool) string {
	if secret {
		return "[secret command]"
	}
	text := strings.TrimSpace(command)
	first, _, more := strings.Cut(text, "\n")
	first = strings.TrimSuffix(first, "\r")
	if utf8.RuneCountInString(first) > commandChars {
		first = string([]rune(first)[:commandChars])
		more = true
	}
	if more {
		first += "…"
	}
	return strconv.Quote(first)
}

// outputTail is the last lines of a command's output for its failure message.
func outputTail(text string) string {
	text = strings.TrimSuffix(text, "\n")
	if text == "" {
		return ""
	}
	lines := strings.Split(text, "\n")
	cut := false
	if len(lines) > tailLines {
		lines = lines[len(lines)-tailLines:]
		cut = true
	}
	text = strings.Join(lines, "\n")
	if len(text) > tailBytes {
		start := len(text) - tailBytes
		for start < len(text) && !utf8.RuneStart(text[start]) {
			start++
		}
		text = text[start:]
		cut = true
	}
	if cut {
		text = "[… earlier output omitted …]\n" + text
	}
	return text
}

// commandFailed is the error of a command that ran and failed, or could not be started.
type commandFailed struct{ message string }

func (e *commandFailed) Error() string { return e.message }

// failure builds the error a failed command reports: `<reason>: running "<first line>…":` and
// the tail of its output, stdout and stderr interleaved.
func failure(reason error, command string, secret bool, c *capture) error {
	return &commandFailed{fmt.Sprintf("%v: running %s:\n%s",
		reason, describeCommand(command, secret), outputTail(c.combinedText()))}
}
