package tlsmode

// Tests of the lean forward (h1forward.go, h1upstream.go): a real TLS
// client connection served by HTTPProxy.ServeConn in front of raw HTTP/1.1
// servers written by hand on 127.0.0.1, so that each test controls every
// byte the server sends and sees every byte the proxy sends it.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/affinity"
)

// lfWait bounds every wait of these tests (none is a timing assertion).
const lfWait = 15 * time.Second

// lfServer is a raw HTTP/1.1 server: each accepted connection runs serve,
// whose returned error (how the connection ended for the server) goes to
// ends.
type lfServer struct {
	ln      net.Listener
	addr    string
	accepts atomic.Int32
	ends    chan lfEnd
	wg      sync.WaitGroup
	once    sync.Once

	mu    sync.Mutex
	conns []net.Conn
	reqs  []*lfReq
}

type lfEnd struct {
	n   int
	err error
}

// lfSess is one server connection: n counts the accepts from 1.
type lfSess struct {
	s  *lfServer
	n  int
	c  net.Conn
	br *bufio.Reader
}

// lfReq is a request as the server read it.
type lfReq struct {
	conn   int      // the server connection it came on
	line   string   // the request line
	fields []string // the header lines as sent, sorted
	body   string
	req    *http.Request
}

func lfListen(t *testing.T, serve func(ss *lfSess) error) *lfServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &lfServer{ln: ln, addr: ln.Addr().String(), ends: make(chan lfEnd, 64)}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := int(s.accepts.Add(1))
			_ = c.SetDeadline(time.Now().Add(lfWait)) // every server wait is bounded
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				err := serve(&lfSess{s: s, n: n, c: c, br: bufio.NewReader(c)})
				c.Close()
				s.ends <- lfEnd{n, err}
			}()
		}
	}()
	t.Cleanup(s.close)
	return s
}

// close stops the listener and every connection, and waits for them.
func (s *lfServer) close() {
	s.once.Do(func() {
		s.ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
}

func (s *lfServer) seen() []*lfReq {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reqs)
}

// waitEnd waits for the end of server connection n and returns how its
// serve ended.
func (s *lfServer) waitEnd(t *testing.T, n int) error {
	t.Helper()
	timeout := time.After(lfWait)
	for {
		select {
		case e := <-s.ends:
			if e.n == n {
				return e.err
			}
		case <-timeout:
			t.Fatalf("server connection %d did not end", n)
			return nil
		}
	}
}

// read reads one request (head and Content-Length body) and records it.
func (ss *lfSess) read() (*lfReq, error) {
	var raw bytes.Buffer
	for {
		line, err := ss.br.ReadString('\n')
		if err != nil {
			return nil, err
		}
		raw.WriteString(line)
		if line == "\r\n" {
			break
		}
	}
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw.Bytes())))
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSuffix(raw.String(), "\r\n\r\n"), "\r\n")
	r := &lfReq{conn: ss.n, line: lines[0], fields: sortedStrings(lines[1:]), req: req}
	if req.ContentLength > 0 {
		b := make([]byte, req.ContentLength)
		if _, err := io.ReadFull(ss.br, b); err != nil {
			return nil, err
		}
		r.body = string(b)
	}
	ss.s.mu.Lock()
	ss.s.reqs = append(ss.s.reqs, r)
	ss.s.mu.Unlock()
	return r, nil
}

func (ss *lfSess) write(s string) error {
	_, err := io.WriteString(ss.c, s)
	return err
}

// untilEOF reads until the proxy closes the connection: nil for a clean
// close (EOF, or a reset when it closed with our bytes unread).
func (ss *lfSess) untilEOF() error {
	_, err := io.Copy(io.Discard, ss.br)
	if err == nil || errors.Is(err, syscall.ECONNRESET) {
		return nil
	}
	return err
}

// lfAnswer serves each request with a 200 "ok" carrying extra fields;
// with "Connection: close" it closes after the answer. It returns the
// error that ended the connection (EOF: the proxy closed it).
func lfAnswer(extra string) func(ss *lfSess) error {
	return func(ss *lfSess) error {
		for {
			if _, err := ss.read(); err != nil {
				return err
			}
			if err := ss.write("HTTP/1.1 200 OK\r\n" + extra + "Content-Length: 2\r\n\r\nok"); err != nil {
				return err
			}
			if strings.Contains(extra, "Connection: close") {
				return nil
			}
		}
	}
}

