package main

import (
	"context"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

func remoteSpec(command string) *runSpec {
	return &runSpec{command: command, logging: loggingMode{stdout: true, stderr: true}}
}

func TestRemoteRunOutputAndExitStatus(t *testing.T) {
	s := startSSHServer(t)
	host := &fakeHost{}
	rep := reporter{ctx: context.Background(), host: host, urn: "urn:pulumi:s::p::command:remote:Command::r"}
	stdout, stderr, err := runRemote(context.Background(), s.conn(), remoteSpec("printf 'out\\n\\n'; echo err >&2"), rep)
	if err != nil {
		t.Fatal(err)
	}
	if stdout != "out\n" || stderr != "err" {
		t.Fatalf("outputs %q %q: one trailing newline must be dropped", stdout, stderr)
	}
	if got := host.messages(); !slices.Equal(got, []string{"", "err", "out"}) {
		t.Fatalf("logged lines %q", got)
	}
	for _, e := range host.all() {
		if e.urn != rep.urn || !e.ephemeral {
			t.Fatalf("a line must be logged against the resource's URN: %+v", e)
		}
	}

	_, _, err = runRemote(context.Background(), s.conn(), remoteSpec("set -e\necho installing\nsleep 0.1\necho boom >&2\nexit 3"), rep)
	want := "Process exited with status 3: running \"set -e…\":\ninstalling\nboom"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
	spec := remoteSpec("echo $TOKEN; exit 4")
	spec.secret = true
	_, _, err = runRemote(context.Background(), s.conn(), spec, rep)
	if err == nil || !strings.HasPrefix(err.Error(), "Process exited with status 4: running [secret command]:") {
		t.Fatalf("secret command: %v", err)
	}
}

func TestRemoteRunSendsCommandAsIsWithEnvAndStdin(t *testing.T) {
	s := startSSHServer(t)
	spec := remoteSpec(`printf '%s|%s|' "$FOO" "$PULUMI_COMMAND_STDOUT"; cat`)
	spec.env = []envVar{{"FOO", "foo value"}}
	spec.addPrevious, spec.prevStdout = true, "previous out"
	spec.stdin = "from stdin\n"
	stdout, _, err := runRemote(context.Background(), s.conn(), spec, reporter{})
	if err != nil {
		t.Fatal(err)
	}
	if stdout != "foo value|previous out|from stdin" {
		t.Fatalf("stdout %q", stdout)
	}
	spec.addPrevious = false
	stdout, _, _ = runRemote(context.Background(), s.conn(), spec, reporter{})
	if stdout != "foo value||from stdin" {
		t.Fatalf("addPreviousOutputInEnv=false must not set PULUMI_COMMAND_STDOUT: %q", stdout)
	}
	if s.commands[0] != spec.command {
		t.Fatalf("the command must be sent as is, got %q", s.commands[0])
	}
}

func TestRemoteRefusedEnvironmentFailsButRefusedPreviousOutputWarns(t *testing.T) {
	s := startSSHServer(t)
	s.acceptEnv = func(name string) bool { return name == "OK" }
	spec := remoteSpec("echo ran")
	spec.env = []envVar{{"OK", "1"}, {"REFUSED", "2"}}
	_, _, err := runRemote(context.Background(), s.conn(), spec, reporter{})
	if err == nil {
		t.Fatal("a variable the server refuses must fail the command")
	}
	mustContain(t, err.Error(), `could not set environment variable "REFUSED"`, "AcceptEnv")
	if s.execs.Load() != 0 {
		t.Fatal("the command must not run")
	}
	host := &fakeHost{}
	spec = remoteSpec("echo ran")
	spec.addPrevious, spec.prevStdout = true, "old"
	stdout, _, err := runRemote(context.Background(), s.conn(), spec, reporter{ctx: context.Background(), host: host, urn: "u"})
	if err != nil || stdout != "ran" {
		t.Fatalf("a refused PULUMI_COMMAND_STDOUT must not fail: %v %q", err, stdout)
	}
	var warned bool
	for _, e := range host.all() {
		warned = warned || (strings.Contains(e.msg, "PULUMI_COMMAND_STDOUT") && !e.ephemeral)
	}
	if !warned {
		t.Fatalf("expected a warning about PULUMI_COMMAND_STDOUT, got %+v", host.all())
	}
}

func TestHostKeyPinning(t *testing.T) {
	s := startSSHServer(t)
	if _, _, err := runRemote(context.Background(), s.conn(), remoteSpec("true"), reporter{}); err != nil {
		t.Fatalf("the pinned key must be accepted: %v", err)
	}
	other, _ := newSigner(t)
	conn := s.conn()
	otherKey := authorizedKey(other) + " some comment"
	conn.HostKey = &otherKey
	_, _, err := runRemote(context.Background(), conn, remoteSpec("true"), reporter{})
	if err == nil {
		t.Fatal("another host key must be refused")
	}
	mustContain(t, err.Error(), "host key mismatch",
		"expected ssh-ed25519 "+ssh.FingerprintSHA256(other.PublicKey()),
		"got ssh-ed25519 "+ssh.FingerprintSHA256(s.hostKey.PublicKey()))
	if s.execs.Load() != 1 {
		t.Fatal("nothing must run on a host with the wrong key")
	}
	conn.HostKey = nil
	if _, _, err := runRemote(context.Background(), conn, remoteSpec("true"), reporter{}); err != nil {
		t.Fatalf("without hostKey any host key is accepted: %v", err)
	}
	bad := "not a key"
	conn.HostKey = &bad
	if _, err := conn.clientConfig(); err == nil || !strings.Contains(err.Error(), "hostKey") {
		t.Fatalf("an unparsable hostKey must fail before dialing: %v", err)
	}
}

func TestPasswordAndEncryptedKeyAuth(t *testing.T) {
	s := startSSHServer(t)
	password := s.password
	conn := &connection{Host: s.host, Port: s.port, User: "deploy", Password: &password, PerDialTimeout: 5}
	if out, _, err := runRemote(context.Background(), conn, remoteSpec("echo pw"), reporter{}); err != nil || out != "pw" {
		t.Fatalf("password auth: %v %q", err, out)
	}
	wrong := "nope"
	conn.Password = &wrong
	if _, _, err := runRemote(context.Background(), conn, remoteSpec("true"), reporter{}); err == nil ||
		!strings.Contains(err.Error(), "unable to authenticate") {
		t.Fatalf("a wrong password must fail: %v", err)
	}

	// The same client key, encrypted.
	raw, err := ssh.ParseRawPrivateKey([]byte(s.clientKey))
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKeyWithPassphrase(raw, "", []byte("key pass"))
	if err != nil {
		t.Fatal(err)
	}
	key, pass := string(pem.EncodeToMemory(block)), "key pass"
	conn = &connection{Host: s.host, Port: s.port, User: "deploy", PrivateKey: &key, PrivateKeyPassword: &pass, PerDialTimeout: 5}
	if out, _, err := runRemote(context.Background(), conn, remoteSpec("echo key"), reporter{}); err != nil || out != "key" {
		t.Fatalf("encrypted key: %v %q", err, out)
	}
	conn.PrivateKeyPassword = nil
	if _, err := conn.clientConfig(); err == nil {
		t.Fatal("an encrypted key without its password must fail before dialing")
	}
}

func TestRetryScheduleAndLimit(t *testing.T) {
	next := retryDelays()
	var got []time.Duration
	for range 12 {
		got = append(got, next())
	}
	want := []time.Duration{100 * time.Millisecond, 150 * time.Millisecond, 225 * time.Millisecond, 337500 * time.Microsecond}
	if !slices.Equal(got[:4], want) || got[11] != 5*time.Second {
		t.Fatalf("delays %v", got)
	}
	for _, c := range []struct {
		dials, limit int
		reached      bool
	}{{10, 10, false}, {11, 10, true}, {1, 0, true}, {10000, -1, false}, {5, -2, false}} {
		if reachedDialLimit(c.dials, c.limit) != c.reached {
			t.Errorf("reachedDialLimit(%d, %d) != %v", c.dials, c.limit, c.reached)
		}
	}
}

func refusedAddress(t *testing.T) (string, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	return "127.0.0.1", port
}

func TestDialRetriesARefusedPortUntilTheLimit(t *testing.T) {
	host, port := refusedAddress(t)
	conn := &connection{Host: host, Port: port, User: "u", DialErrorLimit: 2, PerDialTimeout: 5}
	fake := &fakeHost{}
	start := time.Now()
	_, err := conn.dial(context.Background(), reporter{ctx: context.Background(), host: fake, urn: "u"})
	elapsed := time.Since(start)
	if err == nil {
		t.Fatal("dial must fail")
	}
	mustContain(t, err.Error(), "after 2 failed attempts", "connection refused")
	var statuses []string
	for _, e := range fake.all() {
		if !e.ephemeral {
			t.Fatalf("retry messages are status messages: %+v", e)
		}
		statuses = append(statuses, e.msg)
	}
	if !slices.Equal(statuses, []string{"Dial 1/2 failed: retrying", "Dial 2/2 failed: retrying"}) {
		t.Fatalf("statuses %q", statuses)
	}
	if elapsed < 250*time.Millisecond || elapsed > 3*time.Second {
		t.Fatalf("3 attempts with 100 ms and 150 ms between them took %v", elapsed)
	}
}

// A listener that accepts and hangs up at once: each attempt is a handshake failure, counted
// by the server.
func TestDialRetryCountSeenByTheServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := acceptEach(t, ln, func(c net.Conn) { _ = c.Close() })
	conn := &connection{Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port, User: "u", DialErrorLimit: 3, PerDialTimeout: 5}
	_, err = conn.dial(context.Background(), reporter{})
	if err == nil || !strings.Contains(err.Error(), "after 3 failed attempts") {
		t.Fatalf("err = %v", err)
	}
	time.Sleep(50 * time.Millisecond)
	if accepted.Load() != 4 {
		t.Fatalf("dialErrorLimit 3 means 4 attempts, the server saw %d", accepted.Load())
	}
}

