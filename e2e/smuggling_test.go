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
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Issue "Hardening", request smuggling and the HTTP limits, black-box on
// the built binary: each attack is sent as raw bytes over TLS (or raw
// HTTP/2 frames) and the test checks the exact outcome: the status, that
// tlsedge closed the connection, the reason in its log, and that no server
// was contacted (the servers count every connection and record every
// request).

// ---------------------------------------------------------------- a recording server

// smugRequest is one request a smugBackend received.
type smugRequest struct {
	Method, Path string
	Header       http.Header
	Body         int   // bytes of body read
	BodyErr      error // why reading the body failed, nil = read to its end
}

// smugBackend is an HTTP server that reads every request body to its end
// and records the request. /bighead answers with an 80 KiB response head,
// /okhead with a 30 KiB one; an Upgrade request gets 426 (it never
// switches); anything else 200 "ok <path>".
type smugBackend struct {
	name string
	addr string

	mu       sync.Mutex
	accepted int
	reqs     []smugRequest
}

func startSmugBackend(t testing.TB, name string) *smugBackend {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &smugBackend{name: name, addr: raw.Addr().String()}
	ln := &countingListener{Listener: raw, count: func() {
		b.mu.Lock()
		b.accepted++
		b.mu.Unlock()
	}}
	srv := &http.Server{Handler: b, ReadHeaderTimeout: waitLong, ErrorLog: stdlog.New(io.Discard, "", 0)}
	serveHTTP(t, "HTTP backend "+name, srv, ln)
	return b
}

func (b *smugBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n, err := io.Copy(io.Discard, r.Body)
	b.mu.Lock()
	b.reqs = append(b.reqs, smugRequest{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: int(n), BodyErr: err})
	b.mu.Unlock()
	switch {
	case r.Header.Get("Upgrade") != "":
		w.WriteHeader(http.StatusUpgradeRequired)
		fmt.Fprintf(w, "no upgrade here\n")
		return
	case r.URL.Path == "/bighead":
		w.Header().Set("X-Big", strings.Repeat("b", 80<<10))
	case r.URL.Path == "/okhead":
		w.Header().Set("X-Big", strings.Repeat("b", 30<<10))
	}
	fmt.Fprintf(w, "ok %s\n", r.URL.Path)
}

func (b *smugBackend) Addr() string { return b.addr }

// contacts is the number of connections and requests received so far.
func (b *smugBackend) contacts() (conns, reqs int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.accepted, len(b.reqs)
}

// request returns the request for path, if one came.
func (b *smugBackend) request(path string) (smugRequest, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, r := range b.reqs {
		if r.Path == path {
			return r, true
		}
	}
	return smugRequest{}, false
}

// ---------------------------------------------------------------- the edge

// smugEdge is tlsedge with the routes these tests attack, each on its own
// server:
//
//   - www.example.com -> attacks: raw request smuggling; never contacted.
//   - ok.example.com -> ok: requests that must go through (identity ssl,
//     strip_headers X-Internal-* and X-Trust_Me).
//   - api.example.com -> ok: mutual TLS, identity xfcc, the same strip_headers.
//   - slow.example.com -> slow: read_body_timeout 1s; HTTP/2 limits 7
//     streams, 128 KiB stream window, 256 KiB connection window.
type smugEdge struct {
	*edgeProc
	admin                *adminClient
	attacks, ok, slowSrv *smugBackend
}

func startSmugEdge(t *testing.T) *smugEdge {
	t.Helper()
	p := writeTermFiles(t)
	s := &smugEdge{attacks: startSmugBackend(t, "attacks"), ok: startSmugBackend(t, "ok"), slowSrv: startSmugBackend(t, "slow")}
	www := termRoute(p, "www.example.com", "terminate", "http", "attacks", "none", "ssl")
	ok := termRoute(p, "ok.example.com", "terminate", "http", "ok", "none", "ssl")
	ok["strip_headers"] = []any{"X-Internal-*", "X-Trust_Me"}
	api := termRoute(p, "api.example.com", "terminate", "http", "ok", "require", "xfcc")
	api["strip_headers"] = ok["strip_headers"]
	slow := termRoute(p, "slow.example.com", "terminate", "http", "slow", "none", nil)
	slow["http"] = cfgMap{"read_body_timeout": "1s",
		"h2": cfgMap{"max_concurrent_streams": 7, "receive_window": 131072, "connection_receive_window": 262144}}
	cfg := cfgMap{
		// failure_burst 0: every refused connection gets its warn line.
		"log":       cfgMap{"level": "info", "format": "json", "access": true, "failure_burst": 0},
		"listeners": []any{cfgMap{"name": "public", "address": "", "routes": []any{www, ok, api, slow}}},
		"backends": []any{
			cfgMap{"name": "attacks", "servers": servers(s.attacks.Addr())},
			cfgMap{"name": "ok", "servers": servers(s.ok.Addr())},
			cfgMap{"name": "slow", "servers": servers(s.slowSrv.Addr())},
		},
	}
	useTermFiles(t, cfg, p)
	s.admin = newAdmin(t, withAdmin(t, cfg))
	s.edgeProc = runEdge(t, cfg)
	return s
}

