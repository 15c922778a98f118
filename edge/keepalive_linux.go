package edge

import (
	"context"
	"net"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// serverDialer connects to servers with cfg's keepalive, set on each socket
// before it connects, by raw system calls: Go's own (KeepAliveConfig) are
// four setsockopt calls after the connect, each through entersyscall, which
// wakes the runtime's monitor when it sleeps (see tlsmode/rawio_linux.go).
func serverDialer(timeout time.Duration, cfg net.KeepAliveConfig) net.Dialer {
	d := net.Dialer{Timeout: timeout, KeepAlive: -1} // -1: Go sets none of its own
	if cfg.Enable {                                  // a new socket has none: off needs nothing
		d.ControlContext = func(_ context.Context, _, _ string, c syscall.RawConn) error {
			return c.Control(func(fd uintptr) { socketKeepalive(fd, cfg) })
		}
	}
	return d
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
func keepaliveInherited(c *net.TCPConn, cfg net.KeepAliveConfig) bool {
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
