package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func project(t *testing.T, yaml string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Pulumi.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

const withVenv = "name: p\nruntime:\n  name: python\n  options:\n    toolchain: pip\n    virtualenv: .venv\n"

func TestAddsRootAndVirtualenvBeforeTheCLIArguments(t *testing.T) {
	dir := project(t, withVenv)
	got, warnings := hostArgs(dir, []string{"127.0.0.1:4321"})
	want := []string{"-root=" + dir, "-virtualenv=.venv", "127.0.0.1:4321"}
	if !reflect.DeepEqual(got, want) || warnings != nil {
		t.Fatalf("got %q %q, want %q", got, warnings, want)
	}
}

func TestFindsTheProjectFromASubdirectoryAndAcceptsPulumiYml(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Pulumi.yml"), []byte(withVenv), 0o644); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "a", "b")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	got, _ := hostArgs(sub, []string{"addr"})
	want := []string{"-root=" + dir, "-virtualenv=.venv", "addr"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestFlagsTheCallerPassedAreNotAddedAgain(t *testing.T) {
	dir := project(t, withVenv)
	for _, args := range [][]string{
		{"-root=/x", "--virtualenv=/v", "addr"},
		{"--root", "/x", "-virtualenv", "/v", "addr"},
	} {
		got, _ := hostArgs(dir, args)
		if !reflect.DeepEqual(got, args) {
			t.Fatalf("got %q, want %q unchanged", got, args)
		}
	}
}

func TestARuntimeWithoutOptionsGetsOnlyTheRoot(t *testing.T) {
	for _, yaml := range []string{"name: p\nruntime: python\n", "name: p\nruntime:\n  name: python\n"} {
		dir := project(t, yaml)
		got, warnings := hostArgs(dir, []string{"addr"})
		want := []string{"-root=" + dir, "addr"}
		if !reflect.DeepEqual(got, want) || warnings != nil {
			t.Fatalf("%q: got %q %q, want %q", yaml, got, warnings, want)
		}
	}
}

func TestNoProjectPassesTheArgumentsThrough(t *testing.T) {
	got, warnings := hostArgs(t.TempDir(), []string{"addr"})
	if !reflect.DeepEqual(got, []string{"addr"}) || warnings != nil {
		t.Fatalf("got %q %q", got, warnings)
	}
}

func TestAnotherToolchainAndABrokenFileAreWarnedAbout(t *testing.T) {
	dir := project(t, "name: p\nruntime:\n  name: python\n  options:\n    toolchain: uv\n")
	_, warnings := hostArgs(dir, []string{"addr"})
	if len(warnings) != 1 || !strings.Contains(warnings[0], "toolchain=uv is not supported") {
		t.Fatalf("warnings %q", warnings)
	}
	dir = project(t, "runtime: [unclosed\n")
	got, warnings := hostArgs(dir, []string{"addr"})
	if len(warnings) != 1 || !strings.Contains(warnings[0], "reading "+filepath.Join(dir, "Pulumi.yaml")) {
		t.Fatalf("warnings %q", warnings)
	}
	if !reflect.DeepEqual(got, []string{"-root=" + dir, "addr"}) {
		t.Fatalf("got %q", got)
	}
}
