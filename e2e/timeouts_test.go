package e2e

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Timeouts that free what idle or stuck peers hold: backends[].idle_timeout
// on passthrough streams, routes[].http.write_timeout on clients that stop
// reading, and tcp_keepalive on listeners and backends (read back from the
// kernel's socket table).

// ---------------------------------------------------------------- idle_timeout

// Issue: "backend idle_timeout: a passthrough, tcp or upgraded WebSocket
// stream with no byte either way for that long is closed with reason
// \"idle timeout\"". With idle_timeout 1s on a passthrough route, a silent
// stream is closed by tlsedge (the client reads EOF; the access line says
// "idle timeout") while a chatty one (a message every 200 ms for 3 s) lives
// on and keeps echoing, and ends only when its client closes it.
func TestIdleTimeoutClosesSilentStreams(t *testing.T) {
	t.Parallel()
	b := startBackend(t, "idle-echo")
	cfg := cfgMap{
		"log":       cfgMap{"level": "info", "format": "json", "access": true},
		"listeners": []any{cfgMap{"name": "public", "address": "", "routes": []any{cfgMap{"sni": []any{"*"}, "mode": "passthrough", "backend": "echo"}}}},
		"backends": []any{cfgMap{"name": "echo", "idle_timeout": "1s", "health": cfgMap{"type": "none"},
			"servers": servers(b.Addr())}},
	}
	e := runEdge(t, cfg)
	o := clientOpts{SNI: "idle.example.com"}

	silent := mustDial(t, e.addr, o)
	silentAddr := silent.LocalAddr().String()
	silentLines := e.accessCount(silentAddr)
	chatty := mustDial(t, e.addr, o)

	// The silent client only reads, and must see the end of the stream.
	ended := make(chan error, 1)
	go func() {
		_ = silent.SetReadDeadline(time.Now().Add(waitLong))
		_, err := silent.r.ReadByte()
		ended <- err
	}()

	for i := range 15 {
		time.Sleep(200 * time.Millisecond)
		if err := chatty.echo(fmt.Sprintf("still talking %d\n", i)); err != nil {
			t.Fatalf("chatty stream, message %d (%.1f s in): %v", i+1, float64(i+1)*0.2, err)
		}
	}

	select {
	case err := <-ended:
		if !errors.Is(err, io.EOF) {
			t.Errorf("silent client's read: got %v; want EOF (tlsedge closed the stream)", err)
		}
	case <-time.After(waitLong):
		t.Fatalf("silent client still open %v after the chatty one finished", waitLong)
	}
	l := e.nextAccessLine(t, silentAddr, silentLines)
	if got, want := l.str("reason"), "idle timeout"; got != want {
		t.Errorf("access line of the silent stream: reason got %q; want %q", got, want)
	}
	if l.str("server") != b.Addr() {
		t.Errorf("access line of the silent stream: server got %q; want %q", l.str("server"), b.Addr())
	}

	// The chatty stream is still open and still echoes.
	if err := chatty.echo("one more\n"); err != nil {
		t.Fatalf("chatty stream after 3 s: %v", err)
	}
	// Its client closes it; the echo server then closes too, and which of
	// the two tlsedge sees first is a race: either is right, idle is not.
	if got := e.closeAndLog(t, chatty).str("reason"); got != "client closed" && got != "server closed" {
		t.Errorf("access line of the chatty stream: reason got %q; want %q or %q", got, "client closed", "server closed")
	}
}

// ---------------------------------------------------------------- write_timeout

// bigSize is what GET /big answers: far more than the socket buffers
// between a client that stopped reading and the server can hold.
const bigSize = 64 << 20

// bigStreamServer is a plain HTTP server: GET /big streams bigSize bytes in
// 32 KiB writes, /hold answers its header and then holds the body open
// until release, anything else answers "<name> <path>". Every answer has
// the header X-Backend: <name>. It records how each /big ended.
type bigStreamServer struct {
	name    string
	addr    string
	release chan struct{}
	relOnce sync.Once

	mu   sync.Mutex
	bigs []bigResult
}

// bigResult is one /big stream as the server saw it.
type bigResult struct {
	sent int64
	err  error // nil: all bigSize bytes were written
}

func startBigStreamServer(t testing.TB, name string) *bigStreamServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &bigStreamServer{name: name, addr: ln.Addr().String(), release: make(chan struct{})}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: waitLong, ErrorLog: stdlog.New(io.Discard, "", 0)}
	serveHTTP(t, "HTTP server "+name, srv, ln)
	t.Cleanup(s.unhold) // runs first: held answers end before the server closes
	return s
}

