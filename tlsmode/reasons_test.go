package tlsmode

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/affinity"
	"github.com/tlsedge/tlsedge/certs"
)

// Each kind of failure gives its exact reason string: the access log, the
// docs, edge's metrics and passive ejection match these bytes.
func TestReasonOf(t *testing.T) {
	dialRefused := &net.OpError{Op: "dial", Net: "tcp",
		Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9},
		Err:  os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	hostErr := x509.HostnameError{Certificate: &x509.Certificate{DNSNames: []string{"a.example"}}, Host: "b.example"}
	// crypto/tls wraps a verification failure so: errors.As still finds it.
	tlsVerify := fmt.Errorf("tls: failed to verify certificate: %w", hostErr)
	reset := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"nil", nil, ""},
		{"unclassified error keeps the caller's reason", errors.New("http: server closed"), ""},
		{"client handshake", fail(KindHandshake, SideClient, errors.New("tls: client offered only unsupported versions: [301]")),
			"client tls handshake: tls: client offered only unsupported versions: [301]"},
		{"client handshake past its deadline", fail(KindHandshake, SideClient, fmt.Errorf("handshake: %w", context.DeadlineExceeded)),
			"handshake timeout"},
		{"client handshake, client gone", fail(KindHandshake, SideClient, io.EOF), "client tls handshake: EOF"},
		{"server handshake", fail(KindHandshake, SideServer, tlsVerify),
			"server tls handshake: tls: failed to verify certificate: x509: certificate is valid for a.example, not b.example"},
		{"server handshake past its deadline is the server's", fail(KindHandshake, SideServer, context.DeadlineExceeded),
			"server tls handshake: context deadline exceeded"},
		{"server certificate does not cover the client's name", fail(KindNameNotCovered, SideServer, tlsVerify),
			"server certificate does not cover the client's name: tls: failed to verify certificate: x509: certificate is valid for a.example, not b.example"},
		{"access denied in the handshake", fail(KindAccessDenied, SideClient, fmt.Errorf("tls: %w", ErrAccessDenied)),
			"access denied: client certificate not allowed on this route"},
		{"access denied: client connection limit in the handshake", fail(KindAccessDenied, SideClient,
			&clientLimitError{Limit: 3, Err: fmt.Errorf("tls: %w", ErrClientConnections)}),
			"access denied: client has client_limits.connections (3) open"},
		{"access denied: client connection limit after the handshake", fail(KindAccessDenied, SideClient,
			&clientLimitError{Limit: 1, Err: ErrClientConnections}),
			"access denied: client has client_limits.connections (1) open"},
		{"access denied after reload", fail(KindAccessDenied, SideClient, &reloadDenial{Why: "no longer on the route's allow list"}),
			"access denied after reload: no longer on the route's allow list"},
		{"access denied: no client certificate", fail(KindAccessDenied, SideClient, errNoClientCert),
			"access denied: no client certificate"},
		{"connect: queue timeout", fail(KindConnect, SideServer, fmt.Errorf("pool p: %w", ErrQueueTimeout)), "server queue timeout"},
		{"connect: no server", fail(KindConnect, SideServer, fmt.Errorf("pool p: %w", ErrNoServer)), "no server available"},
		{"connect: dial refused", fail(KindConnect, SideServer, dialRefused), "connect failed: connection refused"},
		{"connect: not a dial error", fail(KindConnect, SideServer, errors.New("resolving s.example: no such host")),
			"connect failed: resolving s.example: no such host"},
		{"server error", fail(KindServerError, SideServer, errors.New("write: broken pipe")), "server error: write: broken pipe"},
		{"server error writing the hello", fail(KindServerError, SideServer, fmt.Errorf("writing client hello: %w", syscall.EPIPE)),
			"server error: writing client hello: broken pipe"},
		{"internal error", fail(KindInternal, SideServer, errors.New("building PROXY v2 TLVs: too long")),
			"internal error: building PROXY v2 TLVs: too long"},
		{"a failure wrapped further", fmt.Errorf("route r: %w", fail(KindServerError, SideServer, io.ErrShortWrite)),
			"server error: short write"},
		{"unknown kind", &Failure{Err: errors.New("x")}, "internal error: x"},
		{"stream: client closed", fail(KindEnded, SideClient, nil), "client closed"},
		{"stream: server closed", fail(KindEnded, SideServer, nil), "server closed"},
		{"stream: closed from outside", fail(KindEnded, SideServer, fmt.Errorf("read: %w", net.ErrClosed)), "closed"},
		{"stream: server reset", fail(KindEnded, SideServer, reset), "server reset"},
		{"stream: client timeout", fail(KindEnded, SideClient, os.ErrDeadlineExceeded), "client timeout"},
		{"stream: client error", fail(KindEnded, SideClient, errors.New("tls: bad record MAC")), "client error: tls: bad record MAC"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := reasonOf(tt.err); got != tt.want {
				t.Errorf("got %q; want %q", got, tt.want)
			}
			var f *Failure
			if errors.As(tt.err, &f) && f.Error() != tt.want {
				t.Errorf("Error() = %q; want %q", f.Error(), tt.want)
			}
		})
	}
}