// ---------------------------------------------------------------- raw HTTP/1.1 over TLS

// rawResult is what a client that wrote raw bytes got back.
type rawResult struct {
	statuses []int
	closed   bool   // tlsedge closed the connection (EOF) within the wait
	raw      string // everything read
	client   string // the client's address, as tlsedge logs it
	line     logLine
}

// rawH1 connects to e with SNI host and ALPN http/1.1, writes payload,
// reads until tlsedge closes the connection (at most wait), and returns
// the answers and the connection's access line.
func rawH1(t *testing.T, e *edgeProc, host, payload string, wait time.Duration) rawResult {
	t.Helper()
	conf := &tls.Config{ServerName: host, RootCAs: thePKI.serverCA.Pool(), NextProtos: []string{"http/1.1"}}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: waitLong}, "tcp", e.addr, conf)
	if err != nil {
		t.Fatalf("TLS to %s: %v", host, err)
	}
	res := rawResult{client: c.LocalAddr().String()}
	n := e.accessCount(res.client)
	_ = c.SetDeadline(time.Now().Add(wait))
	go func() { _, _ = io.WriteString(c, payload) }() // tlsedge may stop reading
	all, err := io.ReadAll(c)
	res.raw = string(all)
	res.closed = err == nil || errors.Is(err, io.ErrUnexpectedEOF)
	c.Close()
	br := bufio.NewReader(bytes.NewReader(all))
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			break
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		res.statuses = append(res.statuses, resp.StatusCode)
	}
	res.line = e.nextAccessLine(t, res.client, n)
	return res
}

const (
	smugHead = "POST /smuggle HTTP/1.1\r\nHost: www.example.com\r\n"
	smugNext = "GET /smuggled-next HTTP/1.1\r\nHost: www.example.com\r\n\r\n"
)

