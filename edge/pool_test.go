package edge

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/tlsedge/tlsedge/tlsmode"
)

func backendConfig(t *testing.T, body string) *BackendConfig {
	t.Helper()
	cfg, err := LoadFile(writeConfig(t, "edge.yaml", `
listeners:
  - name: l
    address: "127.0.0.1:0"
    routes: [{sni: ["*"], backend: b}]
backends:
`+body))
	if err != nil {
		t.Fatal(err)
	}
	return &cfg.Backends[0]
}

// A reload keeps per-server state by backend name and address: a sick server
// stays sick, live connections are still counted, a new weight applies.
func TestNewPoolCarriesServerState(t *testing.T) {
	old, err := newPool(backendConfig(t, `
  - name: b
    servers: [{address: "127.0.0.1:9001"}, {address: "127.0.0.1:9002"}]
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	old.Servers[0].SetHealthy(false)
	old.Servers[1].Acquire()

	next, err := newPool(backendConfig(t, `
  - name: b
    servers: [{address: "127.0.0.1:9002", weight: 5}, {address: "127.0.0.1:9001"}, {address: "127.0.0.1:9003"}]
`), old)
	if err != nil {
		t.Fatal(err)
	}
	if w := old.Servers[1].Weight(); w != 1 {
		t.Errorf("before commit: weight %d; want the running 1 (a reload that fails later must change nothing)", w)
	}
	next.commit()
	if got := next.Server("127.0.0.1:9001"); got != old.Servers[0] || got.Healthy() {
		t.Errorf("9001: got %p healthy=%v; want the old server, still down", got, got.Healthy())
	}
	s2 := next.Server("127.0.0.1:9002")
	if s2 != old.Servers[1] || s2.Active() != 1 || s2.Weight() != 5 {
		t.Errorf("9002: got active=%d weight=%d; want the old server with active=1 weight=5", s2.Active(), s2.Weight())
	}
	if s3 := next.Server("127.0.0.1:9003"); s3 == nil || !s3.Healthy() {
		t.Errorf("9003: got %v; want a new healthy server", s3)
	}
}

// A refused connect is retried on another server, before any byte is sent.
func TestPoolConnectRetries(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	dead := closedPort(t)

	for _, tt := range []struct {
		retries string
		wantErr bool
	}{{"2", false}, {"0", true}} {
		p, err := newPool(backendConfig(t, `
  - name: b
    balance: roundrobin
    retries: `+tt.retries+`
    health: {type: none}
    servers: [{address: "`+dead+`"}, {address: "`+ln.Addr().String()+`"}]
`), nil)
		if err != nil {
			t.Fatal(err)
		}
		c := &tlsmode.Conn{Source: netip.MustParseAddrPort("127.0.0.1:5000"), Dest: netip.MustParseAddrPort("127.0.0.1:8443")}
		// Round-robin starts with the first server, the dead one.
		up, err := p.Connect(context.Background(), c)
		if tt.wantErr {
			if err == nil {
				up.Close()
				t.Errorf("retries %s: got a connection; want the dead server's error", tt.retries)
			}
			continue
		}
		if err != nil {
			t.Fatalf("retries %s: Connect: %v", tt.retries, err)
		}
		if up.Server.Address != ln.Addr().String() {
			t.Errorf("retries %s: got server %s; want %s", tt.retries, up.Server.Address, ln.Addr())
		}
		if up.Server.Active() != 1 {
			t.Errorf("active while connected: got %d; want 1", up.Server.Active())
		}
		up.Close()
		if up.Server.Active() != 0 {
			t.Errorf("active after Close: got %d; want 0", up.Server.Active())
		}
	}
}

func TestPoolConnectNoServer(t *testing.T) {
	p, err := newPool(backendConfig(t, `
  - name: b
    servers: [{address: "127.0.0.1:9001"}]
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	p.Servers[0].SetDraining(true)
	_, err = p.Connect(context.Background(), &tlsmode.Conn{})
	if !errors.Is(err, tlsmode.ErrNoServer) {
		t.Errorf("got %v; want ErrNoServer", err)
	}
}

// closedPort returns an address on which nothing listens.
func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
