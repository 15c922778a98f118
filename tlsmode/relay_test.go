//go:build linux

package tlsmode

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// The relay's tests run real sockets on 127.0.0.1: a test client, the
// relay in the middle and a test server. Every wait is bounded by
// rlWaitLong (pipe_test.go); nothing asserts a duration.

// rlEnd is what the relay's onEnd reported.
type rlEnd struct {
	up, down int64
	reason   string
}

// rlTestStream is one relayed stream: client and server are the test's
// ends, relay the relay serving it (its own, so its counters are this
// stream's), ended receives onEnd's report.
type rlTestStream struct {
	client, server *net.TCPConn
	c              *Conn
	relay          *rlRelay
	rc             *rlConn
	ended          chan rlEnd
}

// rlTestRelay starts a relay of n loops, with its system calls changed by
// sys when not nil, and stops it when the test ends (after the test's
// own cleanups registered later, such as closing its peers).
func rlTestRelay(t testing.TB, n int, sys func(*rlSys)) *rlRelay {
	t.Helper()
	relay, err := rlNewRelay(n)
	if err != nil {
		t.Fatal(err)
	}
	if sys != nil {
		// Before any stream: the loops read sys only when serving one
		// (the command queue's lock orders this write before).
		for _, l := range relay.loops {
			sys(&l.sys)
		}
	}
	t.Cleanup(relay.stop)
	return relay
}

// rlNewStream connects client -> relay -> server; on a relay of its own
// (stopped when the test ends) when relay is nil.
func rlNewStream(t testing.TB, relay *rlRelay) *rlTestStream {
	t.Helper()
	if relay == nil {
		relay = rlTestRelay(t, 1, nil)
	}
	client, edgeClient := tcpPair(t)
	edgeServer, server := tcpPair(t)
	s := &rlTestStream{client: client, server: server, c: &Conn{Conn: edgeClient}, relay: relay, ended: make(chan rlEnd, 1)}
	s.rc = relay.start(s.c, edgeServer, 0, func(up, down int64, reason string) { s.ended <- rlEnd{up, down, reason} })
	if s.rc == nil {
		t.Fatal("the relay did not take the stream")
	}
	t.Cleanup(func() {
		client.Close()
		server.Close()
	})
	return s
}

// wait returns onEnd's report, failing when it does not come.
func (s *rlTestStream) wait(t testing.TB) rlEnd {
	t.Helper()
	select {
	case e := <-s.ended:
		return e
	case <-time.After(rlWaitLong):
		t.Fatal("the relay did not end the stream")
		return rlEnd{}
	}
}

// rlReadN reads exactly n bytes from c and returns their SHA-256.
func rlReadN(c net.Conn, n int64) ([]byte, error) {
	_ = c.SetReadDeadline(time.Now().Add(2 * rlWaitLong))
	h := sha256.New()
	if _, err := io.CopyN(h, c, n); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// rlExpectEOF reads c to its end and fails unless it ends cleanly with
// nothing more.
func rlExpectEOF(t *testing.T, c net.Conn, who string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(rlWaitLong))
	b, err := io.ReadAll(c)
	if err != nil || len(b) != 0 {
		t.Errorf("%s: got %d bytes, %v; want EOF", who, len(b), err)
	}
}

