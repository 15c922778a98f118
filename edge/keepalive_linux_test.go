package edge

import (
	"context"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// kaListen is a listener as the edge makes them (no keepalive of Go's on
// accepted connections).
func kaListen(t *testing.T) *net.TCPListener {
	t.Helper()
	ln, err := (&net.ListenConfig{KeepAlive: -1}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.(*net.TCPListener)
}

// kaAccept connects to ln and returns the accepted side.
func kaAccept(t *testing.T, ln *net.TCPListener) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	a, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// kaOptions reads a socket's SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL and
// TCP_KEEPCNT.
func kaOptions(t *testing.T, c *net.TCPConn) [4]int {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var got [4]int
	_ = raw.Control(func(fd uintptr) {
		for i, o := range [][2]int{{unix.SOL_SOCKET, unix.SO_KEEPALIVE}, {unix.IPPROTO_TCP, unix.TCP_KEEPIDLE},
			{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL}, {unix.IPPROTO_TCP, unix.TCP_KEEPCNT}} {
			got[i], _ = unix.GetsockoptInt(int(fd), o[0], o[1])
		}
	})
	return got
}

// Accepted connections carry tcp_keepalive from the listening socket (no
// setsockopt of their own), also after it changes (a reload) and when it
// is off; a connection whose options did not come with it gets them set.
func TestListenerKeepaliveInherited(t *testing.T) {
	ln := kaListen(t)
	var k lnKeepalive
	for _, tc := range []struct {
		d    time.Duration
		want [4]int
	}{
		{7 * time.Second, [4]int{1, 7, 7, 9}},
		{-1, [4]int{0}},
		{1500 * time.Millisecond, [4]int{1, 2, 2, 9}}, // whole seconds, rounded up
	} {
		k.set(ln, tc.d)
		a := kaAccept(t, ln)
		k.on(a, tc.d)
		if got := k.inherit.Load(); got != kaInherited {
			t.Errorf("tcp_keepalive %v: inherit state %d; want %d (inherited from the listener)", tc.d, got, kaInherited)
		}
		got := kaOptions(t, a)
		if tc.d < 0 {
			got = [4]int{got[0]}
		}
		if got != tc.want {
			t.Errorf("tcp_keepalive %v: accepted socket has keepalive, idle, interval, count %v; want %v", tc.d, got, tc.want)
		}
	}

	// A connection accepted under another value (a reload between its
	// accept and its state) gets its own set.
	k.set(ln, 7*time.Second)
	a := kaAccept(t, ln)
	k.on(a, 11*time.Second)
	if got, want := kaOptions(t, a), [4]int{1, 11, 11, 9}; got != want {
		t.Errorf("connection under 11s while the listener carries 7s: options %v; want %v", got, want)
	}

	// The kernel did not pass the options on (here: the listening socket
	// was changed behind set's back): each connection is found out and
	// set, and after kaMisses in a row every one is set without a check.
	k.set(ln, 5*time.Second)
	raw, _ := ln.SyscallConn()
	_ = raw.Control(func(fd uintptr) { _ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 99) })
	for i := range kaMisses + 1 {
		a := kaAccept(t, ln)
		k.on(a, 5*time.Second)
		if got, want := kaOptions(t, a), [4]int{1, 5, 5, 9}; got != want {
			t.Errorf("connection %d, options not inherited: %v; want %v", i, got, want)
		}
	}
	if got := k.inherit.Load(); got != kaPerConn {
		t.Errorf("inherit state %d after a connection without the options; want %d (per connection)", got, kaPerConn)
	}
}

// A client that connects between the listener's Listen and its first
// set (apply's steps 3 and 4), or sits in the accept queue across a reload
// that changes tcp_keepalive, is the first connection checked: it was made
// with the listening socket's old options. Its own keepalive is then set
// (correct), but the listener must not give up inheritance for good: a
// connection made after set carries the options and needs no setsockopt.
func TestListenerKeepaliveQueuedConnKeepsInheritance(t *testing.T) {
	ln := kaListen(t)
	var k lnKeepalive
	early, err := net.Dial("tcp", ln.Addr().String()) // queued before set
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { early.Close() })
	d := 15 * time.Second
	k.set(ln, d)
	a, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	k.on(a, d)
	if !keepaliveInherited(a, keepalive(d)) {
		t.Fatal("the queued connection did not get its keepalive set")
	}
	b := kaAccept(t, ln) // made after set: inherited
	k.on(b, d)
	if got := k.inherit.Load(); got != kaInherited {
		t.Errorf("after a connection made after set: inherit = %d; want kaInherited (%d): every later connection pays the setsockopt calls", got, kaInherited)
	}
}

// Connections to servers carry the backend's tcp_keepalive, set on the
// socket before it connects (serverDialer); off leaves the socket's own
// (none).
func TestServerDialerKeepalive(t *testing.T) {
	ln := kaListen(t)
	go func() { // accepts until the listener is closed (kaListen's cleanup), closing what it accepts
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	for _, tc := range []struct {
		name string
		cfg  time.Duration
		want [4]int
	}{
		{"on", 45 * time.Second, [4]int{1, 45, 45, 9}},
		{"default", 0, [4]int{1, int(DefaultTCPKeepalive / time.Second), int(DefaultTCPKeepalive / time.Second), 9}},
		{"off", -1, [4]int{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := serverDialer(time.Second, keepalive(tc.cfg), false)
			c, err := d.DialContext(context.Background(), "tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			got := kaOptions(t, c.(*net.TCPConn))
			if tc.want[0] == 0 {
				got = [4]int{got[0]} // the rest are the system's when off
			}
			if got != tc.want {
				t.Errorf("keepalive options (on, idle, interval, count) = %v, want %v", got, tc.want)
			}
		})
	}
}
