package tlsmode

import (
	"errors"
	"os"
	"time"
)

// h1QuietAfter: a keep-alive connection that has sent no request for this
// long goes on waiting on the shallow path (readOne).
const h1QuietAfter = 50 * time.Millisecond

// readOne reads the first byte of the next request into h.one. On a
// keep-alive connection (idle) that stays quiet for h1QuietAfter, and
// holds nothing unread above the socket (the guard, crypto/tls's plaintext
// and the record reader under it are all empty),
// the rest of the wait is for the socket to become readable, in a shallow
// call rather than inside crypto/tls's read: the goroutine's stack can
// then shrink to a few KiB while the connection idles (the GC halves a
// stack that uses a quarter of it or less). The quiet period keeps the
// busy connection's path as it was (the wait costs a peek at the socket
// each time it ends). idleBy is the idle timeout's deadline (zero: none).
// A detached connection parks instead of that wait (h1park.go): the error
// is then errH1Parked.
func (h *h1Conn) readOne(idle bool, idleBy time.Time) error {
	quietBy := time.Now().Add(h1QuietAfter)
	// Not while a head is in progress (the guard holds the first bytes of
	// a pipelined one the background read took in): its head clock, which
	// the guard set on the connection, governs the deadline.
	if !idle || h.idleWait == nil || h.g.holds() || (!idleBy.IsZero() && idleBy.Before(quietBy)) {
		_, err := h.g.Read(h.one[:])
		return err
	}
	// The guard's own deadline stays the idle timeout's: the short one is
	// set on the connection under it, and a timeout of it leaves no state
	// behind (crypto/tls takes a timeout as temporary; the guard and the
	// record reader held nothing).
	h.g.setConnReadDeadline(quietBy)
	_, err := h.g.Read(h.one[:])
	// The quiet period's timeout, only when no byte came: a head's first
	// bytes start the guard's head clock, and a timeout is then the head's
	// (read_header_timeout).
	if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) || h.g.holds() || time.Now().Before(quietBy) {
		return err
	}
	h.g.setConnReadDeadline(idleBy)
	// crypto/tls holds no plaintext (its read waited and timed out); with
	// the record reader at a record's boundary nothing unread is held
	// above the socket.
	if h.rec.idle() {
		h.g.dropBuf()
		if h.park(idleBy) {
			return errH1Parked // resumed on a goroutine of its own (h1park.go)
		}
		_ = h.idleWait() // an error (the idle timeout, a close) comes again from the read
	}
	_, err = h.g.Read(h.one[:])
	return err
}

// dropBuf gives the guard's buffer back while it holds no byte, as fill
// does before it waits.
func (g *h1Guard) dropBuf() {
	if g.r == g.w {
		g.r, g.w = 0, 0
		h1PutBuf(g.buf)
		g.buf = nil
	}
}
