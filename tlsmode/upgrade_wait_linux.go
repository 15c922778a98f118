package tlsmode

import (
	"net"

	"golang.org/x/sys/unix"
)

// upReadWaiter returns a function that blocks until c has something to
// read (data, EOF or an error) or its read deadline passes, without
// reading; nil when c is not a plain TCP connection.
func upReadWaiter(c net.Conn) func() error {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	var peek [1]byte
	ready := func(fd uintptr) bool {
		// MSG_PEEK: a byte waiting says readable without taking it.
		// EAGAIN: nothing yet, let the poller wait; anything else (data,
		// EOF, an error) is for the Read that follows.
		_, _, err := unix.Recvfrom(int(fd), peek[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		return err != unix.EAGAIN
	}
	return func() error { return rc.Read(ready) }
}
