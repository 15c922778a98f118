package tlsmode

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// FDConn is a TCP socket tlsedge accepted or connected with raw system
// calls, outside Go's netpoller, for a passthrough stream: the relay takes
// its descriptor as it is (Take), with no epoll registration, dup or close
// of a Go conn on the way, and no call through entersyscall (each of which
// wakes the runtime's monitor when the process was idle).
//
// Reads and writes are raw and never wait. A read that finds nothing (a
// client whose hello is not all there yet) waits for fdPoller's word
// that bytes came, under the read deadline, and reads again: the socket
// stays out of Go's netpoller. A write that would block (or a read when
// fdPoller could not start) hands the socket to Go's netpoller
// (os.NewFile: one registration) and waits there, under the deadlines
// set; every call after it goes the same way. Close, from any goroutine,
// is safe against a read or write in flight: raw calls are made under the
// conn's lock (they do not wait), and it wakes a waiting read.
type FDConn struct {
	mu       sync.Mutex
	fd       int                         // the socket; -1 once closed or taken
	file     *os.File                    // the socket in Go's netpoller, once a write (or a read without fdPoller) had to wait; owns fd
	w        *fdWaiter                   // the socket in fdPoller, once a read had to wait
	taken    bool                        // the relay has the descriptor: Close does nothing
	shut     bool                        // Close came while taken: untake closes it
	moved    *net.TCPConn                // TCPConn made it: Close closes that
	laddr    atomic.Pointer[net.TCPAddr] // nil until given or asked of the kernel
	raddr    *net.TCPAddr
	rdl, wdl time.Time // deadlines set before file (applied to it when made)
}

// NewFDConn wraps a non-blocking, close-on-exec TCP socket; laddr may be
// nil (LocalAddr asks the kernel).
func NewFDConn(fd int, laddr, raddr *net.TCPAddr) *FDConn {
	c := &FDConn{fd: fd, raddr: raddr}
	if laddr != nil {
		c.laddr.Store(laddr)
	}
	return c
}

// errFDClosed is what calls on a closed or taken FDConn return (as a
// closed net conn's: errors.Is(err, net.ErrClosed)).
var errFDClosed = net.ErrClosed

func (c *FDConn) opError(op string, err error) error {
	if errors.Is(err, os.ErrClosed) {
		err = net.ErrClosed // the os.File's word for it, as net says it
	}
	oe := &net.OpError{Op: op, Net: "tcp", Err: err}
	if la := c.laddr.Load(); la != nil { // not LocalAddr: callers may hold c.mu
		oe.Source = la
	}
	if c.raddr != nil {
		oe.Addr = c.raddr
	}
	return oe
}

// polled returns the os.File to wait through, making it when the socket
// is still raw; nil when closed or taken. Called with c.mu held.
func (c *FDConn) polled() *os.File {
	if c.file == nil && c.fd >= 0 {
		c.file = os.NewFile(uintptr(c.fd), "tcp") // non-blocking: registered with the netpoller
		if !c.rdl.IsZero() {
			_ = c.file.SetReadDeadline(c.rdl)
		}
		if !c.wdl.IsZero() {
			_ = c.file.SetWriteDeadline(c.wdl)
		}
	}
	return c.file
}

// Read reads what the socket has; when it has nothing, it waits (until
// the read deadline) for fdPoller's word, or in Go's netpoller once the
// socket is there (see FDConn).
func (c *FDConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	var woke *fdWaiter // the waiter this read waited on: passed on when it ends unread
	for c.file == nil {
		if c.fd < 0 || !c.rdl.IsZero() && !time.Now().Before(c.rdl) && len(p) > 0 {
			err := error(os.ErrDeadlineExceeded)
			if c.fd < 0 {
				err = errFDClosed
			}
			c.mu.Unlock()
			if woke != nil {
				woke.poke() // another read waiting on it ends too (Close, a deadline)
			}
			return 0, c.opError("read", err)
		}
		n, err := rlRead(c.fd, p)
		for err == unix.EINTR {
			n, err = rlRead(c.fd, p)
		}
		if err != unix.EAGAIN || len(p) == 0 {
			c.mu.Unlock()
			return fdResult(c, "read", n, err, len(p))
		}
		if c.w == nil {
			if fp := fdPollerShared(); fp != nil {
				c.w, _ = fp.add(c.fd)
			}
			if c.w == nil {
				break // wait in the netpoller
			}
		}
		// Nothing there: wait for fdPoller (or a new deadline, or
		// Close), then read again.
		w, deadline := c.w, c.rdl
		c.mu.Unlock()
		w.waitReadable(deadline)
		woke = w
		c.mu.Lock()
	}
	f := c.polled()
	c.mu.Unlock()
	if f == nil {
		return 0, c.opError("read", errFDClosed)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, c.opError("read", err)
	}
	var n int
	var rerr error
	if err := rc.Read(func(fd uintptr) bool {
		n, rerr = rlRead(int(fd), p)
		return rerr != unix.EAGAIN && rerr != unix.EINTR
	}); err != nil {
		return 0, c.opError("read", c.waitErr(err))
	}
	return fdResult(c, "read", n, rerr, len(p))
}

