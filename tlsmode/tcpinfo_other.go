//go:build !linux

package tlsmode

import (
	"net"
	"time"
)

// socketBytes is not available without Linux's TCP_INFO.
func socketBytes(*net.TCPConn) (in, out int64, ok bool) { return 0, 0, false }

// socketQuiet is not available without Linux's TCP_INFO: idle_timeout
// needs Linux.
func socketQuiet(*net.TCPConn) (time.Duration, bool) { return 0, false }