// lfReplyOnce is a server that reads one request, writes answer and holds
// the connection until the proxy closes it.
func lfReplyOnce(answer string) func(ss *lfSess) error {
	return func(ss *lfSess) error {
		if _, err := ss.read(); err != nil {
			return err
		}
		if err := ss.write(answer); err != nil {
			return err
		}
		return ss.untilEOF()
	}
}

// lfProxy is an HTTPProxy of opt whose pool is the one server at addr.
func lfProxy(t *testing.T, opt HTTPOptions, addr string) *HTTPProxy {
	t.Helper()
	opt.Backend = oneServer{affinity.NewServer(addr, 1)}
	p := NewHTTPProxy(opt)
	t.Cleanup(func() { p.Close() })
	return p
}

// lfClient is a TLS client connection served by a proxy's ServeConn.
type lfClient struct {
	tc   *tls.Conn
	br   *bufio.Reader
	c    *Conn
	done chan struct{}
	err  error // ServeConn's, once done is closed
}

func lfConnect(t *testing.T, p *HTTPProxy) *lfClient {
	t.Helper()
	server, client := tlsPair(t)
	lc := &lfClient{tc: client, br: bufio.NewReader(client), done: make(chan struct{}),
		c: &Conn{Conn: server.NetConn(), Source: netip.MustParseAddrPort("192.0.2.7:40000")}}
	go func() {
		lc.err = p.ServeConn(context.Background(), server, lc.c)
		close(lc.done)
	}()
	_ = client.SetDeadline(time.Now().Add(lfWait))
	t.Cleanup(func() {
		client.Close()
		select {
		case <-lc.done:
		case <-time.After(lfWait):
			t.Error("ServeConn did not return after the client closed")
		}
	})
	return lc
}

// do sends raw and reads the answer and its body (err: the body's read).
func (lc *lfClient) do(t *testing.T, raw string) (*http.Response, string, error) {
	t.Helper()
	if _, err := io.WriteString(lc.tc, raw); err != nil {
		t.Fatalf("writing %.40q: %v", raw, err)
	}
	method, _, _ := strings.Cut(raw, " ")
	resp, err := http.ReadResponse(lc.br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading the answer to %.40q: %v", raw, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b), err
}

// ok sends raw and wants a 200 "ok" read whole.
func (lc *lfClient) ok(t *testing.T, raw string) {
	t.Helper()
	resp, body, err := lc.do(t, raw)
	lfWantOK(t, resp, body, err)
}

// lfWantOK: a 200 "ok" whose body was read whole.
func lfWantOK(t *testing.T, resp *http.Response, body string, err error) {
	t.Helper()
	if resp.StatusCode != 200 || body != "ok" || err != nil {
		t.Fatalf("got %d %q, %v; want 200 \"ok\"", resp.StatusCode, body, err)
	}
}

const lfGet = "GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n"

// Keep-alive: five GETs of one client go on one server connection; a
// server that answers "Connection: close" gets a new connection for each.
// Guards the pool (put/get) and the resp.Close rule.
func TestLfKeepAliveReuse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, extra string
		accepts     int32
	}{{"keep-alive", "", 1}, {"Connection: close", "Connection: close\r\n", 5}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := lfListen(t, lfAnswer(tc.extra))
			lc := lfConnect(t, lfProxy(t, HTTPOptions{}, srv.addr))
			for range 5 {
				resp, body, err := lc.do(t, lfGet)
				lfWantOK(t, resp, body, err)
				if resp.Close {
					t.Fatal("the client's connection closes; want it kept (Connection is hop-by-hop)")
				}
			}
			if n := srv.accepts.Load(); n != tc.accepts {
				t.Errorf("server connections: got %d; want %d", n, tc.accepts)
			}
			if n := len(srv.seen()); n != 5 {
				t.Errorf("requests at the server: got %d; want 5", n)
			}
		})
	}
}

