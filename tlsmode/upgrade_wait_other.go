//go:build !linux

package tlsmode

import (
	"crypto/tls"
	"net"
)

// upReadWaiter: waiting for readability without reading is Linux-only;
// elsewhere the stream reads into a held buffer.
func upReadWaiter(net.Conn) func() error { return nil }

// upIdleClosed: the non-blocking peek is Linux-only; elsewhere only what
// crypto/tls has buffered is seen, and a closed idle connection shows when
// it is used.
func upIdleClosed(c net.Conn) bool {
	tc, ok := c.(*tls.Conn)
	return ok && tlsBuffered(tc)
}