// Issue: "a request with both TE and CL, or any framing RFC 9112 lets a
// server reject (bare LF in the head, obs-fold, invalid header names or
// values, several differing Content-Length, TE other than chunked last),
// gets 400 and the connection closed; no server sees it." Each attack is
// followed by a pipelined request, which must not be answered nor
// forwarded either.
func TestSmugglingHTTP1Refused(t *testing.T) {
	t.Parallel()
	e := startSmugEdge(t)
	cases := []struct {
		attack  string
		payload string
		status  int
		reason  string
	}{
		{"TE.CL: Transfer-Encoding then Content-Length, then a pipelined request",
			smugHead + "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\nGPOST / HTTP/1.1\r\n\r\n0\r\n\r\n" + smugNext,
			400, "bad request: Transfer-Encoding with Content-Length"},
		{"CL.TE: Content-Length then Transfer-Encoding, then a pipelined request",
			smugHead + "Content-Length: 13\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nSMUGGLED" + smugNext,
			400, "bad request: Transfer-Encoding with Content-Length"},
		{"TE.TE: Transfer-Encoding obfuscated as xchunked",
			smugHead + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" + smugNext,
			400, `bad request: Transfer-Encoding "xchunked" is not chunked alone`},
		{"TE.TE: two Transfer-Encoding lines",
			smugHead + "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n" + smugNext,
			400, "bad request: several Transfer-Encoding field lines"},
		{"TE with a space before the colon",
			smugHead + "Transfer-Encoding : chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n" + smugNext,
			400, "bad request: invalid field name"},
		{"TE hidden in an obs-fold continuation",
			smugHead + "X-Fold: a\r\n Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n" + smugNext,
			400, "bad request: obs-fold (a field line starting with whitespace)"},
		{"bare LF line endings",
			"GET /smuggle HTTP/1.1\nHost: www.example.com\n\n" + smugNext,
			400, "bad request: bare LF line ending in the request head"},
		{"bare LF in one field line hiding a Content-Length",
			smugHead + "X-A: 1\nContent-Length: 5\r\n\r\nhello" + smugNext,
			400, "bad request: bare LF line ending in the request head"},
		{"NUL in a field value",
			"GET /smuggle HTTP/1.1\r\nHost: www.example.com\r\nX-A: a\x00b\r\n\r\n" + smugNext,
			400, "bad request: control byte 0x00 in the request head"},
		{"several differing Content-Length",
			smugHead + "Content-Length: 6\r\nContent-Length: 5\r\n\r\nhello!" + smugNext,
			400, "bad request: several differing Content-Length"},
		{"Content-Length with a sign",
			smugHead + "Content-Length: +5\r\n\r\nhello" + smugNext,
			400, `bad request: invalid Content-Length "+5"`},
		{"Transfer-Encoding in an HTTP/1.0 request",
			"POST /smuggle HTTP/1.0\r\nHost: www.example.com\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smugNext,
			400, "bad request: Transfer-Encoding in an HTTP/1.0 request"},
		{"chunked not the last coding",
			smugHead + "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + smugNext,
			400, `bad request: Transfer-Encoding "chunked, identity" is not chunked alone`},
		{"a coding before chunked (501, RFC 9112 §6.1)",
			smugHead + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" + smugNext,
			501, `not implemented: transfer coding "gzip, chunked"`},
		{"HTTP/2 preface on an HTTP/1.1 connection",
			"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + smugNext,
			400, `bad request: unsupported HTTP version "HTTP/2.0"`},
		{"request head over max_header_bytes",
			"GET /smuggle HTTP/1.1\r\nHost: www.example.com\r\nX-Big: " + strings.Repeat("a", 80<<10) + "\r\n\r\n" + smugNext,
			431, "request head too large: over max_header_bytes 65536"},
		{"a valid request, then TE and CL on the pipelined one",
			"GET /smuggle-first HTTP/1.1\r\nHost: www.example.com\r\n\r\n" + smugHead + "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n" + smugNext,
			400, "bad request: Transfer-Encoding with Content-Length"},
	}
	for _, tc := range cases {
		// One after the other: "no server contacted" is a count.
		t.Run(tc.attack, func(t *testing.T) {
			conns, reqs := e.attacks.contacts()
			res := rawH1(t, e.edgeProc, "www.example.com", tc.payload, waitLong)
			wantStatuses := []int{tc.status}
			if strings.HasPrefix(tc.payload, "GET /smuggle-first") {
				wantStatuses = []int{200, tc.status}
			}
			if fmt.Sprint(res.statuses) != fmt.Sprint(wantStatuses) {
				t.Errorf("answers: got %v; want %v (nothing for the pipelined request)\n%.300q", res.statuses, wantStatuses, res.raw)
			}
			if !res.closed {
				t.Errorf("connection: got still open after %v; want closed by tlsedge", waitLong)
			}
			if got := res.line.str("reason"); got != tc.reason || res.line.str("level") != "warn" {
				t.Errorf("access line %v: got reason %q, level %q; want %q, warn", res.line, got, res.line.str("level"), tc.reason)
			}
			gotConns, gotReqs := e.attacks.contacts()
			wantReqs := reqs
			if strings.HasPrefix(tc.payload, "GET /smuggle-first") {
				wantReqs++ // the valid one before the attack
			}
			if gotReqs != wantReqs || (wantReqs == reqs && gotConns != conns) {
				t.Errorf("server: got %d new connections, %d new requests; want %d requests and no connection for the attack", gotConns-conns, gotReqs-reqs, wantReqs-reqs)
			}
			if _, ok := e.attacks.request("/smuggled-next"); ok {
				t.Errorf("the pipelined request after the attack reached the server")
			}
		})
	}
	// Control: well-framed pipelined requests still go through, in order.
	t.Run("well-framed pipelined requests pass", func(t *testing.T) {
		payload := "POST /ok-cl HTTP/1.1\r\nHost: www.example.com\r\nContent-Length: 5\r\n\r\nhello" +
			"POST /ok-chunked HTTP/1.1\r\nHost: www.example.com\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" +
			"GET /ok-last HTTP/1.1\r\nHost: www.example.com\r\nConnection: close\r\n\r\n"
		res := rawH1(t, e.edgeProc, "www.example.com", payload, waitLong)
		if fmt.Sprint(res.statuses) != "[200 200 200]" || !res.closed {
			t.Fatalf("got %v, closed %v; want [200 200 200] and closed (Connection: close)", res.statuses, res.closed)
		}
		for _, path := range []string{"/ok-cl", "/ok-chunked"} {
			if r, ok := e.attacks.request(path); !ok || r.Body != 5 || r.BodyErr != nil {
				t.Errorf("%s at the server: %+v (found %v); want its 5-byte body", path, r, ok)
			}
		}
	})
}

