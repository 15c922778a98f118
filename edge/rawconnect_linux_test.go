package edge

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// rcSocket is a new non-blocking TCP socket of family, closed at the end of
// the test.
func rcSocket(t *testing.T, family int) int {
	t.Helper()
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// rcPeer waits (at most 5 s) for fd to be writable and returns its peer's
// address; invalid when it is not connected.
func rcPeer(t *testing.T, fd int) netip.AddrPort {
	t.Helper()
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	if _, err := unix.Poll(pfd, 5000); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getpeername(fd)
	if err != nil {
		return netip.AddrPort{}
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port))
	}
	return netip.AddrPort{}
}

// rawConnect starts the connect itself: the socket ends up connected to
// the address given, IPv4 and IPv6 (when the machine has ::1).
func TestRawConnectConnects(t *testing.T) {
	for _, tc := range []struct {
		name, listen string
		family       int
	}{
		{"ipv4", "127.0.0.1:0", unix.AF_INET},
		{"ipv6", "[::1]:0", unix.AF_INET6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", tc.listen)
			if err != nil {
				t.Skipf("no %s loopback here: %v", tc.name, err) // a machine without ::1
			}
			defer ln.Close()
			fd := rcSocket(t, tc.family)
			if err := rawConnect(fd, ln.Addr().String()); err != nil {
				t.Fatalf("rawConnect: %v", err)
			}
			want := ln.Addr().(*net.TCPAddr).AddrPort()
			if got := rcPeer(t, fd); got != want {
				t.Errorf("peer after rawConnect = %v, want %v (the connect was not started)", got, want)
			}
		})
	}
}

// An address of another family than the socket's, or one with a zone, is
// left to Go's connect: no error, nothing started.
func TestRawConnectLeavesWhatItCannotMap(t *testing.T) {
	ln := kaListen(t)
	fd := rcSocket(t, unix.AF_INET6)
	if err := rawConnect(fd, ln.Addr().String()); err != nil {
		t.Errorf("IPv4 address on an IPv6 socket: %v, want nil (Go's connect maps it)", err)
	}
	if err := rawConnect(rcSocket(t, unix.AF_INET6), "[fe80::1%lo]:1"); err != nil {
		t.Errorf("zoned address: %v, want nil", err)
	}
	if _, err := unix.Getpeername(fd); err == nil {
		t.Error("the IPv6 socket is connected: rawConnect should have left it")
	}
}

// Dials through serverDialer behave as Go's own: they connect, and a
// refused connect fails with the same error (text, errno, *os.SyscallError
// "connect") as net.Dialer's.
func TestServerDialerConnectErrors(t *testing.T) {
	ln := kaListen(t)
	d := serverDialer(2*time.Second, keepalive(0))
	c, err := d.DialContext(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if got, want := c.RemoteAddr().String(), ln.Addr().String(); got != want {
		t.Errorf("remote address %s, want %s", got, want)
	}
	c.Close()

	closed := kaListen(t)
	addr := closed.Addr().String()
	closed.Close()
	_, err = d.DialContext(context.Background(), "tcp", addr)
	var plain net.Dialer
	_, want := plain.DialContext(context.Background(), "tcp", addr)
	if err == nil || want == nil {
		t.Fatalf("dial of a closed port: %v (net.Dialer: %v), want both refused", err, want)
	}
	if err.Error() != want.Error() {
		t.Errorf("error %q, net.Dialer's %q", err, want)
	}
	var se *os.SyscallError
	if !errors.Is(err, syscall.ECONNREFUSED) || !errors.As(err, &se) || se.Syscall != "connect" {
		t.Errorf("error %#v: want ECONNREFUSED in an *os.SyscallError of connect", err)
	}
}
