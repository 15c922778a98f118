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
			rawConnect(fd, ln.Addr().String())
			want := ln.Addr().(*net.TCPAddr).AddrPort()
			if got := rcPeer(t, fd); got != want {
				t.Errorf("peer after rawConnect = %v, want %v (the connect was not started)", got, want)
			}
		})
	}
}

// An address of another family than the socket's, or one with a zone, is
// left to Go's connect: nothing is started.
func TestRawConnectLeavesWhatItCannotMap(t *testing.T) {
	ln := kaListen(t)
	fd6, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Skipf("no IPv6 sockets here: %v", err) // a kernel without IPv6
	}
	defer unix.Close(fd6)
	rawConnect(fd6, ln.Addr().String())
	if st := rcState(t, fd6); st != rcClosed {
		t.Errorf("IPv6 socket given an IPv4 address: TCP state %d, want closed (nothing started)", st)
	}
	fd4 := rcSocket(t, unix.AF_INET)
	rawConnect(fd4, "[fe80::1%lo]:1")
	if st := rcState(t, fd4); st != rcClosed {
		t.Errorf("zoned address: TCP state %d, want closed (nothing started)", st)
	}
}

// rcClosed is TCP_CLOSE, the state of a socket that has not connected.
const rcClosed = 7

// rcState is the TCP state of fd (TCP_INFO).
func rcState(t *testing.T, fd int) uint8 {
	t.Helper()
	ti, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		t.Fatal(err)
	}
	return ti.State
}

// rcRecordStates makes d record each socket's TCP state once its Control
// has run (d must have one: keepalive on, or raw).
func rcRecordStates(t *testing.T, d *net.Dialer) *[]uint8 {
	inner := d.ControlContext
	states := new([]uint8)
	d.ControlContext = func(ctx context.Context, network, address string, c syscall.RawConn) error {
		err := inner(ctx, network, address, c)
		_ = c.Control(func(fd uintptr) { *states = append(*states, rcState(t, int(fd))) })
		return err
	}
	return states
}

// Dials through serverDialer start their connect in Control (the socket
// has left the closed state when Control returns), and behave as Go's own:
// they connect, and a refused connect and one that fails at once fail with
// the same error (text, errno, *os.SyscallError "connect") as net.Dialer's.
func TestServerDialerConnects(t *testing.T) {
	ln := kaListen(t)
	d := serverDialer(2*time.Second, keepalive(0), true)
	states := rcRecordStates(t, &d)
	c, err := d.DialContext(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if got, want := c.RemoteAddr().String(), ln.Addr().String(); got != want {
		t.Errorf("remote address %s, want %s", got, want)
	}
	c.Close()
	if len(*states) != 1 || (*states)[0] == rcClosed {
		t.Errorf("TCP states after Control: %v, want one, not closed (%d): the raw connect did not run", *states, rcClosed)
	}
	// The HTTP routes' dialer leaves the connect to Go (its wait lets a
	// request reset meanwhile be given up).
	hd := serverDialer(2*time.Second, keepalive(0), false)
	hstates := rcRecordStates(t, &hd)
	if c, err := hd.DialContext(context.Background(), "tcp", ln.Addr().String()); err != nil {
		t.Errorf("dial without raw connect: %v", err)
	} else {
		c.Close()
	}
	if len(*hstates) != 1 || (*hstates)[0] != rcClosed {
		t.Errorf("TCP states after Control without raw: %v, want [%d] (Go's connect makes it)", *hstates, rcClosed)
	}

	closed := kaListen(t)
	refused := closed.Addr().String()
	closed.Close()
	for _, addr := range []string{refused, "224.0.0.1:80"} { // refused; a multicast address: ENETUNREACH at once
		_, err = d.DialContext(context.Background(), "tcp", addr)
		var plain net.Dialer
		_, want := plain.DialContext(context.Background(), "tcp", addr)
		if err == nil || want == nil {
			t.Fatalf("dial %s: %v (net.Dialer: %v), want both to fail", addr, err, want)
		}
		if err.Error() != want.Error() {
			t.Errorf("error %q, net.Dialer's %q", err, want)
		}
		var se, wse *os.SyscallError
		if !errors.As(err, &se) || !errors.As(want, &wse) || se.Syscall != "connect" || se.Err != wse.Err {
			t.Errorf("error %#v: want an *os.SyscallError of connect with net.Dialer's errno (%v)", err, want)
		}
	}
}
