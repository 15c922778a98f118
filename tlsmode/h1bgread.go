package tlsmode

// The background read of an HTTP/1 connection (net/http's
// connReader.backgroundRead): while a request is handled with its body
// read, one byte is read from the client so that a client that goes away
// cancels its request.

import (
	"errors"
	"net"
	"time"
)

// h1BackgroundReadDelay is how long a request is handled before the
// background read starts: most answers come sooner, and the read (a
// goroutine, a read that finds nothing, two deadline changes to stop it)
// is then saved; a client that goes away is noticed that much later.
const h1BackgroundReadDelay = 50 * time.Millisecond

// startBackgroundRead arms the read that notices a client going away while
// request w is handled (called once its body is read): it starts after
// h1BackgroundReadDelay unless the request is done by then. A call for a
// request that is over (the transport's goroutine reaching the body's EOF
// after the handler returned) does nothing: its read would race the wait
// for the next request, or a parked connection's.
func (h *h1Conn) startBackgroundRead(w *h1Response) {
	h.bgMu.Lock()
	if h.bgFor == w {
		h.armLocked(w)
	}
	h.bgMu.Unlock()
}

// beginRequest makes w the request a background read may be armed for
// (until abortBackgroundRead), and arms it at once when w has no body to
// read: one lock a request.
func (h *h1Conn) beginRequest(w *h1Response, arm bool) {
	h.bgMu.Lock()
	h.bgFor = w
	if arm {
		h.armLocked(w)
	}
	h.bgMu.Unlock()
}

// armLocked arms the background read for w unless one is armed or running
// (h.bgMu held).
func (h *h1Conn) armLocked(w *h1Response) {
	if h.bgArmed || h.bgOn {
		return
	}
	h.bgArmed = true
	h.bgCancel = w
	if h.bgTimer == nil {
		h.bgTimer = time.AfterFunc(h1BackgroundReadDelay, h.backgroundReadDue)
	} else {
		h.bgTimer.Reset(h1BackgroundReadDelay)
	}
}

// backgroundReadDue starts the background read of the request armed now,
// if any (a late timer of an earlier request finds none, or starts the
// current one's a little early: it too is past its body).
func (h *h1Conn) backgroundReadDue() {
	h.bgMu.Lock()
	defer h.bgMu.Unlock()
	if !h.bgArmed || h.bgOn || h.hasOne {
		return
	}
	h.bgOn = true
	h.bgDone = make(chan struct{})
	_ = h.g.SetReadDeadline(time.Time{})
	go h.backgroundRead(h.bgDone)
}

func (h *h1Conn) backgroundRead(done chan struct{}) {
	defer close(done)
	n, err := h.g.Read(h.bgByte[:])
	h.bgMu.Lock()
	defer h.bgMu.Unlock()
	if n == 1 {
		h.one[0], h.hasOne = h.bgByte[0], true
	}
	var ne net.Error
	if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
		// The client closed or reset: the request in flight is for
		// nobody (net/http's handleReadError).
		h.gone = true
		h.bgCancel.cancelRequest()
	}
}

// abortBackgroundRead stops the background read (or its timer) and waits
// for it.
func (h *h1Conn) abortBackgroundRead() {
	h.bgMu.Lock()
	if h.bgArmed && h.bgTimer != nil {
		h.bgTimer.Stop()
	}
	h.bgArmed, h.bgFor = false, nil
	if !h.bgOn {
		h.bgCancel = nil // the request's context goes with the request
		h.bgMu.Unlock()
		return
	}
	done := h.bgDone
	_ = h.g.SetReadDeadline(aLongTimeAgo)
	h.bgMu.Unlock()
	<-done
	h.bgMu.Lock()
	h.bgOn, h.bgDone, h.bgCancel = false, nil, nil
	h.bgMu.Unlock()
	_ = h.g.SetReadDeadline(time.Time{})
}