// A pooled connection the server closes. Closed while idle (before the
// next request): every request goes on a new connection and succeeds, as
// through http.Transport, whose idle connections notice the close. Closed
// after reading the next request without answering: a GET is sent again on
// a new connection, a POST is not (502: it may have been processed;
// http.Transport's rule) and is seen once, one with an Idempotency-Key is.
func TestLfStaleIdleRetry(t *testing.T) {
	t.Parallel()
	const post = "POST /p HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: 5\r\n\r\nhello"
	const idem = "POST /p HTTP/1.1\r\nHost: a.example.com\r\nIdempotency-Key: k1\r\nContent-Length: 5\r\n\r\nhello"
	for _, tc := range []struct {
		name   string
		idle   bool // closed while idle, else after reading the request
		req    string
		status int
		conns  []int // the server connection of each request seen
	}{
		{"closed while idle, GET", true, lfGet, 200, []int{1, 2}},
		{"closed while idle, POST", true, post, 200, []int{1, 2}},
		{"closed after the request, GET", false, lfGet, 200, []int{1, 1, 2}},
		{"closed after the request, POST", false, post, 502, []int{1, 1}},
		{"closed after the request, POST with Idempotency-Key", false, idem, 200, []int{1, 1, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			keep := lfAnswer("")
			srv := lfListen(t, func(ss *lfSess) error {
				if ss.n > 1 {
					return keep(ss)
				}
				// The first connection: one answer kept alive, then closed.
				if _, err := ss.read(); err != nil {
					return err
				}
				if err := ss.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil || tc.idle {
					return err
				}
				_, err := ss.read()
				return err
			})
			lc := lfConnect(t, lfProxy(t, HTTPOptions{}, srv.addr))
			lc.ok(t, lfGet)
			if tc.idle {
				if err := srv.waitEnd(t, 1); err != nil {
					t.Fatalf("server connection 1: %v", err)
				}
			}
			resp, body, _ := lc.do(t, tc.req)
			if resp.StatusCode != tc.status {
				t.Errorf("got %d %q; want %d", resp.StatusCode, body, tc.status)
			}
			var conns []int
			for _, r := range srv.seen() {
				conns = append(conns, r.conn)
			}
			if !slices.Equal(conns, tc.conns) {
				t.Errorf("server connections of the requests seen: got %v; want %v", conns, tc.conns)
			}
			_, want, _ := strings.Cut(tc.req, "\r\n\r\n")
			if seen := srv.seen(); slices.Equal(conns, tc.conns) && seen[len(seen)-1].body != want {
				t.Errorf("body of the last request seen: got %q; want %q", seen[len(seen)-1].body, want)
			}
		})
	}
}