// Small messages both ways, one round trip at a time: each arrives whole
// and unchanged, the counts are exact, and the client's close ends the
// stream ("client closed") once the server closes too.
func TestRelayEcho(t *testing.T) {
	t.Parallel()
	s := rlNewStream(t, nil)
	go func() { // the server echoes until EOF, then closes
		_, _ = io.Copy(s.server, s.server)
		s.server.Close()
	}()
	var sent int64
	buf := make([]byte, 4096)
	for i := range 200 {
		msg := bytes.Repeat([]byte{byte(i)}, 1+i*13%3000)
		if _, err := s.client.Write(msg); err != nil {
			t.Fatal(err)
		}
		_ = s.client.SetReadDeadline(time.Now().Add(rlWaitLong))
		if _, err := io.ReadFull(s.client, buf[:len(msg)]); err != nil {
			t.Fatalf("round trip %d: %v", i, err)
		}
		if !bytes.Equal(buf[:len(msg)], msg) {
			t.Fatalf("round trip %d: the echo differs", i)
		}
		sent += int64(len(msg))
	}
	if up, down := rlLiveBytes(s.c, sent, sent); up != sent || down != sent {
		t.Errorf("LiveBytes: got up=%d down=%d; want %d both", up, down, sent)
	}
	_ = s.client.CloseWrite()
	rlExpectEOF(t, s.client, "client")
	if e := s.wait(t); e != (rlEnd{sent, sent, "client closed"}) {
		t.Errorf("onEnd: got %+v; want %+v", e, rlEnd{sent, sent, "client closed"})
	}
	if n, held, pipes := s.relay.stats(); n != 0 || held != 0 || pipes != 0 {
		t.Errorf("relay after the end: %d streams, %d bytes held, %d pipes; want 0 0 0", n, held, pipes)
	}
}

