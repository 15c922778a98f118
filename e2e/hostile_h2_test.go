package e2e

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Hostile HTTP/2 clients against a terminate route with protocol http
// (ALPN h2), each attack sent as raw frames (x/net/http2's Framer over
// crypto/tls). tlsedge serves HTTP/2 with net/http's server (h2_bundle.go)
// configured by the route's http.h2 keys; each test asserts what that
// server really does, what reached the server behind (counted there), that
// tlsedge freed the server's slot, and that a well-behaved client on another
// connection was served before, during and after the attack.

// hhBackend is a plain HTTP server counting requests by path, and those in
// flight. /hold/<x> answers once release(path) was called (or the request
// is cancelled); /big streams 32 MiB and counts how that ended (paths
// "/big cut" and "/big whole"); anything else answers "<name> <path>".
type hhBackend struct {
	name, addr string

	mu                    sync.Mutex
	reqs, inflight, peaks map[string]int // peaks: the most in flight at once
	gates                 map[string]chan struct{}
}

func hhStartBackend(t testing.TB, name string) *hhBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &hhBackend{name: name, addr: ln.Addr().String(), reqs: map[string]int{}, inflight: map[string]int{},
		peaks: map[string]int{}, gates: map[string]chan struct{}{}}
	serveHTTP(t, "HTTP backend "+name, &http.Server{Handler: b, ReadHeaderTimeout: waitLong, ErrorLog: stdlog.New(io.Discard, "", 0)}, ln)
	return b
}

// gate is the channel /hold/<x> waits on; the caller holds b.mu.
func (b *hhBackend) gate(path string) chan struct{} {
	if b.gates[path] == nil {
		b.gates[path] = make(chan struct{})
	}
	return b.gates[path]
}

// release lets the requests for path (held and to come) answer.
func (b *hhBackend) release(path string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	close(b.gate(path))
}

func (b *hhBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	b.mu.Lock()
	b.reqs[path]++
	b.inflight[path]++
	b.peaks[path] = max(b.peaks[path], b.inflight[path])
	g := b.gate(path)
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		b.inflight[path]--
		b.mu.Unlock()
	}()
	switch {
	case strings.HasPrefix(path, "/hold/"):
		select {
		case <-g:
		case <-r.Context().Done():
			return
		}
	case path == "/big":
		chunk := make([]byte, 32<<10)
		var err error
		for sent := 0; sent < 32<<20 && err == nil; sent += len(chunk) {
			_, err = w.Write(chunk)
		}
		b.mu.Lock()
		b.reqs[map[bool]string{true: "/big cut", false: "/big whole"}[err != nil]]++
		b.mu.Unlock()
		return
	}
	fmt.Fprintf(w, "%s %s\n", b.name, path)
}

// counts returns the requests for path so far ("*": for any path), those
// in flight now and the most in flight at once.
func (b *hhBackend) counts(path string) (reqs, inflight, peak int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for p, n := range b.reqs {
		if p == path || path == "*" {
			reqs += n
		}
	}
	return reqs, b.inflight[path], b.peaks[path]
}

// hhEdge is tlsedge with two terminate http routes, each to its own
// server: attack.example.com (route http keys from the test) and
// ok.example.com (defaults), where a well-behaved client is served from
// the start.
type hhEdge struct {
	*edgeProc
	admin      *adminClient
	attack, ok *hhBackend
	good       func() // checks the well-behaved client (see hhGood)
}

func hhStartH2Edge(t *testing.T, attackHTTP cfgMap) *hhEdge {
	t.Helper()
	p := writeTermFiles(t)
	e := &hhEdge{attack: hhStartBackend(t, "attack"), ok: hhStartBackend(t, "ok")}
	attack := termRoute(p, "attack.example.com", "terminate", "http", "attack", "none", nil)
	attack["http"] = attackHTTP
	cfg := cfgMap{
		"log": cfgMap{"level": "info", "format": "json", "access": true, "failure_burst": 0},
		"listeners": []any{cfgMap{"name": "public", "address": "", "routes": []any{attack,
			termRoute(p, "ok.example.com", "terminate", "http", "ok", "none", nil)}}},
		"backends": []any{
			cfgMap{"name": "attack", "servers": servers(e.attack.addr)},
			cfgMap{"name": "ok", "servers": servers(e.ok.addr)},
		},
	}
	useTermFiles(t, cfg, p)
	e.admin = newAdmin(t, withAdmin(t, cfg))
	e.edgeProc = runEdge(t, cfg)
	e.good = hhGood(t, e)
	return e
}