// Hop-by-hop fields (and those Connection names) are removed both ways;
// "TE: trailers" is kept. Guards removeHopByHop and the exact head sent.
func TestLfHopByHop(t *testing.T) {
	t.Parallel()
	srv := lfListen(t, func(ss *lfSess) error {
		if _, err := ss.read(); err != nil {
			return err
		}
		return ss.write("HTTP/1.1 200 OK\r\nConnection: X-Bar\r\nX-Bar: secret\r\nKeep-Alive: timeout=5\r\n" +
			"Proxy-Connection: keep-alive\r\nX-Ok: 1\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
	})
	lc := lfConnect(t, lfProxy(t, HTTPOptions{}, srv.addr))
	resp, body, err := lc.do(t, "GET /h HTTP/1.1\r\nHost: a.example.com\r\nConnection: X-Foo\r\nX-Foo: 1\r\n"+
		"Keep-Alive: timeout=5\r\nProxy-Authorization: Basic eDp5\r\nTE: trailers\r\nX-App: yes\r\n\r\n")
	lfWantOK(t, resp, body, err)
	seen := srv.seen()
	if len(seen) != 1 {
		t.Fatalf("requests at the server: got %d; want 1", len(seen))
	}
	want := []string{"Host: a.example.com", "Te: trailers", "X-App: yes",
		"X-Forwarded-For: 192.0.2.7", "X-Forwarded-Host: a.example.com", "X-Forwarded-Proto: https"}
	if !slices.Equal(seen[0].fields, want) {
		t.Errorf("fields at the server:\n got %q\nwant %q", seen[0].fields, want)
	}
	var names []string
	for k := range resp.Header {
		names = append(names, k)
	}
	if got := sortedStrings(names); !slices.Equal(got, []string{"Content-Length", "Content-Type", "Date", "X-Ok"}) {
		t.Errorf("fields at the client: got %v; want [Content-Length Content-Type Date X-Ok]", got)
	}
}

// The head the server sees: request line in origin form, the client's
// Host, Content-Length 0 for a POST without a body, a buffered body whole
// with its length, nothing added (no Accept-Encoding, no User-Agent).
func TestLfRequestHead(t *testing.T) {
	t.Parallel()
	srv := lfListen(t, lfAnswer(""))
	lc := lfConnect(t, lfProxy(t, HTTPOptions{}, srv.addr))
	big := strings.Repeat("0123456789", 6000)
	xff := []string{"X-Forwarded-For: 192.0.2.7", "X-Forwarded-Proto: https"}
	for _, tc := range []struct {
		req, line string
		fields    []string
		body      string
	}{
		{"GET /p?q=1 HTTP/1.1\r\nHost: a.example.com:8443\r\nAccept: */*\r\n\r\n", "GET /p?q=1 HTTP/1.1",
			[]string{"Accept: */*", "Host: a.example.com:8443", "X-Forwarded-Host: a.example.com:8443"}, ""},
		{"GET http://a.example.com/abs?x=1 HTTP/1.1\r\nHost: a.example.com\r\n\r\n", "GET /abs?x=1 HTTP/1.1",
			[]string{"Host: a.example.com", "X-Forwarded-Host: a.example.com"}, ""},
		{"POST /e HTTP/1.1\r\nHost: a.example.com\r\n\r\n", "POST /e HTTP/1.1",
			[]string{"Content-Length: 0", "Host: a.example.com", "X-Forwarded-Host: a.example.com"}, ""},
		{"PUT /b HTTP/1.1\r\nHost: a.example.com\r\nContent-Type: application/octet-stream\r\nContent-Length: 60000\r\n\r\n" + big, "PUT /b HTTP/1.1",
			[]string{"Content-Length: 60000", "Content-Type: application/octet-stream", "Host: a.example.com", "X-Forwarded-Host: a.example.com"}, big},
	} {
		lc.ok(t, tc.req)
		seen := srv.seen()
		got := seen[len(seen)-1]
		want := sortedStrings(append(slices.Clone(tc.fields), xff...))
		if got.line != tc.line || !slices.Equal(got.fields, want) || got.body != tc.body {
			t.Errorf("%.30q at the server:\n got %q %q body %d bytes\nwant %q %q body %d bytes",
				tc.req, got.line, got.fields, len(got.body), tc.line, want, len(tc.body))
		}
	}
	if n := srv.accepts.Load(); n != 1 {
		t.Errorf("server connections: got %d; want 1", n)
	}
}

// 1xx: a 103 Early Hints reaches the client at once (before the server
// has sent its 200), without leaking its fields into the 200; a 100
// Continue from the server is not relayed.
func TestLfInformational(t *testing.T) {
	t.Parallel()
	got103 := make(chan struct{})
	srv := lfListen(t, func(ss *lfSess) error {
		for {
			r, err := ss.read()
			if err != nil {
				return err
			}
			if r.req.URL.Path == "/hints" {
				if err := ss.write("HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"); err != nil {
					return err
				}
				select { // the 200 only once the client holds the 103
				case <-got103:
				case <-time.After(lfWait):
					return errors.New("the client never got the 103")
				}
			} else if err := ss.write("HTTP/1.1 100 Continue\r\n\r\n"); err != nil {
				return err
			}
			if err := ss.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
				return err
			}
		}
	})
	lc := lfConnect(t, lfProxy(t, HTTPOptions{}, srv.addr))
	if _, err := io.WriteString(lc.tc, "GET /hints HTTP/1.1\r\nHost: a.example.com\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(lc.br, nil)
	if err != nil || resp.StatusCode != 103 || resp.Header.Get("Link") != "</a.css>; rel=preload" {
		t.Fatalf("first answer: got %v, %v; want 103 with the Link field", resp, err)
	}
	close(got103)
	resp, err = http.ReadResponse(lc.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != "ok" || err != nil || resp.Header.Get("Link") != "" {
		t.Errorf("after the 103: got %d %q %v, Link %q; want 200 \"ok\" without Link", resp.StatusCode, b, err, resp.Header.Get("Link"))
	}
	resp, body, err := lc.do(t, "GET /continue HTTP/1.1\r\nHost: a.example.com\r\n\r\n")
	lfWantOK(t, resp, body, err) // a relayed 100 would be read here instead
}

// Trailers of a chunked answer reach an http.Client, announced or not.
func TestLfTrailers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, announce, trailer string
		want                    http.Header
	}{
		{"announced", "Trailer: X-Sum\r\n", "X-Sum: 42\r\n", http.Header{"X-Sum": {"42"}}},
		{"announced and one more", "Trailer: X-Sum\r\n", "X-Sum: 42\r\nX-Late: 7\r\n", http.Header{"X-Sum": {"42"}, "X-Late": {"7"}}},
		{"not announced", "", "X-Late: 7\r\n", http.Header{"X-Late": {"7"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := lfListen(t, func(ss *lfSess) error {
				if _, err := ss.read(); err != nil {
					return err
				}
				return ss.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n" + tc.announce + "\r\n5\r\nhello\r\n0\r\n" + tc.trailer + "\r\n")
			})
			lc := lfConnect(t, lfProxy(t, HTTPOptions{}, srv.addr))
			var dialed atomic.Bool
			tr := &http.Transport{DialTLSContext: func(context.Context, string, string) (net.Conn, error) {
				if dialed.Swap(true) {
					return nil, errors.New("one connection only")
				}
				return lc.tc, nil
			}}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr}).Get("https://a.example.com/t")
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != "hello" || err != nil || !reflect.DeepEqual(resp.Trailer, tc.want) {
				t.Errorf("got %q, %v, trailer %v; want \"hello\", trailer %v", b, err, resp.Trailer, tc.want)
			}
		})
	}
}

