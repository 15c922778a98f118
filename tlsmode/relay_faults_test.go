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
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// Faults injected into the relay through its loops' rlSys (pipe2 failing
// with EMFILE, splice refusing a socket or writing nothing, a panic):
// splicing is an optimisation that never costs a stream, and a fault in
// one stream costs that stream only.

// rlPipes records the pipes a relay made through its rlSys.newPipe, so an
// injected splice can tell a read from a socket (into a pipe) from a write
// to one (out of a pipe).
type rlPipes struct {
	mu      sync.Mutex
	r, w    map[int]bool
	made    int
	size    int // 0: rlNewPipe's; else the kernel is asked for this size
	failing error
}

func (p *rlPipes) newPipe() (*rlPipe, error) {
	if p.failing != nil {
		return nil, p.failing
	}
	q, err := rlNewPipe()
	if err != nil {
		return nil, err
	}
	if p.size > 0 { // a small pipe, as the kernel makes past pipe-user-pages-soft
		n, err := unix.FcntlInt(uintptr(q.w), unix.F_SETPIPE_SZ, p.size)
		if err != nil {
			return nil, err
		}
		q.size = int32(n)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.r == nil {
		p.r, p.w = map[int]bool{}, map[int]bool{}
	}
	p.r[q.r], p.w[q.w] = true, true
	p.made++
	return q, nil
}

func (p *rlPipes) isR(fd int) bool { p.mu.Lock(); defer p.mu.Unlock(); return p.r[fd] }
func (p *rlPipes) isW(fd int) bool { p.mu.Lock(); defer p.mu.Unlock(); return p.w[fd] }

// rlBulkBothWays writes size random bytes each way at once, half-closing
// after, and fails unless each side reads exactly the other's bytes.
func rlBulkBothWays(t *testing.T, s *rlTestStream, size int) {
	t.Helper()
	up, down := make([]byte, size), make([]byte, size)
	_, _ = rand.Read(up)
	_, _ = rand.Read(down)
	wantUp, wantDown := sha256.Sum256(up), sha256.Sum256(down)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	var gotUp, gotDown []byte
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
	wg.Go(func() {
		var err error
		if gotUp, err = rlReadN(s.server, int64(size)); err != nil {
			errs <- err
		}
	})
	wg.Go(func() {
		var err error
		if gotDown, err = rlReadN(s.client, int64(size)); err != nil {
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
}

// rlWantClean fails unless the stream ended cleanly with size bytes each
// way and the relay holds nothing.
func rlWantClean(t *testing.T, s *rlTestStream, size int64) {
	t.Helper()
	e := s.wait(t)
	if e.up != size || e.down != size || (e.reason != "client closed" && e.reason != "server closed") {
		t.Errorf("onEnd: got %+v; want %d both ways, client or server closed", e, size)
	}
	if n, held, pipes := s.relay.stats(); n != 0 || held != 0 || pipes != 0 {
		t.Errorf("relay after the end: %d streams, %d bytes held, %d pipes; want 0 0 0", n, held, pipes)
	}
}

// No pipe can be made (pipe2: EMFILE, the descriptor limit): 8 MiB each
// way still arrive whole through the buffers and the stream ends cleanly
// (it used to be reset: "client error: pipe2: too many open files").
func TestRelayNoPipeFallsBack(t *testing.T) {
	t.Parallel()
	relay := rlTestRelay(t, 1, func(sys *rlSys) {
		sys.newPipe = func() (*rlPipe, error) { return nil, unix.EMFILE }
	})
	s := rlNewStream(t, relay)
	const size = 8 << 20
	rlBulkBothWays(t, s, size)
	rlWantClean(t, s, size)
	if n := relay.loops[0].noBulk.Load(); n == 0 {
		t.Error("no direction fell back to buffers: the injected EMFILE was never met")
	}
}

// splice refuses the sockets (EINVAL, as for a socket type it cannot
// read): both directions go on through buffers, for good, and 8 MiB each
// way arrive whole.
func TestRelaySpliceRefusedFallsBack(t *testing.T) {
	t.Parallel()
	pipes := &rlPipes{}
	var refused atomic.Int64
	relay := rlTestRelay(t, 1, func(sys *rlSys) {
		sys.newPipe = pipes.newPipe
		sys.splice = func(rfd, wfd, n int) (int, error) {
			if pipes.isW(wfd) { // socket -> pipe
				refused.Add(1)
				return 0, unix.EINVAL
			}
			return rlSplice(rfd, wfd, n)
		}
	})
	s := rlNewStream(t, relay)
	const size = 8 << 20
	rlBulkBothWays(t, s, size)
	rlWantClean(t, s, size)
	if refused.Load() == 0 {
		t.Fatal("splice was never tried: the fault was not injected")
	}
	for d := range s.rc.dir {
		if !s.rc.dir[d].noSplice || s.rc.dir[d].bulk {
			t.Errorf("direction %d: noSplice=%v bulk=%v; want it on buffers for good", d, s.rc.dir[d].noSplice, s.rc.dir[d].bulk)
		}
	}
	// Refused once per direction, then never tried again.
	if got := refused.Load(); got != 2 {
		t.Errorf("splice refused %d times; want 2 (once per direction)", got)
	}
}

// A splice out of a pipe that writes nothing and says no error: the
// stream ends with an error ("short write") instead of the loop spinning
// on it for ever.
func TestRelayZeroWriteEnds(t *testing.T) {
	t.Parallel()
	pipes := &rlPipes{}
	relay := rlTestRelay(t, 1, func(sys *rlSys) {
		sys.newPipe = pipes.newPipe
		sys.splice = func(rfd, wfd, n int) (int, error) {
			if pipes.isR(rfd) { // pipe -> socket
				return 0, nil
			}
			return rlSplice(rfd, wfd, n)
		}
	})
	s := rlNewStream(t, relay)
	go func() { _, _ = s.client.Write(make([]byte, 1<<20)) }() // fills a buffer: bulk
	e := s.wait(t)
	if want := "client error: splice: short write"; e.reason != want {
		t.Errorf("reason: got %q; want %q", e.reason, want)
	}
	rlExpectClosed(t, s.server, "server")
}

// Pipes smaller than rlPipeSize (past fs.pipe-user-pages-soft the kernel
// makes 2-page pipes and F_SETPIPE_SZ fails) serve their transfer and are
// closed, not pooled; full-size pipes are pooled.
func TestRelaySmallPipesNotPooled(t *testing.T) {
	t.Parallel()
	if p, err := rlNewPipe(); err != nil {
		t.Fatal(err)
	} else {
		unix.Close(p.r)
		unix.Close(p.w)
		if p.size != rlPipeSize {
			t.Errorf("rlNewPipe made a pipe of %d bytes; want rlPipeSize, %d", p.size, rlPipeSize)
		}
	}
	for _, tc := range []struct {
		name   string
		size   int
		pooled bool
	}{{"small", 8 << 10, false}, {"linux default", 64 << 10, false}, {"full size", 0, true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pipes := &rlPipes{size: tc.size}
			relay := rlTestRelay(t, 1, func(sys *rlSys) { sys.newPipe = pipes.newPipe })
			s := rlNewStream(t, relay)
			const size = 4 << 20
			rlBulkBothWays(t, s, size)
			rlWantClean(t, s, size)
			pipes.mu.Lock()
			made := pipes.made
			pipes.mu.Unlock()
			if made == 0 {
				t.Fatal("no pipe was made: the transfer never spliced")
			}
			if got := relay.pooled(); (got > 0) != tc.pooled {
				t.Errorf("%d pipes of %d made are pooled; want pooled=%v", got, made, tc.pooled)
			}
		})
	}
}

// rlLogBuf collects the relay's log lines (SetRelayLogger).
type rlLogBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *rlLogBuf) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *rlLogBuf) String() string { w.mu.Lock(); defer w.mu.Unlock(); return w.b.String() }

// rlCaptureLog sends the relay's log to a buffer for the test. Tests that
// use it are not parallel: the relay's logger is the process's.
func rlCaptureLog(t *testing.T) *rlLogBuf {
	w := &rlLogBuf{}
	old := rlLog.Load()
	SetRelayLogger(zerolog.New(w))
	t.Cleanup(func() { rlLog.Store(old) })
	return w
}

// A panic while the relay serves one stream ends that stream with
// "internal error" and is logged with its stack; the process lives, and
// another stream on the same loop goes on.
func TestRelayPanicEndsOneStream(t *testing.T) {
	logs := rlCaptureLog(t)
	var victim atomic.Int64
	victim.Store(-1)
	relay := rlTestRelay(t, 1, func(sys *rlSys) {
		sys.splice = func(rfd, wfd, n int) (int, error) {
			if int64(rfd) == victim.Load() {
				panic("injected fault")
			}
			return rlSplice(rfd, wfd, n)
		}
	})
	other := rlNewStream(t, relay)
	s := rlNewStream(t, relay)
	victim.Store(int64(s.rc.fd[rlClient]))
	go func() { _, _ = s.client.Write(make([]byte, 1<<20)) }() // fills a buffer: splice from the client
	if e := s.wait(t); e.reason != "internal error" {
		t.Errorf("reason: got %q; want %q", e.reason, "internal error")
	}
	rlExpectClosed(t, s.server, "server")
	if !strings.Contains(logs.String(), "injected fault") || !strings.Contains(logs.String(), "passthrough relay crashed") {
		t.Errorf("the panic was not logged: %q", logs.String())
	}
	// The other stream on the loop still moves bytes, small and bulk.
	rlBulkBothWays(t, other, 1<<20)
	rlWantClean(t, other, 1<<20)
}

// A CloseNow that comes after the relay duplicated the descriptors but
// before it was handed the stream (the window of a shutdown's closeConns)
// ends the relay's stream too: both peers are closed and the end is
// reported "closed".
func TestRelayCloseNowWhileHanding(t *testing.T) {
	t.Parallel()
	relay := rlTestRelay(t, 1, nil)
	relay.beforeStore = func(c *Conn) { c.CloseNow() }
	s := rlNewStream(t, relay)
	if e := s.wait(t); e.reason != "closed" {
		t.Errorf("reason: got %q; want %q", e.reason, "closed")
	}
	rlExpectEOF(t, s.client, "client")
	rlExpectEOF(t, s.server, "server")
}

// Once the relay has ended a stream, the idle and handshake watches stop
// asking about it: it is not quiet (ok=false), and it went on, so a timer
// firing before the handler's StopWatching cannot turn "client closed"
// into "idle timeout" or "handshake timeout".
func TestRelayEndedNotIdle(t *testing.T) {
	t.Parallel()
	s := rlNewStream(t, nil)
	// A silent client: before the end, the watches see it idle and not
	// gone on.
	if _, ok := s.c.quiet(nil); !ok {
		t.Error("quiet before the end: ok=false; want true")
	}
	if s.rc.wentOn() {
		t.Error("wentOn before the end: true; want false (nothing sent)")
	}
	_ = s.client.CloseWrite()
	_ = s.server.CloseWrite()
	if e := s.wait(t); e.reason != "client closed" && e.reason != "server closed" {
		t.Fatalf("reason: got %q", e.reason)
	}
	if d, ok := s.c.quiet(nil); ok {
		t.Errorf("quiet after the end: %v, ok=true; want ok=false", d)
	}
	if !s.rc.wentOn() {
		t.Error("wentOn after the end: false; want true")
	}
	// The watches themselves: set after the end, both fire at once and
	// must leave the connection's reason alone.
	s.c.WatchIdle(time.Nanosecond)
	s.c.WatchHandshake(time.Nanosecond, 0)
	time.Sleep(100 * time.Millisecond) // lets the timers fire (a slow machine only makes this pass vacuously)
	if got := s.c.ShutdownReason(); got != "" {
		t.Errorf("ShutdownReason after the end: %q; want none", got)
	}
}

// stop ends what a relay still serves ("closed"), closes its pooled pipes
// and its epoll and event descriptors, and later posts do nothing.
func TestRelayStop(t *testing.T) {
	before := rlAnonFDs(t)
	relay, err := rlNewRelay(2)
	if err != nil {
		t.Fatal(err)
	}
	s := rlNewStream(t, relay)
	bulk := rlNewStream(t, relay)
	rlBulkBothWays(t, bulk, 1<<20) // leaves a pooled pipe
	if e := bulk.wait(t); e.up != 1<<20 || e.down != 1<<20 {
		t.Errorf("bulk stream: got %+v; want %d both ways", e, 1<<20)
	}
	if relay.pooled() == 0 {
		t.Fatal("no pipe pooled after a bulk transfer")
	}
	relay.stop()
	if e := s.wait(t); e.reason != "closed" {
		t.Errorf("open stream at stop: reason %q; want %q", e.reason, "closed")
	}
	rlExpectEOF(t, s.client, "client")
	if got := rlAnonFDs(t); got != before {
		t.Errorf("epoll and event descriptors: %d after stop; want %d as before the relay", got, before)
	}
	if relay.pooled() != 0 {
		t.Errorf("pooled pipes after stop: %d; want 0", relay.pooled())
	}
	s.rc.abort() // a post after stop: does nothing (no write to a closed eventfd)
}

// rlAnonFDs counts this process's epoll and event descriptors.
func rlAnonFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		l, _ := os.Readlink("/proc/self/fd/" + e.Name())
		if l == "anon_inode:[eventpoll]" || l == "anon_inode:[eventfd]" {
			n++
		}
	}
	return n
}

// rlExpectClosed reads c until its peer closed it (EOF or a reset), the
// bytes that came before the end being whatever they were; it fails when
// c stays open.
func rlExpectClosed(t *testing.T, c net.Conn, who string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(rlWaitLong))
	_, err := io.Copy(io.Discard, c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("%s: still open; want it closed", who)
	}
}
