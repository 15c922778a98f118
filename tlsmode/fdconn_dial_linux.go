package tlsmode

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// DialStream connects to a server by IP and port for a passthrough stream,
// with raw system calls: socket, setup (keepalive options: setup may be
// nil), TCP_NODELAY and connect. A connect that is done when the second
// connect call asks (a loopback one is, its handshake runs inside the
// first) returns an FDConn no netpoller knows; one still under way waits
// for the socket to become writable in Go's netpoller, at most timeout
// (0: none). Errors are net.Dialer's: a *net.OpError "dial" with the
// connect's errno, or os.ErrDeadlineExceeded ("i/o timeout").
//
// As net's dialer, it connects again (twice at most) when the kernel had
// no local address (EADDRNOTAVAIL) or the socket connected to itself (a
// server port in the ephemeral range, on this host, with no server
// listening).
func DialStream(addr netip.AddrPort, timeout time.Duration, setup func(fd int)) (net.Conn, error) {
	for i := 0; ; i++ {
		c, err := dialStreamOnce(addr, timeout, setup)
		if i < 2 && (errors.Is(err, unix.EADDRNOTAVAIL) || err == nil && selfConnected(c, addr)) {
			if c != nil {
				c.Close()
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		return c, nil
	}
}

// ephemeralPorts is the kernel's range of local ports for connects.
var ephemeralPorts = sync.OnceValues(func() (lo, hi int) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if _, err := fmt.Sscan(string(b), &lo, &hi); err == nil {
			return lo, hi
		}
	}
	return 1024, 65535
})

// selfConnected reports whether c is connected to itself: only possible
// when the server's port is one the kernel may give a local socket.
func selfConnected(c *FDConn, addr netip.AddrPort) bool {
	if lo, hi := ephemeralPorts(); int(addr.Port()) < lo || int(addr.Port()) > hi {
		return false
	}
	la, ok := c.LocalAddr().(*net.TCPAddr)
	if !ok {
		return false
	}
	var peer unix.Sockaddr
	_ = fdRaw{c}.Control(func(fd uintptr) { peer, _ = unix.Getpeername(int(fd)) })
	ra := sockaddrTCP(peer)
	return ra != nil && la.AddrPort() == ra.AddrPort() // as net's selfConnect: the peer, not the address dialled (0.0.0.0)
}

// dialStreamOnce is one attempt of DialStream.
func dialStreamOnce(addr netip.AddrPort, timeout time.Duration, setup func(fd int)) (*FDConn, error) {
	ip := addr.Addr().Unmap()
	raddr := net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, addr.Port()))
	fail := func(call string, err error) error {
		return &net.OpError{Op: "dial", Net: "tcp", Addr: raddr, Err: os.NewSyscallError(call, err)}
	}
	family := unix.AF_INET6
	if ip.Is4() {
		family = unix.AF_INET
	}
	r0, _, e := syscall.RawSyscall(unix.SYS_SOCKET, uintptr(family), unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if e != 0 {
		return nil, fail("socket", e)
	}
	fd := int(r0)
	if setup != nil {
		setup(fd)
	}
	one := int32(1)
	_, _, _ = syscall.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY,
		uintptr(unsafe.Pointer(&one)), unsafe.Sizeof(one), 0) // as net's: best effort
	err := RawConnect(fd, ip, addr.Port())
	if err == unix.EINPROGRESS || err == unix.EINTR {
		err = RawConnect(fd, ip, addr.Port()) // done (EISCONN), under way (EALREADY) or failed
	}
	c := NewFDConn(fd, nil, raddr)
	switch err {
	case nil, unix.EISCONN:
		return c, nil
	case unix.EALREADY, unix.EINPROGRESS, unix.EINTR:
		if err := c.waitConnected(timeout); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
	c.Close()
	return nil, fail("connect", err)
}

// waitConnected waits, in Go's netpoller, for a connect under way to end.
func (c *FDConn) waitConnected(timeout time.Duration) error {
	if timeout > 0 {
		_ = c.SetWriteDeadline(time.Now().Add(timeout))
		defer c.SetWriteDeadline(time.Time{})
	}
	c.mu.Lock()
	f := c.polled()
	c.mu.Unlock()
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var cerr error
	werr := rc.Write(func(fd uintptr) bool {
		so, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		switch {
		case err != nil:
			cerr = os.NewSyscallError("getsockopt", err)
			return true
		case so != 0 && syscall.Errno(so) != unix.EINPROGRESS && syscall.Errno(so) != unix.EALREADY:
			cerr = os.NewSyscallError("connect", syscall.Errno(so))
			return true
		}
		_, err = unix.Getpeername(int(fd))
		return err == nil // ENOTCONN: not yet
	})
	if werr == nil {
		werr = cerr
	} else {
		werr = c.waitErr(werr)
	}
	if werr != nil {
		return &net.OpError{Op: "dial", Net: "tcp", Addr: c.raddr, Err: werr}
	}
	return nil
}

// RawConnect is connect(2) of socket fd to ip (not v4-mapped):port,
// without entersyscall.
func RawConnect(fd int, ip netip.Addr, port uint16) error {
	var e syscall.Errno
	if ip.Is4() {
		sa := unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: ip.As4()}
		p := (*[2]byte)(unsafe.Pointer(&sa.Port)) // network byte order
		p[0], p[1] = byte(port>>8), byte(port)
		_, _, e = syscall.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
	} else {
		sa := unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: ip.As16()}
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		p[0], p[1] = byte(port>>8), byte(port)
		_, _, e = syscall.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
	}
	return rlErrno(e)
}

// AcceptStream accepts one connection from the listening socket fd with
// a raw accept4 (non-blocking, close-on-exec); with noDelay it sets
// TCP_NODELAY on it, as net's Accept does (without, the caller knows the
// socket inherited it from the listening socket). laddr is the listener's
// address when it is not a wildcard one (else LocalAddr asks the kernel).
// unix.EAGAIN: none waits.
func AcceptStream(fd int, laddr *net.TCPAddr, noDelay bool) (*FDConn, error) {
	var rsa unix.RawSockaddrAny
	n := uint32(unix.SizeofSockaddrAny)
	r0, _, e := syscall.RawSyscall6(unix.SYS_ACCEPT4, uintptr(fd), uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&n)),
		unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if e != 0 {
		return nil, e
	}
	nfd := int(r0)
	if noDelay {
		one := int32(1)
		_, _, _ = syscall.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(nfd), unix.IPPROTO_TCP, unix.TCP_NODELAY,
			uintptr(unsafe.Pointer(&one)), unsafe.Sizeof(one), 0)
	}
	if laddr != nil && laddr.IP.IsUnspecified() {
		laddr = nil
	}
	return NewFDConn(nfd, laddr, rawSockaddrTCP(&rsa)), nil
}
