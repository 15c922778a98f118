package e2e

import (
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// Stopping the servers a test starts: every wait bounded by waitLong, a
// server that does not stop in time reported with t.Errorf (the test goes
// on with its cleanup).

// connGroup runs the connections of a plain TCP test server, one goroutine
// each, and stops them: stop closes the listeners and every live
// connection, then waits (at most waitLong) for the handlers to return.
// The zero value is not usable; make one with newConnGroup.
type connGroup struct {
	t    testing.TB
	what string // the server in error messages: "backend b-1"

	mu    sync.Mutex
	lns   []net.Listener // served since the last stop
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup // the accept loops and the handlers
}

// newConnGroup returns a group whose errors name the server what.
func newConnGroup(t testing.TB, what string) *connGroup {
	return &connGroup{t: t, what: what, conns: map[net.Conn]struct{}{}}
}

// serve accepts on ln until ln is closed, running handle on its own
// goroutine for each connection. The group closes the connection once
// handle returns; handle must return once the connection is closed.
// serve does not block.
func (g *connGroup) serve(ln net.Listener, handle func(net.Conn)) {
	g.mu.Lock()
	g.lns = append(g.lns, ln)
	g.mu.Unlock()
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			g.mu.Lock()
			g.conns[c] = struct{}{}
			g.wg.Add(1)
			g.mu.Unlock()
			go func() {
				defer g.wg.Done()
				defer func() {
					g.mu.Lock()
					delete(g.conns, c)
					g.mu.Unlock()
					c.Close()
				}()
				handle(c)
			}()
		}
	}()
}

// live is the number of connections whose handler has not returned yet.
func (g *connGroup) live() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.conns)
}

// stop closes the listeners and every live connection and waits, at most
// waitLong, for the handlers. It may be called more than once, and serve
// may be called again afterwards.
func (g *connGroup) stop() {
	g.mu.Lock()
	for _, ln := range g.lns {
		ln.Close()
	}
	g.lns = nil
	for c := range g.conns {
		c.Close()
	}
	g.mu.Unlock()
	if !waitBounded(g.wg.Wait) {
		g.t.Errorf("%s: handlers did not end within %v", g.what, waitLong)
	}
}

// serveHTTP serves srv on ln on its own goroutine; t.Cleanup closes srv
// and waits, at most waitLong, for Serve to return. what names the server
// in the error: "HTTP server sick".
func serveHTTP(t testing.TB, what string, srv *http.Server, ln net.Listener) {
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		if !waitBounded(func() { <-served }) {
			t.Errorf("%s did not stop within %v", what, waitLong)
		}
	})
}

// waitBounded calls wait and reports whether it returned within waitLong.
// When it did not, wait is left running on its goroutine.
func waitBounded(wait func()) bool {
	done := make(chan struct{})
	go func() {
		wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(waitLong):
		return false
	}
}