// slotFreed waits until tlsedge holds no request to the attacked server,
// and checks that any /big answer it had was cut short.
func (e *hhEdge) slotFreed(t *testing.T) {
	t.Helper()
	if !poll(waitLong, func() bool { return e.admin.server("attack", e.attack.addr).Active == 0 }) {
		t.Errorf("the attacked server's slot: active %d after %v; want 0", e.admin.server("attack", e.attack.addr).Active, waitLong)
	}
	big, _, _ := e.attack.counts("/big")
	if cut, _, _ := e.attack.counts("/big cut"); big != cut {
		t.Errorf("the server's /big answers: %d, of which %d cut short; want every one cut", big, cut)
	}
}

// hhGood starts a well-behaved client (Go's HTTP/2) on its own connection
// to ok.example.com: one request now, then one every 20 ms until check,
// which makes one more and fails the test if any request failed.
func hhGood(t *testing.T, e *hhEdge) (check func()) {
	client := httpsClient(e.addr, &tls.Config{ServerName: "ok.example.com", RootCAs: thePKI.serverCA.Pool()}, true)
	var mu sync.Mutex
	var errs []string
	n := 0
	get := func(path string) {
		resp, err := client.Get("https://ok.example.com" + path)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := "ok " + path + "\n"; resp.StatusCode != 200 || resp.ProtoMajor != 2 || string(body) != want {
				err = fmt.Errorf("%s %d %q; want HTTP/2.0 200 %q", resp.Proto, resp.StatusCode, body, want)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if n++; err != nil {
			errs = append(errs, path+": "+err.Error())
		}
	}
	get("/good/before")
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			get(fmt.Sprintf("/good/%d", i))
		}
	}()
	var once sync.Once
	halt := func() bool { once.Do(func() { close(stop) }); return waitBounded(func() { <-done }) }
	t.Cleanup(func() { halt() })
	return func() {
		t.Helper()
		if !halt() {
			t.Fatalf("a request of the well-behaved client did not end within %v", waitLong)
		}
		get("/good/after")
		mu.Lock()
		defer mu.Unlock()
		if after, _, _ := e.ok.counts("/good/after"); len(errs) > 0 || after != 1 {
			t.Errorf("the well-behaved client: %d of %d requests failed: %v; want every one answered, also after the attack", len(errs), n, errs)
		}
	}
}

// hhConn is a raw HTTP/2 client connection: frames are buffered (flush
// sends them) by one goroutine and read by one other.
type hhConn struct {
	c      *tls.Conn
	bw     *bufio.Writer
	fr     *http2.Framer
	enc    *hpack.Encoder
	hb     bytes.Buffer
	client string // the local address, as tlsedge logs it
}

// hhDial connects to attack.example.com on e with ALPN h2 and a socket
// receive buffer of rcvBuf bytes (0: the system's, which grows), and sends
// the preface and a SETTINGS frame of settings.
func hhDial(t *testing.T, e *hhEdge, rcvBuf int, settings ...http2.Setting) *hhConn {
	t.Helper()
	d := &net.Dialer{Timeout: waitLong}
	if rcvBuf > 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvBuf) })
		}
	}
	c, err := tls.DialWithDialer(d, "tcp", e.addr,
		&tls.Config{ServerName: "attack.example.com", RootCAs: thePKI.serverCA.Pool(), NextProtos: []string{"h2"}})
	if err != nil || c.ConnectionState().NegotiatedProtocol != "h2" {
		t.Fatalf("TLS to attack.example.com: %v; want ALPN h2", err)
	}
	t.Cleanup(func() { c.Close() })
	h := &hhConn{c: c, bw: bufio.NewWriterSize(c, 64<<10), client: c.LocalAddr().String()}
	h.fr = http2.NewFramer(h.bw, c)
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	h.enc = hpack.NewEncoder(&h.hb)
	_, _ = h.bw.WriteString(http2.ClientPreface)
	if err := h.fr.WriteSettings(settings...); err != nil || h.bw.Flush() != nil {
		t.Fatalf("writing the preface: %v", err)
	}
	return h
}

// headers buffers HEADERS for GET path on stream id (END_STREAM), with
// END_HEADERS when end is set.
func (h *hhConn) headers(id uint32, path string, end bool) error {
	h.hb.Reset()
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "attack.example.com"}, {":path", path}} {
		_ = h.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	return h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: h.hb.Bytes(), EndStream: true, EndHeaders: end})
}

