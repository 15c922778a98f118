//go:build linux

package tlsmode

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/tlsmode/identity"
)

// parkConn is a detached terminated HTTP/1 connection, as Terminate makes
// it (detachHTTP): the record reader under crypto/tls, c.Ended set.
type parkConn struct {
	client *tls.Conn
	br     *bufio.Reader
	c      *Conn
	ended  chan struct{}
	cancel context.CancelFunc // the edge's drain
	before int                // goroutines serving HTTP/1 before this connection
}

func newParkConn(t *testing.T, p *HTTPProxy) *parkConn {
	t.Helper()
	return newParkConnDenied(t, p, nil)
}

// newParkConnDenied is newParkConn with the client-limit state denied
// (nil: none), as detachHTTP gets it.
func newParkConnDenied(t *testing.T, p *HTTPProxy, denied *denyConn) *parkConn {
	t.Helper()
	a, b := tcpPair(t)
	c := &Conn{Conn: a}
	c.rec = &recConn{Conn: a}
	pc := &parkConn{c: c, ended: make(chan struct{}), before: servingGoroutines()}
	c.Ended = func() { close(pc.ended) }
	scfg, ccfg := edgeTLSConfigs(t)
	server := tls.Server(c.rec, scfg)
	pc.client = tls.Client(b, ccfg)
	pc.br = bufio.NewReader(pc.client)
	ctx, cancel := context.WithCancel(context.Background())
	pc.cancel = cancel
	hs := make(chan error, 1)
	go func() {
		err := server.Handshake()
		if err == nil {
			detachHTTP(ctx, p, server, c, denied)
		}
		hs <- err
	}()
	if err := pc.client.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-hs; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		pc.client.Close()
		select {
		case <-pc.ended:
		case <-time.After(10 * time.Second):
			t.Error("the connection never ended")
		}
	})
	return pc
}

// servingGoroutines is how many goroutines serve HTTP/1 connections (the
// loop, or the detached body around it).
func servingGoroutines() int {
	return len(stacksWith("(*h1Conn).serve")) + len(stacksWith("tlsmode.runDetached"))
}

// waitParked waits until the connection's waiter is parked and no
// goroutine serves it.
func (pc *parkConn) waitParked(t *testing.T) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if w := pc.c.live.parked.Load(); w != nil && w.state.Load() == upParked && servingGoroutines() <= pc.before {
			return
		}
	}
	t.Fatalf("the idle connection never parked; its goroutines:\n%s",
		strings.Join(append(stacksWith("(*h1Conn).serve"), stacksWith("tlsmode.runDetached")...), "\n\n"))
}

// waitEnded waits for c.Ended and says what the client read then.
func (pc *parkConn) waitEnded(t *testing.T) {
	t.Helper()
	select {
	case <-pc.ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the parked connection did not end")
	}
	_ = pc.client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := io.Copy(io.Discard, pc.br); n != 0 || err != nil {
		t.Errorf("the client read %d bytes, then %v; want EOF", n, err)
	}
}

// An idle keep-alive connection of a detached HTTP/1 loop parks: no
// goroutine serves it; requests then are served as before (one, then
// pipelined ones after it parked again), and the client's close while
// parked ends it, once, with its parking slot given back.
func TestH1ParksWhileIdle(t *testing.T) {
	p := NewHTTPProxy(HTTPOptions{Backend: noServers{}})
	pc := newParkConn(t, p)
	for range 3 {
		idleGet(t, pc.client, pc.br, 1)
		pc.waitParked(t)
	}
	idleGet(t, pc.client, pc.br, 3)
	pc.waitParked(t)
	if pc.c.live.parked.Load() == nil {
		t.Fatal("no waiter recorded on the Conn")
	}
	w := pc.c.live.parked.Load()
	pc.client.Close()
	select {
	case <-pc.ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the client's close did not end the parked connection")
	}
	if got := pc.c.Reason; got != "client closed" {
		t.Errorf("reason %q; want client closed", got)
	}
	if got := pc.c.RequestCount(); got != 6 {
		t.Errorf("requests %d; want 6", got)
	}
	if pc.c.live.parked.Load() != nil {
		t.Error("the waiter is still recorded on the Conn")
	}
	pk := w.pk
	pk.mu.Lock()
	defer pk.mu.Unlock()
	if int(w.id) < len(pk.slots) && pk.slots[w.id] == w {
		t.Error("the waiter still holds its parking slot")
	}
}

// Every way an idle connection is ended from outside reaches it while it
// is parked (a closed socket leaves the parking set without an event):
// each ends the connection, and its client sees the end.
func TestH1ParkedEndsFromOutside(t *testing.T) {
	for _, tc := range []struct {
		name   string
		limits HTTPLimits
		end    func(*HTTPProxy, *parkConn)
		reason string
	}{
		{"idle timeout", HTTPLimits{IdleTimeout: 400 * time.Millisecond}, func(*HTTPProxy, *parkConn) {}, "client closed"},
		{"Shutdown", HTTPLimits{}, func(_ *HTTPProxy, pc *parkConn) { pc.c.Shutdown("admin") }, "client closed"},
		{"CloseNow", HTTPLimits{}, func(_ *HTTPProxy, pc *parkConn) { pc.c.CloseNow() }, "client closed"},
		{"EndGracefully", HTTPLimits{}, func(_ *HTTPProxy, pc *parkConn) { pc.c.EndGracefully("no longer allowed") }, "no longer allowed"},
		{"drain", HTTPLimits{}, func(_ *HTTPProxy, pc *parkConn) { pc.cancel() }, "client closed"},
		{"route closed by a reload", HTTPLimits{}, func(p *HTTPProxy, _ *parkConn) { p.Close() },
			"closed: the route changed in a reload (closed when idle)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := NewHTTPProxy(HTTPOptions{Backend: noServers{}, Limits: tc.limits})
			pc := newParkConn(t, p)
			idleGet(t, pc.client, pc.br, 1)
			pc.waitParked(t)
			tc.end(p, pc)
			pc.waitEnded(t)
			if got := pc.c.Reason; got != tc.reason {
				t.Errorf("reason %q; want %q", got, tc.reason)
			}
		})
	}
}

