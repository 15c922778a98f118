//go:build !linux

package tlsmode

import (
	"net"
	"time"
)

// rlConn is the relay's stream: there is no relay without epoll, so none
// ever exists and passthrough copies with Pipe.
type rlConn struct{}

// rlStart has no relay to hand the stream to: copy with Pipe.
func rlStart(*Conn, net.Conn, int64, func(up, down int64, reason string)) *rlConn { return nil }

func (*rlConn) end()                         {}
func (*rlConn) abort()                       {}
func (*rlConn) quiet() (time.Duration, bool) { return 0, false }
func (*rlConn) wentOn() bool                 { return true }
