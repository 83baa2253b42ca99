package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/asset"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
)

func urnOf(typ, name string) string { return "urn:pulumi:dev::sidekiq-fleet::" + typ + "::" + name }

type rpcTest struct {
	t    *testing.T
	p    *commandProvider
	host *fakeHost
}

func newRPCTest(t *testing.T) *rpcTest {
	host := &fakeHost{}
	return &rpcTest{t: t, p: newProvider(host), host: host}
}

func (r *rpcTest) create(typ, name string, inputs resource.PropertyMap, preview bool) (string, resource.PropertyMap, error) {
	r.t.Helper()
	resp, err := r.p.Create(context.Background(), &pulumirpc.CreateRequest{
		Urn: urnOf(typ, name), Type: typ, Name: name, Properties: wire(r.t, inputs), Preview: preview,
	})
	if err != nil {
		return "", nil, err
	}
	return resp.Id, fromWire(r.t, resp.Properties), nil
}

func (r *rpcTest) update(typ, name string, olds, news resource.PropertyMap, preview bool) (resource.PropertyMap, error) {
	r.t.Helper()
	resp, err := r.p.Update(context.Background(), &pulumirpc.UpdateRequest{
		Urn: urnOf(typ, name), Type: typ, Id: "id", Olds: wire(r.t, olds), News: wire(r.t, news), Preview: preview,
	})
	if err != nil {
		return nil, err
	}
	return fromWire(r.t, resp.Properties), nil
}

func (r *rpcTest) delete(typ, name string, state resource.PropertyMap) error {
	r.t.Helper()
	_, err := r.p.Delete(context.Background(), &pulumirpc.DeleteRequest{
		Urn: urnOf(typ, name), Type: typ, Id: "id", Properties: wire(r.t, state),
	})
	return err
}

func TestPluginInfoConfigureAndConfig(t *testing.T) {
	p := newProvider(nil)
	info, _ := p.GetPluginInfo(context.Background(), &emptypb.Empty{})
	if info.Version != "1.2.1" {
		t.Fatalf("version %q", info.Version)
	}
	conf, _ := p.Configure(context.Background(), &pulumirpc.ConfigureRequest{})
	if !conf.AcceptSecrets || !conf.AcceptResources || !conf.SupportsPreview || conf.AcceptOutputs {
		t.Fatalf("configure %v", conf)
	}
	news := wire(t, props(map[string]any{"anything": "goes", "version": "1.2.1"}))
	checked, err := p.CheckConfig(context.Background(), &pulumirpc.CheckRequest{News: news})
	if err != nil || !proto.Equal(checked.Inputs, news) || len(checked.Failures) != 0 {
		t.Fatalf("CheckConfig must accept anything: %v %v", checked, err)
	}
	d, _ := p.DiffConfig(context.Background(), &pulumirpc.DiffRequest{})
	if d.Changes != pulumirpc.DiffResponse_DIFF_NONE {
		t.Fatal("DiffConfig must report no change")
	}
}