// send buffers a request for path on stream id and flushes.
func (h *hhConn) send(t *testing.T, id uint32, path string) {
	t.Helper()
	if err := h.headers(id, path, true); err != nil || h.bw.Flush() != nil {
		t.Fatalf("writing stream %d: %v", id, err)
	}
}

// hhEvents is what a raw client read from tlsedge.
type hhEvents struct {
	status   map[uint32]string        // response status by stream
	resets   map[uint32]http2.ErrCode // RST_STREAM by stream
	data     map[uint32]int           // DATA bytes by stream
	goAway   []http2.ErrCode
	lastID   uint32 // of the last GOAWAY
	pingAcks int
	end      error // why reading stopped
	closed   bool  // tlsedge ended the connection (not the wait)
}

// read reads frames into ev until stop (nil: never) says enough, the
// connection ends or d has passed. It answers nothing.
func (h *hhConn) read(d time.Duration, ev *hhEvents, stop func(*hhEvents) bool) {
	if ev.status == nil {
		ev.status, ev.resets, ev.data = map[uint32]string{}, map[uint32]http2.ErrCode{}, map[uint32]int{}
	}
	_ = h.c.SetReadDeadline(time.Now().Add(d))
	defer h.c.SetReadDeadline(time.Time{})
	for stop == nil || !stop(ev) {
		f, err := h.fr.ReadFrame()
		if err != nil {
			ev.end, ev.closed = err, !errors.Is(err, os.ErrDeadlineExceeded)
			return
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			ev.status[f.StreamID] = f.PseudoValue("status")
		case *http2.DataFrame:
			ev.data[f.StreamID] += len(f.Data())
		case *http2.RSTStreamFrame:
			ev.resets[f.StreamID] = f.ErrCode
		case *http2.GoAwayFrame:
			ev.goAway, ev.lastID = append(ev.goAway, f.ErrCode), f.LastStreamID
		case *http2.PingFrame:
			if f.IsAck() {
				ev.pingAcks++
			}
		}
	}
}

// flood writes frames made by frame (flushed every 16 KiB) until a write
// fails (tlsedge closed the connection) or max were written (max < 0: no
// limit), and returns how many were; bounded by 6 × waitLong.
func (h *hhConn) flood(t *testing.T, max int, frame func(i int) error) int {
	t.Helper()
	wrote := make(chan int, 1)
	go func() {
		i := 0
		for ; (max < 0 || i < max) && frame(i) == nil; i++ {
			if h.bw.Buffered() > 16<<10 && h.bw.Flush() != nil {
				break
			}
		}
		_ = h.bw.Flush()
		wrote <- i
	}()
	select {
	case n := <-wrote:
		return n
	case <-time.After(6 * waitLong):
		h.c.Close()
		t.Fatalf("tlsedge still read the flood after %v", 6*waitLong)
		return 0
	}
}

// paced is frame with a pause of 10 ms after every batch frames (flushed).
func (h *hhConn) paced(batch int, frame func(i int) error) func(i int) error {
	return func(i int) error {
		if i%batch == batch-1 && h.bw.Flush() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		return frame(i)
	}
}

