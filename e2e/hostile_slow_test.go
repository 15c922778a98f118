package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// Slowloris at every stage of a connection, black-box on the built binary:
// each attack is closed by tlsedge (an event: the client sees the end, no
// duration is asserted) with its reason on the connection's line, reaches
// no server that it must not reach, and a well-behaved client connecting
// during the attack is served. Stages covered elsewhere, not repeated here:
//   - a request body of 10 of 100 bytes then silence: 408 at
//     http.read_body_timeout, HTTP/1.1 and HTTP/2: TestSmugglingSlowBody
//     (smuggling_test.go);
//   - a response never read: cut at http.write_timeout, the server slot
//     freed: TestWriteTimeoutCutsStalledClient (timeouts_test.go);
//   - passthrough with handshake_timeout set: TestLimitPassthroughHandshakeTimeout
//     (limits_test.go); here the default (no key) is checked;
//   - idle_timeout on passthrough streams: TestIdleTimeoutClosesSilentStreams.

// ---------------------------------------------------------------- a passthrough server that counts

// htServer is a TLS server behind passthrough routes: it counts every TCP
// connection it accepts, records the server name of every hello crypto/tls
// parsed, and after a handshake writes "<name>\n" and echoes.
type htServer struct {
	name  string
	addr  string
	conf  *tls.Config
	group *connGroup

	mu       sync.Mutex
	accepted int
	snis     []string
}

// htStartServer starts an htServer on 127.0.0.1:0; t.Cleanup stops it.
func htStartServer(t testing.TB, name string) *htServer {
	t.Helper()
	cert, err := thePKI.serverCert(name)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &htServer{name: name, addr: ln.Addr().String(), group: newConnGroup(t, "server "+name)}
	s.conf = &tls.Config{Certificates: []tls.Certificate{cert.TLS}, MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
			s.mu.Lock()
			s.snis = append(s.snis, hi.ServerName)
			s.mu.Unlock()
			return nil, nil
		}}
	s.group.serve(ln, s.handle)
	t.Cleanup(s.group.stop)
	return s
}

func (s *htServer) handle(c net.Conn) {
	s.mu.Lock()
	s.accepted++
	s.mu.Unlock()
	// Longer than any timeout of tlsedge the tests wait for (the default
	// handshake_timeout is 10s): tlsedge, not this server, ends stalls.
	_ = c.SetDeadline(time.Now().Add(3 * waitLong))
	tc := tls.Server(c, s.conf)
	if err := tc.Handshake(); err != nil {
		return
	}
	_ = c.SetDeadline(time.Time{})
	if _, err := fmt.Fprintf(tc, "%s\n", s.name); err != nil {
		return
	}
	_, _ = io.Copy(tc, tc)
}

// Accepted is the number of TCP connections accepted so far.
func (s *htServer) Accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted
}

// lastSNI is the server name of the last hello the server parsed.
func (s *htServer) lastSNI() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.snis) == 0 {
		return "<no hello>"
	}
	return s.snis[len(s.snis)-1]
}

// ---------------------------------------------------------------- the edge under attack

// htSlowEdge is one listener with routes pass.example.com (passthrough ->
// htServer pass-1), term.example.com (terminate http -> term-1) and
// tcp.example.com (terminate tcp -> a plain TCP echo server).
type htSlowEdge struct {
	*edgeProc
	pass *htServer
	term *httpBackend
	tcp  *htEcho
}

