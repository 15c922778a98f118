package tlsmode

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// wsFrame builds one WebSocket frame (RFC 6455 §5.2) with FIN set: the
// shortest length encoding for the payload (7-bit up to 125, 16-bit up to
// 65535, 64-bit beyond) and, when mask is not nil, the mask bit, the key
// and the masked payload.
func wsFrame(opcode byte, payload []byte, mask []byte) []byte {
	f := []byte{0x80 | opcode}
	var maskBit byte
	if mask != nil {
		maskBit = 0x80
	}
	switch n := len(payload); {
	case n <= 125:
		f = append(f, maskBit|byte(n))
	case n <= 0xffff:
		f = append(f, maskBit|126)
		f = binary.BigEndian.AppendUint16(f, uint16(n))
	default:
		f = append(f, maskBit|127)
		f = binary.BigEndian.AppendUint64(f, uint64(n))
	}
	if mask == nil {
		return append(f, payload...)
	}
	f = append(f, mask...)
	for i, b := range payload {
		f = append(f, b^mask[i%4])
	}
	return f
}

// wsPayload is n bytes of a repeating pattern that contains bytes looking
// like frame headers (0x88, 0x81, 0xff), so a tracker that resyncs on
// payload bytes goes wrong.
func wsPayload(n int) []byte {
	pat := []byte{0x88, 0x81, 0xff, 0x7e, 0x7f, 'x', 0x00}
	p := make([]byte, n)
	for i := range p {
		p[i] = pat[i%len(pat)]
	}
	return p
}

// wsStream is a sequence of frames with the offsets where each ends.
type wsStream struct {
	data   []byte
	ends   map[int]bool // offsets just after a frame (frame boundaries)
	closes map[int]bool // offsets just after a close frame
}

func newWSStream(frames ...[]byte) wsStream {
	s := wsStream{ends: map[int]bool{0: true}, closes: map[int]bool{}}
	for _, f := range frames {
		s.data = append(s.data, f...)
		s.ends[len(s.data)] = true
		if f[0]&0x0f == 8 {
			s.closes[len(s.data)] = true
		}
	}
	return s
}

// Every length encoding, masked (client to server) and unmasked (server to
// client), with close frames among data frames; fed byte by byte, the
// tracker must be at a boundary exactly between frames and report a close
// exactly on the byte that ends a close frame.
func TestFrameTrackerByteByByte(t *testing.T) {
	t.Parallel()
	key := []byte{0x37, 0xfa, 0x21, 0x3d}
	lengths := []int{0, 1, 125, 126, 127, 1000, 0xffff, 0x10000, 70000}
	for _, mask := range [][]byte{nil, key} {
		for _, n := range lengths {
			name := fmt.Sprintf("len=%d/masked=%v", n, mask != nil)
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				s := newWSStream(
					wsFrame(0x2, wsPayload(n), mask),                     // binary of length n
					wsFrame(0x9, []byte("ping"), mask),                   // control frame
					wsFrame(0x8, closePayload(1000, "bye"), mask),        // close with a body
					wsFrame(0x1, wsPayload(n), mask),                     // text of length n again
					wsFrame(0x8, nil, mask),                              // close without a body
					wsFrame(0x0, wsPayload(min(n, 300)), mask),           // continuation
					wsFrame(0x8, closePayload(1001, "going away"), mask), // close last
				)
				nextEnd := make([]int, len(s.data)+1) // the first frame end at or after each offset
				for i, next := len(s.data), len(s.data); i >= 0; i-- {
					if s.ends[i] {
						next = i
					}
					nextEnd[i] = next
				}
				var f frameTracker
				if !f.atBoundary() {
					t.Fatalf("a new tracker: atBoundary() = false; want true")
				}
				closes := 0
				for i, b := range s.data {
					closed := f.feed([]byte{b})
					if f.broken {
						t.Fatalf("byte %d of %d: tracker broken on valid framing", i, len(s.data))
					}
					if closed != s.closes[i+1] {
						t.Fatalf("byte %d of %d: feed reported close %v; want %v", i, len(s.data), closed, s.closes[i+1])
					}
					if closed {
						closes++
					}
					if got, want := f.atBoundary(), s.ends[i+1]; got != want {
						t.Fatalf("after byte %d of %d: atBoundary() = %v; want %v", i, len(s.data), got, want)
					}
					// left never reaches past the frame's end, and is 0 only between frames.
					next := nextEnd[i+1]
					if k := f.left(); (k == 0) != f.atBoundary() || uint64(i+1)+k > uint64(next) {
						t.Fatalf("after byte %d of %d: left() = %d; the frame ends at %d", i, len(s.data), k, next)
					}
				}
				if closes != 3 {
					t.Errorf("close frames detected: got %d; want 3", closes)
				}
			})
		}
	}
}

