package edge

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"testing"

	"github.com/rs/zerolog"

	"github.com/tlsedge/tlsedge/certs"
)

// edgeCert makes a throwaway CA and writes, into dir, edge.pem and
// edge-key.pem: a server certificate for names, as a route's tls uses.
func edgeCert(t *testing.T, dir string, names ...string) (*certs.Authority, *certs.Issued) {
	t.Helper()
	ca, err := certs.NewAuthority("test CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(certs.Leaf{CommonName: "edge", DNSNames: names, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := leaf.WriteFiles(dir, "edge"); err != nil {
		t.Fatal(err)
	}
	return ca, leaf
}

// startEdge loads the config at path and runs it until the test ends.
func startEdge(t *testing.T, path string) *Edge {
	t.Helper()
	cfg, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := New(ctx, zerolog.Nop())
	if err := e.Start(cfg); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Shutdown(0); cancel() })
	return e
}

// httpsClient sends every request to addr, whatever the URL's host (which
// stays the SNI and the Host).
func httpsClient(addr string, tc *tls.Config) *http.Client {
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig:   tc,
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}}
}
