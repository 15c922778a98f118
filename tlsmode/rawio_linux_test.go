package tlsmode

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// rawOutcome is what a read or write through a conn came to, in the terms
// callers test errors by.
type rawOutcome struct {
	n                           int
	eof, timeout, closed, reset bool
	op                          string
	opError                     bool
}

func rawOutcomeOf(n int, err error) rawOutcome {
	o := rawOutcome{n: n, eof: err == io.EOF, closed: errors.Is(err, net.ErrClosed),
		reset: errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)}
	var ne net.Error
	o.timeout = errors.As(err, &ne) && ne.Timeout() && errors.Is(err, os.ErrDeadlineExceeded)
	var oe *net.OpError
	if errors.As(err, &oe) {
		o.opError, o.op = true, oe.Op
	}
	return o
}

// A conn read and written through rawIO (rawTCPOf) does what net's own
// Read and Write do, case by case, run on both: bytes, EOF, a deadline, a
// closed conn, a reset; and a write larger than the socket buffers
// completes once the peer reads (EAGAIN, then the netpoller).
func TestRawTCPAsNet(t *testing.T) {
	cases := []struct {
		name string
		run  func(t *testing.T, c net.Conn, peer *net.TCPConn) rawOutcome
	}{
		{"read data", func(t *testing.T, c net.Conn, peer *net.TCPConn) rawOutcome {
			peer.Write([]byte("hello"))
			buf := make([]byte, 16)
			n, err := io.ReadAtLeast(c, buf, 5)
			if string(buf[:n]) != "hello" {
				t.Errorf("read %q", buf[:n])
			}
			return rawOutcomeOf(n, err)
		}},
		{"read EOF", func(t *testing.T, c net.Conn, peer *net.TCPConn) rawOutcome {
			peer.Write([]byte("x"))
			peer.Close()
			b, err := io.ReadAll(c)
			if string(b) != "x" || err != nil {
				t.Errorf("ReadAll: %q, %v", b, err)
			}
			return rawOutcomeOf(c.Read(make([]byte, 4)))
		}},
		{"read deadline", func(t *testing.T, c net.Conn, peer *net.TCPConn) rawOutcome {
			c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			return rawOutcomeOf(c.Read(make([]byte, 4)))
		}},
		{"read closed", func(t *testing.T, c net.Conn, peer *net.TCPConn) rawOutcome {
			c.Close()
			return rawOutcomeOf(c.Read(make([]byte, 4)))
		}},
		{"read reset", func(t *testing.T, c net.Conn, peer *net.TCPConn) rawOutcome {
			peer.SetLinger(0)
			peer.Close()
			time.Sleep(20 * time.Millisecond)
			return rawOutcomeOf(c.Read(make([]byte, 4)))
		}},
		{"read empty", func(t *testing.T, c net.Conn, peer *net.TCPConn) rawOutcome {
			return rawOutcomeOf(c.Read(nil))
		}},
		{"read empty closed", func(t *testing.T, c net.Conn, peer *net.TCPConn) rawOutcome {
			c.Close()
			return rawOutcomeOf(c.Read(nil))
		}},
		{"write waits for the peer", func(t *testing.T, c net.Conn, peer *net.TCPConn) rawOutcome {
			data := bytes.Repeat([]byte("0123456789abcdef"), 1<<19) // 8 MiB: far beyond the buffers
			got := make(chan []byte)
			peer.SetReadDeadline(time.Now().Add(10 * time.Second)) // a write that gave up fails the test, not hangs it
			go func() {
				time.Sleep(50 * time.Millisecond) // the writer meets a full socket first
				b, _ := io.ReadAll(io.LimitReader(peer, int64(len(data))))
				got <- b
			}()
			n, err := c.Write(data)
			if b := <-got; !bytes.Equal(b, data) {
				t.Errorf("the peer read %d bytes, not the %d written", len(b), len(data))
			}
			return rawOutcomeOf(n, err)
		}},
		{"write deadline", func(t *testing.T, c net.Conn, peer *net.TCPConn) rawOutcome {
			big := make([]byte, 64<<20) // the peer never reads
			c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
			_, err := c.Write(big)
			return rawOutcomeOf(0, err) // how much went depends on the buffers and the clock
		}},
		{"write closed", func(t *testing.T, c net.Conn, peer *net.TCPConn) rawOutcome {
			c.Close()
			return rawOutcomeOf(c.Write([]byte("x")))
		}},
		{"write reset", func(t *testing.T, c net.Conn, peer *net.TCPConn) rawOutcome {
			peer.SetLinger(0)
			peer.Close()
			time.Sleep(20 * time.Millisecond)
			var err error
			for range 3 { // the first write may be taken before the reset is seen
				if _, err = c.Write([]byte("x")); err != nil {
					break
				}
			}
			return rawOutcomeOf(0, err)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got [2]rawOutcome
			for i, wrap := range []func(net.Conn) net.Conn{func(c net.Conn) net.Conn { return c }, rawTCPOf} {
				a, b := tcpPair(t)
				c := wrap(a)
				if _, raw := c.(*rawTCP); raw != (i == 1) {
					t.Fatalf("rawTCPOf did not wrap a TCP conn")
				}
				got[i] = tc.run(t, c, b)
				a.Close()
				b.Close()
			}
			if got[1] != got[0] {
				t.Errorf("through rawIO %+v, through net %+v", got[1], got[0])
			}
		})
	}
}

