package tlsmode

// An FDConn's addresses, deadlines, raw access (SyscallConn) and move into
// a *net.TCPConn: all but its reads, writes and close (fdconn_linux.go).

import (
	"errors"
	"net"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// LocalAddr returns the socket's address (asked of the kernel once when
// it was not given).
func (c *FDConn) LocalAddr() net.Addr {
	if la := c.laddr.Load(); la != nil {
		return la
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd >= 0 {
		if sa, err := unix.Getsockname(c.fd); err == nil {
			if la := sockaddrTCP(sa); la != nil {
				c.laddr.Store(la)
				return la
			}
		}
	}
	return nil
}

// RemoteAddr returns the peer's address.
func (c *FDConn) RemoteAddr() net.Addr {
	if c.raddr == nil {
		return nil
	}
	return c.raddr
}

// SetDeadline sets both deadlines.
func (c *FDConn) SetDeadline(t time.Time) error { return c.setDeadline(t, true, true) }

// SetReadDeadline bounds the wait of reads (a raw read does not wait; one
// past the deadline fails as net's does).
func (c *FDConn) SetReadDeadline(t time.Time) error { return c.setDeadline(t, true, false) }

// SetWriteDeadline bounds the wait of writes.
func (c *FDConn) SetWriteDeadline(t time.Time) error { return c.setDeadline(t, false, true) }

// setDeadline sets the read deadline, the write deadline or both: on the
// conn it moved into (TCPConn), else its own (a waiting read looks at the
// new one) and its file's when the socket is in the netpoller.
func (c *FDConn) setDeadline(t time.Time, read, write bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.moved != nil {
		return deadlineOn(c.moved, t, read, write)
	}
	if c.fd < 0 {
		return c.opError("set", errFDClosed)
	}
	if read {
		c.rdl = t
		if c.w != nil {
			c.w.poke()
		}
	}
	if write {
		c.wdl = t
	}
	if c.file == nil {
		return nil
	}
	return deadlineOn(c.file, t, read, write)
}

// deadlineOn sets d's read deadline, write deadline or both.
func deadlineOn(d interface {
	SetDeadline(time.Time) error
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
}, t time.Time, read, write bool) error {
	switch {
	case read && write:
		return d.SetDeadline(t)
	case read:
		return d.SetReadDeadline(t)
	}
	return d.SetWriteDeadline(t)
}

// SyscallConn gives raw access to the socket (TCP_INFO, keepalive
// options): Control runs f on the descriptor under the conn's lock.
// Read and Write are not supported (use the conn's).
func (c *FDConn) SyscallConn() (syscall.RawConn, error) { return fdRaw{c}, nil }

type fdRaw struct{ c *FDConn }

func (r fdRaw) Control(f func(fd uintptr)) error {
	r.c.mu.Lock()
	fd, file := r.c.fd, r.c.file
	if file == nil {
		defer r.c.mu.Unlock()
		if fd < 0 {
			return errFDClosed
		}
		f(uintptr(fd))
		return nil
	}
	r.c.mu.Unlock()
	rc, err := file.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Control(f)
}

func (fdRaw) Read(func(fd uintptr) bool) error  { return errors.ErrUnsupported }
func (fdRaw) Write(func(fd uintptr) bool) error { return errors.ErrUnsupported }

// sockaddrTCP turns a socket address into a *net.TCPAddr (nil for other
// families).
func sockaddrTCP(sa unix.Sockaddr) *net.TCPAddr {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: append(net.IP(nil), a.Addr[:]...), Port: a.Port}
	case *unix.SockaddrInet6:
		ta := &net.TCPAddr{IP: append(net.IP(nil), a.Addr[:]...), Port: a.Port}
		if a.ZoneId != 0 {
			if ifi, err := net.InterfaceByIndex(int(a.ZoneId)); err == nil {
				ta.Zone = ifi.Name
			}
		}
		return ta
	}
	return nil
}

// rawSockaddrTCP turns what accept4 wrote into a *net.TCPAddr.
func rawSockaddrTCP(rsa *unix.RawSockaddrAny) *net.TCPAddr {
	switch rsa.Addr.Family {
	case unix.AF_INET:
		p := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		port := (*[2]byte)(unsafe.Pointer(&p.Port))
		return &net.TCPAddr{IP: append(net.IP(nil), p.Addr[:]...), Port: int(port[0])<<8 | int(port[1])}
	case unix.AF_INET6:
		p := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		port := (*[2]byte)(unsafe.Pointer(&p.Port))
		return &net.TCPAddr{IP: append(net.IP(nil), p.Addr[:]...), Port: int(port[0])<<8 | int(port[1])}
	}
	return nil
}

// TCPConn moves the socket into a *net.TCPConn (net.FileConn: a dup and a
// registration), for a connection that turned out not to be a passthrough
// stream (a reload routed it elsewhere). The FDConn is closed: use the
// returned conn from then on, deadlines included.
func (c *FDConn) TCPConn() (*net.TCPConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.unpoll() // the duplicate net makes would keep the registration
	f := c.polled()
	if f == nil {
		return nil, c.opError("file", errFDClosed)
	}
	nc, err := net.FileConn(f)
	c.fd, c.file = -1, nil
	f.Close()
	if err != nil {
		return nil, err
	}
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		nc.Close()
		return nil, c.opError("file", errors.ErrUnsupported)
	}
	c.moved = tc // a Close that waited for this closes the new conn
	return tc, nil
}
