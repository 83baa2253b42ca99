package main

// command:local:Command: `interpreter... command` (default /bin/sh -c) in `dir` (default: the
// provider's working directory, which the engine sets to the program's directory), with this
// process's environment plus `environment` plus PULUMI_COMMAND_STDOUT/STDERR.

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

var defaultInterpreter = []string{"/bin/sh", "-c"}

// runLocal runs spec.command here and returns its stdout and stderr (one trailing newline
// dropped); a non-zero exit is an error with the tail of the output.
func runLocal(ctx context.Context, spec *runSpec, interpreter []string, dir string, rep reporter) (string, string, error) {
	if len(interpreter) == 0 {
		interpreter = defaultInterpreter
	}
	args := append(append([]string{}, interpreter[1:]...), spec.command)
	//nolint:gosec // running the user's command is the point
	cmd := exec.CommandContext(ctx, interpreter[0], args...)
	cmd.Dir = dir
	cmd.Env = os.Environ()
	for _, v := range spec.env {
		cmd.Env = append(cmd.Env, v.Name+"="+v.Value)
	}
	for _, v := range spec.previousOutputEnv() {
		cmd.Env = append(cmd.Env, v.Name+"="+v.Value)
	}
	if spec.stdin != "" {
		cmd.Stdin = strings.NewReader(spec.stdin)
	}
	// Its own process group, so that cancelling kills whatever the command started too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }

	var out capture
	cmd.Stdout, cmd.Stderr = out.writers(spec.logging, rep.outputLine)
	err := cmd.Run()
	out.finish()
	if err != nil {
		return "", "", failure(err, spec.command, spec.secret, &out)
	}
	stdout, stderr := out.outputs()
	return stdout, stderr, nil
}
