package main

// command:remote:CopyToRemote: upload a text asset, a path asset or a path archive (a local file
// or directory, copied as is, never unpacked) over SFTP.
//
// Path rules, as upstream 1.2.1:
//
//	source | remotePath is a dir  | remotePath is missing      | remotePath is a file
//	-------+----------------------+----------------------------+------------------------
//	text   | error                | remotePath (mkdir -p)      | remotePath, overwritten
//	file   | remotePath/file      | remotePath (mkdir -p)      | remotePath, overwritten
//	dir    | remotePath/dir/...   | remotePath/dir/... (ditto) | error
//	dir/   | remotePath/...       | remotePath/... (ditto)     | error
//
// Files are opened with SFTP's create (write, create, truncate) and directories made with
// SFTP's mkdir, neither asking for a mode, as upstream: the server picks it (OpenSSH's
// sftp-server: 0666 and 0777 less its umask, so 0644 files and 0755 directories under the usual
// 022). The local file's mode is NOT copied (upstream does not either), and an existing file
// keeps its mode. Deleting the resource leaves the remote files in place.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/pkg/sftp"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
)

// copySource is what CopyToRemote uploads: text, or a local path.
type copySource struct {
	text *string
	path string
}

// parseSource reads the `source` input: a text or path asset, or a path archive.
func parseSource(inputs resource.PropertyMap) (*copySource, error) {
	v, ok := lookup(inputs, "source")
	switch {
	case !ok:
		return nil, errors.New("missing required property 'source'")
	case v.IsComputed():
		return nil, unknownError("source")
	case v.IsAsset():
		a := v.AssetValue()
		switch {
		case a.IsText():
			text := a.Text
			return &copySource{text: &text}, nil
		case a.IsPath():
			return &copySource{path: a.Path}, nil
		}
		return nil, errors.New("source: the asset must be a text asset (StringAsset) or a path asset (FileAsset)")
	case v.IsArchive():
		a := v.ArchiveValue()
		if a.IsPath() {
			return &copySource{path: a.Path}, nil
		}
		return nil, errors.New("source: the archive must be a path archive (FileArchive) naming a local file or directory")
	}
	return nil, fmt.Errorf("source: expected an asset or an archive, got %s", v.TypeString())
}

// needsCopy is CopyToRemote's update rule, as upstream: upload again only if the source or the
// remote path changed. A change of connection alone does not copy.
func needsCopy(olds, news resource.PropertyMap) bool {
	oldPath, _ := lookup(olds, "remotePath")
	newPath, _ := lookup(news, "remotePath")
	if !oldPath.DeepEquals(newPath) {
		return true
	}
	oldSource, oldOK := lookup(olds, "source")
	newSource, newOK := lookup(news, "source")
	if oldOK != newOK {
		return true
	}
	return oldOK && !sameLeaf(oldSource, newSource)
}

// copyToRemote uploads src to remotePath on the host.
func copyToRemote(ctx context.Context, conn *connection, src *copySource, remotePath string, rep reporter) error {
	client, err := conn.dial(ctx, rep)
	if err != nil {
		return err
	}
	// As for commands (remote.go): once connected, the copy runs to its end.
	defer client.Close()

	sc, err := sftp.NewClient(client)
	if err != nil {
		return fmt.Errorf("sftp on %s: %w", conn.address(), err)
	}
	defer sc.Close()
	if src.text != nil {
		err = copyText(sc, *src.text, remotePath)
	} else {
		err = copyPath(sc, src.path, remotePath)
	}
	return err
}

// remoteStat is nil, nil when the path does not exist.
func remoteStat(sc *sftp.Client, p string) (fs.FileInfo, error) {
	info, err := sc.Stat(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("failed to stat remote path %s: %w", p, err)
	}
	return info, nil
}

func copyText(sc *sftp.Client, text, dest string) error {
	info, err := remoteStat(sc, dest)
	if err != nil {
		return err
	}
	if info != nil && info.IsDir() {
		return fmt.Errorf("remote path %s is a directory; when using a text asset, remotePath must be a file path", dest)
	}
	if err := mkdirAll(sc, path.Dir(dest)); err != nil {
		return err
	}
	f, err := sc.Create(dest)
	if err != nil {
		return fmt.Errorf("failed to create remote file %s: %w", dest, err)
	}
	if _, err := f.Write([]byte(text)); err != nil {
		_ = f.Close()
		return fmt.Errorf("failed to write remote file %s: %w", dest, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("failed to write remote file %s: %w", dest, err)
	}
	return nil
}

func mkdirAll(sc *sftp.Client, dir string) error {
	if err := sc.MkdirAll(dir); err != nil {
		return fmt.Errorf("failed to create remote directory %s: %w", dir, err)
	}
	return nil
}

func copyPath(sc *sftp.Client, local, dest string) error {
	info, err := os.Stat(local)
	if err != nil {
		return err
	}
	destInfo, err := remoteStat(sc, dest)
	if err != nil {
		return err
	}
	if !info.IsDir() {
		switch {
		case destInfo != nil && destInfo.IsDir():
			dest = path.Join(dest, filepath.Base(local))
		case destInfo == nil:
			if err := mkdirAll(sc, path.Dir(dest)); err != nil {
				return err
			}
		}
		return copyFile(sc, local, dest)
	}
	if destInfo != nil && !destInfo.IsDir() {
		return fmt.Errorf("remote path %s exists but is not a directory", dest)
	}
	if destInfo == nil {
		if err := mkdirAll(sc, dest); err != nil {
			return err
		}
	}
	if !strings.HasSuffix(local, "/") {
		dest = path.Join(dest, filepath.Base(local))
	}
	return copyDir(sc, local, dest)
}

func copyFile(sc *sftp.Client, local, dest string) error {
	in, err := os.Open(local)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := sc.Create(dest)
	if err != nil {
		return fmt.Errorf("failed to create remote file %s: %w", dest, err)
	}
	if _, err := out.ReadFrom(in); err != nil {
		_ = out.Close()
		return fmt.Errorf("failed to copy file %s to remote path %s: %w", local, dest, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("failed to copy file %s to remote path %s: %w", local, dest, err)
	}
	return nil
}

// copyDir copies the tree under local into dest (which it creates if missing).
func copyDir(sc *sftp.Client, local, dest string) error {
	return filepath.WalkDir(local, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(local, p)
		if err != nil {
			return err
		}
		target := dest
		if rel != "." {
			target = path.Join(dest, filepath.ToSlash(rel))
		}
		if !d.IsDir() {
			return copyFile(sc, p, target)
		}
		info, err := remoteStat(sc, target)
		switch {
		case err != nil:
			return err
		case info == nil:
			if err := sc.Mkdir(target); err != nil {
				return fmt.Errorf("failed to create remote directory %s: %w", target, err)
			}
		case !info.IsDir():
			return fmt.Errorf("remote path %s exists but is not a directory", target)
		}
		return nil
	})
}
