package edge

import (
	"context"
	"net"
	"net/netip"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tlsedge/tlsedge/tlsmode"
)

// serverDialer connects to servers with cfg's keepalive, set on each socket
// before it connects, by raw system calls: Go's own (KeepAliveConfig) are
// four setsockopt calls after the connect, each through entersyscall, which
// wakes the runtime's monitor when it sleeps (see tlsmode/rawio_linux.go).
// With raw, the connect is started raw too (rawConnect): for streams
// (passthrough, protocol tcp), not for the HTTP routes' requests, whose
// dial must wait in the netpoller as Go's does: a request the client reset
// meanwhile (an HTTP/2 rapid reset) is then given up before it reaches the
// server, where a dial that never waits sends it. It must not be given a
// LocalAddr: Control runs before Go's bind, and a connect started there
// binds the socket already.
func serverDialer(timeout time.Duration, cfg net.KeepAliveConfig, raw bool) net.Dialer {
	d := net.Dialer{Timeout: timeout, KeepAlive: -1} // -1: Go sets none of its own
	if !cfg.Enable && !raw {                         // a new socket has no keepalive: off needs nothing
		return d
	}
	d.ControlContext = func(_ context.Context, _, address string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) {
			if cfg.Enable {
				socketKeepalive(fd, cfg)
			}
			if raw {
				rawConnect(int(fd), address)
			}
		})
	}
	return d
}

// rawConnect starts the connect(2) of the new non-blocking socket fd to
// address (IP:port) without entersyscall. A loopback connect runs the TCP
// handshake inside the call; made through entersyscall (Go's connect), it
// lasts long enough for the runtime's monitor to hand the dialing
// goroutine's P to another thread. Go's connect, which follows, then finds
// the connect under way (EALREADY: it waits as before), done (0), or
// failed (its errno, which Go reports as its own). A connect that fails at
// once leaves the socket unconnected, and Go's connect makes it again and
// reports its error: so errors here are Go's to report, and an address
// this cannot give the socket (a zone, another family than the socket's)
// is left to Go's connect too. Like the project's other raw calls, the
// call holds the P while it runs: on loopback it includes the listener's
// SYN processing, and a nearly exhausted ephemeral port range lengthens
// it. A connect to a server elsewhere makes two connect calls instead of
// one (the second finds it under way).
func rawConnect(fd int, address string) {
	ap, err := netip.ParseAddrPort(address)
	if err != nil || ap.Addr().Zone() != "" {
		return
	}
	_ = tlsmode.RawConnect(fd, ap.Addr().Unmap(), ap.Port())
}

// setsockoptInt is setsockopt(2) of an int option, made without
// entersyscall (it never waits).
func setsockoptInt(fd, level, opt, v int) error {
	val := int32(v)
	_, _, e := syscall.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt),
		uintptr(unsafe.Pointer(&val)), unsafe.Sizeof(val), 0)
	if e != 0 {
		return e
	}
	return nil
}

// listenerKeepalive sets cfg's keepalive options on the listening socket;
// false when one could not be set.
func listenerKeepalive(ln *net.TCPListener, cfg net.KeepAliveConfig) bool {
	raw, err := ln.SyscallConn()
	if err != nil {
		return false
	}
	ok := false
	cerr := raw.Control(func(fd uintptr) { ok = socketKeepalive(fd, cfg) })
	return cerr == nil && ok
}

// socketKeepalive sets cfg's keepalive options on socket fd; false when
// one could not be set. Also the listen Control of new listeners, so that
// no connection is accepted before the options are there.
func socketKeepalive(fd uintptr, cfg net.KeepAliveConfig) bool {
	s := int(fd)
	ok := true
	set := func(level, opt, v int) {
		if setsockoptInt(s, level, opt, v) != nil {
			ok = false
		}
	}
	if !cfg.Enable {
		set(unix.SOL_SOCKET, unix.SO_KEEPALIVE, 0)
		return ok
	}
	set(unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
	set(unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, keepaliveSeconds(cfg.Idle))
	set(unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, keepaliveSeconds(cfg.Interval))
	set(unix.IPPROTO_TCP, unix.TCP_KEEPCNT, cfg.Count)
	return ok
}

// keepaliveInherited reports whether an accepted connection carries cfg's
// keepalive (on or off, and the idle time) from its listening socket.
func keepaliveInherited(c syscall.Conn, cfg net.KeepAliveConfig) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	same := false
	cerr := raw.Control(func(fd uintptr) {
		on, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE)
		if err != nil || (on != 0) != cfg.Enable {
			return
		}
		if !cfg.Enable {
			same = true
			return
		}
		idle, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
		same = err == nil && idle == keepaliveSeconds(cfg.Idle)
	})
	return cerr == nil && same
}
