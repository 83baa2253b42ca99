package main

// The `connection` input and dialing SSH with retries.
//
// As upstream 1.2.1: user defaults to root and port to 22; privateKey (PEM or OpenSSH, with
// privateKeyPassword when encrypted) and password (also answering keyboard-interactive) are
// the credentials; with hostKey only that key is accepted, without it any host key is. Every
// failed dial (refused, timed out, handshake or authentication failure) is retried until
// dialErrorLimit failures are exceeded (default 10, -1 unlimited), waiting 100 ms, then 1.5x
// longer each time, at most 5 s (the Pulumi SDK's retry.Until defaults, which upstream uses).
//
// Unlike upstream, perDialTimeout bounds the whole dial (TCP connect AND the SSH handshake),
// not only the TCP connect: a host that accepts the connection but never speaks SSH fails the
// attempt after perDialTimeout seconds instead of hanging. 0 means no bound.
//
// Not implemented: proxy (bastion hosts) and agentSocketPath (SSH agents) are refused with an
// error; SSH_AUTH_SOCK and ~/.ssh (keys, config, known_hosts) are never used.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"golang.org/x/crypto/ssh"
)

const (
	defaultPort           = 22
	defaultUser           = "root"
	defaultDialErrorLimit = 10
	defaultPerDialTimeout = 15

	retryDelay    = 100 * time.Millisecond
	retryBackoff  = 1.5
	retryMaxDelay = 5 * time.Second
)

// connection is the parsed `connection` input. Its String never shows credentials.
type connection struct {
	Host               string
	Port               int
	User               string
	Password           *string
	PrivateKey         *string
	PrivateKeyPassword *string
	HostKey            *string
	DialErrorLimit     int
	PerDialTimeout     int // seconds; 0: no bound
}

func (c *connection) String() string {
	return c.User + "@" + net.JoinHostPort(c.Host, strconv.Itoa(c.Port))
}

func (c *connection) address() string { return net.JoinHostPort(c.Host, strconv.Itoa(c.Port)) }

// unsupportedConnectionField names the connection fields this provider refuses.
var unsupportedConnectionFields = map[string]string{
	"proxy":           "connection.proxy (bastion hosts) is not supported by this command provider",
	"agentSocketPath": "connection.agentSocketPath (SSH agents) is not supported by this command provider",
}

// parseConnection reads the `connection` input (plain or secret, fields plain or secret).
func parseConnection(inputs resource.PropertyMap) (*connection, error) {
	v, ok := lookup(inputs, "connection")
	switch {
	case !ok:
		return nil, errors.New("missing required property 'connection'")
	case v.IsComputed():
		return nil, unknownError("connection")
	case !v.IsObject():
		return nil, fmt.Errorf("connection: expected an object, got %s", v.TypeString())
	}
	m := v.ObjectValue()
	for _, key := range []string{"proxy", "agentSocketPath"} {
		if _, set := lookup(m, key); set {
			return nil, errors.New(unsupportedConnectionFields[key])
		}
	}
	c := &connection{}
	var err error
	host, ok, err := optString(m, "host")
	if err != nil {
		return nil, fmt.Errorf("connection.%w", err)
	}
	if !ok || host == "" {
		return nil, errors.New("connection.host: missing required property")
	}
	c.Host = host
	if c.Port, err = optInt(m, "port", defaultPort); err != nil {
		return nil, fmt.Errorf("connection.%w", err)
	}
	if c.Port < 1 || c.Port > 65535 {
		return nil, fmt.Errorf("connection.port: %d is not a TCP port", c.Port)
	}
	user, ok, err := optString(m, "user")
	if err != nil {
		return nil, fmt.Errorf("connection.%w", err)
	}
	c.User = defaultUser
	if ok {
		c.User = user
	}
	for key, dest := range map[string]**string{
		"password":           &c.Password,
		"privateKey":         &c.PrivateKey,
		"privateKeyPassword": &c.PrivateKeyPassword,
		"hostKey":            &c.HostKey,
	} {
		s, ok, err := optString(m, key)
		if err != nil {
			return nil, fmt.Errorf("connection.%w", err)
		}
		if ok {
			*dest = &s
		}
	}
	if c.DialErrorLimit, err = optInt(m, "dialErrorLimit", defaultDialErrorLimit); err != nil {
		return nil, fmt.Errorf("connection.%w", err)
	}
	if c.PerDialTimeout, err = optInt(m, "perDialTimeout", defaultPerDialTimeout); err != nil {
		return nil, fmt.Errorf("connection.%w", err)
	}
	if c.PerDialTimeout < 0 {
		return nil, fmt.Errorf("connection.perDialTimeout: %d is negative", c.PerDialTimeout)
	}
	return c, nil
}

