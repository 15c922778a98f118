//go:build !linux

package tlsmode

import "net"

// upReadWaiter: waiting for readability without reading is Linux-only;
// elsewhere the stream reads into a held buffer.
func upReadWaiter(net.Conn) func() error { return nil }

// upIdleClosed: the non-blocking peek is Linux-only; elsewhere a closed
// idle connection shows when it is used.
func upIdleClosed(net.Conn) bool { return false }