func (s *bigStreamServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Backend", s.name)
	switch r.URL.Path {
	case "/big":
		w.Header().Set("Content-Length", strconv.Itoa(bigSize))
		chunk := make([]byte, 32<<10)
		var res bigResult
		for res.sent < bigSize {
			n, err := w.Write(chunk)
			res.sent += int64(n)
			if err != nil {
				res.err = err
				break
			}
		}
		s.mu.Lock()
		s.bigs = append(s.bigs, res)
		s.mu.Unlock()
	case "/hold":
		w.WriteHeader(http.StatusOK)
		_ = http.NewResponseController(w).Flush()
		select {
		case <-s.release:
		case <-r.Context().Done():
		}
		fmt.Fprintf(w, "%s held\n", s.name)
	default:
		fmt.Fprintf(w, "%s %s\n", s.name, r.URL.Path)
	}
}

// unhold ends every /hold answer.
func (s *bigStreamServer) unhold() { s.relOnce.Do(func() { close(s.release) }) }

// bigStreams returns the /big streams that ended so far.
func (s *bigStreamServer) bigStreams() []bigResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]bigResult(nil), s.bigs...)
}

func (s *bigStreamServer) Addr() string { return s.addr }

// Issue: "route http.write_timeout (default 60s): a client that stops
// reading a response is cut and its server slot released"; spec:
// "balance: leastconn". With write_timeout 1s and leastconn over two
// servers X and Y: a request held open on Y makes the next one, a 64 MiB
// download, go to X (the held request counts); its client reads the
// header and stops. tlsedge cuts it (the client never gets the whole body,
// X's stream ends with a write error, the connection line says why), and
// X's slot is free: the API shows active 0 for X (1 for Y), and with the
// held request still on Y every new request goes to X. Had X's slot
// leaked, X and Y would tie and leastconn would send every other one to Y.
func TestWriteTimeoutCutsStalledClient(t *testing.T) {
	t.Parallel()
	p := writeTermFiles(t)
	srv := map[string]*bigStreamServer{"x-or-y-1": startBigStreamServer(t, "x-or-y-1"), "x-or-y-2": startBigStreamServer(t, "x-or-y-2")}
	route := termRoute(p, "api.example.com", "terminate", "http", "dl", "", nil)
	route["http"] = cfgMap{"write_timeout": "1s"}
	cfg := cfgMap{
		"log":       cfgMap{"level": "info", "format": "json", "access": true},
		"listeners": []any{cfgMap{"name": "public", "address": "", "routes": []any{route}}},
		"backends": []any{cfgMap{"name": "dl", "balance": "leastconn", "health": cfgMap{"type": "none"},
			"servers": servers(srv["x-or-y-1"].Addr(), srv["x-or-y-2"].Addr())}},
	}
	useTermFiles(t, cfg, p)
	a := newAdmin(t, withAdmin(t, cfg))
	e := runEdge(t, cfg)
	clientTLS := &tls.Config{ServerName: "api.example.com", RootCAs: thePKI.serverCA.Pool(), NextProtos: []string{"http/1.1"}}
	client := httpsClient(e.addr, clientTLS, false)
	active := func(addr string) int64 { return a.server("dl", addr).Active }

	// 1. A request held open on one server: call it Y.
	hold, err := client.Get("https://api.example.com/hold")
	if err != nil {
		t.Fatalf("GET /hold: %v", err)
	}
	defer hold.Body.Close()
	yName := hold.Header.Get("X-Backend")
	y := srv[yName]
	if y == nil {
		t.Fatalf("GET /hold: X-Backend got %q; want one of the two servers", yName)
	}
	xName := "x-or-y-1"
	if xName == yName {
		xName = "x-or-y-2"
	}
	x := srv[xName]
	if got := active(y.Addr()); got != 1 {
		t.Fatalf("active of %s holding /hold: got %d; want 1", yName, got)
	}

	// 2. A client asks for /big and reads only the header. Its receive
	// buffer is small and fixed, so the stall reaches tlsedge at once.
	d := net.Dialer{Timeout: waitLong, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 64<<10)
		}); err != nil {
			return err
		}
		return serr
	}}
	stalled, err := tls.DialWithDialer(&d, "tcp", e.addr, clientTLS)
	if err != nil {
		t.Fatalf("TLS to tlsedge: %v", err)
	}
	defer stalled.Close()
	stalledAddr := stalled.LocalAddr().String()
	_ = stalled.SetDeadline(time.Now().Add(waitLong))
	if _, err := io.WriteString(stalled, "GET /big HTTP/1.1\r\nHost: api.example.com\r\n\r\n"); err != nil {
		t.Fatalf("sending GET /big: %v", err)
	}
	br := bufio.NewReaderSize(stalled, 1024)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the header of /big: %v", err)
	}
	if resp.StatusCode != http.StatusOK || resp.ContentLength != bigSize {
		t.Fatalf("GET /big: got status %d, length %d; want %d, %d", resp.StatusCode, resp.ContentLength, http.StatusOK, bigSize)
	}
	if got := resp.Header.Get("X-Backend"); got != xName {
		t.Fatalf("GET /big with %s holding one request: X-Backend got %q; want %q (leastconn)", yName, got, xName)
	}

	// 3. Stop reading. tlsedge cuts the client and the stream to X ends.
	var streams []bigResult
	if !poll(waitLong, func() bool { streams = x.bigStreams(); return len(streams) > 0 }) {
		t.Fatalf("the /big stream of %s was still running %v after its client stopped reading (write_timeout 1s)", xName, waitLong)
	}
	if streams[0].err == nil {
		t.Errorf("the /big stream of %s: all %d bytes written; want it cut short", xName, streams[0].sent)
	}
	conn := e.nextAccessLine(t, stalledAddr, 0)
	if got, want := conn.str("reason"), "client timeout: read nothing for write_timeout 1s"; got != want {
		t.Errorf("connection line of the stalled client %v: reason got %q; want %q", conn, got, want)
	}
	req := e.requestLine(t, "/big")
	if req.str("client") != stalledAddr || req.str("server") != x.Addr() {
		t.Errorf("request line of /big %v: want client %s, server %s", req, stalledAddr, x.Addr())
	}
	if n := int64(req.num("bytes_down")); n >= bigSize {
		t.Errorf("request line of /big: bytes_down got %d; want less than %d (cut)", n, bigSize)
	}
	// The client finds its stream ended short of the body.
	_ = stalled.SetReadDeadline(time.Now().Add(waitLong))
	got, err := io.Copy(io.Discard, resp.Body)
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) || got >= bigSize {
		t.Errorf("the stalled client reading on: got %d bytes, %v; want fewer than %d and the connection ended", got, err, bigSize)
	}

	// 4. X's slot is free, Y still holds its request.
	if gx, gy := active(x.Addr()), active(y.Addr()); gx != 0 || gy != 1 {
		t.Errorf("active after the cut: got %s %d, %s %d; want 0, 1", xName, gx, yName, gy)
	}
	for i := range 4 {
		resp, err := client.Get(fmt.Sprintf("https://api.example.com/after-cut/%d", i))
		if err != nil {
			t.Fatalf("GET /after-cut/%d: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if got := resp.Header.Get("X-Backend"); got != xName {
			t.Errorf("request %d after the cut, with %s holding one request: X-Backend got %q; want %q (leastconn; a leaked slot would tie)",
				i+1, yName, got, xName)
		}
	}

	y.unhold()
	if _, err := io.Copy(io.Discard, hold.Body); err != nil {
		t.Errorf("reading the rest of /hold: %v", err)
	}
}

