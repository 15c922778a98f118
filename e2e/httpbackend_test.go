package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	proxyproto "github.com/pires/go-proxyproto"
)

// Servers behind terminate and reencrypt routes: plain HTTP and HTTPS echo
// servers (which also speak WebSocket, with github.com/coder/websocket), a
// TCP server that reads a PROXY v2 header first, and a server that accepts
// and never answers. Each counts the TCP connections it accepted, so a test
// can assert that tlsedge never contacted it (configs use health type none
// so that health probes do not count).

// gotRequest is one request an HTTP backend received.
type gotRequest struct {
	Method, Path, Host, Proto string
	Header                    http.Header
	Remote                    string // the TCP peer (tlsedge's outgoing address)
	SNI                       string // HTTPS only: the server name tlsedge sent
	PeerCN                    string // HTTPS only: CN of tlsedge's client certificate
	Upgrade                   bool   // a WebSocket upgrade
}

// httpBackend is an HTTP (or HTTPS) server. Every request is recorded; it
// answers "200 <name> <method> <path>\n" with the header X-Backend: <name>,
// and a WebSocket upgrade is accepted and echoed message by message.
type httpBackend struct {
	t    testing.TB
	name string
	ctx  context.Context    // the WebSockets' context
	stop context.CancelFunc // ends the WebSockets

	mu       sync.Mutex
	addr     string
	accepted int
	reqs     []gotRequest
	wsLive   int
	wsWG     sync.WaitGroup
}

// startHTTPBackend starts a plain HTTP server on 127.0.0.1:0.
func startHTTPBackend(t testing.TB, name string) *httpBackend {
	return newHTTPBackend(t, name, nil)
}

// startHTTPSBackend starts an HTTPS server with cert; with clientCAs it
// requires and verifies a client certificate against them.
func startHTTPSBackend(t testing.TB, name string, cert tls.Certificate, clientCAs *x509.CertPool) *httpBackend {
	conf := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"http/1.1"},
	}
	if clientCAs != nil {
		conf.ClientAuth = tls.RequireAndVerifyClientCert
		conf.ClientCAs = clientCAs
	}
	return newHTTPBackend(t, name, conf)
}

func newHTTPBackend(t testing.TB, name string, conf *tls.Config) *httpBackend {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &httpBackend{t: t, name: name, addr: raw.Addr().String()}
	b.ctx, b.stop = context.WithCancel(context.Background())
	var ln net.Listener = &countingListener{Listener: raw, count: func() {
		b.mu.Lock()
		b.accepted++
		b.mu.Unlock()
	}}
	if conf != nil {
		ln = tls.NewListener(ln, conf)
	}
	srv := &http.Server{
		Handler:           b,
		ReadHeaderTimeout: waitLong,
		// Handshake errors of probes are expected; the tests assert on what was recorded.
		ErrorLog: stdlog.New(io.Discard, "", 0),
	}
	serveHTTP(t, "HTTP backend "+name, srv, ln)
	t.Cleanup(b.endWebSockets) // runs first: srv.Close does not end hijacked connections
	return b
}

// countingListener counts accepted TCP connections.
type countingListener struct {
	net.Listener
	count func()
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.count()
	}
	return c, err
}

func (b *httpBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := gotRequest{
		Method: r.Method, Path: r.URL.Path, Host: r.Host, Proto: r.Proto,
		Header: r.Header.Clone(), Remote: r.RemoteAddr,
		Upgrade: strings.EqualFold(r.Header.Get("Upgrade"), "websocket"),
	}
	if r.TLS != nil {
		rec.SNI = r.TLS.ServerName
		if len(r.TLS.PeerCertificates) > 0 {
			rec.PeerCN = r.TLS.PeerCertificates[0].Subject.CommonName
		}
	}
	b.mu.Lock()
	b.reqs = append(b.reqs, rec)
	b.mu.Unlock()
	w.Header().Set("X-Backend", b.name)
	if rec.Upgrade {
		b.serveWebSocket(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "%s %s %s\n", b.name, r.Method, r.URL.Path)
}

// serveWebSocket echoes every message until the client closes or the
// backend stops.
func (b *httpBackend) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	b.mu.Lock()
	b.wsLive++
	b.wsWG.Add(1)
	b.mu.Unlock()
	defer func() {
		c.CloseNow()
		b.mu.Lock()
		b.wsLive--
		b.mu.Unlock()
		b.wsWG.Done()
	}()
	for {
		typ, p, err := c.Read(b.ctx)
		if err != nil {
			return
		}
		if err := c.Write(b.ctx, typ, p); err != nil {
			return
		}
	}
}

