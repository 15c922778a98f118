package tlsmode

import (
	"errors"
	"syscall"
	"time"
)

// A detached HTTP/1 connection (terminate.go detachHTTP) that stays idle
// past h1QuietAfter, holding nothing above its socket, waits without a
// goroutine: its socket is armed in the shared epoll set
// (upgrade_park_linux.go), and the goroutine returns up to runDetached,
// which leaves the connection as it is. The client's bytes, its FIN or
// reset, the idle timeout (a timer), and every way the connection is
// closed from outside (a drain, the edge's Shutdown and CloseNow, the
// admin API, a reload's re-check) resume it on a new goroutine, which
// goes on with the wait where it was (readOne). An idle keep-alive
// connection then holds no goroutine stack (4 KiB each), nor its formatted
// identity headers (formatted again by its next request).

// errH1Parked: the connection parked; the caller's goroutine returns and
// leaves it as it is.
var errH1Parked = errors.New("tlsmode: http connection parked")

// h1ParkSetup makes h able to park when its connection is detached (c's
// parkRun set) and the process has a parker; else it waits on its
// goroutine as before.
func (h *h1Conn) h1ParkSetup(c *Conn) {
	if c.parkRun == nil || h.idleWait == nil || c.Conn == nil {
		return
	}
	pk := upTheParker()
	if pk == nil {
		return
	}
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return
	}
	h.pw = pk.waiter(sc, h.resume)
	if h.pw != nil {
		h.parkRun = c.parkRun
		c.live.parked.Store(h.pw)
	}
}

// park arms h's socket for the rest of the idle wait (until idleBy; zero:
// none); true: parked, the caller returns errH1Parked. False: not parked
// (closing, past idleBy, or the socket could not be armed): the caller
// waits itself.
func (h *h1Conn) park(idleBy time.Time) bool {
	if h.pw == nil {
		return false
	}
	h.parkBy = idleBy
	if !idleBy.IsZero() {
		// A timer of its own each park: one that fired as the last park
		// ended finds its park over and kicks nothing.
		gen := h.parkGen.Add(1)
		h.parkT = time.AfterFunc(time.Until(idleBy), func() {
			if h.parkGen.Load() == gen {
				h.pw.kick()
			}
		})
	}
	h.cs.forgetIdentity()
	h.dropIdle()
	if h.pw.park(func() bool { return h.parkCancelled(idleBy) }) {
		return true
	}
	if h.parkT != nil {
		h.parkT.Stop()
	}
	return false
}

// parkCancelled says whether the connection must not park: it is being
// closed or drained, or its idle time is up. Read after the waiter is
// marked parked: whoever sets these kicks it afterwards, so either this
// sees it or the kick finds the waiter parked.
func (h *h1Conn) parkCancelled(idleBy time.Time) bool {
	h.mu.Lock()
	stop := h.forced || h.shutdown
	h.mu.Unlock()
	c := h.cs.c
	return stop || c.live.closeNow.Load() || c.ShutdownReason() != "" ||
		(!idleBy.IsZero() && !time.Now().Before(idleBy))
}

// resume goes on serving a parked connection (the parker's goroutine).
func (h *h1Conn) resume() {
	h.parkGen.Add(1)
	if h.parkT != nil {
		h.parkT.Stop()
	}
	h.parkRun(func() error { return h.p.serveH1(h, true) })
}

// kickParked resumes the connection if it is parked (it is being closed).
func (h *h1Conn) kickParked() {
	if h.pw != nil {
		h.pw.kick()
	}
}

// unpark forgets the waiter: the connection has ended.
func (h *h1Conn) unpark() {
	if h.pw == nil {
		return
	}
	h.cs.c.live.parked.Store(nil)
	h.parkGen.Add(1)
	if h.parkT != nil {
		h.parkT.Stop()
	}
	h.pw.done()
}

// dropIdle lets go of what the next request makes again: the background
// read's timer and the requests' parent context (about 250 bytes). No
// request is in flight.
func (h *h1Conn) dropIdle() {
	h.bgMu.Lock()
	if h.bgTimer != nil && !h.bgArmed && !h.bgOn {
		h.bgTimer.Stop()
		h.bgTimer = nil
	}
	h.bgMu.Unlock()
	h.base = nil
}
