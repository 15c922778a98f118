package tlsmode

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/affinity"
)

// oneServer is a Backend of one server; it counts the slots taken.
type oneServer struct{ s *affinity.Server }

func (oneServer) Connect(context.Context, *Conn) (*Upstream, error) { return nil, ErrNoServer }
func (b oneServer) AcquireServer(_ context.Context, _ *Conn, skip func(*affinity.Server) bool) (*affinity.Server, error) {
	if skip(b.s) {
		return nil, ErrNoServer
	}
	b.s.Acquire()
	return b.s, nil
}

// recorder is an HTTP server that records each request's headers and
// whether its body was read to its end.
type recorder struct {
	mu   sync.Mutex
	reqs []recorded
}

type recorded struct {
	path    string
	header  http.Header
	bodyErr error
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, err := io.Copy(io.Discard, r.Body)
	rec.mu.Lock()
	rec.reqs = append(rec.reqs, recorded{r.URL.Path, r.Header.Clone(), err})
	rec.mu.Unlock()
	if n := r.URL.Query().Get("head"); n != "" {
		var size int
		fmt.Sscan(n, &size)
		w.Header().Set("X-Big", strings.Repeat("b", size))
	}
	fmt.Fprintf(w, "ok %s\n", r.URL.Path)
}

func (rec *recorder) all() []recorded {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]recorded(nil), rec.reqs...)
}

// harden serves one client TLS connection with an HTTPProxy of opt in
// front of handler; it returns the client end, the server slot, the Conn
// and ServeConn's result.
type harden struct {
	client *tls.Conn
	br     *bufio.Reader
	srv    *affinity.Server
	c      *Conn
	ret    chan error
}

func startHarden(t *testing.T, opt HTTPOptions, handler http.Handler) *harden {
	t.Helper()
	hs := httptest.NewServer(handler)
	t.Cleanup(hs.Close)
	s := affinity.NewServer(strings.TrimPrefix(hs.URL, "http://"), 1)
	opt.Backend = oneServer{s}
	p := NewHTTPProxy(opt)
	t.Cleanup(func() { p.Close() })
	server, client := tlsPair(t)
	t.Cleanup(func() { client.Close() })
	h := &harden{client: client, br: bufio.NewReader(client), srv: s, c: &Conn{Conn: server.NetConn()}, ret: make(chan error, 1)}
	go func() { h.ret <- p.ServeConn(context.Background(), server, h.c) }()
	_ = client.SetDeadline(time.Now().Add(10 * time.Second))
	return h
}