// endWebSockets ends the WebSockets and waits for them, at most waitLong.
func (b *httpBackend) endWebSockets() {
	b.stop()
	if !waitBounded(b.wsWG.Wait) {
		b.t.Errorf("HTTP backend %s: WebSockets did not end within %v", b.name, waitLong)
	}
}

// Addr is the address the backend listens on.
func (b *httpBackend) Addr() string { return b.addr }

// Accepted is the number of TCP connections accepted so far.
func (b *httpBackend) Accepted() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.accepted
}

// Requests returns the requests received so far.
func (b *httpBackend) Requests() []gotRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]gotRequest(nil), b.reqs...)
}

// LiveWebSockets is the number of WebSockets open now.
func (b *httpBackend) LiveWebSockets() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.wsLive
}

// findRequest waits (bounded) until one of bs received a request for path
// and returns it with the backend that got it. Paths are unique per test.
func findRequest(t testing.TB, path string, bs ...*httpBackend) (gotRequest, *httpBackend) {
	t.Helper()
	var got []gotRequest
	var from []*httpBackend
	poll(waitLong, func() bool {
		got, from = nil, nil
		for _, b := range bs {
			for _, r := range b.Requests() {
				if r.Path == path {
					got = append(got, r)
					from = append(from, b)
				}
			}
		}
		return len(got) > 0
	})
	if len(got) != 1 {
		names := make([]string, len(bs))
		for i, b := range bs {
			names[i] = b.name
		}
		t.Fatalf("backends %v received %d requests for %s; want exactly 1", names, len(got), path)
	}
	return got[0], from[0]
}

// contacts is the number of TCP connections and requests bs received, to
// assert that something reached none of them.
func contacts(bs ...*httpBackend) (conns, reqs int) {
	for _, b := range bs {
		conns += b.Accepted()
		reqs += len(b.Requests())
	}
	return conns, reqs
}

// ---------------------------------------------------------------- PROXY v2 TCP backend

// ppSeen is one connection of a ppBackend.
type ppSeen struct {
	Header *proxyproto.Header
	TLVs   []proxyproto.TLV
	Err    string // reading the PROXY header failed
}

// ppBackend is a plaintext TCP server (behind terminate, protocol tcp) that
// reads a PROXY v1/v2 header, records it, and then echoes until the client
// closes.
type ppBackend struct {
	ln    net.Listener
	group *connGroup // the connections; t.Cleanup stops it

	mu   sync.Mutex
	seen []ppSeen
}

func startPPBackend(t testing.TB, name string) *ppBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &ppBackend{ln: ln, group: newConnGroup(t, "PROXY backend "+name)}
	b.group.serve(ln, b.handle)
	t.Cleanup(b.group.stop)
	return b
}

func (b *ppBackend) handle(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(waitLong))
	br := bufio.NewReader(c)
	h, err := proxyproto.Read(br)
	rec := ppSeen{Header: h}
	if err != nil {
		rec.Err = err.Error()
	} else {
		rec.TLVs, err = h.TLVs()
		if err != nil {
			rec.Err = "TLVs: " + err.Error()
		}
	}
	b.mu.Lock()
	b.seen = append(b.seen, rec)
	b.mu.Unlock()
	if rec.Err != "" {
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	_, _ = io.Copy(c, br)
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}

func (b *ppBackend) Addr() string { return b.ln.Addr().String() }

func (b *ppBackend) Seen() []ppSeen {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]ppSeen(nil), b.seen...)
}

// ---------------------------------------------------------------- a server that never answers

// silentBackend accepts connections and reads them, and never writes.
type silentBackend struct {
	ln    net.Listener
	group *connGroup // the connections; t.Cleanup stops it

	mu       sync.Mutex
	accepted int
}

func startSilentBackend(t testing.TB) *silentBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &silentBackend{ln: ln, group: newConnGroup(t, "silent backend")}
	b.group.serve(ln, b.handle)
	t.Cleanup(b.group.stop)
	return b
}

// handle counts c and reads it until it is closed.
func (b *silentBackend) handle(c net.Conn) {
	b.mu.Lock()
	b.accepted++
	b.mu.Unlock()
	_, _ = io.Copy(io.Discard, c)
}

func (b *silentBackend) Addr() string { return b.ln.Addr().String() }

func (b *silentBackend) Accepted() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.accepted
}

// closedAddr returns a 127.0.0.1 address nothing listens on (connect:
// refused).
func closedAddr(t testing.TB) string {
	t.Helper()
	addr := freeAddr(t)
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("%s was meant to be closed, but accepts", addr)
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dialing the closed port %s: %v; want connection refused", addr, err)
	}
	return addr
}
