package main

// The built binary, as the engine runs it: it gets the engine's address as its argument, must
// print its port on stdout, serve the provider there, log command output to the engine, and
// stop on SIGINT. A fake engine (gRPC Engine service on loopback) stands in for Pulumi.

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/emptypb"
)

type fakeEngine struct {
	pulumirpc.UnimplementedEngineServer
	mu   sync.Mutex
	logs []*pulumirpc.LogRequest
}

func (e *fakeEngine) Log(_ context.Context, req *pulumirpc.LogRequest) (*emptypb.Empty, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.logs = append(e.logs, req)
	return &emptypb.Empty{}, nil
}

func (e *fakeEngine) received() []*pulumirpc.LogRequest {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.logs)
}

func startFakeEngine(t *testing.T) (string, *fakeEngine) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	engine := &fakeEngine{}
	pulumirpc.RegisterEngineServer(srv, engine)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return ln.Addr().String(), engine
}

var (
	buildOnce sync.Once
	builtPath string
	buildErr  error
	buildOut  []byte
)

// buildBinary builds the provider with the documented build command, once per test run.
func buildBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "command-provider-test-")
		if err != nil {
			buildErr = err
			return
		}
		goTool, err := exec.LookPath("go")
		if err != nil {
			goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		builtPath = filepath.Join(dir, "pulumi-resource-command")
		cmd := exec.Command(goTool, "build", "-trimpath", "-tags", "osusergo,grpcnotrace",
			"-ldflags", "-s -w", "-o", builtPath, ".")
		buildOut, buildErr = cmd.CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("go build: %v\n%s", buildErr, buildOut)
	}
	return builtPath
}

// startBinary runs the provider the way the engine does and returns its process and port.
func startBinary(t *testing.T, bin, engineAddr string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(bin, engineAddr)
	cmd.Dir = t.TempDir()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		lines <- line
	}()
	select {
	case line := <-lines:
		port := strings.TrimSpace(line)
		if _, err := strconv.Atoi(port); err != nil {
			t.Fatalf("the first line on stdout must be the port, got %q (stderr: %s)", line, stderr.String())
		}
		return cmd, port
	case <-time.After(20 * time.Second):
		t.Fatalf("no port printed (stderr: %s)", stderr.String())
	}
	return nil, ""
}

func TestBinaryPrintsItsPortAndServesTheEngine(t *testing.T) {
	bin := buildBinary(t)
	engineAddr, engine := startFakeEngine(t)
	cmd, port := startBinary(t, bin, engineAddr)

	conn, err := grpc.NewClient("127.0.0.1:"+port, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := pulumirpc.NewResourceProviderClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	info, err := client.GetPluginInfo(ctx, &emptypb.Empty{})
	if err != nil || info.Version != "1.2.1" {
		t.Fatalf("GetPluginInfo: %v %v", info, err)
	}
	urn := "urn:pulumi:dev::sidekiq-fleet::command:local:Command::hello"
	resp, err := client.Create(ctx, &pulumirpc.CreateRequest{
		Urn: urn, Type: typeLocalCommand, Name: "hello",
		Properties: wire(t, props(map[string]any{"create": "echo hello; echo oops >&2"})),
	})
	if err != nil {
		t.Fatal(err)
	}
	out := fromWire(t, resp.Properties)
	if out["stdout"].StringValue() != "hello" || out["stderr"].StringValue() != "oops" {
		t.Fatalf("outputs %v", out)
	}
	var lines []string
	for _, l := range engine.received() {
		if l.Urn != urn || l.Severity != pulumirpc.LogSeverity_INFO || !l.Ephemeral {
			t.Fatalf("unexpected log request %v", l)
		}
		lines = append(lines, l.Message)
	}
	slices.Sort(lines)
	if !slices.Equal(lines, []string{"hello", "oops"}) {
		t.Fatalf("the engine got %q", lines)
	}
	// A failing command: the RPC error carries the message.
	_, err = client.Create(ctx, &pulumirpc.CreateRequest{
		Urn: urn, Type: typeLocalCommand, Name: "hello",
		Properties: wire(t, props(map[string]any{"create": "exit 5"})),
	})
	if err == nil || !strings.Contains(err.Error(), `exit status 5: running "exit 5":`) {
		t.Fatalf("failure: %v", err)
	}

	// The engine stops plugins with SIGINT.
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGINT: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the provider did not stop on SIGINT")
	}
}

// The start-up the engine waits for on every `pulumi up`: exec to the port on stdout.
func TestBinaryStartUpTime(t *testing.T) {
	bin := buildBinary(t)
	engineAddr, _ := startFakeEngine(t)
	var times []time.Duration
	for range 15 {
		start := time.Now()
		cmd, _ := startBinary(t, bin, engineAddr)
		times = append(times, time.Since(start))
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	}
	slices.Sort(times)
	median := times[len(times)/2]
	t.Logf("start-up to port: median %v (min %v, max %v, n=%d)", median, times[0], times[len(times)-1], len(times))
	if median > 2*time.Second {
		t.Fatalf("start-up median %v is far too slow", median)
	}
}