// The same streams fed in chunks of many sizes (a chunk may hold several
// frames, or end inside a header or a length field): the close count and
// the final boundary agree with the byte-by-byte truth.
func TestFrameTrackerChunks(t *testing.T) {
	t.Parallel()
	key := []byte{0xde, 0xad, 0xbe, 0xef}
	for _, mask := range [][]byte{nil, key} {
		s := newWSStream(
			wsFrame(0x8, nil, mask),
			wsFrame(0x1, wsPayload(5), mask),
			wsFrame(0x2, wsPayload(125), mask),
			wsFrame(0x2, wsPayload(126), mask),
			wsFrame(0x8, closePayload(1001, "x"), mask),
			wsFrame(0x2, wsPayload(65535), mask),
			wsFrame(0x2, wsPayload(65536), mask),
			wsFrame(0x8, closePayload(1000, ""), mask),
			wsFrame(0xa, nil, mask),
		)
		for _, size := range []int{1, 2, 3, 4, 7, 9, 10, 13, 14, 125, 1024, 4096, 65537, len(s.data)} {
			t.Run(fmt.Sprintf("masked=%v/chunk=%d", mask != nil, size), func(t *testing.T) {
				var f frameTracker
				for off := 0; off < len(s.data); off += size {
					end := min(off+size, len(s.data))
					// Closes ending in (off, end] are what this chunk must report.
					want := false
					for i := off + 1; i <= end; i++ {
						want = want || s.closes[i]
					}
					if got := f.feed(s.data[off:end]); got != want {
						t.Fatalf("chunk [%d,%d): feed reported close %v; want %v", off, end, got, want)
					}
					if got, want := f.atBoundary(), s.ends[end]; got != want {
						t.Fatalf("after chunk [%d,%d): atBoundary() = %v; want %v", off, end, got, want)
					}
				}
				if f.broken {
					t.Errorf("tracker broken on valid framing")
				}
			})
		}
	}
}

// A 64-bit length with the most significant bit set is not WebSocket
// framing (RFC 6455 §5.2): the tracker stops following the stream rather
// than wait for 2^63 bytes, and reports no close afterwards.
func TestFrameTrackerBrokenLength(t *testing.T) {
	t.Parallel()
	bad := []byte{0x82, 127}
	bad = binary.BigEndian.AppendUint64(bad, 1<<63)
	var f frameTracker
	if f.feed(bad) {
		t.Errorf("feed of a bad length reported a close")
	}
	if !f.broken {
		t.Fatalf("broken = false after a 64-bit length with the top bit set; want true")
	}
	if f.feed(wsFrame(0x8, nil, nil)) {
		t.Errorf("a broken tracker reported a close")
	}
}

// closePayload is the body of a close frame: status, then reason.
func closePayload(status uint16, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, status), reason...)
}

// wsParsed is a frame read back from bytes.
type wsParsed struct {
	fin     bool
	opcode  byte
	masked  bool
	key     []byte
	payload []byte // unmasked
}

// wsParse reads exactly one frame from b, with its own code (not
// frameTracker's), so closeFrame is checked independently.
func wsParse(t *testing.T, b []byte) wsParsed {
	t.Helper()
	if len(b) < 2 {
		t.Fatalf("frame of %d bytes; want at least 2", len(b))
	}
	p := wsParsed{fin: b[0]&0x80 != 0, opcode: b[0] & 0x0f, masked: b[1]&0x80 != 0}
	if rsv := b[0] & 0x70; rsv != 0 {
		t.Errorf("RSV bits %#x set; want 0", rsv)
	}
	n, rest := uint64(b[1]&0x7f), b[2:]
	switch n {
	case 126:
		n, rest = uint64(binary.BigEndian.Uint16(rest)), rest[2:]
	case 127:
		n, rest = binary.BigEndian.Uint64(rest), rest[8:]
	}
	if p.masked {
		p.key, rest = rest[:4], rest[4:]
	}
	if uint64(len(rest)) != n {
		t.Fatalf("frame says %d payload bytes, %d follow", n, len(rest))
	}
	p.payload = bytes.Clone(rest)
	for i := range p.payload {
		if p.masked {
			p.payload[i] ^= p.key[i%4]
		}
	}
	return p
}

