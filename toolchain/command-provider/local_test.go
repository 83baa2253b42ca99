package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestLocalRunOutputsInterpreterDirEnvStdin(t *testing.T) {
	dir := t.TempDir()
	spec := &runSpec{
		command: `printf '%s|%s|%s|' "$FOO" "$PWD" "${BASH_VERSION:+bash}"; cat; printf '\n\n'; echo e >&2`,
		env:     []envVar{{"FOO", "foo"}},
		stdin:   "in",
		logging: loggingMode{},
	}
	stdout, stderr, err := runLocal(context.Background(), spec, []string{"/bin/bash", "-c"}, dir, reporter{})
	if err != nil {
		t.Fatal(err)
	}
	if want := "foo|" + dir + "|bash|in\n"; stdout != want || stderr != "e" {
		t.Fatalf("stdout %q (want %q), stderr %q", stdout, want, stderr)
	}
	// The default interpreter is /bin/sh -c, in the provider's working directory.
	wd, _ := os.Getwd()
	stdout, _, err = runLocal(context.Background(), &runSpec{command: `echo "$0|$PWD"`}, nil, "", reporter{})
	if err != nil || stdout != "/bin/sh|"+wd {
		t.Fatalf("default interpreter: %v %q", err, stdout)
	}
}

func TestLocalPreviousOutputEnv(t *testing.T) {
	spec := &runSpec{command: `echo "$PULUMI_COMMAND_STDOUT|$PULUMI_COMMAND_STDERR|${PULUMI_COMMAND_STDERR+set}"`,
		addPrevious: true, prevStdout: "old out"}
	stdout, _, _ := runLocal(context.Background(), spec, nil, "", reporter{})
	if stdout != "old out||" {
		t.Fatalf("an empty previous output is not set: %q", stdout)
	}
	spec.addPrevious = false
	stdout, _, _ = runLocal(context.Background(), spec, nil, "", reporter{})
	if stdout != "||" {
		t.Fatalf("addPreviousOutputInEnv=false: %q", stdout)
	}
}

func TestLocalLoggingRouting(t *testing.T) {
	for mode, want := range map[string][]string{
		"stdoutAndStderr": {"e1", "o1", "o2"},
		"stdout":          {"o1", "o2"},
		"stderr":          {"e1"},
		"none":            nil,
	} {
		m, _ := parseLogging(mode, true)
		host := &fakeHost{}
		rep := reporter{ctx: context.Background(), host: host, urn: "urn:pulumi:s::p::command:local:Command::x"}
		_, _, err := runLocal(context.Background(), &runSpec{command: "echo o1; echo e1 >&2; printf o2", logging: m}, nil, "", rep)
		if err != nil {
			t.Fatal(err)
		}
		if got := host.messages(); !slices.Equal(got, want) {
			t.Errorf("logging %s: logged %q, want %q", mode, got, want)
		}
		for _, e := range host.all() {
			if e.urn != rep.urn {
				t.Errorf("logged against %q", e.urn)
			}
		}
	}
}

func TestLocalLinesAreLoggedAsTheyArrive(t *testing.T) {
	host := &fakeHost{}
	rep := reporter{ctx: context.Background(), host: host, urn: "u"}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _, _ = runLocal(context.Background(), &runSpec{command: "echo first; sleep 2; echo second",
			logging: loggingMode{stdout: true}}, nil, "", rep)
	}()
	deadline := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) && len(host.all()) == 0 {
		time.Sleep(20 * time.Millisecond)
	}
	if got := host.messages(); !slices.Equal(got, []string{"first"}) {
		t.Fatalf("the first line must be logged while the command still runs, got %q", got)
	}
	<-done
}

func TestLocalFailureMessage(t *testing.T) {
	_, _, err := runLocal(context.Background(), &runSpec{command: "set -e\necho installing\nsleep 0.1\necho boom >&2\nexit 3"}, nil, "", reporter{})
	want := "exit status 3: running \"set -e…\":\ninstalling\nboom"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
	_, _, err = runLocal(context.Background(), &runSpec{command: "exit 1 # token s3cr3t", secret: true}, nil, "", reporter{})
	if err == nil || err.Error() != "exit status 1: running [secret command]:\n" {
		t.Fatalf("secret: %q", err)
	}
	_, _, err = runLocal(context.Background(), &runSpec{command: "true"}, []string{"/nonexistent/sh", "-c"}, "", reporter{})
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/sh") {
		t.Fatalf("a missing interpreter must be named: %v", err)
	}
}

func TestLocalCancelKillsTheProcessGroup(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "late")
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	_, _, err := runLocal(ctx, &runSpec{command: "(sleep 1; touch " + marker + ") & sleep 5"}, nil, "", reporter{})
	if err == nil || time.Since(start) > 3*time.Second {
		t.Fatalf("cancel must stop the command: %v after %v", err, time.Since(start))
	}
	time.Sleep(1500 * time.Millisecond)
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the command's background child must be killed too")
	}
}