// Answers the proxy must not pass on: 502 (504 for no answer in time),
// never sent again, and the server connection closed.
func TestLfBadAnswers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		limits HTTPLimits
		answer string // "" = none
		status int
	}{
		{"101 to a request without Upgrade", HTTPLimits{}, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", 502},
		{"no status line", HTTPLimits{}, "SSH-2.0-OpenSSH_9.6\r\n\r\n", 502},
		{"head over max_response_header_bytes", HTTPLimits{MaxResponseHeader: 1024},
			"HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("b", 4000) + "\r\nContent-Length: 2\r\n\r\nok", 502},
		{"no answer within response_header_timeout", HTTPLimits{ResponseHeaderTimeout: 300 * time.Millisecond}, "", 504},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := lfListen(t, lfReplyOnce(tc.answer))
			lc := lfConnect(t, lfProxy(t, HTTPOptions{Limits: tc.limits}, srv.addr))
			resp, body, _ := lc.do(t, lfGet)
			if resp.StatusCode != tc.status {
				t.Errorf("got %d %q; want %d", resp.StatusCode, body, tc.status)
			}
			if err := srv.waitEnd(t, 1); err != nil {
				t.Errorf("server connection: %v; want it closed by the proxy", err)
			}
			if n := srv.accepts.Load(); n != 1 {
				t.Errorf("server connections: got %d; want 1 (not sent again)", n)
			}
		})
	}
}