func TestCheckReturnsNewsUnchangedAndReportsUnsupported(t *testing.T) {
	p := newProvider(nil)
	check := func(typ string, news resource.PropertyMap) *pulumirpc.CheckResponse {
		t.Helper()
		req := &pulumirpc.CheckRequest{Urn: urnOf(typ, "r"), Type: typ, News: wire(t, news)}
		resp, err := p.Check(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(resp.Inputs, req.News) {
			t.Fatalf("Check must return the news unchanged")
		}
		return resp
	}
	good := props(map[string]any{"connection": secret(baseConnection()), "create": secret("x"),
		"triggers": []any{unknown()}, "logging": "stdout"})
	if f := check(typeRemoteCommand, good).Failures; len(f) != 0 {
		t.Fatalf("unexpected failures %v", f)
	}
	bad := props(map[string]any{
		"connection": secret(with(baseConnection(), "proxy", map[string]any{"host": "bastion"}, "agentSocketPath", "/run/agent")),
		"logging":    "loud",
	})
	var got []string
	for _, f := range check(typeRemoteCommand, bad).Failures {
		got = append(got, f.Property)
	}
	if strings.Join(got, ",") != "connection.proxy,connection.agentSocketPath,logging" {
		t.Fatalf("failures %v", got)
	}
	got = nil
	for _, f := range check(typeCopyToRemote, props(map[string]any{"connection": baseConnection(), "source": "not an asset"})).Failures {
		got = append(got, f.Property)
	}
	if strings.Join(got, ",") != "remotePath,source" {
		t.Fatalf("copy failures %v", got)
	}
	got = nil
	for _, f := range check(typeLocalCommand, props(map[string]any{"create": "x", "assetPaths": []any{"*.txt"}, "archivePaths": []any{"d/**"}})).Failures {
		got = append(got, f.Property)
	}
	if strings.Join(got, ",") != "assetPaths,archivePaths" {
		t.Fatalf("unsupported local inputs must be refused, got %v", got)
	}
	// Unknown values are not checked.
	if f := check(typeCopyToRemote, props(map[string]any{"connection": unknown(), "source": unknown(), "remotePath": unknown()})).Failures; len(f) != 0 {
		t.Fatalf("unknowns must pass: %v", f)
	}
	if _, err := p.Check(context.Background(), &pulumirpc.CheckRequest{Urn: urnOf("command:remote:CopyFile", "r")}); err == nil {
		t.Fatal("an unknown resource type must be refused")
	}
}

func TestCreatePreviewRunsNothingAndLeavesOutputsUnknown(t *testing.T) {
	r := newRPCTest(t)
	marker := filepath.Join(t.TempDir(), "ran")
	id, out, err := r.create(typeLocalCommand, "c", props(map[string]any{"create": "touch " + marker}), true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("preview must not run the command")
	}
	if id != "" || !out["stdout"].IsComputed() || !out["stderr"].IsComputed() || out["create"].StringValue() != "touch "+marker {
		t.Fatalf("preview outputs %v id %q", out, id)
	}
	olds := props(map[string]any{"create": "old", "stdout": "o", "stderr": ""})
	out, err = r.update(typeLocalCommand, "c", olds, props(map[string]any{"create": "touch " + marker}), true)
	if err != nil || !out["stdout"].IsComputed() {
		t.Fatalf("update preview: %v %v", out, err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("update preview must not run the command")
	}
}

func TestCreateEchoesInputsKeepsSecretsAndMakesConnectionSecret(t *testing.T) {
	s := startSSHServer(t)
	r := newRPCTest(t)
	inputs := props(map[string]any{
		"connection": s.connectionInput(), // plain on purpose: outputs must still hold it as a secret
		"create":     secret("echo hi"),
		"triggers":   []any{secret("t1"), "t2"},
		"logging":    "none",
	})
	id, out, err := r.create(typeRemoteCommand, "restart", inputs, false)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(id, "restart") || len(id) != len("restart")+8 {
		t.Fatalf("id %q", id)
	}
	if !out["connection"].IsSecret() || !out["create"].IsSecret() || !out["triggers"].ArrayValue()[0].IsSecret() ||
		out["triggers"].ArrayValue()[1].IsSecret() {
		t.Fatalf("secretness not kept: %v", out)
	}
	if !out["stdout"].IsSecret() || plain(out["stdout"]).StringValue() != "hi" || plain(out["stderr"]).StringValue() != "" {
		t.Fatalf("stdout of a secret command must be a secret: %v", out["stdout"])
	}
	// A plain command: plain outputs.
	inputs["create"] = resource.NewStringProperty("echo plain")
	_, out, _ = r.create(typeRemoteCommand, "restart", inputs, false)
	if out["stdout"].IsSecret() || out["stdout"].StringValue() != "plain" {
		t.Fatalf("plain command: %v", out["stdout"])
	}
}

func TestCreateWithoutCreateRunsNothing(t *testing.T) {
	s := startSSHServer(t)
	r := newRPCTest(t)
	id, out, err := r.create(typeRemoteCommand, "uninstall", props(map[string]any{
		"connection": s.connectionInput(), "delete": "rm -rf /tmp/x",
	}), false)
	if err != nil {
		t.Fatal(err)
	}
	if s.conns.Load() != 0 {
		t.Fatal("a resource with only delete must not connect on create")
	}
	if id == "" || out["stdout"].StringValue() != "" || out["stderr"].StringValue() != "" || out["delete"].StringValue() != "rm -rf /tmp/x" {
		t.Fatalf("outputs %v", out)
	}
}

func TestFailedCreateIsAnErrorWithTheMessage(t *testing.T) {
	r := newRPCTest(t)
	_, _, err := r.create(typeLocalCommand, "c", props(map[string]any{"create": "echo oops; exit 2"}), false)
	if err == nil || err.Error() != "exit status 2: running \"echo oops; exit 2\":\noops" {
		t.Fatalf("err = %v", err)
	}
}

func TestUpdateRunsUpdateElseCreateWithPreviousOutput(t *testing.T) {
	s := startSSHServer(t)
	r := newRPCTest(t)
	olds := props(map[string]any{"connection": secret(s.connectionInput()), "create": "c", "stdout": "before", "stderr": ""})
	news := props(map[string]any{"connection": secret(s.connectionInput()), "create": `echo "create saw $PULUMI_COMMAND_STDOUT"`})
	out, err := r.update(typeRemoteCommand, "r", olds, news, false)
	if err != nil {
		t.Fatal(err)
	}
	if out["stdout"].StringValue() != "create saw before" {
		t.Fatalf("without update, Update runs create: %v", out["stdout"])
	}
	news["update"] = resource.NewStringProperty(`echo "update saw $PULUMI_COMMAND_STDOUT"`)
	out, _ = r.update(typeRemoteCommand, "r", olds, news, false)
	if out["stdout"].StringValue() != "update saw before" {
		t.Fatalf("Update runs update: %v", out["stdout"])
	}
	news["addPreviousOutputInEnv"] = resource.NewBoolProperty(false)
	out, _ = r.update(typeRemoteCommand, "r", olds, news, false)
	if out["stdout"].StringValue() != "update saw " {
		t.Fatalf("addPreviousOutputInEnv=false: %v", out["stdout"])
	}
	// Nothing to run: the stored outputs stay.
	onlyDelete := props(map[string]any{"connection": secret(s.connectionInput()), "delete": "x"})
	execs := s.execs.Load()
	out, _ = r.update(typeRemoteCommand, "r", olds, onlyDelete, false)
	if out["stdout"].StringValue() != "before" || s.execs.Load() != execs {
		t.Fatalf("no command: outputs %v", out)
	}
}

func TestDeleteRunsDeleteWithTheStoredState(t *testing.T) {
	s := startSSHServer(t)
	r := newRPCTest(t)
	marker := filepath.Join(t.TempDir(), "deleted")
	state := props(map[string]any{
		"connection": secret(s.connectionInput()),
		"delete":     `echo "$PULUMI_COMMAND_STDOUT" > ` + marker,
		"stdout":     "created output", "stderr": "",
	})
	if err := r.delete(typeRemoteCommand, "r", state); err != nil {
		t.Fatal(err)
	}
	if readFile(t, marker) != "created output\n" {
		t.Fatal("delete must run with the stored connection and outputs")
	}
	execs := s.execs.Load()
	if err := r.delete(typeRemoteCommand, "r", props(map[string]any{"connection": secret(s.connectionInput()), "create": "x"})); err != nil {
		t.Fatal(err)
	}
	if s.execs.Load() != execs || s.conns.Load() != 1 {
		t.Fatal("no delete command: nothing runs, no connection")
	}
	localMarker := filepath.Join(t.TempDir(), "local")
	if err := r.delete(typeLocalCommand, "l", props(map[string]any{"delete": "touch " + localMarker})); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(localMarker); err != nil {
		t.Fatal("local delete must run")
	}
}

func TestCopyToRemoteCreateUpdateDelete(t *testing.T) {
	s := startSSHServer(t)
	r := newRPCTest(t)
	remote := t.TempDir()
	dest := filepath.Join(remote, "staging", "app.env")
	src := func(text, hash string) resource.PropertyValue {
		return resource.MakeSecret(resource.NewAssetProperty(&asset.Asset{Sig: asset.AssetSig, Text: text, Hash: hash}))
	}
	inputs := props(map[string]any{
		"connection": secret(s.connectionInput()), "source": src("A=1\n", "h1"), "remotePath": dest,
		"triggers": []any{secret("h1")},
	})
	// Preview copies nothing.
	id, out, err := r.create(typeCopyToRemote, "copy", inputs, true)
	if err != nil || id != "" || s.conns.Load() != 0 {
		t.Fatalf("preview: %v %q conns=%d", err, id, s.conns.Load())
	}
	id, out, err = r.create(typeCopyToRemote, "copy", inputs, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(id) != 8 || readFile(t, dest) != "A=1\n" {
		t.Fatalf("create: id %q", id)
	}
	if !out["source"].IsSecret() || !out["connection"].IsSecret() || !out["triggers"].ArrayValue()[0].IsSecret() ||
		out["remotePath"].StringValue() != dest || len(out) != 4 {
		t.Fatalf("outputs must be the inputs: %v", out)
	}

	// A change of connection only: no copy (the program replaces the resource for that).
	if err := os.WriteFile(dest, []byte("changed by hand"), 0o644); err != nil {
		t.Fatal(err)
	}
	newConn := s.connectionInput()
	newConn["perDialTimeout"] = float64(7)
	news := inputs.Copy()
	news["connection"] = secret(newConn)
	conns := s.conns.Load()
	if _, err := r.update(typeCopyToRemote, "copy", out, news, false); err != nil {
		t.Fatal(err)
	}
	if readFile(t, dest) != "changed by hand" || s.conns.Load() != conns {
		t.Fatal("a connection-only update must not copy")
	}
	// A new source copies.
	news["source"] = src("A=2\n", "h2")
	out, err = r.update(typeCopyToRemote, "copy", out, news, false)
	if err != nil || readFile(t, dest) != "A=2\n" {
		t.Fatalf("a new source must copy: %v", err)
	}
	// A new remote path copies.
	dest2 := filepath.Join(remote, "other", "app.env")
	news["remotePath"] = resource.NewStringProperty(dest2)
	if _, err = r.update(typeCopyToRemote, "copy", out, news, false); err != nil || readFile(t, dest2) != "A=2\n" {
		t.Fatalf("a new remotePath must copy: %v", err)
	}
	// Delete leaves the files.
	if err := r.delete(typeCopyToRemote, "copy", news); err != nil {
		t.Fatal(err)
	}
	if readFile(t, dest2) != "A=2\n" {
		t.Fatal("delete must leave the remote file in place")
	}
}

func TestNeedsCopy(t *testing.T) {
	a := func(text, hash string) resource.PropertyValue {
		return resource.NewAssetProperty(&asset.Asset{Sig: asset.AssetSig, Text: text, Hash: hash})
	}
	old := props(map[string]any{"source": a("x", "h"), "remotePath": "/p", "connection": baseConnection()})
	cases := map[string]struct {
		news resource.PropertyMap
		want bool
	}{
		"connection only":   {props(map[string]any{"source": a("x", "h"), "remotePath": "/p", "connection": with(baseConnection(), "host", "o")}), false},
		"secretness only":   {props(map[string]any{"source": secret(a("x", "h")), "remotePath": secret("/p")}), false},
		"triggers only":     {props(map[string]any{"source": a("x", "h"), "remotePath": "/p", "triggers": []any{"new"}}), false},
		"new hash":          {props(map[string]any{"source": a("x", "h2"), "remotePath": "/p"}), true},
		"new text, no hash": {props(map[string]any{"source": a("y", ""), "remotePath": "/p"}), true},
		"new remote path":   {props(map[string]any{"source": a("x", "h"), "remotePath": "/q"}), true},
	}
	for name, c := range cases {
		if got := needsCopy(old, c.news); got != c.want {
			t.Errorf("%s: needsCopy = %v", name, got)
		}
	}
}

func TestReadReturnsTheStateItIsGiven(t *testing.T) {
	state := wire(t, props(map[string]any{"create": "x", "stdout": "o"}))
	inputs := wire(t, props(map[string]any{"create": "x"}))
	resp, err := newProvider(nil).Read(context.Background(), &pulumirpc.ReadRequest{
		Id: "abc", Urn: urnOf(typeLocalCommand, "x"), Properties: state, Inputs: inputs,
	})
	if err != nil || resp.Id != "abc" || !proto.Equal(resp.Properties, state) || !proto.Equal(resp.Inputs, inputs) {
		t.Fatalf("read: %v %v", resp, err)
	}
}

func TestCancelStopsRunningLocalCommands(t *testing.T) {
	r := newRPCTest(t)
	errc := make(chan error, 1)
	go func() {
		_, _, err := r.create(typeLocalCommand, "slow", props(map[string]any{"create": "echo started; sleep 30"}), false)
		errc <- err
	}()
	for len(r.host.all()) == 0 { // the command has started once its first line is logged
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	_, _ = r.p.Cancel(context.Background(), &emptypb.Empty{})
	if err := <-errc; err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("a cancelled command must fail at once: %v after %v", err, time.Since(start))
	}
}

// Only the command's own output lines reach the engine's log: not the command, its environment,
// its stdin or the connection's key, not even when the command fails.
func TestInputsAreNeverLogged(t *testing.T) {
	s := startSSHServer(t)
	r := newRPCTest(t)
	const token, input = "env-value-5b1d", "stdin-value-77c0"
	inputs := props(map[string]any{
		"connection":  s.connectionInput(),
		"create":      "echo line one; cat >/dev/null; echo command-text-3e9a >/dev/null; exit 3",
		"environment": map[string]any{"TOKEN": secret(token)},
		"stdin":       input,
	})
	if _, _, err := r.create(typeRemoteCommand, "install", inputs, false); err == nil {
		t.Fatal("the command exits 3")
	}
	messages := r.host.messages()
	if !slices.Equal(messages, []string{"line one"}) {
		t.Fatalf("logged %q, want only the output line", messages)
	}
	for _, m := range messages {
		for _, leak := range append([]string{token, input, "command-text-3e9a"}, strings.Split(s.clientKey, "\n")[1:3]...) {
			if strings.Contains(m, leak) {
				t.Fatalf("an input reached the log: %q", m)
			}
		}
	}
}
