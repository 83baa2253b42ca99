package main

// command:remote:Command: one SSH session per command, `session.Run(command)`, so the remote
// user's login shell runs it, as `ssh host 'command'` does.

import (
	"context"
	"fmt"
	"strings"
)

// runSpec is one command to run, and what it runs with.
type runSpec struct {
	command string
	secret  bool // the command is a secret: failure messages do not show it
	env     []envVar
	// PULUMI_COMMAND_STDOUT/STDERR: the previous outputs, set when addPrevious and not empty.
	addPrevious            bool
	prevStdout, prevStderr string
	stdin                  string
	logging                loggingMode
}

// previousOutputEnv is PULUMI_COMMAND_STDOUT and PULUMI_COMMAND_STDERR, each only if not empty.
func (s *runSpec) previousOutputEnv() []envVar {
	if !s.addPrevious {
		return nil
	}
	var env []envVar
	if s.prevStdout != "" {
		env = append(env, envVar{"PULUMI_COMMAND_STDOUT", s.prevStdout})
	}
	if s.prevStderr != "" {
		env = append(env, envVar{"PULUMI_COMMAND_STDERR", s.prevStderr})
	}
	return env
}

const setenvAdvice = "the SSH server accepts only the variables its AcceptEnv allows; " +
	"or, if a Bash-like shell runs the command, prefix the command with VAR=value"

// runRemote runs spec.command over SSH and returns its stdout and stderr (one trailing newline
// dropped); a non-zero exit is an error with the tail of the output.
func runRemote(ctx context.Context, conn *connection, spec *runSpec, rep reporter) (string, string, error) {
	client, err := conn.dial(ctx, rep)
	if err != nil {
		return "", "", err
	}
	// Once connected, the command runs to its end whatever the engine cancels: a deploy script
	// cut in the middle (a new process started, the old one not yet quieted) is worse than a
	// Ctrl-C that waits. The engine's graceful cancel waits for running steps; a second Ctrl-C
	// kills the provider. Only dialing, where nothing has run yet, is cancelled.
	defer client.Close()

	session, err := client.NewSession()
	if err != nil {
		return "", "", fmt.Errorf("ssh: opening a session on %s: %w", conn.address(), err)
	}
	defer session.Close()

	for _, v := range spec.env {
		if err := session.Setenv(v.Name, v.Value); err != nil {
			return "", "", fmt.Errorf("could not set environment variable %q: %w (%s)", v.Name, err, setenvAdvice)
		}
	}
	for _, v := range spec.previousOutputEnv() {
		// As upstream: optimistic; a refusal is a warning.
		if err := session.Setenv(v.Name, v.Value); err != nil {
			rep.warning(fmt.Sprintf("Unable to set '%s': %v (%s)", v.Name, err, setenvAdvice))
		}
	}
	if spec.stdin != "" {
		session.Stdin = strings.NewReader(spec.stdin)
	}
	var out capture
	session.Stdout, session.Stderr = out.writers(spec.logging, rep.outputLine)
	err = session.Run(spec.command)
	out.finish()
	if err != nil {
		return "", "", failure(err, spec.command, spec.secret, &out)
	}
	stdout, stderr := out.outputs()
	return stdout, stderr, nil
}
