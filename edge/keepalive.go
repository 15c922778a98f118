package edge

import (
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Client connections take tcp_keepalive from their listener's socket where
// the kernel passes it on: Linux gives an accepted socket the listening
// socket's SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL and TCP_KEEPCNT, so
// setting them there once (and again when a reload changes them) saves
// four setsockopt calls a connection. The first connection accepted after
// each change is checked (keepaliveInherited); when kaMisses connections
// in a row did not bring them, every connection gets them set, as on other
// systems. (One that does not may have waited in the accept queue since
// before a change: it gets its own set and the next one is checked.)
type lnKeepalive struct {
	mu      sync.Mutex   // serialises set
	d       atomic.Int64 // tcp_keepalive the listening socket carries; 0: none set
	inherit atomic.Int32 // kaUnknown, kaInherited, kaPerConn: for d
	misses  atomic.Int32 // connections in a row found without d's options
}

// kaMisses connections in a row without the listener's options mean the
// kernel does not pass them on.
const kaMisses = 3

const (
	kaUnknown = iota
	kaInherited
	kaPerConn
)

// set puts tcp_keepalive d (-1: off) on the listening socket, when it
// differs from what it carries.
func (k *lnKeepalive) set(ln *net.TCPListener, d time.Duration) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.d.Load() == int64(d) {
		return
	}
	k.d.Store(0) // connections accepted meanwhile get theirs set
	if !listenerKeepalive(ln, keepalive(d)) {
		k.inherit.Store(kaPerConn)
		return
	}
	k.inherit.Store(kaUnknown)
	k.misses.Store(0)
	k.d.Store(int64(d))
}

// on gives an accepted connection tcp_keepalive d: nothing to do when it
// came from the listening socket, else set on the connection.
func (k *lnKeepalive) on(c net.Conn, d time.Duration) {
	if k.d.Load() == int64(d) {
		switch k.inherit.Load() {
		case kaInherited:
			return
		case kaUnknown:
			if sc, ok := c.(syscall.Conn); ok && keepaliveInherited(sc, keepalive(d)) {
				k.inherit.CompareAndSwap(kaUnknown, kaInherited)
				return
			}
			if k.misses.Add(1) >= kaMisses {
				k.inherit.CompareAndSwap(kaUnknown, kaPerConn)
			}
		}
	}
	keepaliveOn(c, d)
}

// keepaliveOn applies tcp_keepalive to an accepted client connection.
func keepaliveOn(c net.Conn, d time.Duration) {
	switch c := c.(type) {
	case *net.TCPConn:
		_ = c.SetKeepAliveConfig(keepalive(d))
	case syscall.Conn: // a *tlsmode.FDConn
		if raw, err := c.SyscallConn(); err == nil {
			_ = raw.Control(func(fd uintptr) { socketKeepalive(fd, keepalive(d)) })
		}
	}
}

// keepaliveSeconds is a keepalive duration as the socket option takes it:
// whole seconds, rounded up, at least 1 (as net.TCPConn's).
func keepaliveSeconds(d time.Duration) int {
	return max(int((d+time.Second-1)/time.Second), 1)
}
