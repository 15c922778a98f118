package edge

import (
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/tlsedge/tlsedge/tlsmode"
)

// accept takes the next client connection. On a listener whose routes are
// all passthrough (and while the relay runs), it is accepted with a raw
// accept4 as a *tlsmode.FDConn: the socket stays out of Go's netpoller
// (a hello still on its way is waited for in tlsmode's fdPoller), and the
// relay takes its descriptor as it is. Elsewhere it is net's
// *net.TCPConn. A reload that changes the routes applies from the next
// accept.
func (l *listener) accept(st *listenerState) (net.Conn, error) {
	if st == nil || !st.streamsOnly || !tlsmode.RelayReady() || !l.rawListener() {
		c, err := l.ln.AcceptTCP()
		if err != nil {
			return nil, err
		}
		return c, nil
	}
	ra := &l.raw
	if ra.fn == nil {
		ra.laddr, ra.fn = l.addr, ra.accept
	}
	ra.set = l.noDelay == noDelaySet
	err := l.rawLn.Read(ra.fn)
	c, aerr := ra.c, ra.err
	ra.c, ra.err = nil, nil
	if err != nil {
		if l.stopping() { // lnDup closed: "use of closed file"
			return nil, net.ErrClosed
		}
		return nil, err
	}
	if aerr != nil {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.ln.Addr(), Err: os.NewSyscallError("accept4", aerr)}
	}
	if l.noDelay == noDelayUnknown {
		l.noDelay = noDelayInherited
		if !noDelayOn(c, false) { // a kernel whose accepted sockets do not inherit it
			l.noDelay = noDelaySet
			noDelayOn(c, true)
		}
	}
	return c, nil
}

// listenerNoDelay sets TCP_NODELAY on a new listening socket, before
// listen(2): the sockets it accepts inherit it (Linux copies the listener's
// TCP state), so a raw accept needs no setsockopt of its own.
func listenerNoDelay(fd uintptr) {
	_ = setsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
}

// What a raw accept does about TCP_NODELAY (listener.noDelay).
const (
	noDelayUnknown   = iota // the listening socket has it (listenerNoDelay); the first accept looks
	noDelayInherited        // accepted sockets have it from the listening socket (Linux does)
	noDelaySet              // set on each accepted socket, as net's Accept does
)

// noDelayOn reports whether c's socket has TCP_NODELAY; with set, it sets
// it first.
func noDelayOn(c syscall.Conn, set bool) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	v := 0
	var oerr error
	err = rc.Control(func(fd uintptr) {
		if set {
			oerr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		}
		if oerr == nil {
			v, oerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY)
		}
	})
	return err == nil && oerr == nil && v != 0
}

// rawAccept is a listener's raw accept in flight: RawConn.Read takes a
// func, and a closure over accept's variables was allocated at every
// accept; the listener keeps one rawAccept, its func bound once. Only
// serve's goroutine uses it.
type rawAccept struct {
	laddr *net.TCPAddr
	set   bool // set TCP_NODELAY (noDelaySet)
	c     *tlsmode.FDConn
	err   error
	fn    func(fd uintptr) bool // accept, bound
}

// accept accepts one connection of the listening socket fd; false (wait
// for it in the netpoller) when none waits.
func (a *rawAccept) accept(fd uintptr) bool {
	for {
		a.c, a.err = tlsmode.AcceptStream(int(fd), a.laddr, a.set)
		switch a.err {
		case unix.EINTR, unix.ECONNABORTED: // as net: the next one
			continue
		case unix.EAGAIN:
			return false
		}
		return true
	}
}

// netConn returns c as net's conn: an FDConn's socket moves into a
// *net.TCPConn; other conns are returned as they are.
func netConn(c net.Conn) (net.Conn, error) {
	if fc, ok := c.(*tlsmode.FDConn); ok {
		return fc.TCPConn()
	}
	return c, nil
}

// rawListener makes, on the first raw accept, a duplicate of the
// listening socket in Go's netpoller for raw accepts to wait on (net's
// own RawConn of a listener cannot wait: its Read says EINVAL); false
// when it cannot (accept is then net's). Made under mu and not once the
// listener is closed, so close always closes it.
func (l *listener) rawListener() bool {
	if l.rawLn != nil {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopping() {
		return false
	}
	f, err := l.ln.File() // a non-blocking duplicate, registered with the netpoller
	if err != nil {
		return false
	}
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return false
	}
	l.lnDup, l.rawLn = f, raw
	return true
}