// A chunked body whose framing breaks after its head went on: the request
// is cut (400, closed) and the request smuggled inside it never reaches the
// server.
func TestSmugglingChunkedBody(t *testing.T) {
	t.Parallel()
	e := startSmugEdge(t)
	cases := []struct {
		attack, payload, reason string
	}{
		{"chunk data longer than its size, hiding a request",
			"POST /chunk-a HTTP/1.1\r\nHost: www.example.com\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc" +
				"GET /smuggled-chunk-a HTTP/1.1\r\nHost: www.example.com\r\n\r\n0\r\n\r\n",
			"bad request: chunk data not followed by CRLF"},
		{"bare LF after a chunk size",
			"POST /chunk-b HTTP/1.1\r\nHost: www.example.com\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n" +
				"GET /smuggled-chunk-b HTTP/1.1\r\nHost: www.example.com\r\n\r\n",
			"bad request: bare LF line ending in a chunk size line"},
		{"Content-Length in the trailer",
			"POST /chunk-c HTTP/1.1\r\nHost: www.example.com\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 50\r\n\r\n" +
				"GET /smuggled-chunk-c HTTP/1.1\r\nHost: www.example.com\r\n\r\n",
			`bad request: framing field "Content-Length" in the trailer section`},
	}
	for _, tc := range cases {
		t.Run(tc.attack, func(t *testing.T) {
			t.Parallel()
			res := rawH1(t, e.edgeProc, "www.example.com", tc.payload, waitLong)
			if fmt.Sprint(res.statuses) != "[400]" || !res.closed {
				t.Errorf("got %v, closed %v; want [400] and closed\n%.300q", res.statuses, res.closed, res.raw)
			}
			if got := res.line.str("reason"); got != tc.reason || res.line.str("level") != "warn" {
				t.Errorf("access line %v: got reason %q; want %q at warn", res.line, got, tc.reason)
			}
			path := strings.Fields(tc.payload)[1]
			if r, ok := e.attacks.request(path); ok && r.BodyErr == nil {
				t.Errorf("the cut request %s reached the server whole (%d body bytes); want it aborted", path, r.Body)
			}
			if _, ok := e.attacks.request("/smuggled-" + strings.TrimPrefix(path, "/")); ok {
				t.Errorf("the request smuggled in the body of %s reached the server", path)
			}
		})
	}
}

// Issue: "Any Upgrade token is tunnelled (e.g. h2c)": only the route's
// upgrades (default [websocket]) are; any other is 400 and reaches no
// server. A request the guard stopped checking after (Upgrade, CONNECT)
// that does not switch protocols closes the connection, so bytes after it
// are never read as a request.
func TestSmugglingUpgrades(t *testing.T) {
	t.Parallel()
	e := startSmugEdge(t)
	const h2c = "GET /up-h2c HTTP/1.1\r\nHost: www.example.com\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n"
	refused := []struct {
		attack, payload string
		status          int
		reason          string
	}{
		{"h2c upgrade, then a request", h2c + smugNext, 400, `bad request: upgrade to "h2c" is not allowed on this route`},
		{"websocket and h2c in one Upgrade", "GET /up-two HTTP/1.1\r\nHost: www.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket, h2c\r\n\r\n" + smugNext,
			400, `bad request: upgrade to "websocket, h2c" is not allowed on this route`},
		{"CONNECT tunnel", "CONNECT www.example.com:443 HTTP/1.1\r\nHost: www.example.com:443\r\n\r\n" + smugNext,
			405, "method not allowed: CONNECT (tlsedge tunnels nothing)"},
	}
	for _, tc := range refused {
		t.Run(tc.attack, func(t *testing.T) {
			conns, reqs := e.attacks.contacts()
			res := rawH1(t, e.edgeProc, "www.example.com", tc.payload, waitLong)
			if fmt.Sprint(res.statuses) != fmt.Sprint([]int{tc.status}) || !res.closed {
				t.Errorf("got %v, closed %v; want [%d] and closed\n%.300q", res.statuses, res.closed, tc.status, res.raw)
			}
			if got := res.line.str("reason"); got != tc.reason {
				t.Errorf("access line %v: got reason %q; want %q", res.line, got, tc.reason)
			}
			if c, r := e.attacks.contacts(); c != conns || r != reqs {
				t.Errorf("server: got %d connections, %d requests; want none", c-conns, r-reqs)
			}
		})
	}
	// Allowed, but the server does not switch (426): the connection
	// closes after the answer, and the request after it is never read.
	for _, tc := range []struct{ attack, payload string }{
		{"websocket upgrade answered 426, then a request",
			"GET /up-426 HTTP/1.1\r\nHost: ok.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n" +
				"GET /up-426-smuggled HTTP/1.1\r\nHost: ok.example.com\r\n\r\n"},
		{"Upgrade without Connection: upgrade, then a request",
			"GET /up-plain HTTP/1.1\r\nHost: ok.example.com\r\nUpgrade: websocket\r\n\r\n" +
				"GET /up-plain-smuggled HTTP/1.1\r\nHost: ok.example.com\r\n\r\n"},
	} {
		t.Run(tc.attack, func(t *testing.T) {
			t.Parallel()
			res := rawH1(t, e.edgeProc, "ok.example.com", tc.payload, waitLong)
			path := strings.Fields(tc.payload)[1]
			want := 426
			if path == "/up-plain" {
				want = 200 // not an upgrade for the proxy: the Upgrade field is hop-by-hop and dropped
			}
			if fmt.Sprint(res.statuses) != fmt.Sprint([]int{want}) || !res.closed {
				t.Errorf("got %v, closed %v; want [%d] and the connection closed\n%.300q", res.statuses, res.closed, want, res.raw)
			}
			if _, ok := e.ok.request(path); !ok {
				t.Errorf("%s did not reach the server", path)
			}
			if _, ok := e.ok.request(path + "-smuggled"); ok {
				t.Errorf("the request after %s reached the server", path)
			}
		})
	}
}

