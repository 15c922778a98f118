package tlsmode

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/certs"
)

// What an idle connection holds (issue 8's idle memory): these tests say
// where an idle stream waits and what it keeps while it does.

// idleConnRead is a client socket whose Read calls check first (on the
// reading goroutine: no race with the guard's fields).
type idleConnRead struct {
	net.Conn
	check func()
}

func (c *idleConnRead) Read(p []byte) (int, error) {
	if c.check != nil {
		c.check()
	}
	return c.Conn.Read(p)
}

// Once a request has been read whole, the guard waits for the next one
// with no buffer of its own: the read that blocks is made into the
// caller's buffer.
func TestGuardIdleHoldsNoBuffer(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	ic := &idleConnRead{Conn: a}
	g := newH1Guard(ic, 1<<16, 0)
	go func() { _, _ = io.WriteString(b, "GET / HTTP/1.1\r\nHost: a\r\n\r\n") }()
	buf := make([]byte, 4096)
	got := 0
	for got < len("GET / HTTP/1.1\r\nHost: a\r\n\r\n") {
		n, err := g.Read(buf[got:])
		if err != nil {
			t.Fatal(err)
		}
		got += n
	}
	held := -1
	ic.check = func() { held = len(g.buf) } // when the guard reads the socket again
	go func() { _, _ = io.WriteString(b, "GET /2 HTTP/1.1\r\nHost: a\r\n\r\n") }()
	if _, err := g.Read(buf); err != nil {
		t.Fatal(err)
	}
	if held != 0 {
		t.Errorf("the guard held a %d-byte buffer while it waited for the next request; want none", held)
	}
}

// An upgraded stream from a plain TCP server waits for the server's bytes
// without a buffer (after its first read): the goroutine copying it is
// blocked in the readiness wait, not in a read.
func TestUpgradedIdleWaitsWithoutBuffer(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the readiness wait is Linux-only")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	server, err := net.Dial("tcp", ln.Addr().String()) // tlsedge's side of the server connection
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	peer := <-accepted // the server itself
	defer peer.Close()
	u := &upgradedConn{rwc: server, server: server, client: server, release: func() {},
		wait: upReadWaiter(server), buffered: true} // as upgraded sets it up
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = u.WriteTo(io.Discard)
	}()
	if _, err := peer.Write([]byte("hello")); err != nil { // the first read, then idle
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		var copier string
		for _, g := range strings.Split(stacks, "\n\n") {
			if strings.Contains(g, "(*upgradedConn).WriteTo") {
				copier = g
			}
		}
		if strings.Contains(copier, "upReadWaiter") {
			break // waiting for readiness, holding no buffer
		}
		if time.Now().After(deadline) {
			t.Fatalf("the idle copier is not in the readiness wait after 10s:\n%s", copier)
		}
		time.Sleep(10 * time.Millisecond)
	}
	peer.Close()
	<-done
}

// A panic in a callback of the client handshake is raised on the caller's
// goroutine (where the edge's recover ends that connection alone), not on
// the handshake's own goroutine, which would end the process.
func TestHandshakePanicReachesCaller(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	srv := tls.Server(a, &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		panic("callback bug")
	}})
	go func() { _ = tls.Client(b, &tls.Config{InsecureSkipVerify: true}).Handshake() }()
	defer func() {
		if r := recover(); r != "callback bug" {
			t.Errorf("recovered %v on the caller's goroutine; want the callback's panic", r)
		}
	}()
	_ = handshake(context.Background(), srv, 10*time.Second)
	t.Error("handshake returned; want the callback's panic")
}

// What a server says of a name the client chose (a certificate that does
// not cover it, a TLS alert) is not the server's fault; with a name the
// client could not choose (one of the route's exact names) it is, and so
// are resets and chain failures always.
func TestServerTLSFault(t *testing.T) {
	ca, err := certs.NewAuthority("fault CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(certs.Leaf{CommonName: "api", DNSNames: []string{"api.example.com"}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(leaf.TLS.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	_, nameErr := cert.Verify(x509.VerifyOptions{DNSName: "other.example.com", Roots: ca.Pool()})
	_, chainErr := cert.Verify(x509.VerifyOptions{DNSName: "api.example.com", Roots: x509.NewCertPool()})
	wrapped := &tls.CertificateVerificationError{Err: nameErr}
	if nameErr == nil || chainErr == nil {
		t.Fatalf("verification errors %v, %v; want both", nameErr, chainErr)
	}
	for _, tt := range []struct {
		err        error
		fromClient bool
		want       bool
	}{
		{wrapped, true, false},
		{wrapped, false, true}, // a fixed server_name: the server's certificate is wrong
		{&tls.CertificateVerificationError{Err: chainErr}, true, true},
		{errors.New("connection reset by peer"), true, true},
		{&net.OpError{Op: "remote error", Err: errors.New("tls: unrecognized name")}, true, false}, // a strict-SNI server's alert
		{&net.OpError{Op: "remote error", Err: errors.New("tls: unrecognized name")}, false, true},
		{&net.OpError{Op: "read", Err: errors.New("connection reset by peer")}, true, true},
	} {
		if got := serverTLSFault(tt.err, tt.fromClient); got != tt.want {
			t.Errorf("serverTLSFault(%v, name from client %v) = %v; want %v", tt.err, tt.fromClient, got, tt.want)
		}
	}
	exact := []string{"api.example.com"}
	for sni, want := range map[string]bool{"api.example.com": false, "API.example.com.": false, "other.example.com": true} {
		if got := clientChoseName(sni, exact); got != want {
			t.Errorf("clientChoseName(%q, %v) = %v; want %v", sni, exact, got, want)
		}
	}
}
