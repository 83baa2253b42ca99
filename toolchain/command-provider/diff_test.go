package main

import (
	"context"
	"maps"
	"reflect"
	"slices"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/archive"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/asset"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

func baseConnection() map[string]any {
	return map[string]any{
		"host": "192.0.2.10", "port": 22, "user": "admin",
		"privateKey": "KEY", "dialErrorLimit": 10, "perDialTimeout": 15,
	}
}

func with(m map[string]any, kv ...any) map[string]any {
	out := maps.Clone(m)
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

func checkDiff(t *testing.T, olds, news map[string]any, want map[string]diffKind) {
	t.Helper()
	got := detailedDiff(props(olds), props(news))
	if len(want) == 0 && len(got) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("detailedDiff:\n got %v\nwant %v", got, want)
	}
}

func TestDiffReportsLeafPathsAndKinds(t *testing.T) {
	checkDiff(t,
		map[string]any{"create": "x", "triggers": []any{"v1", "digest"}},
		map[string]any{"create": "x", "triggers": []any{"v2", "digest"}},
		map[string]diffKind{"triggers[0]": diffUpdate})
	checkDiff(t, map[string]any{"triggers": []any{"a"}}, map[string]any{"triggers": []any{"a", "b"}},
		map[string]diffKind{"triggers[1]": diffAdd})
	checkDiff(t, map[string]any{"triggers": []any{"a", "b"}}, map[string]any{"triggers": []any{"a"}},
		map[string]diffKind{"triggers[1]": diffDelete})
	checkDiff(t, map[string]any{}, map[string]any{"triggers": []any{"a"}},
		map[string]diffKind{"triggers": diffAdd})
	checkDiff(t, map[string]any{"triggers": []any{"a"}}, map[string]any{},
		map[string]diffKind{"triggers": diffDelete})
	checkDiff(t, map[string]any{"create": "a"}, map[string]any{"create": "b"},
		map[string]diffKind{"create": diffUpdate})
	checkDiff(t, map[string]any{"delete": "rm x"}, map[string]any{"delete": "rm y"},
		map[string]diffKind{"delete": diffUpdate})
	checkDiff(t, map[string]any{"stdin": nil}, map[string]any{"stdin": "in"},
		map[string]diffKind{"stdin": diffAdd})
	checkDiff(t, map[string]any{"create": nil}, map[string]any{}, nil)
	// A bool and a number are different values.
	checkDiff(t, map[string]any{"x": true}, map[string]any{"x": 1}, map[string]diffKind{"x": diffUpdate})
	// Engine bookkeeping is not an input.
	checkDiff(t, map[string]any{"__defaults": []any{"a"}}, map[string]any{"__defaults": []any{}}, nil)
}

func TestDiffNestedObjectsReportLeafPaths(t *testing.T) {
	oldConn := baseConnection()
	newConn := with(oldConn, "host", "192.0.2.11", "hostKey", "ssh-ed25519 AAAA", "dialErrorLimit", nil)
	checkDiff(t,
		map[string]any{"connection": secret(oldConn), "environment": map[string]any{"A": "1", "B": "2", "a.b": "x"}},
		map[string]any{"connection": secret(newConn), "environment": map[string]any{"A": "1", "C": "3", "a.b": "y"}},
		map[string]diffKind{
			"connection.host":           diffUpdate,
			"connection.hostKey":        diffAdd,
			"connection.dialErrorLimit": diffDelete,
			"environment.B":             diffDelete,
			"environment.C":             diffAdd,
			`environment["a.b"]`:        diffUpdate,
		})
}

func TestDiffComparesSecretsByValue(t *testing.T) {
	conn := baseConnection()
	// Only the secretness changed: no diff.
	checkDiff(t,
		map[string]any{"create": "echo", "triggers": []any{"a"}, "connection": conn},
		map[string]any{"create": "echo", "triggers": []any{secret("a")}, "connection": secret(conn)},
		nil)
	// A secret's value changed: the path inside is reported.
	checkDiff(t,
		map[string]any{"triggers": []any{secret("v1"), "d"}, "connection": secret(conn)},
		map[string]any{"triggers": []any{secret("v2"), "d"}, "connection": secret(with(conn, "privateKey", secret("NEW")))},
		map[string]diffKind{"triggers[0]": diffUpdate, "connection.privateKey": diffUpdate})
	checkDiff(t, map[string]any{"create": secret("a")}, map[string]any{"create": secret("b")},
		map[string]diffKind{"create": diffUpdate})
}

func TestDiffUnknownIsAnUpdateAtItsPath(t *testing.T) {
	checkDiff(t, map[string]any{"triggers": []any{"a"}}, map[string]any{"triggers": []any{unknown()}},
		map[string]diffKind{"triggers[0]": diffUpdate})
	checkDiff(t, map[string]any{"triggers": []any{"a"}}, map[string]any{"triggers": unknown()},
		map[string]diffKind{"triggers": diffUpdate})
}

func TestDiffAssetsAndArchivesAreLeaves(t *testing.T) {
	text := func(s, hash string) resource.PropertyValue {
		return resource.NewAssetProperty(&asset.Asset{Sig: asset.AssetSig, Text: s, Hash: hash})
	}
	dir := func(p, hash string) resource.PropertyValue {
		return resource.NewArchiveProperty(&archive.Archive{Sig: archive.ArchiveSig, Path: p, Hash: hash})
	}
	old := map[string]any{"source": text("one", ""), "remotePath": "/tmp/a"}
	checkDiff(t, old, with(old, "source", text("two", "")), map[string]diffKind{"source": diffUpdate})
	checkDiff(t, old, with(old, "source", secret(text("one", ""))), nil)
	// With hashes on both sides, the hashes decide (the engine hashes what the program registers).
	checkDiff(t, map[string]any{"source": dir(".state/staged/", "h1")}, map[string]any{"source": dir(".state/staged/", "h2")},
		map[string]diffKind{"source": diffUpdate})
	checkDiff(t, map[string]any{"source": dir(".state/staged/", "h1")}, map[string]any{"source": dir(".state/staged/", "h1")}, nil)
	checkDiff(t, map[string]any{"source": dir("a/", "")}, map[string]any{"source": dir("b/", "")},
		map[string]diffKind{"source": diffUpdate})
	checkDiff(t, map[string]any{"source": dir("a/", "")}, map[string]any{"source": text("a/", "")},
		map[string]diffKind{"source": diffUpdate})
}

// The engine turns a change into a replacement when a replaceOnChanges path Contains the detailed
// diff path (pkg/resource/deploy: applyReplaceOnChanges). These are the paths the SDK
// (triggers[*]) and the program (connection, on copies) register.
func TestDiffPathsMatchTheEnginesReplaceOnChanges(t *testing.T) {
	triggers, _ := resource.ParsePropertyPath("triggers[*]")
	conn, _ := resource.ParsePropertyPath("connection")
	changes := detailedDiff(
		props(map[string]any{
			"connection": secret(baseConnection()), "triggers": []any{"a", "b"}, "create": "x",
			"environment": map[string]any{"odd key.x": "1"},
		}),
		props(map[string]any{
			"connection": secret(with(baseConnection(), "host", "192.0.2.99", "port", 2222)),
			"triggers":   []any{"A", "b"}, "create": "y",
			"environment": map[string]any{"odd key.x": "2"},
		}))
	replacedBy := map[string]string{}
	for p := range changes {
		parsed, err := resource.ParsePropertyPath(p)
		if err != nil || parsed.String() != p {
			t.Fatalf("path %q does not round-trip through the engine's parser: %v", p, err)
		}
		switch {
		case triggers.Contains(parsed):
			replacedBy[p] = "triggers[*]"
		case conn.Contains(parsed):
			replacedBy[p] = "connection"
		default:
			replacedBy[p] = ""
		}
	}
	want := map[string]string{
		"triggers[0]": "triggers[*]", "connection.host": "connection", "connection.port": "connection",
		"create": "", `environment["odd key.x"]`: "",
	}
	if !reflect.DeepEqual(replacedBy, want) {
		t.Fatalf("replaceOnChanges matches:\n got %v\nwant %v", replacedBy, want)
	}
	if got := changedKeys(changes); !slices.Equal(got, []string{"connection", "create", "environment", "triggers"}) {
		t.Fatalf("changedKeys = %v", got)
	}
}

func diffRPC(t *testing.T, typ string, olds, oldInputs, news resource.PropertyMap) *pulumirpc.DiffResponse {
	t.Helper()
	req := &pulumirpc.DiffRequest{
		Urn:  "urn:pulumi:s::p::" + typ + "::r",
		Type: typ,
		Olds: wire(t, olds),
		News: wire(t, news),
	}
	if oldInputs != nil {
		req.OldInputs = wire(t, oldInputs)
	}
	resp, err := newProvider(nil).Diff(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestDiffRPCReturnsDetailedPathsAndNeverReplaces(t *testing.T) {
	olds := props(map[string]any{"connection": secret(baseConnection()), "create": "c", "triggers": []any{"v1"}})
	news := props(map[string]any{"connection": secret(baseConnection()), "create": "c", "triggers": []any{"v2"}})
	state := olds.Copy()
	state["stdout"], state["stderr"] = resource.NewStringProperty("out"), resource.NewStringProperty("")
	resp := diffRPC(t, typeRemoteCommand, state, olds, news)
	if resp.Changes != pulumirpc.DiffResponse_DIFF_SOME || !slices.Equal(resp.Diffs, []string{"triggers"}) ||
		len(resp.DetailedDiff) != 1 || resp.DetailedDiff["triggers[0]"].GetKind() != pulumirpc.PropertyDiff_UPDATE ||
		!resp.HasDetailedDiff || len(resp.Replaces) != 0 || resp.DeleteBeforeReplace {
		t.Fatalf("unexpected diff response: %v", resp)
	}
	// Nothing changed: DIFF_NONE, even with outputs in the old state.
	resp = diffRPC(t, typeRemoteCommand, state, olds, olds)
	if resp.Changes != pulumirpc.DiffResponse_DIFF_NONE || len(resp.DetailedDiff) != 0 {
		t.Fatalf("no change expected: %v", resp)
	}
	// Without old inputs, the outputs-only properties of the state are not compared.
	resp = diffRPC(t, typeLocalCommand, props(map[string]any{"create": "c", "stdout": "out", "stderr": "err"}), nil,
		props(map[string]any{"create": "c"}))
	if resp.Changes != pulumirpc.DiffResponse_DIFF_NONE {
		t.Fatalf("stdout/stderr must never cause a diff: %v", resp)
	}
}

func TestDiffRPCConnectionOnlyChangeOfACopy(t *testing.T) {
	source := resource.NewArchiveProperty(&archive.Archive{Sig: archive.ArchiveSig, Path: ".state/staged/", Hash: "h"})
	olds := props(map[string]any{"connection": secret(baseConnection()), "source": source, "remotePath": "/x", "triggers": []any{"d"}})
	news := props(map[string]any{"connection": secret(with(baseConnection(), "host", "192.0.2.50")), "source": source, "remotePath": "/x", "triggers": []any{"d"}})
	resp := diffRPC(t, typeCopyToRemote, olds, olds, news)
	if resp.Changes != pulumirpc.DiffResponse_DIFF_SOME || !slices.Equal(resp.Diffs, []string{"connection"}) ||
		len(resp.DetailedDiff) != 1 || resp.DetailedDiff["connection.host"].GetKind() != pulumirpc.PropertyDiff_UPDATE ||
		len(resp.Replaces) != 0 {
		t.Fatalf("a connection change must be an update at connection.host: %v", resp)
	}
}

func TestDiffRPCAppliesIgnoreChanges(t *testing.T) {
	olds := props(map[string]any{"create": "a", "triggers": []any{"1"}})
	news := props(map[string]any{"create": "b", "triggers": []any{"2"}})
	resp, err := newProvider(nil).Diff(context.Background(), &pulumirpc.DiffRequest{
		Urn: "urn:pulumi:s::p::command:local:Command::r", Olds: wire(t, olds), OldInputs: wire(t, olds),
		News: wire(t, news), IgnoreChanges: []string{"triggers"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.DetailedDiff) != 1 || resp.DetailedDiff["create"] == nil {
		t.Fatalf("ignored changes must not be reported: %v", resp.DetailedDiff)
	}
}