// clientConfig is the SSH client configuration; a key that cannot be parsed fails here, before
// any dial, as upstream.
func (c *connection) clientConfig() (*ssh.ClientConfig, error) {
	config := &ssh.ClientConfig{
		User: c.User,
		//nolint:gosec // as upstream: without hostKey any host key is accepted
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
	}
	if c.HostKey != nil {
		want, _, _, _, err := ssh.ParseAuthorizedKey([]byte(*c.HostKey))
		if err != nil {
			return nil, fmt.Errorf("connection.hostKey: failed to parse host key: %w", err)
		}
		config.HostKeyCallback = pinnedHostKey(want)
		config.HostKeyAlgorithms = hostKeyAlgorithms(want)
	}
	if c.PrivateKey != nil {
		var signer ssh.Signer
		var err error
		if c.PrivateKeyPassword != nil {
			signer, err = ssh.ParsePrivateKeyWithPassphrase([]byte(*c.PrivateKey), []byte(*c.PrivateKeyPassword))
		} else {
			signer, err = ssh.ParsePrivateKey([]byte(*c.PrivateKey))
		}
		if err != nil {
			return nil, fmt.Errorf("connection.privateKey: %w", err)
		}
		config.Auth = append(config.Auth, ssh.PublicKeys(signer))
	}
	if c.Password != nil {
		password := *c.Password
		config.Auth = append(config.Auth,
			ssh.Password(password),
			ssh.KeyboardInteractive(func(_, _ string, questions []string, _ []bool) ([]string, error) {
				answers := make([]string, len(questions))
				for i := range answers {
					answers[i] = password
				}
				return answers, nil
			}))
	}
	return config, nil
}

// pinnedHostKey accepts exactly want, and names both keys when the host shows another.
func pinnedHostKey(want ssh.PublicKey) ssh.HostKeyCallback {
	return func(hostname string, _ net.Addr, got ssh.PublicKey) error {
		if bytes.Equal(got.Marshal(), want.Marshal()) {
			return nil
		}
		return fmt.Errorf("host key mismatch for %s: expected %s %s, got %s %s", hostname,
			want.Type(), ssh.FingerprintSHA256(want), got.Type(), ssh.FingerprintSHA256(got))
	}
}

// hostKeyAlgorithms asks the server for the pinned key's algorithm (as upstream); for an RSA key
// that is any of the RSA signature algorithms, since servers may refuse SHA-1 (ssh-rsa).
func hostKeyAlgorithms(key ssh.PublicKey) []string {
	if key.Type() == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{key.Type()}
}

// dial connects and authenticates, retrying as the connection says.
func (c *connection) dial(ctx context.Context, rep reporter) (*ssh.Client, error) {
	config, err := c.clientConfig()
	if err != nil {
		return nil, err
	}
	timeout := time.Duration(c.PerDialTimeout) * time.Second
	return retryDial(ctx, c.DialErrorLimit, rep.status, func() (*ssh.Client, error) {
		return dialOnce(ctx, c.address(), config, timeout)
	})
}

// dialOnce is one attempt: TCP connect and SSH handshake, both within timeout (0: no bound).
func dialOnce(ctx context.Context, addr string, config *ssh.ClientConfig, timeout time.Duration) (*ssh.Client, error) {
	dctx := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		dctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	var d net.Dialer
	conn, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return nil, fmt.Errorf("dial tcp %s: no connection within %v (perDialTimeout)", addr, timeout)
		}
		return nil, err
	}
	// The handshake is bounded by the same deadline, and by cancellation.
	if deadline, ok := dctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	stop := context.AfterFunc(dctx, func() { _ = conn.Close() })
	sshConn, chans, reqs, err := ssh.NewClientConn(conn, addr, config)
	if !stop() {
		if err == nil {
			_ = sshConn.Close()
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("ssh: handshake with %s: no answer within %v (perDialTimeout)", addr, timeout)
	}
	if err != nil {
		_ = conn.Close()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil {
			return nil, fmt.Errorf("ssh: handshake with %s: no answer within %v (perDialTimeout)", addr, timeout)
		}
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return ssh.NewClient(sshConn, chans, reqs), nil
}

// reachedDialLimit is upstream's rule: a limit of -1 (or less) is unlimited, else the dial fails
// once the failed dials exceed the limit (so there are limit+1 attempts).
func reachedDialLimit(dials, limit int) bool {
	return limit > -1 && dials > limit
}

// retryDelays returns the wait after each failed attempt: 100 ms, x1.5 each time, at most 5 s.
func retryDelays() func() time.Duration {
	delay := retryDelay
	return func() time.Duration {
		d := min(delay, retryMaxDelay)
		delay = time.Duration(float64(delay) * retryBackoff)
		return d
	}
}

// retryDial calls attempt until it succeeds or the failures exceed limit; status hears of each
// retry ("Dial 1/10 failed: retrying", as upstream).
func retryDial[T any](ctx context.Context, limit int, status func(string), attempt func() (T, error)) (T, error) {
	var zero T
	next := retryDelays()
	limitText := strconv.Itoa(limit)
	if limit < 0 {
		limitText = "inf"
	}
	for try := 0; ; try++ {
		result, err := attempt()
		if err == nil {
			return result, nil
		}
		if ctx.Err() != nil {
			return zero, ctx.Err()
		}
		dials := try + 1
		if reachedDialLimit(dials, limit) {
			return zero, fmt.Errorf("after %d failed attempts: %w", try, err)
		}
		status(fmt.Sprintf("Dial %d/%s failed: retrying", dials, limitText))
		timer := time.NewTimer(next())
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return zero, ctx.Err()
		}
	}
}