// Rapid reset (CVE-2023-44487): HEADERS then RST_STREAM, 20000 times on one
// connection. Go's server runs at most max_concurrent_streams handlers of a
// connection at once and queues the requests of newer streams; once more
// than 4 × max_concurrent_streams wait (handlers of reset streams still
// running), it ends the connection: GOAWAY ENHANCE_YOUR_CALM, then close.
// Only a small part of the streams ever reaches the server.
func TestHostileH2RapidReset(t *testing.T) {
	t.Parallel()
	const sent = 20000
	e := hhStartH2Edge(t, cfgMap{"h2": cfgMap{"max_concurrent_streams": 10}})
	h := hhDial(t, e, 0)
	var ev hhEvents
	read := make(chan struct{})
	go func() { defer close(read); h.read(6*waitLong, &ev, nil) }()
	n := h.flood(t, sent, func(i int) error {
		id := uint32(2*i + 1)
		return errors.Join(h.headers(id, "/hold/rapid", true), h.fr.WriteRSTStream(id, http2.ErrCodeCancel))
	})
	<-read
	reqs, _, _ := e.attack.counts("/hold/rapid")
	t.Logf("%d HEADERS+RST_STREAM written; GOAWAY %v (last stream %d), then %v; %d requests reached the server", n, ev.goAway, ev.lastID, ev.end, reqs)
	if fmt.Sprint(ev.goAway) != "[ENHANCE_YOUR_CALM]" || !ev.closed || ev.lastID >= 2*sent-1 {
		t.Errorf("GOAWAY %v (last stream %d), then %v; want GOAWAY ENHANCE_YOUR_CALM before the last of %d streams, and the connection closed", ev.goAway, ev.lastID, ev.end, sent)
	}
	if reqs*10 > sent || len(ev.status) != 0 {
		t.Errorf("the server got %d requests (%d answered) of the %d streams sent and reset; want under a tenth, none answered", reqs, len(ev.status), sent)
	}
	e.slotFreed(t)
	e.good()
	l := e.waitLog(t, "access line of the attacking connection", isAccess(h.client))
	// The attack is named in the log (a warning), not "client closed".
	if r := l.str("reason"); !strings.HasPrefix(r, "client error: server connection error") || !strings.Contains(r, "ENHANCE_YOUR_CALM") || l.str("level") != "warn" {
		t.Errorf("access line %v: reason %q at %s; want the HTTP/2 connection error ENHANCE_YOUR_CALM at warn", l, r, l.str("level"))
	}
	if got := int(l.num("requests")); got > int(ev.lastID+1)/2 {
		t.Errorf("access line %v: %d requests; want at most the %d streams up to the GOAWAY", l, got, (ev.lastID+1)/2)
	}
}

// continuation makes the frames of a header block that goes on: frame 0
// is HEADERS without END_HEADERS, each frame (0 too) a CONTINUATION of one
// never-indexed field of size bytes, or empty for size 0.
func (h *hhConn) continuation(size int) func(i int) error {
	return func(i int) error {
		if i == 0 && h.headers(1, "/flood", false) != nil {
			return io.ErrClosedPipe
		}
		h.hb.Reset()
		if size > 0 {
			name := fmt.Sprintf("x-flood-%d", i)
			_ = h.enc.WriteField(hpack.HeaderField{Name: name, Value: strings.Repeat("a", size-len(name)-4), Sensitive: true})
		}
		return h.fr.WriteContinuation(1, false, h.hb.Bytes())
	}
}

// CONTINUATION flood (CVE-2024-27316; Go's CVE-2023-45288): a header block
// that never ends. Go's server decodes the fragments as they come; once the
// block is over its header list limit (http.max_header_bytes + 320), the
// next non-empty CONTINUATION ends the connection: GOAWAY PROTOCOL_ERROR,
// then close, while the client holds the block open. Empty CONTINUATION
// frames add no bytes: the connection, with no request open, is ended by
// http.idle_timeout (GOAWAY NO_ERROR, close). No request reaches a server.
func TestHostileH2ContinuationFlood(t *testing.T) {
	t.Parallel()
	const maxHeader = 16 << 10
	e := hhStartH2Edge(t, cfgMap{"max_header_bytes": maxHeader, "idle_timeout": "2s"})
	t.Run("header fields past max_header_bytes", func(t *testing.T) {
		h := hhDial(t, e, 0)
		// Three times the limit in 1 KiB frames; then only tlsedge can end it.
		if n := h.flood(t, 3*maxHeader/1024, h.continuation(1024)); n != 3*maxHeader/1024 {
			t.Fatalf("wrote %d CONTINUATION frames of %d", n, 3*maxHeader/1024)
		}
		var ev hhEvents
		h.read(waitLong, &ev, nil)
		if fmt.Sprint(ev.goAway) != "[PROTOCOL_ERROR]" || !ev.closed || len(ev.status) != 0 {
			t.Errorf("got GOAWAY %v, answers %v, then %v; want GOAWAY PROTOCOL_ERROR and the connection closed", ev.goAway, ev.status, ev.end)
		}
		if l := e.waitLog(t, "access line of the flooding connection", isAccess(h.client)); l.num("requests") != 0 || !strings.HasPrefix(l.str("reason"), "client error: ") {
			t.Errorf("access line %v: want no request, and the HTTP/2 connection error as the reason", l)
		}
	})
	t.Run("empty CONTINUATION frames until idle_timeout", func(t *testing.T) {
		h := hhDial(t, e, 0)
		// 100 empty frames every 10 ms until tlsedge closes the connection.
		n := h.flood(t, -1, h.paced(100, h.continuation(0)))
		var ev hhEvents
		h.read(waitLong, &ev, nil)
		if fmt.Sprint(ev.goAway) != "[NO_ERROR]" || !ev.closed || len(ev.status) != 0 {
			t.Errorf("after %d empty CONTINUATION frames: GOAWAY %v, answers %v, then %v; want GOAWAY NO_ERROR (idle_timeout 2s) and the connection closed",
				n, ev.goAway, ev.status, ev.end)
		}
	})
	if n, _, _ := e.attack.counts("*"); n != 0 {
		t.Errorf("the server got %d requests; want none", n)
	}
	e.good()
}