// ---------------------------------------------------------------- tcp_keepalive

// keepaliveCfg is one passthrough route to server, with tcp_keepalive
// listen on the listener and upstream on the backend ("" = not set).
func keepaliveCfg(server, listen, upstream string) cfgMap {
	l := cfgMap{"name": "public", "address": "", "routes": []any{cfgMap{"sni": []any{"*"}, "mode": "passthrough", "backend": "ka"}}}
	if listen != "" {
		l["tcp_keepalive"] = listen
	}
	b := cfgMap{"name": "ka", "health": cfgMap{"type": "none"}, "servers": servers(server)}
	if upstream != "" {
		b["tcp_keepalive"] = upstream
	}
	return cfgMap{"log": cfgMap{"level": "info", "format": "json"}, "listeners": []any{l}, "backends": []any{b}}
}

// procTCPAddr writes a 127.0.0.1:port address as /proc/net/tcp does.
func procTCPAddr(t testing.TB, addr string) string {
	t.Helper()
	ap, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil || ap.IP.To4() == nil {
		t.Fatalf("%s: not an IPv4 address (%v)", addr, err)
	}
	return fmt.Sprintf("%08X:%04X", binary.LittleEndian.Uint32(ap.IP.To4()), ap.Port)
}

// socketTimer reads the timer of the socket local -> remote from
// /proc/net/tcp: which one is pending (0 none, 1 retransmit, 2 keepalive,
// 4 zero window probe) and in how many clock ticks it fires.
func socketTimer(t testing.TB, local, remote string) (timer int, ticks int64, ok bool) {
	t.Helper()
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatalf("reading the kernel's socket table: %v", err)
	}
	lw, rw := procTCPAddr(t, local), procTCPAddr(t, remote)
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || f[1] != lw || f[2] != rw || f[3] != "01" { // 01: ESTABLISHED
			continue
		}
		tr, when, _ := strings.Cut(f[5], ":")
		timer, _ = strconv.Atoi(tr)
		ticks, _ = strconv.ParseInt(when, 16, 64)
		return timer, ticks, true
	}
	return 0, 0, false
}

