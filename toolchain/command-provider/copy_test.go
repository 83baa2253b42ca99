package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/archive"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/asset"
)

func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func text(s string) *copySource { return &copySource{text: &s} }

func TestCopyTextAssetCreatesParentsWithServerModes(t *testing.T) {
	s := startSSHServer(t)
	remote := t.TempDir()
	dest := filepath.Join(remote, "a", "b", "unit.service")
	if err := copyToRemote(context.Background(), s.conn(), text("[Unit]\n"), dest, reporter{}); err != nil {
		t.Fatal(err)
	}
	if readFile(t, dest) != "[Unit]\n" {
		t.Fatal("wrong content")
	}
	if m := mode(t, dest); m != 0o644 {
		t.Fatalf("file mode %o, want 644", m)
	}
	for _, d := range []string{filepath.Join(remote, "a"), filepath.Join(remote, "a", "b")} {
		if m := mode(t, d); m != 0o755 {
			t.Fatalf("%s: mode %o, want 755 (mkdir -p)", d, m)
		}
	}
	// Overwrite: new content, and an existing file keeps its mode (as with upstream's SFTP create).
	if err := os.Chmod(dest, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := copyToRemote(context.Background(), s.conn(), text("new"), dest, reporter{}); err != nil {
		t.Fatal(err)
	}
	if readFile(t, dest) != "new" || mode(t, dest) != 0o600 {
		t.Fatalf("overwrite: %q %o", readFile(t, dest), mode(t, dest))
	}
	err := copyToRemote(context.Background(), s.conn(), text("x"), remote, reporter{})
	if err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Fatalf("a text asset onto a directory must fail: %v", err)
	}
}

func TestCopyDirectoryWithAndWithoutTrailingSlash(t *testing.T) {
	s := startSSHServer(t)
	local := filepath.Join(t.TempDir(), "staged")
	writeTree(t, local, map[string]string{"a.service": "A", "sub/b.conf": "B"})

	// "staged" (no slash) goes to remotePath/staged; remotePath is created.
	remote := filepath.Join(t.TempDir(), "srv", "units")
	if err := copyToRemote(context.Background(), s.conn(), &copySource{path: local}, remote, reporter{}); err != nil {
		t.Fatal(err)
	}
	if readFile(t, filepath.Join(remote, "staged", "a.service")) != "A" ||
		readFile(t, filepath.Join(remote, "staged", "sub", "b.conf")) != "B" {
		t.Fatal("directory without trailing slash must land in remotePath/staged")
	}
	// The local mode (0600) is not copied: the server creates files 0644 and directories 0755.
	if mode(t, filepath.Join(remote, "staged", "a.service")) != 0o644 || mode(t, filepath.Join(remote, "staged", "sub")) != 0o755 {
		t.Fatal("modes must be the server's defaults")
	}

	// "staged/" puts the contents into remotePath, which may already exist.
	remote2 := t.TempDir()
	writeTree(t, remote2, map[string]string{"a.service": "old", "keep": "K"})
	if err := copyToRemote(context.Background(), s.conn(), &copySource{path: local + "/"}, remote2, reporter{}); err != nil {
		t.Fatal(err)
	}
	if readFile(t, filepath.Join(remote2, "a.service")) != "A" || readFile(t, filepath.Join(remote2, "sub", "b.conf")) != "B" ||
		readFile(t, filepath.Join(remote2, "keep")) != "K" {
		t.Fatal("directory with trailing slash must be copied into remotePath, overwriting and keeping others")
	}
	if _, err := os.Stat(filepath.Join(remote2, "staged")); !os.IsNotExist(err) {
		t.Fatal("no staged/ directory expected")
	}

	// A directory onto an existing file fails.
	file := filepath.Join(t.TempDir(), "f")
	writeTree(t, filepath.Dir(file), map[string]string{"f": "x"})
	err := copyToRemote(context.Background(), s.conn(), &copySource{path: local + "/"}, file, reporter{})
	if err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("directory onto a file: %v", err)
	}
}

func TestCopyFileSource(t *testing.T) {
	s := startSSHServer(t)
	local := filepath.Join(t.TempDir(), "app.env")
	writeTree(t, filepath.Dir(local), map[string]string{"app.env": "X=1\n"})
	dir := t.TempDir()
	// Into an existing directory.
	if err := copyToRemote(context.Background(), s.conn(), &copySource{path: local}, dir, reporter{}); err != nil {
		t.Fatal(err)
	}
	if readFile(t, filepath.Join(dir, "app.env")) != "X=1\n" {
		t.Fatal("a file onto a directory goes into it")
	}
	// To a missing path, creating its parents.
	dest := filepath.Join(dir, "x", "y", "renamed.env")
	if err := copyToRemote(context.Background(), s.conn(), &copySource{path: local}, dest, reporter{}); err != nil {
		t.Fatal(err)
	}
	if readFile(t, dest) != "X=1\n" || mode(t, filepath.Dir(dest)) != 0o755 {
		t.Fatal("a file to a missing path is written there, parents created")
	}
}

func TestCopyRelativeSourceResolvesAgainstTheWorkingDirectory(t *testing.T) {
	s := startSSHServer(t)
	project := t.TempDir()
	writeTree(t, project, map[string]string{".state/staged/u.service": "U"})
	t.Chdir(project)
	remote := t.TempDir()
	src, err := parseSource(props(map[string]any{
		"source": resource.NewArchiveProperty(&archive.Archive{Sig: archive.ArchiveSig, Path: ".state/staged/"}),
	}))
	if err != nil {
		t.Fatal(err)
	}
	if err := copyToRemote(context.Background(), s.conn(), src, remote, reporter{}); err != nil {
		t.Fatal(err)
	}
	if readFile(t, filepath.Join(remote, "u.service")) != "U" {
		t.Fatal("the relative directory's contents must be in remotePath")
	}
}

func TestParseSourceKinds(t *testing.T) {
	ok := map[string]resource.PropertyValue{
		"text":         resource.NewAssetProperty(&asset.Asset{Sig: asset.AssetSig, Text: "hi"}),
		"secret text":  resource.MakeSecret(resource.NewAssetProperty(&asset.Asset{Sig: asset.AssetSig, Text: "hi"})),
		"path asset":   resource.NewAssetProperty(&asset.Asset{Sig: asset.AssetSig, Path: "f"}),
		"path archive": resource.NewArchiveProperty(&archive.Archive{Sig: archive.ArchiveSig, Path: "d/"}),
	}
	for name, v := range ok {
		if _, err := parseSource(resource.PropertyMap{"source": v}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	bad := map[string]resource.PropertyValue{
		"uri asset":     resource.NewAssetProperty(&asset.Asset{Sig: asset.AssetSig, URI: "https://example.com/x"}),
		"asset archive": resource.NewArchiveProperty(&archive.Archive{Sig: archive.ArchiveSig, Assets: map[string]any{}}),
		"string":        resource.NewStringProperty("x"),
	}
	for name, v := range bad {
		if _, err := parseSource(resource.PropertyMap{"source": v}); err == nil {
			t.Errorf("%s must be refused", name)
		}
	}
}