// htStartSlowEdge starts it with the listener keys lk, the term route's
// http keys hk and backends[].idle_timeout idle ("" = not set).
func htStartSlowEdge(t *testing.T, lk, hk cfgMap, idle string) *htSlowEdge {
	t.Helper()
	p := writeTermFiles(t)
	e := &htSlowEdge{pass: htStartServer(t, "pass-1"), term: startHTTPBackend(t, "term-1"), tcp: htStartEcho(t)}
	term := termRoute(p, "term.example.com", "terminate", "http", "term", "", nil)
	if hk != nil {
		term["http"] = hk
	}
	l := cfgMap{"name": "public", "address": "", "routes": []any{
		cfgMap{"sni": []any{"pass.example.com"}, "mode": "passthrough", "backend": "pass"},
		term,
		termRoute(p, "tcp.example.com", "terminate", "tcp", "tcp", "", nil),
	}}
	for k, v := range lk {
		l[k] = v
	}
	bs := []any{
		cfgMap{"name": "pass", "servers": servers(e.pass.addr)},
		cfgMap{"name": "term", "servers": servers(e.term.Addr())},
		cfgMap{"name": "tcp", "servers": servers(e.tcp.addr)},
	}
	if idle != "" {
		for _, b := range bs {
			b.(cfgMap)["idle_timeout"] = idle
		}
	}
	cfg := cfgMap{"log": cfgMap{"level": "info", "format": "json", "access": true, "failure_burst": 0},
		"listeners": []any{l}, "backends": bs}
	useTermFiles(t, cfg, p)
	e.edgeProc = runEdge(t, cfg)
	return e
}

// htEcho is a plain TCP echo server that counts the connections it accepted.
type htEcho struct {
	addr     string
	accepted atomic.Int64
}

func htStartEcho(t testing.TB) *htEcho {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &htEcho{addr: ln.Addr().String()}
	g := newConnGroup(t, "echo server")
	g.serve(ln, func(c net.Conn) {
		s.accepted.Add(1)
		_, _ = io.Copy(c, c)
	})
	t.Cleanup(g.stop)
	return s
}

// goodClients checks that a well-behaved client of each kind is served:
// passthrough (handshake, banner, echo) and terminate http (200 from term-1).
func (e *htSlowEdge) goodClients(t *testing.T, tag string) {
	t.Helper()
	c := htRealClient(t, e.addr, "pass.example.com", 0, false)
	htPassEcho(t, c, "pass-1")
	c.Close()
	client := httpsClient(e.addr, &tls.Config{ServerName: "term.example.com", RootCAs: thePKI.serverCA.Pool()}, false)
	defer client.CloseIdleConnections()
	resp, err := client.Get("https://term.example.com/good/" + tag)
	if err != nil {
		t.Fatalf("a well-behaved client during the attack: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := "term-1 GET /good/" + tag + "\n"; resp.StatusCode != 200 || string(body) != want {
		t.Fatalf("a well-behaved client during the attack: %d %q; want 200 %q", resp.StatusCode, body, want)
	}
}

// htEnd is how a connection ended for its client: the bytes read until
// the peer closed it, or err when it did not close (in time) or failed.
type htEnd struct {
	got []byte
	err error
}

// htReadToClose reads c until the peer closes it (EOF or reset), at most
// limit; it may run on its own goroutine.
func htReadToClose(c net.Conn, limit time.Duration) htEnd {
	_ = c.SetReadDeadline(time.Now().Add(limit))
	got, err := io.ReadAll(c)
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return htEnd{got, fmt.Errorf("still open after %v; want closed by tlsedge (got %d bytes)", limit, len(got))}
	case err != nil && !isReset(err):
		return htEnd{got, fmt.Errorf("reading until closed: %w", err)}
	}
	return htEnd{got: got}
}

// closed fails the test unless the connection was closed; it returns what
// the client read before.
func (r htEnd) closed(t *testing.T) []byte {
	t.Helper()
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.got
}

// htLine checks the reason and level of a connection line.
func htLine(t *testing.T, l logLine, reason, level string) {
	t.Helper()
	if l.str("reason") != reason || l.str("level") != level {
		t.Errorf("line %v: want reason %q at %s", l, reason, level)
	}
}

