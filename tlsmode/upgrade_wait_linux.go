package tlsmode

import (
	"crypto/tls"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// upReadWaiter returns a function that blocks until c has something to
// read (data, EOF or an error) or its read deadline passes, without
// reading; nil when c is not a plain TCP connection.
func upReadWaiter(c net.Conn) func() error {
	rc := tcpRawConn(c)
	if rc == nil {
		return nil
	}
	ready := func(fd uintptr) bool {
		// MSG_PEEK: a byte waiting says readable without taking it.
		// EAGAIN: nothing yet, let the poller wait; anything else (data,
		// EOF, an error) is for the Read that follows.
		_, err := rlPeek(int(fd))
		return err != unix.EAGAIN
	}
	return func() error { return rc.Read(ready) }
}

// upIdleClosed reports whether c, an idle keep-alive connection to a
// server, can no longer carry a request: the server closed or reset it, or
// sent something while it was idle (an unsolicited answer, a 408, a TLS
// close_notify), which would be read as the next request's answer
// (http.Transport drops such connections too). For TLS, what crypto/tls
// has buffered counts as well. A non-blocking peek; false when it cannot
// tell (not TCP).
func upIdleClosed(c net.Conn) bool {
	if tc, ok := c.(*tls.Conn); ok && tlsBuffered(tc) {
		return true
	}
	rc := tcpRawConn(c)
	for rc == nil { // down to the socket
		nc, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return false
		}
		c = nc.NetConn()
		rc = tcpRawConn(c)
	}
	// Control, not Read: one syscall, no wait on the poller (the
	// connection is idle: nobody else reads it).
	o := getRawOp(nil)
	err := rc.Control(o.peek)
	_, errno := o.done()
	return errno != unix.EAGAIN || err != nil // data, EOF or an error
}

// tcpRawConn returns the RawConn of a TCP conn (a rawTCP has its own
// already); nil for any other conn.
func tcpRawConn(c net.Conn) syscall.RawConn {
	switch t := c.(type) {
	case *rawTCP:
		return t.io.rc
	case *net.TCPConn:
		if rc, err := t.SyscallConn(); err == nil {
			return rc
		}
	}
	return nil
}