// waitErr is the error of a wait in the netpoller: net.ErrClosed when
// Close ended it (the os.File says "use of closed file"), else the
// netpoller's (os.ErrDeadlineExceeded).
func (c *FDConn) waitErr(err error) error {
	c.mu.Lock()
	closed := c.fd < 0
	c.mu.Unlock()
	if closed {
		return net.ErrClosed
	}
	return err
}

// fdResult turns a read's or write's outcome into net.Conn's.
func fdResult(c *FDConn, op string, n int, err error, want int) (int, error) {
	switch {
	case err != nil:
		return 0, c.opError(op, os.NewSyscallError(op, err))
	case op == "read" && n == 0 && want > 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write writes all of p; when the socket takes no more, it waits in Go's
// netpoller (until the write deadline).
func (c *FDConn) Write(p []byte) (int, error) {
	done := 0
	c.mu.Lock()
	if c.file == nil {
		if c.fd < 0 {
			c.mu.Unlock()
			return 0, c.opError("write", errFDClosed)
		}
		if !c.wdl.IsZero() && !time.Now().Before(c.wdl) {
			c.mu.Unlock()
			return 0, c.opError("write", os.ErrDeadlineExceeded)
		}
		for done < len(p) {
			n, err := rlWrite(c.fd, p[done:])
			if err == unix.EINTR {
				continue
			}
			if err == unix.EAGAIN {
				break
			}
			if err != nil {
				c.mu.Unlock()
				return done, c.opError("write", os.NewSyscallError("write", err))
			}
			done += n
		}
		if done == len(p) {
			c.mu.Unlock()
			return done, nil
		}
	}
	f := c.polled()
	c.mu.Unlock()
	if f == nil {
		return done, c.opError("write", errFDClosed)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return done, c.opError("write", err)
	}
	var werr error
	if err := rc.Write(func(fd uintptr) bool {
		for done < len(p) {
			n, err := rlWrite(int(fd), p[done:])
			switch {
			case err == unix.EINTR:
				continue
			case err == unix.EAGAIN:
				return false
			case err != nil:
				werr = err
				return true
			}
			done += n
		}
		return true
	}); err != nil {
		return done, c.opError("write", c.waitErr(err))
	}
	if werr != nil {
		return done, c.opError("write", os.NewSyscallError("write", werr))
	}
	return done, nil
}

// Close closes the socket, unless the relay has taken it.
func (c *FDConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.w != nil && !c.taken { // its socket leaves fdPoller's set as it closes
		c.w.p.forget(c.w)
		c.w.poke() // a read waiting finds it closed
		c.w = nil
	}
	switch {
	case c.moved != nil:
		return c.moved.Close()
	case c.taken:
		c.shut = true // for untake: the stream the relay could not start is closed
		return nil
	case c.file != nil:
		f := c.file
		c.fd, c.file = -1, nil
		return f.Close() // waits for no reader: os.File's own reference counts
	case c.fd < 0:
		return c.opError("close", errFDClosed)
	}
	fd := c.fd
	c.fd = -1
	if err := rlClose(fd); err != nil {
		return c.opError("close", os.NewSyscallError("close", err))
	}
	return nil
}

// CloseWrite sends the peer a FIN (shutdown SHUT_WR).
func (c *FDConn) CloseWrite() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.moved != nil {
		return c.moved.CloseWrite()
	}
	if c.fd < 0 {
		return c.opError("close", errFDClosed)
	}
	if err := rlShutdown(c.fd, unix.SHUT_WR); err != nil {
		return c.opError("close", os.NewSyscallError("shutdown", err))
	}
	return nil
}

// Take gives the descriptor to the relay: from then on the relay closes
// it, and Close does nothing. ok is false (nothing taken) once the socket
// is in Go's netpoller (the relay would see the netpoller's events too:
// dup it instead) or closed.
func (c *FDConn) Take() (fd int, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.unpoll() // the relay waits for it in its own epoll, a duplicate too
	if c.file != nil || c.fd < 0 {
		return -1, false
	}
	fd, c.fd, c.taken = c.fd, -1, true
	return fd, true
}

// unpoll takes the socket out of fdPoller's set (its registration would
// outlive the descriptor when a duplicate keeps the socket open). Called
// with c.mu held.
func (c *FDConn) unpoll() {
	if c.w != nil && c.fd >= 0 {
		c.w.p.remove(c.fd, c.w)
		c.w.poke()
		c.w = nil
	}
}

// untake gives back a descriptor Take gave (the relay could not start the
// stream).
func (c *FDConn) untake(fd int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.taken = false
	if c.shut { // closed meanwhile
		_ = rlClose(fd)
		return
	}
	c.fd = fd
}

// takenAway reports whether the relay holds the descriptor (Take).
func (c *FDConn) takenAway() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.taken
}
