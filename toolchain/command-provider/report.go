package main

// What the provider tells the engine about a resource while it works on it. It never sends
// inputs: only the commands' own output lines, dial retries and warnings.

import (
	"context"

	"github.com/pulumi/pulumi/sdk/v3/go/common/diag"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
)

// engineLogger is the part of the engine's host client that the provider uses
// (*provider.HostClient implements it).
type engineLogger interface {
	Log(ctx context.Context, sev diag.Severity, urn resource.URN, msg string) error
	LogStatus(ctx context.Context, sev diag.Severity, urn resource.URN, msg string) error
}

// outputLinesEphemeral says how output lines reach the engine. Upstream 1.2.1 sends them as
// status messages (pulumi-go-provider's InfoStatus: LogStatus, ephemeral): the progress display
// shows each line against the resource as it arrives (in --non-interactive output every line is
// printed), and they are not repeated in the "Diagnostics" summary. false would send them as
// persistent info diagnostics instead.
const outputLinesEphemeral = true

// reporter sends messages about one resource to the engine; with no engine it drops them.
type reporter struct {
	ctx  context.Context
	host engineLogger
	urn  resource.URN
}

func (r reporter) send(ephemeral bool, sev diag.Severity, msg string) {
	if r.host == nil {
		return
	}
	// A lost log line must not fail the command.
	if ephemeral {
		_ = r.host.LogStatus(r.ctx, sev, r.urn, msg)
	} else {
		_ = r.host.Log(r.ctx, sev, r.urn, msg)
	}
}

// outputLine sends one line of a command's stdout or stderr.
func (r reporter) outputLine(line string) { r.send(outputLinesEphemeral, diag.Info, line) }

// status sends a transient progress message, such as a failed dial being retried.
func (r reporter) status(msg string) { r.send(true, diag.Info, msg) }

// warning sends a warning that stays in the update's diagnostics.
func (r reporter) warning(msg string) { r.send(false, diag.Warning, msg) }