// Each stage on its own tlsedge with short timeouts (docs/config.md:
// listeners[].clienthello_timeout, listeners[].handshake_timeout,
// routes[].http.read_header_timeout, backends[].idle_timeout).
func TestHostileSlow(t *testing.T) {
	t.Parallel()

	// clienthello_timeout 2s: a hello trickled one byte a second never
	// completes (each byte would push a per-read deadline on); tlsedge
	// closes it with nothing sent back, reason "clienthello timeout", no
	// server contacted.
	t.Run("hello_one_byte_per_second", func(t *testing.T) {
		t.Parallel()
		e := htStartSlowEdge(t, cfgMap{"clienthello_timeout": "2s"}, nil, "")
		hello := clientHello(t, clientOpts{SNI: "pass.example.com"})
		c := rawDialFrom(t, e.addr, "127.0.0.1")
		n := e.accessCount(c.LocalAddr().String())
		var sent atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range hello {
				if _, err := c.Write(hello[i : i+1]); err != nil {
					return
				}
				sent.Add(1)
				select {
				case <-stop:
					return
				case <-time.After(time.Second):
				}
			}
		}()
		defer wg.Wait()
		defer close(stop)
		if !poll(waitLong, func() bool { return sent.Load() >= 1 }) {
			t.Fatal("the first byte of the hello was not sent")
		}
		e.goodClients(t, "hello-trickle")
		if got := htReadToClose(c, waitLong).closed(t); len(got) != 0 {
			t.Errorf("tlsedge sent %x; want nothing", got)
		}
		if s := sent.Load(); s >= int64(len(hello)) {
			t.Errorf("the whole hello (%d bytes) was sent before the close; want it cut short", s)
		}
		l := e.nextAccessLine(t, c.LocalAddr().String(), n)
		htLine(t, l, "clienthello timeout", "warn")
		if e.pass.Accepted() != 1 { // the good client's
			t.Errorf("pass-1 accepted %d connections; want 1 (the good client only)", e.pass.Accepted())
		}
	})

	// terminate, handshake_timeout 3s: the hello is complete, tlsedge
	// answers its flight, the client never sends its Finished. Closed with
	// reason "handshake timeout" (docs/config.md, listeners[].handshake_timeout);
	// no server contacted.
	t.Run("terminate_client_stops_mid_handshake", func(t *testing.T) {
		t.Parallel()
		e := htStartSlowEdge(t, cfgMap{"handshake_timeout": "3s"}, nil, "")
		c := rawDialFrom(t, e.addr, "127.0.0.1")
		n := e.accessCount(c.LocalAddr().String())
		if _, err := c.Write(clientHello(t, clientOpts{SNI: "term.example.com"})); err != nil {
			t.Fatal(err)
		}
		end := make(chan htEnd, 1)
		go func() { end <- htReadToClose(c, waitLong) }()
		e.goodClients(t, "stalled-handshake")
		if flight := (<-end).closed(t); len(flight) == 0 || flight[0] != 22 {
			t.Errorf("the client got %x; want tlsedge's handshake flight (a record of type 22) before the close", flight[:min(len(flight), 8)])
		}
		l := e.nextAccessLine(t, c.LocalAddr().String(), n)
		htLine(t, l, "handshake timeout", "warn")
		if l.str("route") != "term.example.com" || l.str("server") != "" {
			t.Errorf("line %v: want route term.example.com, no server", l)
		}
		if conns, reqs := contacts(e.term); conns != 1 || reqs != 1 {
			t.Errorf("term-1 got %d connections, %d requests; want 1, 1 (the good client's)", conns, reqs)
		}
	})

	// passthrough with no handshake_timeout key: the hello is forwarded,
	// the server answers, the client sends nothing more. The default (10s)
	// closes it, reason "handshake timeout"; the line names the server.
	t.Run("passthrough_client_silent_after_hello_default_timeout", func(t *testing.T) {
		t.Parallel()
		e := htStartSlowEdge(t, nil, nil, "")
		c := rawDialFrom(t, e.addr, "127.0.0.1")
		n := e.accessCount(c.LocalAddr().String())
		if _, err := c.Write(clientHello(t, clientOpts{SNI: "pass.example.com"})); err != nil {
			t.Fatal(err)
		}
		end := make(chan htEnd, 1)
		go func() { end <- htReadToClose(c, 3*waitLong) }()
		e.goodClients(t, "silent-after-hello")
		if flight := (<-end).closed(t); len(flight) == 0 || flight[0] != 22 {
			t.Errorf("the client got %x; want pass-1's handshake flight before the close", flight[:min(len(flight), 8)])
		}
		l := e.nextAccessLine(t, c.LocalAddr().String(), n)
		htLine(t, l, "handshake timeout", "warn")
		if l.str("server") != e.pass.addr {
			t.Errorf("line %v: want server %s (the hello was forwarded)", l, e.pass.addr)
		}
	})

	// http.read_header_timeout 1s: a request head dribbled one byte every
	// 200 ms never completes. The first head of a connection is cut by
	// net/http's own ReadHeaderTimeout (reason "client timeout: incomplete
	// request"); the next head of a keep-alive connection, which net/http
	// alone would wait for until idle_timeout (2m), by tlsedge's guard
	// (reason "... after read_header_timeout 1s"). The connection is closed
	// with no answer, and the dribbled request reaches no server.
	for _, tc := range []struct {
		name, first, reason string
	}{
		{"http_first_request_head_dribbled", "", "client timeout: incomplete request"},
		{"http_keepalive_next_request_head_dribbled", "/before-dribble",
			"client timeout: request head incomplete after read_header_timeout 1s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := htStartSlowEdge(t, nil, cfgMap{"read_header_timeout": "1s"}, "")
			l := htDribbleHead(t, e, tc.first)
			if l.str("reason") != tc.reason {
				t.Errorf("line %v: want reason %q", l, tc.reason)
			}
			want := 1 // the good client's request
			if tc.first != "" {
				want = 2
			}
			if ok, _ := findRequestMaybe("/dribble", e.term); ok {
				t.Errorf("/dribble reached term-1; want no server contacted")
			}
			if _, reqs := contacts(e.term); reqs != want {
				t.Errorf("term-1 got %d requests; want %d", reqs, want)
			}
		})
	}

	// backends[].idle_timeout 2s applies to an upgraded WebSocket of a
	// terminate http route and to a terminate tcp stream: the silent one is
	// ended (a WebSocket with close 1001, a tcp stream with the end of the
	// TLS stream), reason "idle timeout"; a chatty one lives on.
	t.Run("idle_timeout_websocket_and_terminate_tcp", func(t *testing.T) {
		t.Parallel()
		e := htStartSlowEdge(t, nil, nil, "2s")
		cert := thePKI.term.clients[cliValid].TLS
		silentWS, _, wsLocal := wsDialCert(t, e.addr, "term.example.com", "/ws-silent", cert)
		wsLines := e.accessCount(wsLocal)
		chattyWS, _, _ := wsDialCert(t, e.addr, "term.example.com", "/ws-chatty", cert)
		tcpConf := &tls.Config{ServerName: "tcp.example.com", RootCAs: thePKI.serverCA.Pool()}
		silentTCP, err := tls.Dial("tcp", e.addr, tcpConf)
		if err != nil {
			t.Fatal(err)
		}
		defer silentTCP.Close()
		tcpLines := e.accessCount(silentTCP.LocalAddr().String())
		chattyTCP, err := tls.Dial("tcp", e.addr, tcpConf)
		if err != nil {
			t.Fatal(err)
		}
		defer chattyTCP.Close()

		wsEnd := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), waitLong)
			defer cancel()
			_, _, err := silentWS.Read(ctx)
			wsEnd <- err
		}()
		tcpEnd := make(chan error, 1)
		go func() {
			_ = silentTCP.SetReadDeadline(time.Now().Add(waitLong))
			_, err := silentTCP.Read(make([]byte, 1))
			tcpEnd <- err
		}()
		// The chatty ones talk every 200 ms for twice the idle timeout.
		chattyBR := bufio.NewReader(chattyTCP)
		for i := range 20 {
			if _, err := wsExchange(chattyWS, "chatty", 200*time.Millisecond); err != nil {
				t.Fatalf("chatty WebSocket, round %d: %v", i, err)
			}
			_ = chattyTCP.SetDeadline(time.Now().Add(waitLong))
			msg := fmt.Sprintf("chatty %d\n", i)
			if _, err := io.WriteString(chattyTCP, msg); err != nil {
				t.Fatalf("chatty tcp stream, round %d: %v", i, err)
			}
			if got, err := chattyBR.ReadString('\n'); err != nil || got != msg {
				t.Fatalf("chatty tcp stream, round %d: echo %q (%v); want %q", i, got, err, msg)
			}
		}
		if err := <-wsEnd; websocket.CloseStatus(err) != websocket.StatusGoingAway {
			t.Errorf("silent WebSocket ended with %v; want close 1001 (going away)", err)
		}
		if err := <-tcpEnd; !errors.Is(err, io.EOF) {
			t.Errorf("silent tcp stream ended with %v; want EOF (tlsedge's close_notify)", err)
		}
		htLine(t, e.nextAccessLine(t, wsLocal, wsLines), "idle timeout", "info")
		htLine(t, e.nextAccessLine(t, silentTCP.LocalAddr().String(), tcpLines), "idle timeout", "info")
		// The chatty ones are still open and working.
		if _, err := wsExchange(chattyWS, "chatty after", 200*time.Millisecond); err != nil {
			t.Errorf("chatty WebSocket after the silent one ended: %v", err)
		}
		if _, err := io.WriteString(chattyTCP, "last\n"); err != nil {
			t.Errorf("chatty tcp stream after the silent one ended: %v", err)
		} else if got, err := chattyBR.ReadString('\n'); err != nil || got != "last\n" {
			t.Errorf("chatty tcp stream after the silent one ended: echo %q (%v)", got, err)
		}
		if n := e.tcp.accepted.Load(); n != 2 {
			t.Errorf("the tcp route's server accepted %d connections; want 2 (silent and chatty)", n)
		}
	})
}