// More streams at once than http.h2.max_concurrent_streams (5): the sixth
// and later HEADERS get RST_STREAM, PROTOCOL_ERROR when the client has
// acknowledged tlsedge's SETTINGS ("they should know better"),
// REFUSED_STREAM while it has not. The connection goes on, the server
// never has more than 5 of its requests at once, and once they end a new
// stream is taken. (TestSmugglingHTTP2Limits checks what is announced.)
func TestHostileH2StreamLimit(t *testing.T) {
	t.Parallel()
	const limit, opened = 5, 8
	e := hhStartH2Edge(t, cfgMap{"h2": cfgMap{"max_concurrent_streams": limit}})
	t.Cleanup(e.good) // after the parallel subtests
	for _, ack := range []bool{true, false} {
		code := map[bool]http2.ErrCode{true: http2.ErrCodeProtocol, false: http2.ErrCodeRefusedStream}[ack]
		t.Run(fmt.Sprintf("SETTINGS acknowledged %v", ack), func(t *testing.T) {
			t.Parallel()
			path := fmt.Sprintf("/hold/ack-%v", ack)
			h := hhDial(t, e, 0)
			// tlsedge sends its SETTINGS first thing: the ACK may go at once.
			if ack && h.fr.WriteSettingsAck() != nil {
				t.Fatal("writing the SETTINGS ACK failed")
			}
			for i := 0; i < opened; i++ {
				h.send(t, uint32(2*i+1), path)
			}
			var ev hhEvents
			h.read(waitLong, &ev, func(ev *hhEvents) bool { return len(ev.resets) >= opened-limit })
			want := map[uint32]http2.ErrCode{}
			for i := limit; i < opened; i++ {
				want[uint32(2*i+1)] = code
			}
			if fmt.Sprint(ev.resets) != fmt.Sprint(want) || len(ev.goAway) != 0 || ev.end != nil {
				t.Errorf("resets %v, GOAWAY %v, %v; want resets %v and the connection open", ev.resets, ev.goAway, ev.end, want)
			}
			if !poll(waitLong, func() bool { _, in, _ := e.attack.counts(path); return in == limit }) {
				_, in, _ := e.attack.counts(path)
				t.Fatalf("requests in flight at the server: %d; want %d", in, limit)
			}
			e.attack.release(path)
			h.read(waitLong, &ev, func(ev *hhEvents) bool { return len(ev.status) >= limit })
			if reqs, _, peak := e.attack.counts(path); len(ev.status) != limit || reqs != limit || peak != limit {
				t.Errorf("answers %v; server: %d requests, at most %d at once; want %d answered, %d requests, %d at once", ev.status, reqs, peak, limit, limit, limit)
			}
			next := uint32(2*opened + 1)
			h.send(t, next, "/after")
			h.read(waitLong, &ev, func(ev *hhEvents) bool { return ev.status[next] != "" })
			if ev.status[next] != "200" {
				t.Errorf("stream %d once the held ones ended: status %q, %v; want 200", next, ev.status[next], ev.end)
			}
		})
	}
}

