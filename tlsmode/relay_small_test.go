//go:build linux

package tlsmode

import (
	"bytes"
	"io"
	"sync/atomic"
	"testing"
	"time"
)

// rlCountSplices gives a test relay whose successful splice calls are
// counted in n.
func rlCountSplices(t *testing.T, n *atomic.Int64) *rlRelay {
	return rlTestRelay(t, 1, func(sys *rlSys) {
		sys.splice = func(rfd, wfd, k int) (int, error) {
			m, err := rlSplice(rfd, wfd, k)
			if m > 0 {
				n.Add(1)
			}
			return m, err
		}
	})
}

// rlEchoRounds sends rounds messages of size bytes from the client through
// the relay to a server that echoes them, and reads each echo back.
func rlEchoRounds(t *testing.T, s *rlTestStream, rounds, size int) {
	t.Helper()
	msg := bytes.Repeat([]byte{'m'}, size)
	got := make([]byte, size)
	for i := range rounds {
		if _, err := s.client.Write(msg); err != nil {
			t.Fatalf("round trip %d: %v", i, err)
		}
		_ = s.client.SetReadDeadline(time.Now().Add(rlWaitLong))
		if _, err := io.ReadFull(s.client, got); err != nil {
			t.Fatalf("round trip %d: %v", i, err)
		}
	}
}

// rlServeEcho makes the test stream's server echo until EOF, then close.
func rlServeEcho(s *rlTestStream) {
	go func() {
		_, _ = io.Copy(s.server, s.server)
		s.server.Close()
	}()
}

// A long-lived stream of small messages (a keep-alive API, a WebSocket)
// stays on the buffer path however many bytes it moves: one read and one
// write a message, never splice (which costs three calls a message).
func TestRelaySmallMessagesNeverSplice(t *testing.T) {
	t.Parallel()
	var splices atomic.Int64
	s := rlNewStream(t, rlCountSplices(t, &splices))
	rlServeEcho(s)
	const rounds, size = 2000, 100 // 200 KB each way: three times rlBulkAfter
	rlEchoRounds(t, s, rounds, size)
	_ = s.client.CloseWrite()
	rlExpectEOF(t, s.client, "client")
	if e := s.wait(t); e.up != rounds*size || e.down != rounds*size {
		t.Errorf("onEnd: %+v; want %d bytes each way", e, rounds*size)
	}
	if n := splices.Load(); n != 0 {
		t.Errorf("%d splice calls moved bytes of %d-byte messages; want none (the buffer path)", n, size)
	}
}

// A stream that moved bulk and then goes on with small messages leaves the
// splice path after its first small burst each way.
func TestRelayBulkThenSmallMessagesLeaveSplice(t *testing.T) {
	t.Parallel()
	var splices atomic.Int64
	s := rlNewStream(t, rlCountSplices(t, &splices))
	rlServeEcho(s)
	rlEchoRounds(t, s, 1, 1<<20) // 1 MiB each way: bulk, spliced
	if splices.Load() == 0 {
		t.Fatal("1 MiB each way went through no splice; want the bulk spliced")
	}
	before := splices.Load()
	const rounds = 200
	rlEchoRounds(t, s, rounds, 100)
	// The first small burst each way may still be spliced (in and out).
	if n := splices.Load() - before; n > 4 {
		t.Errorf("%d splice calls moved bytes of %d small messages after the bulk; want at most 4 (the first burst each way)", n, rounds)
	}
	_ = s.client.CloseWrite()
	rlExpectEOF(t, s.client, "client")
	s.wait(t)
	for d := range s.rc.dir { // the stream has ended: its state stays
		if s.rc.dir[d].bulk {
			t.Errorf("direction %d still splicing after %d small messages", d, rounds)
		}
	}
}

// A bulk stream whose bytes reach the relay one TLS record (16 KiB of
// data: 16,406 bytes on the wire) per wake-up, as from a sender the relay
// keeps pace with: 4 MiB each way. Each record's read fills the 16 KiB
// buffer (bulk), then the splice finds the record's last 22 bytes and
// EAGAIN: a "small burst". The stream must still splice its bulk: at most
// rlBulkAfter + one buffer a direction copied through user space.
func TestRelayRecordPacedBulkSplices(t *testing.T) {
	t.Parallel()
	var spliced atomic.Int64 // bytes moved by splice, in and out
	s := rlNewStream(t, rlTestRelay(t, 1, func(sys *rlSys) {
		sys.splice = func(rfd, wfd, k int) (int, error) {
			m, err := rlSplice(rfd, wfd, k)
			if m > 0 {
				spliced.Add(int64(m))
			}
			return m, err
		}
	}))
	rlServeEcho(s)
	const rounds, size = 256, 16406
	rlEchoRounds(t, s, rounds, size)
	_ = s.client.CloseWrite()
	rlExpectEOF(t, s.client, "client")
	s.wait(t)
	total := int64(2 * 2 * rounds * size) // each way, in and out
	unspliced := int64(2 * 2 * (rlBulkAfter + rlBufSize))
	if got := spliced.Load(); got < total-unspliced {
		t.Errorf("splice moved %d of %d bytes (in and out, both ways); want at least %d: the bulk went through the buffer", got, total, total-unspliced)
	}
}