// 64 MiB each way at the same time, checked by hash; the bulk goes through
// splice (pipes were used), and the relay holds nothing afterwards.
func TestRelayBulk(t *testing.T) {
	t.Parallel()
	s := rlNewStream(t, nil)
	const size = 64 << 20
	up, down := make([]byte, size), make([]byte, size)
	_, _ = rand.Read(up)
	_, _ = rand.Read(down)
	wantUp, wantDown := sha256.Sum256(up), sha256.Sum256(down)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	wg.Go(func() {
		if _, err := s.client.Write(up); err != nil {
			errs <- err
		}
		_ = s.client.CloseWrite()
	})
	wg.Go(func() {
		if _, err := s.server.Write(down); err != nil {
			errs <- err
		}
		_ = s.server.CloseWrite()
	})
	var gotUp, gotDown []byte
	wg.Go(func() {
		var err error
		if gotUp, err = rlReadN(s.server, size); err != nil {
			errs <- err
		}
	})
	wg.Go(func() {
		var err error
		if gotDown, err = rlReadN(s.client, size); err != nil {
			errs <- err
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if !bytes.Equal(gotUp, wantUp[:]) || !bytes.Equal(gotDown, wantDown[:]) {
		t.Fatal("the bytes came through changed")
	}
	rlExpectEOF(t, s.client, "client")
	rlExpectEOF(t, s.server, "server")
	e := s.wait(t)
	if e.up != size || e.down != size || (e.reason != "client closed" && e.reason != "server closed") {
		t.Errorf("onEnd: got %+v; want %d both ways, client or server closed", e, size)
	}
	for d := range s.rc.dir {
		if !s.rc.dir[d].bulk {
			t.Errorf("direction %d never switched to splice", d)
		}
	}
	if n, held, pipes := s.relay.stats(); n != 0 || held != 0 || pipes != 0 {
		t.Errorf("relay after the end: %d streams, %d bytes held, %d pipes; want 0 0 0", n, held, pipes)
	}
}

// Half-close each way: the side that ends first sends a FIN through the
// relay, the other direction goes on, and the reason names who closed
// first.
func TestRelayHalfClose(t *testing.T) {
	t.Parallel()
	for _, first := range []string{"client", "server"} {
		t.Run(first, func(t *testing.T) {
			t.Parallel()
			s := rlNewStream(t, nil)
			closer, other := s.client, s.server
			if first == "server" {
				closer, other = s.server, s.client
			}
			req := bytes.Repeat([]byte("q"), 100_000)
			if _, err := closer.Write(req); err != nil {
				t.Fatal(err)
			}
			_ = closer.CloseWrite()
			_ = other.SetReadDeadline(time.Now().Add(rlWaitLong))
			got, err := io.ReadAll(other) // ends at the FIN
			if err != nil || !bytes.Equal(got, req) {
				t.Fatalf("%d bytes, %v; want %d bytes then EOF", len(got), err, len(req))
			}
			resp := bytes.Repeat([]byte("a"), 300_000)
			if _, err := other.Write(resp); err != nil {
				t.Fatalf("write after the half-close: %v", err)
			}
			other.Close()
			_ = closer.SetReadDeadline(time.Now().Add(rlWaitLong))
			back, err := io.ReadAll(closer)
			if err != nil || !bytes.Equal(back, resp) {
				t.Fatalf("after the half-close: %d bytes, %v; want %d bytes then EOF", len(back), err, len(resp))
			}
			upN, downN := int64(len(req)), int64(len(resp))
			if first == "server" {
				upN, downN = downN, upN
			}
			want := rlEnd{upN, downN, first + " closed"}
			if e := s.wait(t); e != want {
				t.Errorf("onEnd: got %+v; want %+v", e, want)
			}
		})
	}
}

// A reset on either side ends both at once: the reason says who reset,
// and the other peer's socket is closed.
func TestRelayReset(t *testing.T) {
	t.Parallel()
	for _, who := range []string{"client", "server"} {
		t.Run(who, func(t *testing.T) {
			t.Parallel()
			s := rlNewStream(t, nil)
			resetter, other := s.client, s.server
			if who == "server" {
				resetter, other = s.server, s.client
			}
			// Some bytes first, so the stream is in full flow.
			if _, err := resetter.Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			if _, err := rlReadN(other, 5); err != nil {
				t.Fatal(err)
			}
			_ = resetter.SetLinger(0)
			resetter.Close() // RST
			if e := s.wait(t); e.reason != who+" reset" {
				t.Errorf("reason: got %q; want %q", e.reason, who+" reset")
			}
			_ = other.SetReadDeadline(time.Now().Add(rlWaitLong))
			if n, err := other.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("the other peer's read: got %d bytes, %v; want the connection closed", n, err)
			}
		})
	}
}

// A server that stops reading: the relay stops reading the client, holds
// at most one pipe (or buffer) per direction, and the client's writes
// block; when the server reads again every byte arrives.
func TestRelayBackpressure(t *testing.T) {
	t.Parallel()
	s := rlNewStream(t, nil)
	const size = 64 << 20
	payload := make([]byte, size)
	_, _ = rand.Read(payload)
	want := sha256.Sum256(payload)
	var written syncCounter
	werr := make(chan error, 1)
	go func() {
		for off := 0; off < size; off += 64 << 10 {
			n, err := s.client.Write(payload[off : off+64<<10])
			written.add(int64(n))
			if err != nil {
				werr <- err
				return
			}
		}
		werr <- nil
	}()
	// Wait (bounded) until the writer has stalled: no progress over 20
	// polls in a row.
	deadline := time.Now().Add(rlWaitLong)
	last, still := int64(-1), 0
	for still < 20 {
		if time.Now().After(deadline) {
			t.Fatalf("the client never stalled (wrote %d of %d)", written.get(), size)
		}
		time.Sleep(50 * time.Millisecond)
		if w := written.get(); w == last {
			still++
		} else {
			last, still = w, 0
		}
	}
	if last >= size {
		t.Fatalf("the client wrote all %d bytes with nobody reading", size)
	}
	_, held, pipes := s.relay.stats()
	bound := int64(rlPipeSize) // one direction in flow: one pipe at most
	if held > bound || pipes > 1 {
		t.Errorf("while the server does not read: the relay holds %d bytes in %d pipes; want at most %d in 1", held, pipes, bound)
	}
	t.Logf("stalled after the client wrote %d bytes; the relay holds %d bytes in %d pipes", last, held, pipes)
	got, err := rlReadN(s.server, size)
	if err != nil || !bytes.Equal(got, want[:]) {
		t.Fatalf("reading after the stall: %v, hash equal %v", err, bytes.Equal(got, want[:]))
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
}

type syncCounter struct {
	mu sync.Mutex
	n  int64
}

func (c *syncCounter) add(n int64) { c.mu.Lock(); c.n += n; c.mu.Unlock() }
func (c *syncCounter) get() int64  { c.mu.Lock(); defer c.mu.Unlock(); return c.n }

// Many idle streams on one loop: each still answers, and closing them all
// leaves the relay empty.
func TestRelayManyIdle(t *testing.T) {
	t.Parallel()
	relay := rlTestRelay(t, 2, nil)
	const n = 300
	streams := make([]*rlTestStream, n)
	for i := range streams {
		streams[i] = rlNewStream(t, relay)
	}
	if got := rlStreams(relay, n); got != n {
		t.Fatalf("streams registered: got %d; want %d", got, n)
	}
	for i, s := range streams {
		msg := []byte{byte(i), byte(i >> 8)}
		if _, err := s.client.Write(msg); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 2)
		_ = s.server.SetReadDeadline(time.Now().Add(rlWaitLong))
		if _, err := io.ReadFull(s.server, got); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("stream %d: got %x, %v; want %x", i, got, err, msg)
		}
	}
	for _, s := range streams {
		s.client.Close()
		s.server.Close()
	}
	for i, s := range streams {
		if e := s.wait(t); e.up != 2 || e.down != 0 {
			t.Errorf("stream %d: got %+v; want up=2 down=0", i, e)
		}
	}
	if got, held, pipes := relay.stats(); got != 0 || held != 0 || pipes != 0 {
		t.Errorf("after closing all: %d streams, %d held, %d pipes; want 0 0 0", got, held, pipes)
	}
}

// rlLiveBytes polls c.LiveBytes (bounded) until it says up and down: the
// loop counts a write just after the peer may have read it.
func rlLiveBytes(c *Conn, up, down int64) (int64, int64) {
	deadline := time.Now().Add(rlWaitLong)
	for {
		u, d := c.LiveBytes()
		if (u == up && d == down) || time.Now().After(deadline) {
			return u, d
		}
		time.Sleep(time.Millisecond)
	}
}

// rlStreams polls (bounded) until relay has n streams registered and
// returns how many it has: adding is a command the loop runs soon after.
func rlStreams(relay *rlRelay, n int64) int64 {
	deadline := time.Now().Add(rlWaitLong)
	for {
		got, _, _ := relay.stats()
		if got == n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(time.Millisecond)
	}
}

// A direction whose bytes come in small pieces (no read ever fills the
// buffer) splices once rlBulkAfter bytes went through the buffer, so user
// space copies at most that much of a long transfer.
func TestRelaySmallPiecesSwitchToSplice(t *testing.T) {
	t.Parallel()
	s := rlNewStream(t, nil)
	piece := make([]byte, 1<<10)
	got := make([]byte, len(piece))
	const pieces = 2 * rlBulkAfter / (1 << 10) // twice the threshold, one piece at a time
	for i := range pieces {
		if _, err := s.client.Write(piece); err != nil {
			t.Fatalf("piece %d: %v", i, err)
		}
		if _, err := io.ReadFull(s.server, got); err != nil {
			t.Fatalf("piece %d: %v", i, err)
		}
	}
	_ = s.client.CloseWrite()
	_ = s.server.CloseWrite()
	e := s.wait(t)
	if e.up != pieces<<10 {
		t.Errorf("up %d bytes; want %d", e.up, pieces<<10)
	}
	dir := &s.rc.dir[0] // the stream has ended: its state is still
	if !dir.bulk {
		t.Errorf("after %d bytes in 1 KiB pieces the direction never switched to splice", pieces<<10)
	}
	if dir.copied > rlBulkAfter+rlBufSize {
		t.Errorf("%d bytes went through the buffer; want at most %d", dir.copied, rlBulkAfter+rlBufSize)
	}
}