// Control frame floods from a client that reads nothing: its socket is full
// (GET /big, 32 MiB, every window granted, a 4 KiB receive buffer).
//   - PING flood (CVE-2019-9512): each PING queues an ACK that cannot be
//     written; Go's server closes the connection once more than 10000
//     control frames wait (maxQueuedControlFrames), long before
//     http.write_timeout (5m) could.
//   - SETTINGS flood (CVE-2019-9515): Go sends one ACK for all SETTINGS read
//     while it cannot write, so nothing queues; the connection is cut when
//     a write has waited http.write_timeout (1s), as for any client that
//     stops reading, and its log line says so.
//
// Each time the server's answer is cut and its slot freed, and other
// clients are served throughout.
func TestHostileH2ControlFloods(t *testing.T) {
	t.Parallel()
	// stall asks for /big with every window open and reads nothing.
	window := http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1}
	stall := func(t *testing.T, e *hhEdge) *hhConn {
		h := hhDial(t, e, 4096, window)
		if h.fr.WriteWindowUpdate(0, 1<<31-1-65535) != nil {
			t.Fatal("writing WINDOW_UPDATE failed")
		}
		h.send(t, 1, "/big")
		return h
	}
	t.Run("PING flood", func(t *testing.T) {
		t.Parallel()
		e := hhStartH2Edge(t, cfgMap{"write_timeout": "5m"})
		h := stall(t, e)
		n := h.flood(t, -1, h.paced(1000, func(i int) error { return h.fr.WritePing(false, [8]byte{byte(i >> 16), byte(i >> 8), byte(i)}) }))
		var ev hhEvents
		h.read(waitLong, &ev, nil)
		if !ev.closed || ev.pingAcks >= n {
			t.Errorf("after %d PINGs: %d ACKs read, then %v; want the connection closed with ACKs left unwritten", n, ev.pingAcks, ev.end)
		}
		e.waitLog(t, "access line of the flooding connection", isAccess(h.client))
		e.slotFreed(t)
		e.good()
	})
	t.Run("SETTINGS flood", func(t *testing.T) {
		t.Parallel()
		e := hhStartH2Edge(t, cfgMap{"write_timeout": "1s"})
		h := stall(t, e)
		n := h.flood(t, -1, h.paced(1000, func(int) error { return h.fr.WriteSettings(http2.Setting{ID: http2.SettingEnablePush, Val: 0}) }))
		var ev hhEvents
		h.read(waitLong, &ev, nil)
		if !ev.closed {
			t.Errorf("after %d SETTINGS: %v; want the connection closed", n, ev.end)
		}
		l := e.waitLog(t, "access line of the flooding connection", isAccess(h.client))
		if got, want := l.str("reason"), "client timeout: read nothing for write_timeout 1s"; got != want {
			t.Errorf("access line %v: reason %q; want %q", l, got, want)
		}
		e.slotFreed(t)
		e.good()
	})
}

// A stalled receive window: SETTINGS_INITIAL_WINDOW_SIZE 0 and never a
// WINDOW_UPDATE, so no byte of a large response can be sent. The response
// head goes out (HEADERS are not flow-controlled); after http.write_timeout
// (1s) the stream is reset (RST_STREAM INTERNAL_ERROR, Go's stream write
// deadline), the request logged with the reason, the server's answer cut
// and its slot freed. The connection goes on once the client grants a
// window again.
func TestHostileH2StalledWindow(t *testing.T) {
	t.Parallel()
	e := hhStartH2Edge(t, cfgMap{"write_timeout": "1s"})
	h := hhDial(t, e, 0, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	h.send(t, 1, "/big")
	var ev hhEvents
	h.read(waitLong, &ev, func(ev *hhEvents) bool { _, reset := ev.resets[1]; return reset })
	if ev.status[1] != "200" || ev.data[1] != 0 || ev.resets[1] != http2.ErrCodeInternal || len(ev.goAway) != 0 || ev.end != nil {
		t.Errorf("stream 1: status %q, %d DATA bytes, reset %v, GOAWAY %v, %v; want the 200 head, no data, RST_STREAM INTERNAL_ERROR, no GOAWAY",
			ev.status[1], ev.data[1], ev.resets[1], ev.goAway, ev.end)
	}
	l := e.requestLine(t, "/big")
	if got, want := l.str("reason"), "client timeout: read nothing of this response for write_timeout 1s"; got != want {
		t.Errorf("request line %v: reason %q; want %q", l, got, want)
	}
	e.slotFreed(t)
	// A window again: the next request on the connection is answered.
	if h.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 65535}) != nil {
		t.Fatal("writing SETTINGS failed")
	}
	h.send(t, 3, "/after")
	want := len("attack /after\n")
	h.read(waitLong, &ev, func(ev *hhEvents) bool { return ev.data[3] >= want })
	if ev.status[3] != "200" || ev.data[3] != want {
		t.Errorf("stream 3: status %q, %d bytes, %v; want 200 and %d bytes", ev.status[3], ev.data[3], ev.end, want)
	}
	e.good()
}