// The client socket of a terminated connection (Conn.counted), the
// ClientHello's reader (RawReader) and the passthrough hello's write
// (rawWriteAll) take the raw path for a TCP conn, and net's for another.
func TestRawPathsTaken(t *testing.T) {
	a, b := tcpPair(t)
	defer a.Close()
	defer b.Close()
	c := &Conn{Conn: a}
	if cc := c.counted(0).(*countingConn); !isRawTCP(cc.rw) {
		t.Error("counted: the client socket is read and written through net, not rawIO")
	}
	if _, ok := RawReader(a).(rawReader); !ok {
		t.Errorf("RawReader of a TCP conn is %T, not rawReader", RawReader(a))
	}
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	if RawReader(p1) != io.Reader(p1) {
		t.Error("RawReader of a non-TCP conn is not the conn itself")
	}
	if _, err := rawWriteAll(a, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(b, buf); err != nil || string(buf) != "hello" {
		t.Errorf("rawWriteAll: the peer read %q, %v", buf, err)
	}
	r, x := rawTCPOf(a), []byte("x")
	if n := testing.AllocsPerRun(100, func() {
		r.Write(x)
		io.ReadFull(b, buf[:1])
		b.Write(x)
		r.Read(buf[:1])
	}); n > rawAllowedAllocs(2) {
		// With a closure per call it was 6.
		t.Errorf("a raw write and read allocate %.0f times", n)
	}
}

func isRawTCP(rw io.ReadWriter) bool {
	_, ok := rw.(*rawTCP)
	return ok
}

// upIdleClosed tells an idle server connection from one the server
// closed, reset or wrote to, on a plain TCP conn and on the rawTCP the
// forward dials, without allocating on the rawTCP.
func TestUpIdleClosedRaw(t *testing.T) {
	for _, wrap := range []func(net.Conn) net.Conn{func(c net.Conn) net.Conn { return c }, rawTCPOf} {
		for _, tc := range []struct {
			name   string
			server func(*net.TCPConn)
			want   bool
		}{
			{"idle", func(*net.TCPConn) {}, false},
			{"wrote", func(s *net.TCPConn) { s.Write([]byte("HTTP/1.1 408 Request Timeout\r\n\r\n")) }, true},
			{"closed", func(s *net.TCPConn) { s.Close() }, true},
			{"reset", func(s *net.TCPConn) { s.SetLinger(0); s.Close() }, true},
		} {
			a, b := tcpPair(t)
			c := wrap(a)
			tc.server(b)
			got := upIdleClosed(c)
			for end := time.Now().Add(rlWaitLong); got != tc.want && tc.want && time.Now().Before(end); got = upIdleClosed(c) {
				time.Sleep(time.Millisecond) // the FIN or bytes are on their way
			}
			if got != tc.want {
				t.Errorf("%T %s: upIdleClosed = %v, want %v", c, tc.name, got, tc.want)
			}
			if _, raw := c.(*rawTCP); raw && tc.name == "idle" {
				if n := testing.AllocsPerRun(100, func() { upIdleClosed(c) }); n > rawAllowedAllocs(1) {
					t.Errorf("upIdleClosed on a rawTCP allocates %.0f times a call", n)
				}
			}
			a.Close()
			b.Close()
		}
	}
}

// rawAllowedAllocs is what a path of pooled raw ops may allocate a run: 0,
// or under -race, where sync.Pool drops a quarter of what it is given back
// (each op made again costs 4 allocations), the expected figure (2 for two
// ops a run, 1 for one; failing takes 4 to 6 standard deviations more).
func rawAllowedAllocs(underRace float64) float64 {
	if raceOn {
		return underRace
	}
	return 0
}