// closeFrame is a close frame 1001 with the reason, unmasked towards the
// client, masked towards the server (RFC 6455 §5.3: a client MUST mask),
// a control frame of at most 125 payload bytes (§5.5) whose reason is
// valid UTF-8 (§5.5.1).
func TestCloseFrame(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, reason, want string
	}{
		{"going away", "going away", "going away"},
		{"admin", "closed by the admin API", "closed by the admin API"},
		{"empty", "", ""},
		{"123 bytes", strings.Repeat("r", 123), strings.Repeat("r", 123)},
		{"too long", strings.Repeat("r", 200), strings.Repeat("r", 123)},
		// 2-byte runes: byte 123 falls inside the 62nd; cut before it.
		{"too long, UTF-8", strings.Repeat("é", 70), strings.Repeat("é", 61)},
	}
	for _, tc := range cases {
		for _, masked := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/masked=%v", tc.name, masked), func(t *testing.T) {
				t.Parallel()
				b := closeFrame(tc.reason, masked)
				p := wsParse(t, b)
				if !p.fin || p.opcode != 8 {
					t.Errorf("fin %v, opcode %d; want a final close frame (opcode 8)", p.fin, p.opcode)
				}
				if p.masked != masked {
					t.Errorf("masked: got %v; want %v", p.masked, masked)
				}
				if len(p.payload) > 125 {
					t.Errorf("payload of %d bytes; want at most 125 (control frame)", len(p.payload))
				}
				if len(p.payload) < 2 {
					t.Fatalf("payload %q: want a status code", p.payload)
				}
				if got := binary.BigEndian.Uint16(p.payload); got != 1001 {
					t.Errorf("status: got %d; want 1001", got)
				}
				reason := string(p.payload[2:])
				if !utf8.ValidString(reason) {
					t.Errorf("reason %q is not valid UTF-8", reason)
				}
				if reason != tc.want {
					t.Errorf("reason: got %q; want %q", reason, tc.want)
				}
				// The tracker of the stream it is put into sees it as a close.
				var f frameTracker
				if !f.feed(b) || !f.atBoundary() {
					t.Errorf("frameTracker on closeFrame: no close or not at a boundary")
				}
			})
		}
	}
	// Two masked frames use fresh keys (RFC 6455 §5.3: unpredictable).
	a, b := wsParse(t, closeFrame("x", true)), wsParse(t, closeFrame("x", true))
	c := wsParse(t, closeFrame("x", true))
	if bytes.Equal(a.key, b.key) && bytes.Equal(b.key, c.key) {
		t.Errorf("three masked close frames share the key %x; want a random key each", a.key)
	}
}

// streamConn is a server connection that sends an endless stream of
// frames, in reads that never end on a frame boundary (each stops one byte
// into the next frame), and honours read deadlines as a socket does: once
// passed, Read fails at once even with data waiting. What is written to it
// is kept.
type streamConn struct {
	net.Conn // nil: only the methods below are used
	frame    []byte

	mu       sync.Mutex
	off      int // bytes of the stream handed out
	deadline time.Time
	closed   bool
	written  []byte
}

func (s *streamConn) Read(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, net.ErrClosed
	}
	if !s.deadline.IsZero() && !time.Now().Before(s.deadline) {
		return 0, os.ErrDeadlineExceeded
	}
	// Chunks of one frame's length, shifted by one byte: [0,1), [1,1+L), ...
	L := len(s.frame)
	next := 1
	if s.off >= 1 {
		next = s.off + L - (s.off-1)%L
	}
	n := min(len(p), next-s.off)
	for i := range n {
		p[i] = s.frame[(s.off+i)%L]
	}
	s.off += n
	return n, nil
}

func (s *streamConn) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, net.ErrClosed
	}
	s.written = append(s.written, p...)
	return len(p), nil
}

func (s *streamConn) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return nil
}

func (s *streamConn) SetReadDeadline(t time.Time) error {
	s.mu.Lock()
	s.deadline = t
	s.mu.Unlock()
	return nil
}

func (s *streamConn) SetWriteDeadline(time.Time) error { return nil }

// nopConn stands for the client's socket.
type nopConn struct{ net.Conn }