// A server that stops in the middle of a Content-Length body: the client
// does not get a whole answer, and the connection is not pooled (the
// server, which only half-closed, sees the proxy close it, and the next
// request opens another).
func TestLfServerDiesMidBody(t *testing.T) {
	t.Parallel()
	keep := lfAnswer("")
	srv := lfListen(t, func(ss *lfSess) error {
		if ss.n > 1 {
			return keep(ss)
		}
		if _, err := ss.read(); err != nil {
			return err
		}
		if err := ss.write("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabcd"); err != nil {
			return err
		}
		_ = ss.c.(*net.TCPConn).CloseWrite()
		if r, err := ss.read(); err == nil { // pooled: the next request would come here
			return fmt.Errorf("got %q on the cut connection", r.line)
		}
		return ss.untilEOF()
	})
	p := lfProxy(t, HTTPOptions{}, srv.addr)
	lc := lfConnect(t, p)
	if _, err := io.WriteString(lc.tc, lfGet); err != nil {
		t.Fatal(err)
	}
	// The head may or may not have gone out before the abort; either way
	// the answer must not read as whole.
	resp, err := http.ReadResponse(lc.br, nil)
	if err == nil {
		var b []byte
		b, err = io.ReadAll(resp.Body)
		if err == nil {
			t.Fatalf("the client got a whole answer %d %q; want the body cut", resp.StatusCode, b)
		}
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		t.Errorf("client: %v; want the connection closed (EOF / unexpected EOF)", err)
	}
	if err := srv.waitEnd(t, 1); err != nil {
		t.Errorf("server connection 1: %v; want it closed by the proxy", err)
	}
	lfConnect(t, p).ok(t, lfGet)
	if n := srv.accepts.Load(); n != 2 {
		t.Errorf("server connections: got %d; want 2", n)
	}
}