// closeReason (Pipe's and the relay's) is the classifier's stream end.
func TestCloseReason(t *testing.T) {
	tests := []struct {
		upFirst bool
		err     error
		want    string
	}{
		{true, nil, "client closed"},
		{false, nil, "server closed"},
		{true, net.ErrClosed, "closed"},
		{true, syscall.ECONNRESET, "client reset"},
		{false, os.ErrDeadlineExceeded, "server timeout"},
		{false, io.ErrUnexpectedEOF, "server error: unexpected EOF"},
	}
	for _, tt := range tests {
		if got := closeReason(tt.upFirst, tt.err); got != tt.want {
			t.Errorf("closeReason(%v, %v) = %q; want %q", tt.upFirst, tt.err, got, tt.want)
		}
	}
}

// A Failure keeps the error underneath reachable: callers and metrics
// still test errors.Is on what Serve returns.
func TestFailureUnwraps(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		target error
	}{
		{"handshake denial", fail(KindAccessDenied, SideClient, fmt.Errorf("tls: %w", ErrAccessDenied)), ErrAccessDenied},
		{"connection limit", fail(KindAccessDenied, SideClient, &clientLimitError{Limit: 2, Err: ErrClientConnections}), ErrClientConnections},
		{"connection limit is a denial", fail(KindAccessDenied, SideClient, &clientLimitError{Limit: 2, Err: ErrClientConnections}), ErrAccessDenied},
		{"reload denial", fail(KindAccessDenied, SideClient, &reloadDenial{Why: "w"}), ErrAccessDenied},
		{"no client certificate", fail(KindAccessDenied, SideClient, errNoClientCert), ErrAccessDenied},
		{"queue timeout", fail(KindConnect, SideServer, ErrQueueTimeout), ErrNoServer},
		{"handshake timeout", fail(KindHandshake, SideClient, context.DeadlineExceeded), context.DeadlineExceeded},
	}
	for _, tt := range tests {
		if !errors.Is(tt.err, tt.target) {
			t.Errorf("%s: errors.Is(%v, %v) = false; want true", tt.name, tt.err, tt.target)
		}
	}
	if errors.Is(errNoClientCert, ErrClientConnections) {
		t.Errorf("errNoClientCert is ErrClientConnections; want only ErrAccessDenied")
	}
}

// rsBackend connects to one real server; its Upstream's Release reports
// the connection's reason at that moment, as edge's passive ejection
// reads it there.
type rsBackend struct {
	addr      string
	atRelease chan string
}

func (b rsBackend) Connect(ctx context.Context, c *Conn) (*Upstream, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", b.addr)
	if err != nil {
		return nil, err
	}
	return &Upstream{Conn: conn, Server: affinity.NewServer(b.addr, 1), Release: func() { b.atRelease <- c.Reason }}, nil
}

func (rsBackend) AcquireServer(context.Context, *Conn, func(*affinity.Server) bool) (*affinity.Server, error) {
	return nil, ErrNoServer
}

// Reencrypt to a server that refuses the TLS handshake with an alert: the
// reason is "server tls handshake: remote error: tls: handshake failure",
// and it is already set when the server's slot is released (edge counts
// the failure against the server in Release; it once saw an empty reason).
func TestTerminateReasonSetBeforeRelease(t *testing.T) {
	t.Parallel()
	ca, err := certs.NewAuthority("test CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(certs.Leaf{CommonName: "edge", DNSNames: []string{"a.example.com"}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	// The server reads the ClientHello, answers a handshake_failure alert
	// (level fatal, description 40) and closes.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(rlWaitLong))
		if _, err := ReadHello(conn, 64<<10); err != nil {
			t.Errorf("server: reading the hello: %v", err)
			return
		}
		_, _ = conn.Write([]byte{21, 3, 3, 0, 2, 2, 40})
	}()

	client, edgeSide := tcpPair(t)
	t.Cleanup(func() { client.Close() })
	b := rsBackend{addr: ln.Addr().String(), atRelease: make(chan string, 1)}
	term := &Terminate{
		TLS:      &tls.Config{Certificates: []tls.Certificate{leaf.TLS}},
		Backend:  b,
		Upstream: &tls.Config{ServerName: "backend.example", RootCAs: ca.Pool()},
	}
	c := &Conn{Conn: edgeSide}
	served := make(chan error, 1)
	go func() { served <- term.Serve(context.Background(), c) }()

	tc := tls.Client(client, &tls.Config{ServerName: "a.example.com", RootCAs: ca.Pool()})
	_ = tc.SetDeadline(time.Now().Add(rlWaitLong))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("client handshake with the edge: %v", err)
	}
	var serr error
	select {
	case serr = <-served:
	case <-time.After(rlWaitLong):
		t.Fatal("Serve did not return")
	}
	const want = "server tls handshake: remote error: tls: handshake failure"
	if c.Reason != want {
		t.Errorf("reason: got %q; want %q", c.Reason, want)
	}
	var f *Failure
	if !errors.As(serr, &f) || f.Kind != KindHandshake || f.Side != SideServer {
		t.Errorf("Serve returned %v; want a server handshake *Failure", serr)
	}
	select {
	case got := <-b.atRelease:
		if got != want {
			t.Errorf("reason when the server was released: got %q; want %q", got, want)
		}
	default:
		t.Error("the server's slot was not released when Serve returned")
	}
}