// Issue: "tcp_keepalive on listeners and backends"; spec: validate "exit 1
// with every problem listed, one a line ... the key path as written in the
// file". `tcp_keepalive: off` and `5s` are accepted, -5s is refused naming
// each key; and tlsedge applies them: read back from /proc/net/tcp, the
// socket of a client has a keepalive timer due within 5 s when the listener
// says 5s and none when it says off, and the same for the socket to the
// server with the backend's key.
func TestKeepaliveSettings(t *testing.T) {
	t.Parallel()
	t.Run("validate", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct{ listen, upstream string }{{"off", "5s"}, {"5s", "off"}} {
			cfg := keepaliveCfg("127.0.0.1:9001", tc.listen, tc.upstream)
			listenerCfg(t, cfg, 0)["address"] = "127.0.0.1:8443" // validate binds nothing
			f := writeConfig(t, cfg)
			stdout, stderr, code := runTlsedge(t, "validate", "-c", f)
			if code != 0 || stdout != f+": ok\n" {
				t.Errorf("validate with listener %s, backend %s: exit %d, stdout %q; want 0, %q\nstderr:\n%s",
					tc.listen, tc.upstream, code, stdout, f+": ok\n", stderr)
			}
		}
		bad := keepaliveCfg("127.0.0.1:9001", "-5s", "-5s")
		listenerCfg(t, bad, 0)["address"] = "127.0.0.1:8443"
		f := writeConfig(t, bad)
		_, stderr, code := runTlsedge(t, "validate", "-c", f)
		if code != 1 {
			t.Errorf("validate with tcp_keepalive -5s: exit %d; want 1\nstderr:\n%s", code, stderr)
		}
		for _, key := range []string{"listeners[0].tcp_keepalive", "backends[0].tcp_keepalive"} {
			want := f + ": " + key + ": "
			found := false
			for _, line := range strings.Split(stderr, "\n") {
				found = found || strings.HasPrefix(line, want)
			}
			if !found {
				t.Errorf("validate with tcp_keepalive -5s: no line starting %q in\n%s", want, stderr)
			}
		}
	})

	for _, tc := range []struct{ listen, upstream string }{{"5s", "off"}, {"off", "5s"}} {
		t.Run("listener "+tc.listen+" backend "+tc.upstream, func(t *testing.T) {
			t.Parallel()
			b := startBackend(t, "keepalive-"+tc.listen)
			e := runEdge(t, keepaliveCfg(b.Addr(), tc.listen, tc.upstream))
			c := mustDial(t, e.addr, clientOpts{SNI: "ka.example.com"})
			conns := b.Conns()
			if len(conns) != 1 {
				t.Fatalf("the server saw %d connections; want 1", len(conns))
			}
			sockets := []struct {
				what          string
				local, remote string // tlsedge's end of the socket, and the peer
				setting       string
			}{
				{"client side (listeners[0].tcp_keepalive)", e.addr, c.LocalAddr().String(), tc.listen},
				{"server side (backends[0].tcp_keepalive)", conns[0].Remote, b.Addr(), tc.upstream},
			}
			for _, s := range sockets {
				// Once nothing is in flight (no retransmit timer, 1), an
				// idle socket shows its keepalive timer (2) or none (0).
				// 5s: the keepalive timer fires within 5 s, 500 ticks of
				// 10 ms (the default 15s would show up to 1500). off: no
				// timer at all.
				var timer int
				var ticks int64
				var found bool
				if !poll(waitLong, func() bool {
					timer, ticks, found = socketTimer(t, s.local, s.remote)
					return found && timer != 1
				}) {
					t.Fatalf("%s: socket %s -> %s: got found %v, timer %d; want an established socket with nothing in flight",
						s.what, s.local, s.remote, found, timer)
				}
				ok, want := timer == 2 && ticks <= 500, "keepalive timer (2) due within 500 ticks"
				if s.setting == "off" {
					ok, want = timer == 0, "no timer (0)"
				}
				if !ok {
					t.Errorf("%s %s: socket %s -> %s: got timer %d due in %d ticks; want %s",
						s.what, s.setting, s.local, s.remote, timer, ticks, want)
				}
			}
			if err := c.echo("still fine\n"); err != nil {
				t.Errorf("echo: %v", err)
			}
		})
	}
}