// CancelRequest (a drain past drain_timeout) during a response body: the
// client's answer ends in an error, the server connection closes,
// ServeConn returns nil, and no goroutine is left. Not parallel: it
// counts the process's goroutines.
func TestLfCancelRequest(t *testing.T) {
	before := runtime.NumGoroutine()
	srv := lfListen(t, lfReplyOnce("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n"))
	p := lfProxy(t, HTTPOptions{}, srv.addr)
	lc := lfConnect(t, p)
	if _, err := io.WriteString(lc.tc, lfGet); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(lc.br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("got %v, %v; want the 200's head", resp, err)
	}
	first := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "first" {
		t.Fatalf("body start: got %q, %v; want \"first\"", first, err)
	}
	if !p.CancelRequest(srv.addr) {
		t.Fatal("CancelRequest found no request in flight")
	}
	if rest, err := io.ReadAll(resp.Body); err == nil {
		t.Errorf("after CancelRequest the body ended cleanly with %q; want an error", rest)
	}
	if err := srv.waitEnd(t, 1); err != nil {
		t.Errorf("server connection: %v; want it closed by the proxy", err)
	}
	select {
	case <-lc.done:
		if lc.err != nil {
			t.Errorf("ServeConn: %v (reason %q); want nil", lc.err, lc.c.Reason)
		}
	case <-time.After(lfWait):
		t.Fatal("ServeConn did not return")
	}
	lc.tc.Close()
	p.Close()
	srv.close()
	deadline := time.Now().Add(lfWait)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Errorf("goroutines: %d before, %d after\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}

// CloseIdleFor closes the idle connections of its server only; Close
// closes them all. The server sees each close.
func TestLfCloseIdle(t *testing.T) {
	t.Parallel()
	t.Run("CloseIdleFor", func(t *testing.T) {
		t.Parallel()
		srv := lfListen(t, lfAnswer(""))
		p := lfProxy(t, HTTPOptions{}, srv.addr)
		lc := lfConnect(t, p)
		lc.ok(t, lfGet)
		p.CloseIdleFor("127.0.0.1:1") // another server: ours is kept
		lc.ok(t, lfGet)
		if n := srv.accepts.Load(); n != 1 {
			t.Fatalf("server connections after CloseIdleFor(another): got %d; want 1", n)
		}
		p.CloseIdleFor(srv.addr)
		if err := srv.waitEnd(t, 1); !errors.Is(err, io.EOF) {
			t.Errorf("server connection 1: %v; want EOF", err)
		}
		lc.ok(t, lfGet)
		if n := srv.accepts.Load(); n != 2 {
			t.Errorf("server connections: got %d; want 2", n)
		}
	})
	t.Run("Close", func(t *testing.T) {
		t.Parallel()
		srv := lfListen(t, lfAnswer(""))
		p := lfProxy(t, HTTPOptions{}, srv.addr)
		lc := lfConnect(t, p)
		lc.ok(t, lfGet)
		p.Close()
		if err := srv.waitEnd(t, 1); !errors.Is(err, io.EOF) {
			t.Errorf("server connection 1: %v; want EOF", err)
		}
		if _, err := lc.br.ReadByte(); err == nil {
			t.Error("client read data; want its idle connection closed by the drain")
		}
	})
}

// HEAD keeps the server's Content-Length and carries no body; 204 and 304
// pass without one. All on one client and one server connection, so a
// stray body byte would break the next answer.
func TestLfNoBodyAnswers(t *testing.T) {
	t.Parallel()
	srv := lfListen(t, func(ss *lfSess) error {
		for {
			r, err := ss.read()
			if err != nil {
				return err
			}
			answer := map[string]string{
				"/head": "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1234\r\n\r\n",
				"/204":  "HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n",
				"/304":  "HTTP/1.1 304 Not Modified\r\nEtag: \"v1\"\r\n\r\n",
			}[r.req.URL.Path]
			if answer == "" {
				answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
			}
			if err := ss.write(answer); err != nil {
				return err
			}
		}
	})
	lc := lfConnect(t, lfProxy(t, HTTPOptions{}, srv.addr))
	for _, tc := range []struct {
		req      string
		status   int
		length   int64
		field, v string
	}{
		{"HEAD /head HTTP/1.1\r\nHost: a.example.com\r\n\r\n", 200, 1234, "Content-Length", "1234"},
		{"GET /204 HTTP/1.1\r\nHost: a.example.com\r\n\r\n", 204, 0, "X-A", "1"},
		{"GET /304 HTTP/1.1\r\nHost: a.example.com\r\n\r\n", 304, 0, "Etag", "\"v1\""},
	} {
		resp, body, err := lc.do(t, tc.req)
		if resp.StatusCode != tc.status || body != "" || err != nil || resp.ContentLength != tc.length ||
			resp.Header.Get(tc.field) != tc.v || len(resp.TransferEncoding) != 0 {
			t.Errorf("%.20q: got %d %q %v, length %d, %s %q, TE %v; want %d, no body, length %d, %s %q",
				tc.req, resp.StatusCode, body, err, resp.ContentLength, tc.field, resp.Header.Get(tc.field), resp.TransferEncoding,
				tc.status, tc.length, tc.field, tc.v)
		}
	}
	lc.ok(t, lfGet)
	if n := srv.accepts.Load(); n != 1 {
		t.Errorf("server connections: got %d; want 1", n)
	}
}

// lfServers is a Backend that picks its servers in order, skipping those
// already tried.
type lfServers []*affinity.Server

func (lfServers) Connect(context.Context, *Conn) (*Upstream, error) { return nil, ErrNoServer }
func (b lfServers) AcquireServer(_ context.Context, _ *Conn, skip func(*affinity.Server) bool) (*affinity.Server, error) {
	for _, s := range b {
		if !skip(s) {
			s.Acquire()
			return s, nil
		}
	}
	return nil, ErrNoServer
}

// A server that refuses the connection: with retries the next server
// answers the GET; without, the client gets 502 "cannot connect" (never
// an empty answer). Guards forward's retry and error paths.
func TestLfConnectRetry(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close() // nothing listens there now: connect refused
	for _, tc := range []struct {
		retries int
		status  int
		body    string
		accepts int32
	}{{1, 200, "ok", 1}, {0, 502, "502 bad gateway: cannot connect to a server\n", 0}} {
		t.Run(fmt.Sprintf("retries=%d", tc.retries), func(t *testing.T) {
			t.Parallel()
			srv := lfListen(t, lfAnswer(""))
			p := NewHTTPProxy(HTTPOptions{Retries: tc.retries,
				Backend: lfServers{affinity.NewServer(refused, 1), affinity.NewServer(srv.addr, 1)}})
			t.Cleanup(func() { p.Close() })
			resp, body, err := lfConnect(t, p).do(t, lfGet)
			if resp.StatusCode != tc.status || body != tc.body || err != nil {
				t.Errorf("got %d %q, %v; want %d %q", resp.StatusCode, body, err, tc.status, tc.body)
			}
			if n := srv.accepts.Load(); n != tc.accepts {
				t.Errorf("connections at the second server: got %d; want %d", n, tc.accepts)
			}
		})
	}
}