// ---------------------------------------------------------------- HTTP/2 downgrades

// h2Client speaks raw HTTP/2 frames to tlsedge, so it can send what Go's
// own client refuses to (a transfer-encoding field, a content-length the
// DATA does not match).
type h2Client struct {
	t   *testing.T
	c   *tls.Conn
	fr  *http2.Framer
	enc *hpack.Encoder
	hb  bytes.Buffer
}

func dialH2(t *testing.T, addr, host string) *h2Client {
	t.Helper()
	conf := &tls.Config{ServerName: host, RootCAs: thePKI.serverCA.Pool(), NextProtos: []string{"h2"}}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: waitLong}, "tcp", addr, conf)
	if err != nil {
		t.Fatalf("TLS to %s: %v", host, err)
	}
	t.Cleanup(func() { c.Close() })
	if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN: got %q; want h2", p)
	}
	_ = c.SetDeadline(time.Now().Add(waitLong))
	h := &h2Client{t: t, c: c, fr: http2.NewFramer(c, c)}
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	h.enc = hpack.NewEncoder(&h.hb)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := h.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return h
}

// request sends HEADERS (fields: name, value, ...) and then the data
// frames; the stream ends with the last frame when end is set.
func (h *h2Client) request(stream uint32, end bool, data []string, fields ...string) {
	h.t.Helper()
	h.hb.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		_ = h.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: stream, BlockFragment: h.hb.Bytes(), EndHeaders: true, EndStream: end && len(data) == 0})
	for i, d := range data {
		if err == nil {
			err = h.fr.WriteData(stream, end && i == len(data)-1, []byte(d))
		}
	}
	if err != nil {
		h.t.Fatalf("writing stream %d: %v", stream, err)
	}
}

// outcome reads frames (answering SETTINGS and PING) until stream gets its
// response head ("status 400") or is reset ("RST_STREAM PROTOCOL_ERROR"),
// or the connection ends.
func (h *h2Client) outcome(stream uint32) string {
	h.t.Helper()
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			return "connection: " + err.Error()
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = h.fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				_ = h.fr.WritePing(true, f.Data)
			}
		case *http2.GoAwayFrame:
			return "GOAWAY " + f.ErrCode.String()
		case *http2.RSTStreamFrame:
			if f.StreamID == stream {
				return "RST_STREAM " + f.ErrCode.String()
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID == stream {
				return "status " + f.PseudoValue("status")
			}
		}
	}
}