// A parked connection drops its formatted identity headers, the last
// request's context and the background read's timer; each request after a
// park carries the identity again, the same as the first.
func TestH1ParkedFormatsIdentityAgain(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("X-SSL-Client-Verify")+" "+r.Header.Get("X-Forwarded-For"))
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	id, err := identity.Parse("ssl", nil)
	if err != nil {
		t.Fatal(err)
	}
	p := lfProxy(t, HTTPOptions{Identity: id}, srv.Listener.Addr().String())
	pc := newParkConn(t, p)
	pc.c.Source = netip.MustParseAddrPort("192.0.2.7:40000")
	for range 3 {
		idleGet(t, pc.client, pc.br, 1)
		pc.waitParked(t)
		p.mu.Lock()
		for h := range p.h1conns {
			// The waiter's state, stored after the values were dropped,
			// orders this read after that write.
			if h.pw.state.Load() != upParked {
				t.Fatal("no goroutine serves the connection, but its waiter is not parked")
			}
			if h.cs.id != nil || h.cs.xff != "" {
				t.Errorf("parked with its identity values held: %v %q", h.cs.id, h.cs.xff)
			}
			h.bgMu.Lock()
			if h.base != nil || h.bgTimer != nil || h.bgCancel != nil {
				t.Errorf("parked with the last request's state held: base %v, timer %v, cancel set %v", h.base != nil, h.bgTimer != nil, h.bgCancel != nil)
			}
			h.bgMu.Unlock()
		}
		p.mu.Unlock()
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"NONE 192.0.2.7", "NONE 192.0.2.7", "NONE 192.0.2.7"}
	if !slices.Equal(seen, want) {
		t.Errorf("the server saw %q; want %q", seen, want)
	}
}

// An idle timeout that falls just after the quiet period can pass before
// the waiter is marked parked: its kick then finds nothing to resume, and
// the park must see the time is up itself, or the connection would stay
// parked for ever.
func TestH1ParkIdleTimeoutNearQuiet(t *testing.T) {
	for i := range 40 {
		d := h1QuietAfter + time.Duration(100+50*(i%20))*time.Microsecond
		p := NewHTTPProxy(HTTPOptions{Backend: noServers{}, Limits: HTTPLimits{IdleTimeout: d}})
		pc := newParkConn(t, p)
		idleGet(t, pc.client, pc.br, 1)
		select {
		case <-pc.ended:
		case <-time.After(5 * time.Second):
			t.Fatalf("idle timeout %v: the connection never ended", d)
		}
	}
}

// A connection holding a client_limits slot keeps it while parked and
// gives it back once, when it ends.
func TestH1ParkKeepsClientSlot(t *testing.T) {
	var released atomic.Int32
	p := NewHTTPProxy(HTTPOptions{Backend: noServers{}})
	pc := newParkConnDenied(t, p, &denyConn{release: func() { released.Add(1) }})
	for range 4 {
		idleGet(t, pc.client, pc.br, 1)
		pc.waitParked(t)
		if n := released.Load(); n != 0 {
			t.Fatalf("the slot was given back %d times while the connection lives", n)
		}
	}
	pc.client.Close()
	select {
	case <-pc.ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the connection did not end")
	}
	if n := released.Load(); n != 1 {
		t.Errorf("the slot was given back %d times; want once", n)
	}
}

// Whoever ends the connection sets what a park in progress checks after
// marking itself parked (its kick may come before that mark and find
// nothing): a drain or a close, the edge's Shutdown or CloseNow, the idle
// time up.
func TestH1ParkCancelled(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(*parkConn, *h1Conn)
	}{
		{"shutdownNow", func(_ *parkConn, h *h1Conn) { h.shutdownNow() }},
		{"Shutdown", func(pc *parkConn, _ *h1Conn) { pc.c.Shutdown("admin") }},
		{"CloseNow", func(pc *parkConn, _ *h1Conn) { pc.c.CloseNow() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := NewHTTPProxy(HTTPOptions{Backend: noServers{}})
			pc := newParkConn(t, p)
			idleGet(t, pc.client, pc.br, 1)
			pc.waitParked(t)
			var h *h1Conn
			p.mu.Lock()
			for x := range p.h1conns {
				h = x
			}
			p.mu.Unlock()
			if h.parkCancelled(time.Time{}) {
				t.Fatal("a live idle connection may not park")
			}
			if !h.parkCancelled(time.Now().Add(-time.Millisecond)) {
				t.Error("a park past its idle deadline is not cancelled")
			}
			tc.end(pc, h)
			if !h.parkCancelled(time.Time{}) {
				t.Error("a park after the connection was ended is not cancelled")
			}
		})
	}
}
