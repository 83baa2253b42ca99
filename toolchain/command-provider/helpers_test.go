package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/diag"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"google.golang.org/protobuf/types/known/structpb"
)

func TestMain(m *testing.M) {
	// File modes in the copy tests are what a server with the usual umask creates.
	syscall.Umask(0o022)
	code := m.Run()
	if builtPath != "" { // the binary buildBinary made
		_ = os.RemoveAll(filepath.Dir(builtPath))
	}
	os.Exit(code)
}

// logEntry is one message the provider sent to the (fake) engine.
type logEntry struct {
	sev       diag.Severity
	urn       resource.URN
	msg       string
	ephemeral bool
}

type fakeHost struct {
	mu      sync.Mutex
	entries []logEntry
}

func (h *fakeHost) Log(_ context.Context, sev diag.Severity, urn resource.URN, msg string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.entries = append(h.entries, logEntry{sev, urn, msg, false})
	return nil
}

func (h *fakeHost) LogStatus(_ context.Context, sev diag.Severity, urn resource.URN, msg string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.entries = append(h.entries, logEntry{sev, urn, msg, true})
	return nil
}

func (h *fakeHost) all() []logEntry {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]logEntry(nil), h.entries...)
}

// messages returns the messages sent, sorted (stdout and stderr lines arrive concurrently).
func (h *fakeHost) messages() []string {
	var out []string
	for _, e := range h.all() {
		out = append(out, e.msg)
	}
	sort.Strings(out)
	return out
}

// props builds a PropertyMap from plain Go values; values may already be PropertyValues
// (secrets, assets, unknowns).
func props(m map[string]any) resource.PropertyMap {
	out := resource.PropertyMap{}
	for k, v := range m {
		out[resource.PropertyKey(k)] = value(v)
	}
	return out
}

func value(v any) resource.PropertyValue {
	switch v := v.(type) {
	case resource.PropertyValue:
		return v
	case map[string]any:
		return resource.NewObjectProperty(props(v))
	case []any:
		var items []resource.PropertyValue
		for _, item := range v {
			items = append(items, value(item))
		}
		return resource.NewArrayProperty(items)
	case int:
		return resource.NewNumberProperty(float64(v))
	}
	return resource.NewPropertyValue(v)
}

func secret(v any) resource.PropertyValue { return resource.MakeSecret(value(v)) }

func unknown() resource.PropertyValue { return resource.MakeComputed(resource.NewStringProperty("")) }

func textAsset(t *testing.T, text string) resource.PropertyValue {
	t.Helper()
	a, err := resource.NewTextAsset(text)
	if err != nil {
		t.Fatal(err)
	}
	return resource.NewAssetProperty(a)
}

func wire(t *testing.T, m resource.PropertyMap) *structpb.Struct {
	t.Helper()
	s, err := marshal(m, "test")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func fromWire(t *testing.T, s *structpb.Struct) resource.PropertyMap {
	t.Helper()
	m, err := unmarshal(s, "test")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mustContain(t *testing.T, text string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(text, p) {
			t.Errorf("%q does not contain %q", text, p)
		}
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mode(t *testing.T, p string) os.FileMode {
	t.Helper()
	info, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return info.Mode().Perm()
}

// acceptEach hands every connection ln accepts to serve, in its own goroutine, until ln is closed
// (at the end of the test); the count is of the connections accepted.
func acceptEach(t *testing.T, ln net.Listener, serve func(net.Conn)) *atomic.Int32 {
	t.Helper()
	t.Cleanup(func() { _ = ln.Close() })
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go serve(c)
		}
	}()
	return &accepted
}