// Issue: "request smuggling ... as HTTP/2-to-1 downgrades with
// content-length and transfer-encoding in HTTP/2 headers": such a request
// never reaches the HTTP/1.1 server behind.
func TestSmugglingHTTP2Downgrade(t *testing.T) {
	t.Parallel()
	e := startSmugEdge(t)
	smuggled := "GET /smuggled-h2 HTTP/1.1\r\nHost: www.example.com\r\n\r\n"
	base := func(path string) []string {
		return []string{":method", "POST", ":scheme", "https", ":authority", "www.example.com", ":path", path}
	}
	cases := []struct {
		attack  string
		fields  []string
		data    []string
		outcome string
	}{
		{"transfer-encoding: chunked in HTTP/2 headers",
			append(base("/h2-te"), "transfer-encoding", "chunked"), []string{"0\r\n\r\n" + smuggled}, "status 400"},
		{"content-length: 0 with a request in the DATA",
			append(base("/h2-cl0"), "content-length", "0"), []string{smuggled}, "RST_STREAM PROTOCOL_ERROR"},
		{"content-length shorter than the DATA",
			append(base("/h2-short"), "content-length", "5"), []string{"hello" + smuggled}, "RST_STREAM PROTOCOL_ERROR"},
		{"content-length longer than the DATA",
			append(base("/h2-long"), "content-length", "100"), []string{"hello"}, "status 400"},
		{"content-length longer than the DATA, in two frames",
			append(base("/h2-long2"), "content-length", "60"), []string{"hello", smuggled}, "status 400"},
	}
	for i, tc := range cases {
		t.Run(tc.attack, func(t *testing.T) {
			conns, reqs := e.attacks.contacts()
			h := dialH2(t, e.addr, "www.example.com")
			stream := uint32(1)
			h.request(stream, true, tc.data, tc.fields...)
			if got := h.outcome(stream); got != tc.outcome {
				t.Errorf("case %d: got %s; want %s", i, got, tc.outcome)
			}
			// The connection goes on: a well-formed request on it works.
			h.request(3, true, []string{"hello"}, append(base("/h2-next"), "content-length", "5")...)
			if got := h.outcome(3); got != "status 200" {
				t.Errorf("the next stream on the connection: got %s; want status 200", got)
			}
			if c, r := e.attacks.contacts(); r != reqs+1 || (c != conns && c != conns+1) {
				t.Errorf("server: got %d connections, %d requests; want only the well-formed one", c-conns, r-reqs)
			}
			if _, ok := e.attacks.request("/smuggled-h2"); ok {
				t.Errorf("the request in the DATA reached the server")
			}
			if _, ok := e.attacks.request(tc.fields[7]); ok {
				t.Errorf("%s reached the server", tc.fields[7])
			}
		})
	}
}

// ---------------------------------------------------------------- identity headers of other proxies

