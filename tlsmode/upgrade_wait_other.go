//go:build !linux

package tlsmode

import "net"

// upReadWaiter: waiting for readability without reading is Linux-only;
// elsewhere the stream reads into a held buffer.
func upReadWaiter(net.Conn) func() error { return nil }
