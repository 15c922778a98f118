package tlsmode

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/affinity"
	"github.com/tlsedge/tlsedge/certs"
)

type noServers struct{}

func (noServers) Connect(context.Context, *Conn) (*Upstream, error) { return nil, ErrNoServer }
func (noServers) AcquireServer(context.Context, *Conn, func(*affinity.Server) bool) (*affinity.Server, error) {
	return nil, ErrNoServer
}

// tlsPair returns the server end of a real TLS connection over TCP, after
// its handshake, and the client end.
func tlsPair(t *testing.T) (server, client *tls.Conn) {
	t.Helper()
	a, b := tcpPair(t)
	scfg, ccfg := edgeTLSConfigs(t)
	server, client = tls.Server(a, scfg), tls.Client(b, ccfg)
	errc := make(chan error, 1)
	go func() { errc <- client.Handshake() }()
	if err := server.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return server, client
}

// edgeTLSConfigs returns the server config of an edge for a.example.com
// (HTTP/1.1), from a throwaway CA, and a client config that trusts it.
func edgeTLSConfigs(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	ca, err := certs.NewAuthority("test CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(certs.Leaf{CommonName: "edge", DNSNames: []string{"a.example.com"}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{leaf.TLS}, NextProtos: []string{"http/1.1"}},
		&tls.Config{ServerName: "a.example.com", RootCAs: ca.Pool(), NextProtos: []string{"http/1.1"}}
}

// A connection that starts serving while the edge drains (SIGTERM raced
// with its handshake) is closed, and ServeConn returns: it used to wait
// forever, and with it the shutdown.
func TestServeConnWhileDraining(t *testing.T) {
	for i := 0; i < 20; i++ {
		server, client := tlsPair(t)
		p := NewHTTPProxy(HTTPOptions{Backend: noServers{}})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		ret := make(chan struct{})
		go func() {
			_ = p.ServeConn(ctx, server, &Conn{})
			close(ret)
		}()
		select {
		case <-ret:
		case <-time.After(10 * time.Second):
			t.Fatalf("run %d: ServeConn did not return on a drained context", i)
		}
		_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := client.Read(make([]byte, 1)); err == nil {
			t.Errorf("run %d: client read data; want the connection closed", i)
		}
		client.Close()
	}
}

// A route replaced by a reload drains its connections: an idle keep-alive
// client is closed.
func TestHTTPProxyCloseDrains(t *testing.T) {
	server, client := tlsPair(t)
	defer client.Close()
	p := NewHTTPProxy(HTTPOptions{Backend: noServers{}})
	ret := make(chan struct{})
	go func() {
		_ = p.ServeConn(context.Background(), server, &Conn{})
		close(ret)
	}()
	// One request (503: no server), so the connection is idle, then
	// replace the route.
	fmt.Fprintf(client, "GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n")
	br := bufio.NewReader(client)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("status: got %d; want 503", resp.StatusCode)
	}
	p.Close()
	select {
	case <-ret:
	case <-time.After(10 * time.Second):
		t.Fatal("ServeConn did not return after the route was replaced")
	}
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := br.ReadByte(); err == nil {
		t.Error("client read data; want the connection closed")
	}
}
