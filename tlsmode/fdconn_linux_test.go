package tlsmode

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fdListen returns a loopback listener and a non-blocking duplicate of its
// descriptor for AcceptStream.
func fdListen(t *testing.T) (*net.TCPListener, int) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	f, err := ln.File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	fd := int(f.Fd()) // Fd makes the shared socket blocking: non-blocking again
	if err := unix.SetNonblock(fd, true); err != nil {
		t.Fatal(err)
	}
	return ln, fd
}

// fdDial connects a client to ln, closed when the test ends.
func fdDial(t *testing.T, ln net.Listener) net.Conn {
	t.Helper()
	cl, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// fdAccept accepts the next connection of fd, polling until one is there.
func fdAccept(t *testing.T, fd int, laddr *net.TCPAddr) *FDConn {
	t.Helper()
	for range 500 {
		c, err := AcceptStream(fd, laddr, true)
		if err == nil {
			t.Cleanup(func() { c.Close() })
			return c
		}
		if err != unix.EAGAIN {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no connection to accept")
	return nil
}

// AcceptStream without noDelay leaves TCP_NODELAY as the socket has it
// from the listening socket: set when the listener has it (Linux copies
// it: edge's raw accepts rely on that, and look once), unset otherwise.
func TestAcceptStreamNoDelayInherited(t *testing.T) {
	for _, onListener := range []bool{false, true} {
		ln, fd := fdListen(t)
		if onListener {
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
				t.Fatal(err)
			}
		}
		fdDial(t, ln)
		var c *FDConn
		for range 500 {
			var err error
			if c, err = AcceptStream(fd, nil, false); err == nil {
				break
			}
			if err != unix.EAGAIN {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if c == nil {
			t.Fatal("no connection to accept")
		}
		v, err := unix.GetsockoptInt(c.fd, unix.IPPROTO_TCP, unix.TCP_NODELAY)
		if err != nil || (v != 0) != onListener {
			t.Errorf("listener with TCP_NODELAY %v: accepted socket has %d, %v", onListener, v, err)
		}
		c.Close()
	}
}

func TestAcceptStreamReadsRaw(t *testing.T) {
	ln, fd := fdListen(t)
	cl := fdDial(t, ln)
	if _, err := cl.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the bytes are there before the first read
	c := fdAccept(t, fd, ln.Addr().(*net.TCPAddr))
	if got, want := c.RemoteAddr().String(), cl.LocalAddr().String(); got != want {
		t.Errorf("RemoteAddr %s, want %s", got, want)
	}
	if got, want := c.LocalAddr().String(), ln.Addr().String(); got != want {
		t.Errorf("LocalAddr %s, want %s", got, want)
	}
	if v, err := unix.GetsockoptInt(c.fd, unix.IPPROTO_TCP, unix.TCP_NODELAY); err != nil || v == 0 {
		t.Errorf("TCP_NODELAY %d, %v; want it set as net's Accept does", v, err)
	}
	buf := make([]byte, 16)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}
	if c.file != nil {
		t.Error("a read that found its bytes put the socket in the netpoller")
	}
	if _, err := c.Write([]byte("back")); err != nil {
		t.Fatal(err)
	}
	if n, err := io.ReadFull(cl, buf[:4]); err != nil || string(buf[:n]) != "back" {
		t.Fatalf("client read %q, %v", buf[:n], err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Read(buf); err != io.EOF {
		t.Errorf("client read after CloseWrite: %v, want EOF", err)
	}
}

func TestFDConnReadWaits(t *testing.T) {
	ln, fd := fdListen(t)
	cl := fdDial(t, ln)
	c := fdAccept(t, fd, nil)
	if got, want := c.LocalAddr().String(), ln.Addr().String(); got != want {
		t.Errorf("LocalAddr (from the kernel) %s, want %s", got, want)
	}

	// Nothing there: the read waits, until the deadline.
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	buf := make([]byte, 16)
	_, err := c.Read(buf)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read with nothing to read = %v, want a timeout", err)
	}
	if c.w == nil || c.file != nil {
		t.Fatalf("a read that had to wait: poller %v, netpoller %v; want fdPoller only", c.w != nil, c.file != nil)
	}
	// Then the bytes come while it waits.
	c.SetReadDeadline(time.Time{})
	go func() {
		time.Sleep(50 * time.Millisecond)
		cl.Write([]byte("late"))
	}()
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "late" {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}
	// A deadline set while a read waits ends it (net's conns do the same).
	wait := make(chan error, 1)
	go func() { _, err := c.Read(buf); wait <- err }()
	time.Sleep(50 * time.Millisecond)
	c.SetReadDeadline(time.Now())
	select {
	case err := <-wait:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("read ended by a new deadline: %v, want a timeout", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a new deadline did not end the waiting read")
	}
	c.SetReadDeadline(time.Time{})
	// Close from another goroutine ends the waiting reads, all of them.
	done := make(chan error, 2)
	go func() { _, err := c.Read(buf); done <- err }()
	go func() { _, err := c.Read(make([]byte, 1)); done <- err }()
	time.Sleep(50 * time.Millisecond)
	w := c.w
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if polling(w) {
		t.Error("Close left the socket's waiter in fdPoller")
	}
	for range 2 {
		select {
		case err := <-done:
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("read ended by Close: %v, want net.ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not end both waiting reads")
		}
	}
	if _, err := c.Read(buf); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Close: %v", err)
	}
	if _, ok := c.Take(); ok {
		t.Error("Take of a closed conn gave a descriptor")
	}
}

func TestFDConnDeadlinePassedWhileRaw(t *testing.T) {
	ln, fd := fdListen(t)
	cl := fdDial(t, ln)
	cl.Write([]byte("x"))
	time.Sleep(50 * time.Millisecond)
	c := fdAccept(t, fd, nil)
	c.SetReadDeadline(time.Now().Add(-time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Read past the deadline = %v, want a timeout even with bytes there (as net)", err)
	}
	c.SetWriteDeadline(time.Now().Add(-time.Second))
	if _, err := c.Write([]byte("y")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Write past the deadline = %v, want a timeout", err)
	}
}

func TestFDConnTake(t *testing.T) {
	ln, fd := fdListen(t)
	cl := fdDial(t, ln)
	c := fdAccept(t, fd, nil)
	sfd, giveBack, ok := rlDup(c)
	if !ok || sfd < 0 {
		t.Fatal("rlDup of a raw FDConn did not take it")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// Taken: Close left the descriptor to the relay.
	if _, err := unix.FcntlInt(uintptr(sfd), unix.F_GETFD, 0); err != nil {
		t.Fatalf("the taken descriptor was closed by Close: %v", err)
	}
	if _, err := rlWrite(sfd, []byte("z")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(cl, b); err != nil || b[0] != 'z' {
		t.Fatalf("client read %q, %v", b, err)
	}
	// The stream could not start after all: the Close that came while
	// taken (CloseNow) is not lost, giveBack closes it.
	giveBack()
	if _, err := unix.FcntlInt(uintptr(sfd), unix.F_GETFD, 0); err != unix.EBADF {
		t.Errorf("a Close while taken was lost: the descriptor is open after giveBack (%v)", err)
	}
	c.SetReadDeadline(time.Now().Add(time.Second)) // a conn left open would wait
	if _, err := c.Read(b); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after that: %v, want net.ErrClosed", err)
	}

	// Without a Close, giveBack makes the conn the owner again.
	fdDial(t, ln)
	c3 := fdAccept(t, fd, nil)
	tfd3, giveBack3, ok := rlDup(c3)
	if !ok {
		t.Fatal("rlDup did not take it")
	}
	giveBack3()
	if err := c3.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.FcntlInt(uintptr(tfd3), unix.F_GETFD, 0); err != unix.EBADF {
		t.Errorf("after giveBack, Close left the descriptor open (%v)", err)
	}

	// A read that waited (in fdPoller): Take takes it out of fdPoller's
	// set.
	fdDial(t, ln)
	c2 := fdAccept(t, fd, nil)
	c2.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	c2.Read(b) // waits
	w := c2.w
	if w == nil {
		t.Fatal("the read did not wait in fdPoller")
	}
	tfd, giveBack2, ok := rlDup(c2)
	if !ok || c2.w != nil || polling(w) {
		t.Fatalf("rlDup of an FDConn in fdPoller: %v; still in it: %v", ok, polling(w))
	}
	giveBack2()
	if c2.fd != tfd {
		t.Fatalf("giveBack gave %d back as %d", tfd, c2.fd)
	}

	// Once in the netpoller (a write had to wait), the relay gets a
	// duplicate (the netpoller would see the relay's events too).
	c2.mu.Lock()
	c2.polled()
	c2.mu.Unlock()
	dfd, giveBack4, ok := rlDup(c2)
	if !ok || dfd == c2.fd {
		t.Fatalf("rlDup of a polled FDConn = %d, %v; want a duplicate of %d", dfd, ok, c2.fd)
	}
	giveBack4()
	if _, err := unix.FcntlInt(uintptr(dfd), unix.F_GETFD, 0); err != unix.EBADF {
		t.Errorf("giveBack left the duplicate open (%v)", err)
	}
}

// polling reports whether fdPoller still has w.
func polling(w *fdWaiter) bool {
	p := w.p
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waiters[w.token] != nil
}

func TestDialStream(t *testing.T) {
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ap := ln.Addr().(*net.TCPAddr).AddrPort()
	var set int
	nc, err := DialStream(ap, time.Second, func(fd int) { set = fd })
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c, ok := nc.(*FDConn)
	if !ok || c.file != nil || set != c.fd {
		t.Fatalf("DialStream = %T (file %v, setup saw %d of %d): want a raw FDConn, setup run on its socket", nc, c.file, set, c.fd)
	}
	if v, err := unix.GetsockoptInt(c.fd, unix.IPPROTO_TCP, unix.TCP_NODELAY); err != nil || v == 0 {
		t.Errorf("TCP_NODELAY %d, %v", v, err)
	}
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if got, want := c.LocalAddr().String(), sc.RemoteAddr().String(); got != want {
		t.Errorf("LocalAddr %s, want %s", got, want)
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	if _, err := io.ReadFull(sc, b); err != nil || string(b) != "ping" {
		t.Fatalf("server read %q, %v", b, err)
	}

	// Refused: the error net's dialer gives.
	ln2, _ := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	closed := ln2.Addr().(*net.TCPAddr).AddrPort()
	ln2.Close()
	_, err = DialStream(closed, time.Second, nil)
	_, nerr := net.Dial("tcp", closed.String())
	if err == nil || nerr == nil || err.Error() != nerr.Error() || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("refused: %v; net's: %v", err, nerr)
	}
}

// TestDialStreamWaits connects to a listener whose accept queue is full:
// the kernel drops the SYN, the connect stays under way, and DialStream
// waits for it in the netpoller: until its timeout, or until a SYN sent
// again is taken once the queue has room.
func TestDialStreamWaits(t *testing.T) {
	lfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(lfd)
	if err := unix.Bind(lfd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(lfd, 0); err != nil { // room for one
		t.Fatal(err)
	}
	sa, _ := unix.Getsockname(lfd)
	ap := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*unix.SockaddrInet4).Port))
	first, err := net.Dial("tcp", ap.String()) // fills the queue
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()

	_, err = DialStream(ap, 200*time.Millisecond, nil)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("DialStream to a full queue = %v, want a timeout", err)
	}

	res := make(chan error, 1)
	var got net.Conn
	go func() {
		var err error
		got, err = DialStream(ap, 10*time.Second, nil)
		res <- err
	}()
	time.Sleep(100 * time.Millisecond)
	nfd, _, err := unix.Accept(lfd) // room again: the SYN sent again (after 1 s) is taken
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(nfd)
	select {
	case err := <-res:
		if err != nil {
			t.Fatal(err)
		}
		defer got.Close()
		if got.(*FDConn).file == nil {
			t.Error("a connect that had to wait did not go through the netpoller")
		}
	case <-time.After(15 * time.Second):
		t.Fatal("DialStream did not return")
	}
}

func TestFDConnTCPConn(t *testing.T) {
	ln, fd := fdListen(t)
	cl := fdDial(t, ln)
	c := fdAccept(t, fd, nil)
	tc, err := c.TCPConn()
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("the FDConn after TCPConn: Read = %v, want net.ErrClosed", err)
	}
	cl.Write([]byte("moved"))
	b := make([]byte, 5)
	tc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(tc, b); err != nil || string(b) != "moved" {
		t.Fatalf("TCPConn read %q, %v", b, err)
	}
	if got, want := tc.RemoteAddr().String(), cl.LocalAddr().String(); got != want {
		t.Errorf("RemoteAddr %s, want %s", got, want)
	}
}

// selfConnected finds a socket connected to itself (what a connect to a
// port in the ephemeral range with no server can make), and only that.
func TestSelfConnected(t *testing.T) {
	lo, hi := ephemeralPorts()
	var c *FDConn
	var port int
	for p := lo + 7919; p < hi && c == nil; p += 7919 { // a free port in the range
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		sa := &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: p}
		if unix.Bind(fd, sa) != nil || unix.Connect(fd, sa) != nil { // simultaneous open with itself
			unix.Close(fd)
			continue
		}
		c, port = NewFDConn(fd, nil, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p}), p
	}
	if c == nil {
		t.Fatal("no socket could connect to itself")
	}
	defer c.Close()
	self := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(port))
	if !selfConnected(c, self) {
		t.Error("a socket connected to itself was not found")
	}
	// A socket connected to a listener on an ephemeral port is not.
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ap := ln.Addr().(*net.TCPAddr).AddrPort()
	nc, err := dialStreamOnce(ap, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if selfConnected(nc, ap) {
		t.Error("a connection to a listener counted as a self-connect")
	}
}