func (nopConn) Close() error { return nil }

// A WebSocket whose server streams without pause is shut down: the client
// still gets a close frame 1001 right after a whole server frame (within
// the grace, not a cut connection), and the server gets a masked close
// frame 1001.
func TestUpgradedShutdownWhileServerStreams(t *testing.T) {
	t.Parallel()
	srv := &streamConn{frame: wsFrame(0x2, wsPayload(1000), nil)}
	released := make(chan struct{})
	u := &upgradedConn{rwc: srv, server: srv, client: nopConn{}, ws: true, release: func() { close(released) }}

	// The client's side: every byte through a tracker; only the tail kept.
	type result struct {
		total  int
		tail   []byte // the last bytes read
		f      frameTracker
		closed bool // a close frame ended in the last read
		err    error
	}
	done := make(chan *result, 1)
	started := make(chan struct{})
	var startOnce sync.Once
	go func() {
		r := &result{}
		buf := make([]byte, 32<<10)
		for {
			n, err := u.Read(buf)
			r.total += n
			if n > 0 {
				r.closed = r.f.feed(buf[:n])
				r.tail = append(r.tail, buf[:n]...)
				r.tail = r.tail[max(0, len(r.tail)-64):]
			}
			if r.total > 10*len(srv.frame) {
				startOnce.Do(func() { close(started) })
			}
			if err != nil {
				r.err = err
				done <- r
				return
			}
		}
	}()
	<-started
	u.shutdown("going away")

	var r *result
	select {
	case r = <-done:
	case <-time.After(CloseGrace + 2*time.Second):
		t.Fatalf("the reader did not end within %v of shutdown", CloseGrace+2*time.Second)
	}
	u.Close()
	<-released
	if r.err != io.EOF {
		t.Errorf("reader ended with %v; want io.EOF after the close frame", r.err)
	}
	want := closeFrame("going away", false)
	if !r.f.atBoundary() || !r.closed || !bytes.HasSuffix(r.tail, want) || (r.total-len(want))%len(srv.frame) != 0 {
		t.Fatalf("the client's stream (%d bytes) ends at a frame boundary %v, with a close frame %v, tail %x; want whole server frames of %d bytes, then %x",
			r.total, r.f.atBoundary(), r.closed, r.tail, len(srv.frame), want)
	}
	srv.mu.Lock()
	written := bytes.Clone(srv.written)
	srv.mu.Unlock()
	if w := wsParse(t, written); w.opcode != 8 || !w.masked || binary.BigEndian.Uint16(w.payload) != 1001 {
		t.Errorf("to the server: opcode %d, masked %v, payload %q; want a masked close 1001", w.opcode, w.masked, w.payload)
	}
}

// A WebSocket shut down while a client frame is half forwarded: the rest of
// that frame still reaches the server, then the close frame, so the
// server's stream is never cut inside a frame.
func TestUpgradedShutdownMidClientFrame(t *testing.T) {
	t.Parallel()
	srv := &streamConn{frame: wsFrame(0x2, wsPayload(10), nil)}
	u := &upgradedConn{rwc: srv, server: srv, client: nopConn{}, ws: true, release: func() {}}
	frame := wsFrame(0x2, wsPayload(100), []byte{1, 2, 3, 4})
	if _, err := u.Write(frame[:50]); err != nil {
		t.Fatal(err)
	}
	u.shutdown("going away")
	if _, err := u.Write(frame[50:]); err != nil {
		t.Fatal(err)
	}
	// What the client sends after our close is not the server's.
	if _, err := u.Write(wsFrame(0x1, []byte("late"), []byte{5, 6, 7, 8})); err != nil {
		t.Fatal(err)
	}
	srv.mu.Lock()
	written := bytes.Clone(srv.written)
	srv.mu.Unlock()
	if !bytes.HasPrefix(written, frame) {
		t.Fatalf("the server got %d bytes, not the client's whole %d-byte frame first", len(written), len(frame))
	}
	if w := wsParse(t, written[len(frame):]); w.opcode != 8 || !w.masked || binary.BigEndian.Uint16(w.payload) != 1001 {
		t.Errorf("after the client's frame: opcode %d, masked %v, payload %q; want a masked close 1001", w.opcode, w.masked, w.payload)
	}
	if n := len(written) - len(frame) - len(closeFrame("going away", true)); n != 0 {
		t.Errorf("the server got %d bytes after the close frame; want none", n)
	}
}