// send writes raw and reads one response.
func (h *harden) send(t *testing.T, raw string) *http.Response {
	t.Helper()
	go func() { _, _ = io.WriteString(h.client, raw) }()
	resp, err := http.ReadResponse(h.br, nil)
	if err != nil {
		t.Fatalf("reading the answer to %.60q: %v", raw, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// closed reports whether tlsedge closed the connection, and ServeConn's
// result once it returned.
func (h *harden) closed(t *testing.T) error {
	t.Helper()
	if _, err := h.br.ReadByte(); err == nil {
		t.Fatalf("read more: want the connection closed")
	}
	h.client.Close()
	select {
	case err := <-h.ret:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("ServeConn did not return")
	}
	return nil
}

// A refused head: 400, closed, ServeConn says why (the edge logs it at
// warn), and no server is contacted.
func TestHardenGuardRefusal(t *testing.T) {
	rec := &recorder{}
	h := startHarden(t, HTTPOptions{}, rec)
	resp := h.send(t, "POST /x HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /y HTTP/1.1\r\nHost: a.example.com\r\n\r\n")
	if resp.StatusCode != 400 || !resp.Close {
		t.Errorf("got %d, close %v; want 400 and Connection: close", resp.StatusCode, resp.Close)
	}
	err := h.closed(t)
	const why = "bad request: Transfer-Encoding with Content-Length"
	if !errors.Is(err, ErrBadRequest) || h.c.Reason != why {
		t.Errorf("ServeConn: got %v, reason %q; want ErrBadRequest, %q", err, h.c.Reason, why)
	}
	if n := len(rec.all()); n != 0 {
		t.Errorf("server got %d requests; want none", n)
	}
}

// read_body_timeout: a client that stops sending its body gets 408, the
// connection closes, and the server's slot is freed.
func TestHardenReadBodyTimeout(t *testing.T) {
	rec := &recorder{}
	h := startHarden(t, HTTPOptions{Limits: HTTPLimits{ReadBodyTimeout: 300 * time.Millisecond}}, rec)
	resp := h.send(t, "POST /slow HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: 100\r\n\r\n0123456789")
	if resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
		t.Errorf("got %d, close %v; want 408 and Connection: close", resp.StatusCode, resp.Close)
	}
	if err := h.closed(t); !errors.Is(err, ErrClientMisbehaved) {
		t.Errorf("ServeConn: %v; want ErrClientMisbehaved (logged as a warning)", err)
	}
	if want := "client timeout: request body of 100 bytes not complete within read_body_timeout 300ms"; h.c.Reason != want {
		t.Errorf("reason: got %q; want %q", h.c.Reason, want)
	}
	if n := h.srv.Active(); n != 0 {
		t.Errorf("server slots held: got %d; want 0", n)
	}
}

// max_response_header_bytes: a larger response head is a 502; a smaller
// one goes through, on the same connection.
func TestHardenMaxResponseHeader(t *testing.T) {
	h := startHarden(t, HTTPOptions{Limits: HTTPLimits{MaxResponseHeader: 4096}}, &recorder{})
	for _, tc := range []struct {
		size, status int
	}{{1000, 200}, {8000, 502}, {1000, 200}} {
		resp := h.send(t, fmt.Sprintf("GET /h?head=%d HTTP/1.1\r\nHost: a.example.com\r\n\r\n", tc.size))
		if resp.StatusCode != tc.status {
			t.Errorf("a %d-byte response field: got %d; want %d", tc.size, resp.StatusCode, tc.status)
		}
	}
}

// Upgrades: only the route's protocols; an answer other than 101 to an
// upgrade request closes the connection.
func TestHardenUpgrades(t *testing.T) {
	const ws = "GET /ws HTTP/1.1\r\nHost: a.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
	for _, tc := range []struct {
		name     string
		upgrades []string
		req      string
		status   int
		reaches  bool
	}{
		{"h2c, default list", nil, "GET /h2c HTTP/1.1\r\nHost: a.example.com\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n", 400, false},
		{"websocket, empty list", []string{}, ws, 400, false},
		{"websocket/13 (a version), default list", nil, strings.Replace(ws, "websocket", "websocket/13", 1), 400, false},
		{"WebSocket in another case, default list: allowed, the server answers 200", nil, strings.Replace(ws, "websocket", "WebSocket", 1), 200, true},
		{"mqtt, listed", []string{"websocket", "mqtt"}, strings.Replace(ws, "websocket", "mqtt", 1), 200, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			h := startHarden(t, HTTPOptions{Upgrades: tc.upgrades}, rec)
			resp := h.send(t, tc.req+"GET /after HTTP/1.1\r\nHost: a.example.com\r\n\r\n")
			if resp.StatusCode != tc.status || !resp.Close {
				t.Errorf("got %d, close %v; want %d and Connection: close", resp.StatusCode, resp.Close, tc.status)
			}
			_ = h.closed(t)
			got := rec.all()
			if (len(got) == 1) != tc.reaches || len(got) > 1 {
				t.Errorf("server got %d requests; want the upgrade request %v, and never /after", len(got), tc.reaches)
			}
		})
	}
}

// Identity families of other proxies and strip_headers never reach a
// server; application headers do.
func TestHardenStripHeaders(t *testing.T) {
	rec := &recorder{}
	h := startHarden(t, HTTPOptions{StripHeaders: []string{"X-Internal-*", "X-Trust_Me"}}, rec)
	resp := h.send(t, "GET /strip HTTP/1.1\r\nHost: a.example.com\r\n"+
		"X-SSL-Client-DN: CN=admin\r\nx_amzn_mtls_clientcert: x\r\nX-Forwarded-Tls-Client-Cert: x\r\nSsl-Client-Verify: SUCCESS\r\n"+
		"X-Internal-Role: admin\r\nx-trust-me: yes\r\nX_Trust_Me: yes\r\nX-Client-Version: 3\r\nX-Internal: kept, not the prefix\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Fatalf("got %d; want 200", resp.StatusCode)
	}
	got := rec.all()
	if len(got) != 1 {
		t.Fatalf("server got %d requests; want 1", len(got))
	}
	var names []string
	for k := range got[0].header {
		if !strings.HasPrefix(k, "X-Forwarded-") && k != "Accept-Encoding" {
			names = append(names, k)
		}
	}
	if fmt.Sprint(sortedStrings(names)) != "[X-Client-Version X-Internal]" {
		t.Errorf("headers at the server: got %v; want [X-Client-Version X-Internal]", sortedStrings(names))
	}
}

func sortedStrings(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

// An upgraded stream through the guard: bytes both ways, and half-close
// both ways (the server's FIN reaches the client as close_notify, and the
// client can still send).
func TestHardenUpgradeThroughGuard(t *testing.T) {
	got := make(chan string, 1)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nhello")
		brw.Flush()
		conn.(*net.TCPConn).CloseWrite()
		b, _ := io.ReadAll(brw)
		got <- string(b)
	})
	h := startHarden(t, HTTPOptions{Upgrades: []string{"echo"}}, handler)
	go io.WriteString(h.client, "GET /up HTTP/1.1\r\nHost: a.example.com\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	resp, err := http.ReadResponse(h.br, nil)
	if err != nil || resp.StatusCode != 101 || resp.Header.Get("Connection") != "Upgrade" {
		t.Fatalf("got %v, %v; want 101 with Connection: Upgrade only", resp, err)
	}
	b, err := io.ReadAll(h.br)
	if string(b) != "hello" || err != nil {
		t.Errorf("from the server: got %q, %v; want \"hello\" then EOF (its half-close)", b, err)
	}
	if _, err := io.WriteString(h.client, "GET /not-http HTTP/1.1\n\n"); err != nil {
		t.Fatalf("writing after the server's half-close: %v", err)
	}
	_ = h.client.CloseWrite()
	_ = h.client.NetConn().(*net.TCPConn).CloseWrite()
	select {
	case s := <-got:
		if s != "GET /not-http HTTP/1.1\n\n" {
			t.Errorf("at the server: got %q; want the client's bytes unchecked", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the server never saw the client's end")
	}
}