// htDribbleHead opens an HTTP/1.1 connection to term.example.com, sends
// GET first and reads its answer when first is set, then dribbles the
// head of GET /dribble one byte every 200 ms until tlsedge closes, which it
// must do with no answer. A good client is served meanwhile. It returns the
// connection's line.
func htDribbleHead(t *testing.T, e *htSlowEdge, first string) logLine {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: waitLong}, "tcp", e.addr,
		&tls.Config{ServerName: "term.example.com", RootCAs: thePKI.serverCA.Pool(), NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n := e.accessCount(c.LocalAddr().String())
	br := bufio.NewReader(c)
	if first != "" {
		_ = c.SetDeadline(time.Now().Add(waitLong))
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: term.example.com\r\n\r\n", first)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("GET %s: %v", first, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d; want 200", first, resp.StatusCode)
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, err := io.WriteString(c, "GET /dribble HTTP/1.1\r\nHost: term.example.com\r\nX-Slow: "); err != nil {
			return
		}
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			if _, err := io.WriteString(c, "a"); err != nil {
				return
			}
		}
	}()
	defer wg.Wait()
	defer close(stop)
	end := make(chan htEnd, 1)
	go func() { end <- htReadToClose(&bufConn{Conn: c, r: br}, waitLong) }()
	e.goodClients(t, "dribbled-head")
	if ans := (<-end).closed(t); len(ans) != 0 {
		t.Errorf("tlsedge answered %q; want the connection closed with no answer", ans)
	}
	return e.nextAccessLine(t, c.LocalAddr().String(), n)
}
