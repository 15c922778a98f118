package tlsmode

import (
	"net"
	"sync"
	"time"
)

// upAbort ends the waits on a request's current server connection once
// fired: by the request's context (the client went away: after) or by a
// drain (drain), until stopped.
type upAbort struct {
	mu      sync.Mutex
	c       net.Conn
	fired   bool
	drained bool        // fired by a drain's CancelRequest
	off     bool        // stopped: firing does nothing
	after   func() bool // stops the context's AfterFunc
	h1      *h1Response // or the h1 request's onCancel
	dial    func()      // ends the dial under way, if any
}

// setDial sets what ends the dial under way (nil: none); when a fired
// already, it is called at once.
func (a *upAbort) setDial(cancel func()) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.dial = cancel
	if cancel != nil && a.fired {
		cancel()
	}
}

func (a *upAbort) set(c net.Conn) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.c = c
	if a.fired {
		_ = c.SetDeadline(aLongTimeAgo)
	}
}

// readDeadline sets the connection's read deadline unless the request
// was cancelled (its deadline stays in the past).
func (a *upAbort) readDeadline(t time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.fired && a.c != nil {
		_ = a.c.SetReadDeadline(t)
	}
}

func (a *upAbort) fire() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.fireLocked()
}

func (a *upAbort) fireLocked() {
	if a.off {
		return
	}
	a.fired = true
	if a.c != nil {
		_ = a.c.SetDeadline(aLongTimeAgo)
	}
	if a.dial != nil {
		a.dial()
	}
}

// drain fires a for a drain past its drain_timeout (CancelRequest).
func (a *upAbort) drain() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.off {
		a.drained = true
		a.fireLocked()
	}
}

// cancelled reports whether a fired.
func (a *upAbort) cancelled() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.fired
}

// wasDrained reports whether a drain fired a.
func (a *upAbort) wasDrained() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.drained
}

// stop ends the watch: nothing fires a from now on. It reports false
// when a fired (the connection's deadline may be in the past: it must not
// go back to the pool).
func (a *upAbort) stop() bool {
	if a.after != nil {
		a.after()
	}
	if a.h1 != nil {
		a.h1.stopCancel(a)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.off = true
	return !a.fired
}

// cancelRequest cancels the request: its context, and the upAbort
// onCancel set.
func (w *h1Response) cancelRequest() {
	w.cancel()
	w.amu.Lock()
	ab := w.abort
	w.abort, w.cancelled = nil, true
	w.amu.Unlock()
	if ab != nil {
		ab.fire()
	}
}

// onCancel fires ab when the request is cancelled (at once when it is
// already), until stopCancel: what context.AfterFunc(req.Context(),
// ab.fire) does, without its allocations (the context's list of children,
// its Done channel, the func). The request's context is cancelled by
// cancelRequest only: its parent never is (h1Conn.newBase).
func (w *h1Response) onCancel(ab *upAbort) {
	w.amu.Lock()
	done := w.cancelled
	if !done {
		w.abort = ab
	}
	w.amu.Unlock()
	if done {
		ab.fire()
	}
}

// stopCancel ends what onCancel set for ab (a later attempt's stays).
func (w *h1Response) stopCancel(ab *upAbort) {
	w.amu.Lock()
	if w.abort == ab {
		w.abort = nil
	}
	w.amu.Unlock()
}
