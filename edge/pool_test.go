package edge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/affinity"
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

// capPool is a pool of one or two servers (health none, so always up) with
// max_connections_per_server and queue_timeout.
func capPool(t *testing.T, servers string, maxPer int, queue string) *Pool {
	t.Helper()
	p, err := newPool(capConfig(t, servers, maxPer, queue), nil)
	if err != nil {
		t.Fatal(err)
	}
	p.commit()
	return p
}

func capConfig(t *testing.T, servers string, maxPer int, queue string) *BackendConfig {
	t.Helper()
	return backendConfig(t, fmt.Sprintf(`
  - name: b
    balance: leastconn
    health: {type: none}
    max_connections_per_server: %d
    queue_timeout: %s
    servers: %s
`, maxPer, queue, servers))
}

// Spec: max_connections_per_server "connections (and HTTP requests in
// flight) tlsedge holds to each server; past it, a new one waits up to
// queue_timeout for a slot, then gets 503 (http) or is closed".
func TestPoolServerCap(t *testing.T) {
	defer slowQueuePoll()() // only a wake-up can hand the slot over in time
	p := capPool(t, `[{address: "127.0.0.1:9001"}, {address: "127.0.0.1:9002"}]`, 2, "5s")
	c := &tlsmode.Conn{Source: netip.MustParseAddrPort("127.0.0.1:5000"), Dest: netip.MustParseAddrPort("127.0.0.1:8443")}
	ctx := context.Background()
	var held []*affinity.Server
	for i := range 4 {
		s, err := p.AcquireServer(ctx, c, nil)
		if err != nil {
			t.Fatalf("slot %d of 2 servers × 2: %v", i+1, err)
		}
		held = append(held, s)
	}
	for _, s := range p.Servers {
		if s.Active() != 2 {
			t.Errorf("server %s: active %d; want 2 (the cap)", s, s.Active())
		}
	}
	// Servers at the cap are passed over even when skip would allow them:
	// a fifth waits; a release of either server's slot wakes it.
	got := make(chan *affinity.Server, 1)
	errs := make(chan error, 1)
	go func() {
		s, err := p.AcquireServer(ctx, c, nil)
		if err != nil {
			errs <- err
			return
		}
		got <- s
	}()
	select {
	case s := <-got:
		t.Fatalf("a fifth request got %s while every server was at its cap; want it to wait", s)
	case err := <-errs:
		t.Fatalf("a fifth request: %v; want it to wait", err)
	case <-time.After(100 * time.Millisecond):
	}
	held[1].Release()
	select {
	case s := <-got:
		if s != held[1] {
			t.Errorf("waiter got %s; want %s, whose slot was released", s, held[1])
		}
	case err := <-errs:
		t.Fatalf("waiter: %v; want the released slot", err)
	case <-time.After(5 * time.Second):
		t.Fatal("waiter did not get the released slot within 5s")
	}
	if a := held[1].Active(); a != 2 {
		t.Errorf("server %s after the hand-over: active %d; want 2", held[1], a)
	}
}

// With nobody leaving, the wait ends after queue_timeout with
// ErrQueueTimeout, an ErrNoServer (503); a cancelled request stops waiting.
func TestPoolQueueTimeout(t *testing.T) {
	p := capPool(t, `[{address: "127.0.0.1:9001"}]`, 1, "200ms")
	c := &tlsmode.Conn{}
	s, err := p.AcquireServer(context.Background(), c, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release()
	start := time.Now()
	_, err = p.AcquireServer(context.Background(), c, nil)
	d := time.Since(start)
	if !errors.Is(err, tlsmode.ErrQueueTimeout) || !errors.Is(err, tlsmode.ErrNoServer) {
		t.Errorf("got %v; want ErrQueueTimeout, an ErrNoServer", err)
	}
	if d < 190*time.Millisecond || d > 5*time.Second {
		t.Errorf("gave up after %v; want after queue_timeout 200ms", d)
	}
	// Connect (passthrough, tcp) waits the same way.
	start = time.Now()
	if _, err := p.Connect(context.Background(), c); !errors.Is(err, tlsmode.ErrQueueTimeout) {
		t.Errorf("Connect: got %v; want ErrQueueTimeout", err)
	}
	if d := time.Since(start); d < 190*time.Millisecond {
		t.Errorf("Connect gave up after %v; want after queue_timeout 200ms", d)
	}
	// The client going away ends the wait at once.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := p.AcquireServer(ctx, c, nil); !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, tlsmode.ErrNoServer) {
		t.Errorf("cancelled: got %v; want the context's error, not ErrNoServer", err)
	}
	if n := p.queue.waiters.Load(); n != 0 {
		t.Errorf("waiters after every wait ended: %d; want 0", n)
	}
	// A server down is no wait: ErrNoServer at once.
	s.SetHealthy(false)
	start = time.Now()
	if _, err := p.AcquireServer(context.Background(), c, nil); !errors.Is(err, tlsmode.ErrNoServer) || errors.Is(err, tlsmode.ErrQueueTimeout) {
		t.Errorf("no healthy server: got %v; want ErrNoServer, not a queue timeout", err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("no healthy server: waited %v; want no wait", d)
	}
}

// Connect's slot is capped too, and a released Upstream wakes a waiter.
func TestPoolConnectQueues(t *testing.T) {
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
			defer c.Close()
		}
	}()
	p := capPool(t, `[{address: "`+ln.Addr().String()+`"}]`, 1, "5s")
	c := &tlsmode.Conn{}
	up, err := p.Connect(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		up2, err := p.Connect(context.Background(), c)
		if err == nil {
			up2.Close()
		}
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("second stream to a server capped at 1 ended (%v) while the first was open; want it to wait", err)
	default:
	}
	up.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("second stream after the first closed: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("second stream did not connect within 5s of the first closing")
	}
	if a := p.Servers[0].Active(); a != 0 {
		t.Errorf("active after both closed: %d; want 0", a)
	}
}

// The wake-up hook survives a reload: the new pool shares the queue.
func TestPoolQueueAcrossReload(t *testing.T) {
	defer slowQueuePoll()() // only a wake-up can hand the slot over in time
	old := capPool(t, `[{address: "127.0.0.1:9001"}]`, 1, "5s")
	next, err := newPool(capConfig(t, `[{address: "127.0.0.1:9001"}]`, 1, "5s"), old)
	if err != nil {
		t.Fatal(err)
	}
	next.commit()
	if next.queue != old.queue {
		t.Fatal("the reloaded pool has a new queue; want the old one (waiters on either are woken)")
	}
	s, err := next.AcquireServer(context.Background(), &tlsmode.Conn{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		s2, err := old.AcquireServer(context.Background(), &tlsmode.Conn{}, nil)
		if err == nil {
			s2.Release()
		}
		got <- err
	}()
	time.Sleep(20 * time.Millisecond)
	s.Release()
	select {
	case err := <-got:
		if err != nil {
			t.Errorf("waiter on the old snapshot: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a waiter on the old snapshot was not woken within 5s")
	}
}

// slowQueuePoll makes waiters poll once an hour (so a test sees only the
// wake-ups of releases) until the returned func restores it. Tests that
// call it are not parallel.
func slowQueuePoll() func() {
	old := queuePoll
	queuePoll = time.Hour
	return func() { queuePoll = old }
}
