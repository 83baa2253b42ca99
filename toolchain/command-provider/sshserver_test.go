package main

// An in-process SSH and SFTP server on 127.0.0.1 for the tests: x/crypto/ssh for the protocol,
// /bin/sh -c for `exec` requests (run as the test's own user), pkg/sftp for the sftp subsystem
// (on the real file system, so tests use absolute paths under t.TempDir()).

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

type testServer struct {
	t         *testing.T
	addr      string
	host      string
	port      int
	hostKey   ssh.Signer
	clientKey string // PEM (OpenSSH format) of the authorized client key
	password  string
	// acceptEnv says which variables an "env" request may set (as sshd's AcceptEnv).
	acceptEnv func(name string) bool

	conns    atomic.Int32 // TCP connections accepted
	sessions atomic.Int32
	execs    atomic.Int32

	mu       sync.Mutex
	commands []string
	listener net.Listener
}

func newSigner(t *testing.T) (ssh.Signer, ed25519.PrivateKey) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return signer, priv
}

func authorizedKey(s ssh.Signer) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.PublicKey())))
}

// startSSHServer serves until the test ends.
func startSSHServer(t *testing.T) *testServer {
	t.Helper()
	hostKey, _ := newSigner(t)
	clientSigner, clientPriv := newSigner(t)
	block, err := ssh.MarshalPrivateKey(clientPriv, "test client")
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{
		t:         t,
		hostKey:   hostKey,
		clientKey: string(pem.EncodeToMemory(block)),
		password:  "s3cret-password",
		acceptEnv: func(name string) bool { return !strings.HasPrefix(name, "REFUSED_") },
	}
	authorized := clientSigner.PublicKey().Marshal()
	config := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if string(key.Marshal()) == string(authorized) {
				return nil, nil
			}
			return nil, errors.New("unknown key")
		},
		PasswordCallback: func(_ ssh.ConnMetadata, password []byte) (*ssh.Permissions, error) {
			if string(password) == s.password {
				return nil, nil
			}
			return nil, errors.New("wrong password")
		},
	}
	config.AddHostKey(hostKey)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.listener = ln
	s.addr = ln.Addr().String()
	s.host = "127.0.0.1"
	s.port = ln.Addr().(*net.TCPAddr).Port
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns.Add(1)
			go s.serveConn(c, config)
		}
	}()
	return s
}

func (s *testServer) serveConn(c net.Conn, config *ssh.ServerConfig) {
	defer c.Close()
	_, chans, reqs, err := ssh.NewServerConn(c, config)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		ch, requests, err := nc.Accept()
		if err != nil {
			continue
		}
		s.sessions.Add(1)
		go s.serveSession(ch, requests)
	}
}

func (s *testServer) serveSession(ch ssh.Channel, requests <-chan *ssh.Request) {
	defer ch.Close()
	var env []string
	for req := range requests {
		switch req.Type {
		case "env":
			var kv struct{ Name, Value string }
			if ssh.Unmarshal(req.Payload, &kv) != nil || !s.acceptEnv(kv.Name) {
				_ = req.Reply(false, nil)
				continue
			}
			env = append(env, kv.Name+"="+kv.Value)
			_ = req.Reply(true, nil)
		case "exec":
			var cmd struct{ Command string }
			if ssh.Unmarshal(req.Payload, &cmd) != nil {
				_ = req.Reply(false, nil)
				continue
			}
			_ = req.Reply(true, nil)
			s.execs.Add(1)
			s.mu.Lock()
			s.commands = append(s.commands, cmd.Command)
			s.mu.Unlock()
			code := runForSession(ch, cmd.Command, env)
			status := make([]byte, 4)
			binary.BigEndian.PutUint32(status, uint32(code))
			_, _ = ch.SendRequest("exit-status", false, status)
			return
		case "subsystem":
			var sub struct{ Name string }
			if ssh.Unmarshal(req.Payload, &sub) != nil || sub.Name != "sftp" {
				_ = req.Reply(false, nil)
				continue
			}
			_ = req.Reply(true, nil)
			server, err := sftp.NewServer(ch)
			if err != nil {
				return
			}
			if err := server.Serve(); err != nil && !errors.Is(err, io.EOF) {
				s.t.Logf("sftp server: %v", err)
			}
			_ = server.Close()
			return
		default:
			_ = req.Reply(false, nil)
		}
	}
}

func runForSession(ch ssh.Channel, command string, env []string) int {
	cmd := exec.Command("/bin/sh", "-c", command)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = ch
	cmd.Stdout = ch
	cmd.Stderr = ch.Stderr()
	err := cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exitErr):
		if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return exitErr.ExitCode()
	default:
		return 127
	}
}

// connection returns the `connection` input for this server.
func (s *testServer) connectionInput() map[string]any {
	return map[string]any{
		"host":           s.host,
		"port":           float64(s.port),
		"user":           "deploy",
		"privateKey":     s.clientKey,
		"hostKey":        authorizedKey(s.hostKey),
		"dialErrorLimit": float64(0),
		"perDialTimeout": float64(5),
	}
}

func (s *testServer) conn() *connection {
	key := s.clientKey
	hostKey := authorizedKey(s.hostKey)
	return &connection{
		Host: s.host, Port: s.port, User: "deploy",
		PrivateKey: &key, HostKey: &hostKey,
		DialErrorLimit: 0, PerDialTimeout: 5,
	}
}