// Issue: "Identity headers of other proxies (X-SSL-Client-DN, ...,
// X-Amzn-Mtls-*, X-ARR-ClientCert ...) pass through from clients": every
// family, in every spelling, is removed, with or without a client
// certificate, over HTTP/1.1 and HTTP/2; strip_headers removes the route's
// own; application headers stay.
func TestSmugglingForgedIdentity(t *testing.T) {
	t.Parallel()
	e := startSmugEdge(t)
	forged := map[string]string{
		"X-SSL-Client-DN":                    "CN=admin",
		"X-Ssl-Client-Cn":                    "admin",
		"X_SSL_Client_S_DN":                  "CN=admin",
		"Ssl-Client-Cert":                    "forged",
		"SSL_CLIENT_VERIFY":                  "SUCCESS",
		"X-Client-Cert":                      "forged",
		"X-Client-Verify":                    "SUCCESS",
		"X-Client-DN":                        "CN=admin",
		"X-Client-Cert-Chain-Verified":       "true",
		"X-Amzn-Mtls-Clientcert":             "forged",
		"X-Amzn-Mtls-Clientcert-Subject":     "CN=admin",
		"X-Amzn-Oidc-Identity":               "admin",
		"X-Forwarded-Tls-Client-Cert":        "forged",
		"X-Forwarded-Tls-Client-Cert-Info":   "Subject=CN=admin",
		"X-Tls-Client-Cert":                  "forged",
		"X-ARR-ClientCert":                   "forged",
		"X-MS-Client-Principal-Name":         "admin",
		"Cf-Client-Cert-Sha256":              "00",
		"Cf-Access-Jwt-Assertion":            "forged",
		"X-Goog-Authenticated-User-Email":    "accounts.google.com:admin@example.com",
		"X-Forwarded-Client-Cert":            "Hash=forged",
		"Client-Cert":                        ":AAAA:",
		"True-Client-IP":                     "10.0.0.1",
		"X-Internal-Token":                   "route strip_headers prefix",
		"X-Trust-Me":                         "route strip_headers exact, written X-Trust_Me",
		"x_trust_me":                         "the same, underscores",
		"Cf-Connecting-IP":                   "10.0.0.1",
		"X-Azure-ClientIP":                   "10.0.0.1",
		"Cf-Access-Authenticated-User-Email": "admin@example.com",
	}
	kept := map[string]string{"X-Client-Version": "3.1", "X-Request-Id": "r-1"}
	cert := thePKI.term.clients[cliValid].TLS
	cases := []struct {
		name, host string
		h2         bool
		cert       bool
		verify     string // X-SSL-Client-Verify set by tlsedge; "" = none (xfcc)
	}{
		{"no certificate, HTTP/1.1", "ok.example.com", false, false, "NONE"},
		{"no certificate, HTTP/2", "ok.example.com", true, false, "NONE"},
		{"verified certificate, HTTP/1.1", "api.example.com", false, true, ""},
		{"verified certificate, HTTP/2", "api.example.com", true, true, ""},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			conf := &tls.Config{ServerName: tc.host, RootCAs: thePKI.serverCA.Pool()}
			if tc.cert {
				conf.Certificates = []tls.Certificate{cert}
			}
			client := httpsClient(e.addr, conf, tc.h2)
			path := fmt.Sprintf("/forged-%d", i)
			req, err := http.NewRequest("GET", "https://"+tc.host+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range forged {
				req.Header[k] = []string{v} // as spelled, not canonicalized
			}
			for k, v := range kept {
				req.Header.Set(k, v)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("GET %s: %v", path, err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 || (resp.ProtoMajor == 2) != tc.h2 {
				t.Fatalf("GET %s: got %s %d; want 200 over HTTP/%d", path, resp.Proto, resp.StatusCode, map[bool]int{false: 1, true: 2}[tc.h2])
			}
			got, ok := e.ok.request(path)
			if !ok {
				t.Fatalf("%s did not reach the server", path)
			}
			norm := func(s string) string { return strings.ToLower(strings.ReplaceAll(s, "_", "-")) }
			for name := range got.Header {
				for f := range forged {
					if norm(name) == norm(f) && !(norm(name) == "x-forwarded-client-cert" && !strings.Contains(got.Header.Get(name), "forged")) {
						t.Errorf("forged %s reached the server: %q", name, got.Header[name])
					}
				}
			}
			for k, v := range kept {
				if got.Header.Get(k) != v {
					t.Errorf("%s: got %q; want %q (an application header)", k, got.Header.Get(k), v)
				}
			}
			if v := got.Header.Get("X-SSL-Client-Verify"); v != tc.verify {
				t.Errorf("X-SSL-Client-Verify: got %q; want %q (tlsedge's own)", v, tc.verify)
			}
			if tc.cert && !strings.HasPrefix(got.Header.Get("X-Forwarded-Client-Cert"), "Hash=") {
				t.Errorf("X-Forwarded-Client-Cert: got %q; want tlsedge's", got.Header.Get("X-Forwarded-Client-Cert"))
			}
		})
	}
}

// ---------------------------------------------------------------- slow bodies, big response heads

// Issue: "Nothing times out ... a slow request body": http.read_body_timeout
// (1s here) cuts a client that stops sending its body: 408, the connection
// closed (HTTP/1.1), the reason logged. A body with a content-length up to
// 64 KiB is read whole first (over HTTP/1.1 and HTTP/2), so no server is
// picked for it and no slot held.
func TestSmugglingSlowBody(t *testing.T) {
	t.Parallel()
	e := startSmugEdge(t)
	const reason = "client timeout: request body of 100 bytes not complete within read_body_timeout 1s"
	check := func(t *testing.T, path string) {
		t.Helper()
		l := e.requestLine(t, path)
		if int(l.num("status")) != 408 || l.str("reason") != reason {
			t.Errorf("request line %v: want status 408, reason %q", l, reason)
		}
		if _, ok := e.slowSrv.request(path); ok {
			t.Errorf("%s reached the server; want it held until its body is whole", path)
		}
		if a := e.admin.server("slow", e.slowSrv.Addr()).Active; a != 0 {
			t.Errorf("server slot: active %d; want 0 (no server was picked)", a)
		}
	}
	t.Run("HTTP/1.1: 10 of 100 body bytes, then silence", func(t *testing.T) {
		t.Parallel()
		res := rawH1(t, e.edgeProc, "slow.example.com", "POST /slow-h1 HTTP/1.1\r\nHost: slow.example.com\r\nContent-Length: 100\r\n\r\n0123456789", waitLong)
		if fmt.Sprint(res.statuses) != "[408]" || !res.closed {
			t.Errorf("got %v, closed %v; want [408] and closed\n%.300q", res.statuses, res.closed, res.raw)
		}
		if got := res.line.str("reason"); got != reason {
			t.Errorf("access line %v: got reason %q; want %q", res.line, got, reason)
		}
		check(t, "/slow-h1")
	})
	// Review: "a client that trickles its request body can hold a server
	// slot for as long as it likes" (each read within the timeout). A body
	// of a declared length up to 64 KiB must be whole within
	// read_body_timeout before a server is picked.
	t.Run("HTTP/1.1: a byte every 300 ms (each read in time, the whole body not)", func(t *testing.T) {
		t.Parallel()
		conf := &tls.Config{ServerName: "slow.example.com", RootCAs: thePKI.serverCA.Pool(), NextProtos: []string{"http/1.1"}}
		c, err := tls.Dial("tcp", e.addr, conf)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(waitLong))
		if _, err := io.WriteString(c, "POST /trickle-h1 HTTP/1.1\r\nHost: slow.example.com\r\nContent-Length: 100\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			for i := 0; i < 100; i++ {
				select {
				case <-stop:
					return
				case <-time.After(300 * time.Millisecond):
				}
				if _, err := c.Write([]byte{'x'}); err != nil {
					return
				}
			}
		}()
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("no answer while trickling: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != 408 {
			t.Fatalf("status %d; want 408", resp.StatusCode)
		}
		check(t, "/trickle-h1")
	})
	t.Run("HTTP/2: 10 of 100 body bytes, then silence", func(t *testing.T) {
		t.Parallel()
		h := dialH2(t, e.addr, "slow.example.com")
		h.request(1, false, []string{"0123456789"}, ":method", "POST", ":scheme", "https", ":authority", "slow.example.com", ":path", "/slow-h2", "content-length", "100")
		if got := h.outcome(1); got != "status 408" {
			t.Errorf("got %s; want status 408", got)
		}
		check(t, "/slow-h2")
	})
}

