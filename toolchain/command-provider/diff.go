package main

// Diff: old inputs against new inputs, down to leaf property paths.
//
// Secrets are compared by the values they wrap (a value that only became secret is no change),
// objects and arrays are walked, and everything else (strings, numbers, booleans, assets,
// archives, unknowns) is a leaf. Paths are written as the engine parses them
// (resource.PropertyPath): `triggers[0]`, `connection.host`, `environment.FOO`,
// `environment["a.b"]`. The provider never asks for a replacement itself: the engine turns a
// change into one when a replaceOnChanges path contains the detailed path (the SDK registers
// `triggers[*]`; the program adds `connection` on copies), as upstream relies on.

import (
	"sort"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/archive"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/asset"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

type diffKind = pulumirpc.PropertyDiff_Kind

const (
	diffAdd    = pulumirpc.PropertyDiff_ADD
	diffDelete = pulumirpc.PropertyDiff_DELETE
	diffUpdate = pulumirpc.PropertyDiff_UPDATE
)

// outputOnly are the properties that are outputs and never inputs; when the engine sends no old
// inputs, they are left out of the old state before comparing.
var outputOnly = map[resource.PropertyKey]bool{"stdout": true, "stderr": true, "assets": true, "archive": true}

// detailedDiff returns each leaf path that differs between the old and new inputs.
func detailedDiff(olds, news resource.PropertyMap) map[string]diffKind {
	changes := map[string]diffKind{}
	for _, key := range unionKeys(olds, news) {
		if strings.HasPrefix(string(key), "__") { // engine bookkeeping
			continue
		}
		old, oldOK := olds[key]
		new, newOK := news[key]
		diffValue(resource.PropertyPath{string(key)}, old, oldOK, new, newOK, changes)
	}
	return changes
}

func unionKeys(a, b resource.PropertyMap) []resource.PropertyKey {
	seen := map[resource.PropertyKey]bool{}
	var keys []resource.PropertyKey
	for _, m := range []resource.PropertyMap{a, b} {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	return keys
}

func diffValue(p resource.PropertyPath, old resource.PropertyValue, oldOK bool,
	new resource.PropertyValue, newOK bool, changes map[string]diffKind,
) {
	old, new = plain(old), plain(new)
	oldSet := oldOK && !old.IsNull()
	newSet := newOK && !new.IsNull()
	switch {
	case !oldSet && !newSet:
		return
	case !oldSet:
		changes[p.String()] = diffAdd
		return
	case !newSet:
		changes[p.String()] = diffDelete
		return
	case old.IsComputed() || new.IsComputed():
		changes[p.String()] = diffUpdate
		return
	case old.IsObject() && new.IsObject():
		o, n := old.ObjectValue(), new.ObjectValue()
		for _, key := range unionKeys(o, n) {
			ov, ook := o[key]
			nv, nok := n[key]
			diffValue(child(p, string(key)), ov, ook, nv, nok, changes)
		}
		return
	case old.IsArray() && new.IsArray():
		o, n := old.ArrayValue(), new.ArrayValue()
		for i := 0; i < max(len(o), len(n)); i++ {
			var ov, nv resource.PropertyValue
			if i < len(o) {
				ov = o[i]
			}
			if i < len(n) {
				nv = n[i]
			}
			diffValue(child(p, i), ov, i < len(o), nv, i < len(n), changes)
		}
		return
	}
	if !sameLeaf(old, new) {
		changes[p.String()] = diffUpdate
	}
}

func child(p resource.PropertyPath, key any) resource.PropertyPath {
	c := make(resource.PropertyPath, len(p), len(p)+1)
	copy(c, p)
	return append(c, key)
}

// sameLeaf compares two values that diffValue treats as leaves (and, for needsCopy, any two).
func sameLeaf(old, new resource.PropertyValue) bool {
	old, new = plain(old), plain(new)
	switch {
	case old.IsAsset() || new.IsAsset():
		return old.IsAsset() && new.IsAsset() && sameAsset(old.AssetValue(), new.AssetValue())
	case old.IsArchive() || new.IsArchive():
		return old.IsArchive() && new.IsArchive() && sameArchive(old.ArchiveValue(), new.ArchiveValue())
	case old.IsObject() && new.IsObject(), old.IsArray() && new.IsArray():
		changes := map[string]diffKind{}
		diffValue(resource.PropertyPath{"v"}, old, true, new, true, changes)
		return len(changes) == 0
	case old.IsObject() || old.IsArray() || new.IsObject() || new.IsArray():
		return false
	}
	// Same type and value: a bool and a number differ even where the numbers coincide.
	return old.TypeString() == new.TypeString() && old.DeepEquals(new)
}

// sameAsset: the hashes decide when both have one (the engine hashes the assets the program
// registers, so a path asset whose file changed differs); otherwise what they name does. The
// provider never reads files to compare.
func sameAsset(a, b *asset.Asset) bool {
	if a.Hash != "" && b.Hash != "" {
		return a.Hash == b.Hash
	}
	return a.Text == b.Text && a.Path == b.Path && a.URI == b.URI
}

func sameArchive(a, b *archive.Archive) bool {
	if a.Hash != "" && b.Hash != "" {
		return a.Hash == b.Hash
	}
	if a.Path != b.Path || a.URI != b.URI || len(a.Assets) != len(b.Assets) {
		return false
	}
	for name, x := range a.Assets {
		y, ok := b.Assets[name]
		if !ok {
			return false
		}
		xa, xIsAsset := x.(*asset.Asset)
		ya, yIsAsset := y.(*asset.Asset)
		xr, xIsArchive := x.(*archive.Archive)
		yr, yIsArchive := y.(*archive.Archive)
		switch {
		case xIsAsset && yIsAsset:
			if !sameAsset(xa, ya) {
				return false
			}
		case xIsArchive && yIsArchive:
			if !sameArchive(xr, yr) {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// changedKeys are the top-level properties that the paths start with (the response's `diffs`).
func changedKeys(changes map[string]diffKind) []string {
	seen := map[string]bool{}
	var keys []string
	for p := range changes {
		key := p
		if parsed, err := resource.ParsePropertyPath(p); err == nil && len(parsed) > 0 {
			if head, ok := parsed[0].(string); ok {
				key = head
			}
		}
		if !seen[key] {
			seen[key] = true
			keys = append(keys, key)
		}
	}
	sort.Strings(keys)
	return keys
}

// applyIgnoreChanges makes the new inputs hold the old value at each ignored path, as the
// engine already does before Diff; kept so that a Diff called without that still agrees.
func applyIgnoreChanges(olds, news resource.PropertyMap, paths []string) {
	for _, text := range paths {
		p, err := resource.ParsePropertyPath(text)
		if err != nil || len(p) == 0 {
			continue
		}
		dest := resource.NewObjectProperty(news)
		if v, ok := p.Get(resource.NewObjectProperty(olds)); ok {
			p.Set(dest, v)
		} else {
			p.Delete(dest)
		}
	}
}
