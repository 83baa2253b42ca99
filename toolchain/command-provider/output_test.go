package main

import (
	"fmt"
	"sort"
	"strings"
	"testing"
)

func TestTrimOutputDropsExactlyOneTrailingNewline(t *testing.T) {
	for in, want := range map[string]string{
		"a\n":       "a",
		"a\n\n":     "a\n",
		"a":         "a",
		"":          "",
		"\n":        "",
		"a\r\n":     "a\r",
		"bad\xff\n": "bad\uFFFD",
	} {
		if got := trimOutput(in); got != want {
			t.Errorf("trimOutput(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDescribeCommandShowsFirstLineOrSecret(t *testing.T) {
	cases := []struct {
		command string
		secret  bool
		want    string
	}{
		{"echo hi", false, `"echo hi"`},
		{"set -e\nexit 3\n", false, `"set -e…"`},
		{"\n\n  set -eu\n  run\n", false, `"set -eu…"`},
		{`say "hi"`, false, `"say \"hi\""`},
		{strings.Repeat("x", 200), false, `"` + strings.Repeat("x", 160) + `…"`},
		{"curl -H 'token: s3cr3t' https://x", true, "[secret command]"},
	}
	for _, c := range cases {
		if got := describeCommand(c.command, c.secret); got != c.want {
			t.Errorf("describeCommand(%q, %v) = %s, want %s", c.command, c.secret, got, c.want)
		}
	}
}

func TestFailureMessageHasReasonFirstLineAndOutputTail(t *testing.T) {
	var c capture
	stdout, stderr := c.writers(loggingMode{}, nil)
	fmt.Fprint(stdout, "installing\n")
	fmt.Fprint(stderr, "boom\n")
	err := failure(fmt.Errorf("Process exited with status 3"), "set -e\nexit 3\n", false, &c)
	want := "Process exited with status 3: running \"set -e…\":\ninstalling\nboom"
	if err.Error() != want {
		t.Fatalf("got %q\nwant %q", err.Error(), want)
	}
	secretErr := failure(fmt.Errorf("exit status 1"), "curl -H 'token: s3cr3t'", true, &c)
	if strings.Contains(secretErr.Error(), "s3cr3t") || !strings.HasPrefix(secretErr.Error(), "exit status 1: running [secret command]:\n") {
		t.Fatalf("secret command shown: %q", secretErr.Error())
	}
}

func TestOutputTailKeepsTheLastLines(t *testing.T) {
	var b strings.Builder
	for i := range 500 {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	got := outputTail(b.String())
	lines := strings.Split(got, "\n")
	if lines[0] != "[… earlier output omitted …]" || len(lines) != tailLines+1 {
		t.Fatalf("unexpected tail head %q (%d lines)", lines[0], len(lines))
	}
	if lines[len(lines)-1] != "line 499" || lines[1] != "line 440" {
		t.Fatalf("wrong lines kept: %q .. %q", lines[1], lines[len(lines)-1])
	}
	long := strings.Repeat("é", 10000) // 20000 bytes on one line
	got = outputTail(long)
	if !strings.HasPrefix(got, "[… earlier output omitted …]\n") || len(got) > tailBytes+64 || !strings.HasSuffix(got, "é") {
		t.Fatalf("long line not cut at a rune boundary: %d bytes", len(got))
	}
	if outputTail("only\n") != "only" || outputTail("") != "" {
		t.Fatal("short output must be kept as is")
	}
}

func TestLineWriterSplitsLinesAcrossWrites(t *testing.T) {
	var got []string
	w := &lineWriter{sink: func(s string) { got = append(got, s) }}
	for _, chunk := range []string{"one\ntw", "o\r\nthr", "\xc3", "\xa9e\n\n", "tail"} {
		if _, err := w.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	if strings.Join(got, "|") != "one|two|thrée|" {
		t.Fatalf("before close: %q", got)
	}
	_ = w.Close()
	if strings.Join(got, "|") != "one|two|thrée||tail" {
		t.Fatalf("after close: %q", got)
	}
	got = nil
	_, _ = w.Write([]byte(strings.Repeat("y", maxLogLine+10) + "\n"))
	if len(got) != 2 || len(got[0]) != maxLogLine || got[1] != "yyyyyyyyyy" {
		t.Fatalf("a long line must be logged in pieces: %d pieces", len(got))
	}
}

func TestCaptureRoutesStreamsByLoggingMode(t *testing.T) {
	for mode, want := range map[string]string{
		"stdout":          "out",
		"stderr":          "err",
		"stdoutAndStderr": "err|out",
		"none":            "",
	} {
		m, err := parseLogging(mode, true)
		if err != nil {
			t.Fatal(err)
		}
		var logged []string
		var c capture
		stdout, stderr := c.writers(m, func(s string) { logged = append(logged, s) })
		fmt.Fprint(stdout, "out\n")
		fmt.Fprint(stderr, "err\n")
		c.finish()
		sort.Strings(logged)
		if strings.Join(logged, "|") != want {
			t.Errorf("logging %s: logged %q, want %q", mode, logged, want)
		}
		o, e := c.outputs()
		if o != "out" || e != "err" {
			t.Errorf("logging %s: outputs must be captured whatever is logged, got %q %q", mode, o, e)
		}
	}
	if m, _ := parseLogging("", false); m != (loggingMode{true, true}) {
		t.Error("the default must log stdout and stderr")
	}
	if _, err := parseLogging("everything", true); err == nil {
		t.Error("an unknown logging value must be refused")
	}
}
