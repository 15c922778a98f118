package edge

import (
	"net"
	"os"

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
	var c *tlsmode.FDConn
	var aerr error
	err := l.rawLn.Read(func(fd uintptr) bool {
		for {
			c, aerr = tlsmode.AcceptStream(int(fd), l.addr)
			switch aerr {
			case unix.EINTR, unix.ECONNABORTED: // as net: the next one
				continue
			case unix.EAGAIN:
				return false // wait for the listening socket in the netpoller
			}
			return true
		}
	})
	if err != nil {
		if l.stopping() { // lnDup closed: "use of closed file"
			return nil, net.ErrClosed
		}
		return nil, err
	}
	if aerr != nil {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.ln.Addr(), Err: os.NewSyscallError("accept4", aerr)}
	}
	return c, nil
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
