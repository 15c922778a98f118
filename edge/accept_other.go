//go:build !linux

package edge

import "net"

// accept takes the next client connection (net's: the raw accept of
// accept_linux.go needs the passthrough relay).
func (l *listener) accept(*listenerState) (net.Conn, error) {
	c, err := l.ln.AcceptTCP()
	if err != nil {
		return nil, err
	}
	return c, nil
}

// netConn returns c: every conn is net's here.
func netConn(c net.Conn) (net.Conn, error) { return c, nil }

// listenerNoDelay: raw accepts are Linux's; net's Accept sets TCP_NODELAY.
func listenerNoDelay(uintptr) {}

// rawAccept: raw accepts are Linux's.
type rawAccept struct{}
