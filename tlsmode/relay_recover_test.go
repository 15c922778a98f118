//go:build linux

package tlsmode

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tlsedge/tlsedge/affinity"
)

// What survives a failure around the relay: a start-up that failed once,
// a panic in the end of a stream, a panic in Serve before the hand-over.

// A relay that could not start (EMFILE from epoll_create1) is tried again
// on a later connection, at most once per rlRetry; the failure is logged
// once, and so is the start that follows it.
func TestRelayStartRetried(t *testing.T) {
	logs := rlCaptureLog(t)
	now := time.Unix(1_000_000, 0)
	var calls int
	failing := true
	z := &rlLazy[rlRelay]{
		level:   rlDefault.level,
		failMsg: rlDefault.failMsg,
		okMsg:   rlDefault.okMsg,
		now:     func() time.Time { return now },
		start: func() (*rlRelay, error) {
			calls++
			if failing {
				return nil, rlSyscallErr("epoll_create1", unix.EMFILE)
			}
			return rlTestRelay(t, 1, nil), nil
		},
	}
	if r := z.get(); r != nil || calls != 1 {
		t.Fatalf("first get: relay %v after %d starts; want nil after 1", r, calls)
	}
	if r := z.get(); r != nil || calls != 1 {
		t.Fatalf("get within rlRetry: relay %v after %d starts; want nil, no new start", r, calls)
	}
	now = now.Add(rlRetry)
	if r := z.get(); r != nil || calls != 2 {
		t.Fatalf("get after rlRetry, still failing: relay %v after %d starts; want nil after 2", r, calls)
	}
	failing = false
	now = now.Add(rlRetry)
	r := z.get()
	if r == nil || calls != 3 {
		t.Fatalf("get after rlRetry, start works: relay %v after %d starts; want a relay after 3", r, calls)
	}
	if again := z.get(); again != r || calls != 3 {
		t.Errorf("get once started: %p after %d starts; want %p, no new start", again, calls, r)
	}
	// The relay started late serves streams.
	s := rlNewStream(t, r)
	_ = s.client.CloseWrite()
	_ = s.server.CloseWrite()
	if e := s.wait(t); e.reason != "client closed" && e.reason != "server closed" {
		t.Errorf("stream on the late relay: reason %q", e.reason)
	}
	out := logs.String()
	if n := strings.Count(out, "passthrough relay could not start"); n != 1 || !strings.Contains(out, "too many open files") {
		t.Errorf("failure logged %d times (want 1, with the error):\n%s", n, out)
	}
	if n := strings.Count(out, "passthrough relay started"); n != 1 {
		t.Errorf("late start logged %d times; want 1:\n%s", n, out)
	}
}

// rlPanicEvents panics when a connection is unbound (done's Bind(nil)).
type rlPanicEvents struct{}

func (rlPanicEvents) Bound(c *Conn, old, new *affinity.Server) {
	if new == nil {
		panic("injected Bound fault")
	}
}
func (rlPanicEvents) Identified(*Conn)                                    {}
func (rlPanicEvents) Handshake(*Conn, time.Duration, error)               {}
func (rlPanicEvents) Request(*Conn, *affinity.Server, int, time.Duration) {}

// rlSlotBackend dials one server and counts the slots given back
// (Upstream.Release).
type rlSlotBackend struct {
	rlBackend
	released *atomic.Int64
}

func (b rlSlotBackend) Connect(ctx context.Context, c *Conn) (*Upstream, error) {
	u, err := b.rlBackend.Connect(ctx, c)
	if u != nil {
		u.Release = func() { b.released.Add(1) }
	}
	return u, err
}

// rlServe runs Passthrough.Serve on c (its hello "hello" peeked) against a
// server the test accepts; it returns the server's end and a channel that
// gets what Serve panicked with (nil: it returned).
func rlServe(t *testing.T, c *Conn, released *atomic.Int64) (server *net.TCPConn, served chan any) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	be := rlSlotBackend{rlBackend{ln.Addr().String(), affinity.NewServer(ln.Addr().String(), 1)}, released}
	p := &Passthrough{Backend: be}
	served = make(chan any, 1)
	go func() {
		defer func() { served <- recover() }()
		if err := p.Serve(context.Background(), c); err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(rlWaitLong))
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	server = sc.(*net.TCPConn)
	t.Cleanup(func() { server.Close() })
	return server, served
}

// A panic in the end of a relayed stream (here the registry's Bound on
// Bind(nil)) is logged; the server's slot is still given back and Ended
// still called, so the connection is accounted for, and the process
// lives.
func TestRelayEndPanicReported(t *testing.T) {
	logs := rlCaptureLog(t)
	client, edgeClient := tcpPair(t)
	t.Cleanup(func() { client.Close() })
	hello := []byte("hello")
	ended := make(chan struct{})
	c := &Conn{Conn: edgeClient, Peeked: hello, Hello: &Hello{Raw: hello}, Events: rlPanicEvents{}}
	c.Ended = func() { close(ended) }
	var released atomic.Int64
	server, served := rlServe(t, c, &released)
	if got, err := rlReadN(server, 5); err != nil || !bytes.Equal(got, rlSum(hello)) {
		t.Fatalf("hello replay: %v", err)
	}
	if r := <-served; r != nil {
		t.Fatalf("Serve panicked: %v", r)
	}
	if !c.Detached() {
		t.Fatal("Serve returned without handing the stream to the relay")
	}
	_ = client.CloseWrite()
	_ = server.CloseWrite()
	rlWaitDone(t, ended)
	if c.Reason != "client closed" && c.Reason != "server closed" {
		t.Errorf("reason: %q; want client or server closed", c.Reason)
	}
	if got := released.Load(); got != 1 {
		t.Errorf("server slot released %d times; want 1", got)
	}
	if out := logs.String(); !strings.Contains(out, "injected Bound fault") || !strings.Contains(out, "passthrough stream end crashed") {
		t.Errorf("the panic was not logged:\n%s", out)
	}
}

// A panic in Serve before the relay has the stream (here in
// WatchAfterReplay) still gives back the server's slot, closes the server
// socket, unbinds and drops the ender, as Serve's defers did before the
// relay.
func TestRelayServePanicReleases(t *testing.T) {
	t.Parallel()
	client, edgeClient := tcpPair(t)
	t.Cleanup(func() { client.Close() })
	hello := []byte("hello")
	c := &Conn{Conn: edgeClient, Peeked: hello, Hello: &Hello{Raw: hello}}
	c.Ended = func() { t.Error("Ended called for a stream never handed over") }
	c.WatchAfterReplay = func() { panic("injected watch fault") }
	var released atomic.Int64
	server, served := rlServe(t, c, &released)
	var r any
	select {
	case r = <-served:
	case <-time.After(rlWaitLong):
		t.Fatal("Serve did not return")
	}
	if r != "injected watch fault" {
		t.Fatalf("Serve: recovered %v; want the injected panic", r)
	}
	if got := released.Load(); got != 1 {
		t.Errorf("server slot released %d times; want 1", got)
	}
	if c.BoundServer() != nil {
		t.Error("still bound to its server")
	}
	c.live.mu.Lock()
	ender := c.live.ender
	c.live.mu.Unlock()
	if ender != nil {
		t.Error("the stream's ender is still set")
	}
	if c.Detached() {
		t.Error("Detached after a panic before the hand-over")
	}
	// The server socket was closed: the server reads the hello, then EOF.
	if got, err := rlReadN(server, 5); err != nil || !bytes.Equal(got, rlSum(hello)) {
		t.Fatalf("hello replay: %v", err)
	}
	rlExpectEOF(t, server, "server")
}