// Issue: "upstream response headers are bounded only by Go's 10 MB
// default": backends[].max_response_header_bytes (default 64 KiB) makes a
// larger response head a 502.
func TestSmugglingOversizedResponseHead(t *testing.T) {
	t.Parallel()
	e := startSmugEdge(t)
	client := httpsClient(e.addr, &tls.Config{ServerName: "ok.example.com", RootCAs: thePKI.serverCA.Pool()}, false)
	for _, tc := range []struct {
		path   string
		status int
	}{{"/okhead", 200}, {"/bighead", 502}} {
		resp, err := client.Get("https://ok.example.com" + tc.path)
		if err != nil {
			t.Fatalf("GET %s: %v", tc.path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("GET %s (a %s response head): got %d; want %d", tc.path, map[string]string{"/okhead": "30 KiB", "/bighead": "80 KiB"}[tc.path], resp.StatusCode, tc.status)
		}
	}
	l := e.requestLine(t, "/bighead")
	if !strings.Contains(l.str("reason"), "server response headers exceeded 65536 bytes") {
		t.Errorf("request line %v: want a reason saying the response head exceeded 65536 bytes", l)
	}
}

// Issue: "HTTP/2 (http.Server.HTTP2 settings: max concurrent streams, ...,
// receive windows)": the route's http.h2 keys are what tlsedge announces
// (SETTINGS and the connection's WINDOW_UPDATE), and the defaults elsewhere.
func TestSmugglingHTTP2Limits(t *testing.T) {
	t.Parallel()
	e := startSmugEdge(t)
	for _, tc := range []struct {
		host                 string
		streams, window, con uint32
	}{
		{"slow.example.com", 7, 128 << 10, 256 << 10},
		{"www.example.com", 100, 1 << 20, 1 << 20}, // the defaults
	} {
		t.Run(tc.host, func(t *testing.T) {
			h := dialH2(t, e.addr, tc.host)
			var streams, window, con uint32
			for con == 0 || streams == 0 {
				f, err := h.fr.ReadFrame()
				if err != nil {
					t.Fatalf("reading tlsedge's first frames: %v", err)
				}
				switch f := f.(type) {
				case *http2.SettingsFrame:
					if f.IsAck() {
						continue
					}
					streams, _ = f.Value(http2.SettingMaxConcurrentStreams)
					window, _ = f.Value(http2.SettingInitialWindowSize)
				case *http2.WindowUpdateFrame:
					if f.StreamID == 0 {
						con = 65535 + f.Increment
					}
				}
			}
			if streams != tc.streams || window != tc.window || con != tc.con {
				t.Errorf("announced %d streams, stream window %d, connection window %d; want %d, %d, %d",
					streams, window, con, tc.streams, tc.window, tc.con)
			}
		})
	}
}