// silentListener accepts connections and never says anything.
func silentListener(t *testing.T) (int, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	accepted := acceptEach(t, ln, func(c net.Conn) {
		mu.Lock()
		defer mu.Unlock()
		conns = append(conns, c)
	})
	return ln.Addr().(*net.TCPAddr).Port, accepted
}

func TestPerDialTimeoutBoundsEachAttempt(t *testing.T) {
	port, accepted := silentListener(t)
	conn := &connection{Host: "127.0.0.1", Port: port, User: "u", DialErrorLimit: 1, PerDialTimeout: 1}
	start := time.Now()
	_, err := conn.dial(context.Background(), reporter{})
	elapsed := time.Since(start)
	if err == nil {
		t.Fatal("a host that never answers must fail the dial")
	}
	mustContain(t, err.Error(), "after 1 failed attempts", "perDialTimeout")
	if accepted.Load() != 2 {
		t.Fatalf("2 attempts expected, the listener saw %d", accepted.Load())
	}
	if elapsed < 2*time.Second || elapsed > 4*time.Second {
		t.Fatalf("two 1 s attempts took %v", elapsed)
	}
}

func TestPerDialTimeoutZeroMeansNoBound(t *testing.T) {
	port, accepted := silentListener(t)
	conn := &connection{Host: "127.0.0.1", Port: port, User: "u", DialErrorLimit: 5, PerDialTimeout: 0}
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	_, err := conn.dial(ctx, reporter{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the one attempt must still be waiting when the caller gives up: %v", err)
	}
	if accepted.Load() != 1 {
		t.Fatalf("one attempt expected, got %d", accepted.Load())
	}
}

func TestParseConnection(t *testing.T) {
	c, err := parseConnection(props(map[string]any{"connection": secret(map[string]any{"host": "h"})}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != 22 || c.User != "root" || c.DialErrorLimit != 10 || c.PerDialTimeout != 15 {
		t.Fatalf("defaults: %+v", c)
	}
	c, err = parseConnection(props(map[string]any{"connection": map[string]any{
		"host": "h", "port": 2222, "user": "deploy", "privateKey": secret("KEY"), "password": secret("PW"),
		"dialErrorLimit": -1, "perDialTimeout": 0,
	}}))
	if err != nil {
		t.Fatal(err)
	}
	if *c.PrivateKey != "KEY" || *c.Password != "PW" || c.DialErrorLimit != -1 || c.PerDialTimeout != 0 {
		t.Fatalf("parsed %+v", c)
	}
	if s := c.String(); s != "deploy@h:2222" {
		t.Fatalf("String() = %q must name the endpoint and no credentials", s)
	}
	for field, want := range map[string]string{"proxy": "bastion", "agentSocketPath": "SSH agents"} {
		_, err := parseConnection(props(map[string]any{"connection": map[string]any{"host": "h", field: map[string]any{"host": "b"}}}))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s must be refused clearly: %v", field, err)
		}
	}
	if _, err := parseConnection(props(map[string]any{"connection": map[string]any{"host": "h", "port": 22.5}})); err == nil {
		t.Error("a fractional port must be refused")
	}
	if _, err := parseConnection(props(map[string]any{})); err == nil {
		t.Error("a missing connection must be refused")
	}
}

func TestCancelDoesNotCutARemoteCommandThatHasStarted(t *testing.T) {
	s := startSSHServer(t)
	host := &fakeHost{}
	ctx, cancel := context.WithCancel(context.Background())
	rep := reporter{ctx: context.Background(), host: host, urn: "urn:pulumi:s::p::command:remote:Command::r"}
	type result struct {
		stdout string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		stdout, _, err := runRemote(ctx, s.conn(), remoteSpec("echo started; sleep 1; echo finished"), rep)
		done <- result{stdout, err}
	}()
	for len(host.all()) == 0 { // started once its first line is logged
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	got := <-done
	if got.err != nil || got.stdout != "started\nfinished" {
		t.Fatalf("a started command must run to its end after a cancel: %q %v", got.stdout, got.err)
	}
}

func TestCancelStopsDialing(t *testing.T) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close() // accepts nothing: every dial times out
	conn := startSSHServer(t).conn()
	conn.Host, conn.Port = "127.0.0.1", listener.Addr().(*net.TCPAddr).Port
	conn.DialErrorLimit, conn.PerDialTimeout = -1, 1
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	_, _, err = runRemote(ctx, conn, remoteSpec("true"), reporter{})
	if err == nil || time.Since(start) > 3*time.Second {
		t.Fatalf("a cancel must stop the dial retries at once: %v after %v", err, time.Since(start))
	}
}

// The host's SSH agent and the operator's ~/.ssh hold a key the server accepts; a connection that
// names neither a privateKey nor a password must still not log in with them.
func TestNeitherTheAgentNorHomeSSHKeysAreUsed(t *testing.T) {
	s := startSSHServer(t)
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"id_ed25519", "id_rsa", "id_ecdsa"} {
		if err := os.WriteFile(filepath.Join(home, ".ssh", name), []byte(s.clientKey), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("HOME", home)

	raw, err := ssh.ParseRawPrivateKey([]byte(s.clientKey))
	if err != nil {
		t.Fatal(err)
	}
	keyring := agent.NewKeyring()
	if err := keyring.Add(agent.AddedKey{PrivateKey: raw}); err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(t.TempDir(), "agent.sock")
	listener, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	served := acceptEach(t, listener, func(c net.Conn) { _ = agent.ServeAgent(keyring, c); c.Close() })
	t.Setenv("SSH_AUTH_SOCK", socket)

	conn := s.conn()
	conn.PrivateKey = nil
	if _, _, err := runRemote(context.Background(), conn, remoteSpec("echo in"), reporter{}); err == nil {
		t.Fatal("a connection without a key or password must not log in")
	}
	if served.Load() != 0 {
		t.Fatal("the SSH agent was asked")
	}
}
