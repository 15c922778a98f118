package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Per-client limits on the built binary (docs/config.md
// listeners[].routes[].client_limits): a verified client's connection
// beyond `connections` fails the handshake with alert 49 (access_denied)
// and reaches no server; a request beyond `requests_per_second` (with
// `burst`) gets 429 with Retry-After and reaches no server; a client is
// its certificate's SHA-256 or, with `key`, a field of it, counted across
// all its connections; the counts survive reloads. The client PKI and the
// route builders are the authorization tests' (authz_test.go).

// ---------------------------------------------------------------- servers and clients

// clEcho is the TCP server behind protocol tcp routes: the first line of
// each connection, "cl-ping <client> <sni>", is counted by client, then
// everything is echoed.
type clEcho struct {
	ln net.Listener
	mu sync.Mutex
	by map[string]int // connections by the client named in their first line
}

func clStartEcho(t testing.TB, name string) *clEcho {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &clEcho{ln: ln, by: map[string]int{}}
	g := newConnGroup(t, "echo server "+name)
	g.serve(ln, func(c net.Conn) {
		// Held connections live as long as their test; stop ends them.
		_ = c.SetDeadline(time.Now().Add(6 * waitLong))
		br := bufio.NewReader(c)
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		client := "other" // openssl's "az-ping <sni>"
		if f := strings.Fields(line); len(f) == 3 && f[0] == "cl-ping" {
			client = f[1]
		}
		e.mu.Lock()
		e.by[client]++
		e.mu.Unlock()
		if _, err := io.WriteString(c, line); err != nil {
			return
		}
		_, _ = io.Copy(c, br)
	})
	t.Cleanup(g.stop)
	return e
}

func (e *clEcho) Addr() string { return e.ln.Addr().String() }

// seen is a copy of the connections counted by client.
func (e *clEcho) seen() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]int{}
	for k, v := range e.by {
		out[k] = v
	}
	return out
}

// clWantSeen checks that e counted exactly want connections by client.
func clWantSeen(t testing.TB, what string, e *clEcho, want map[string]int) {
	t.Helper()
	if got := e.seen(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s: the server accepted connections by client %v; want exactly %v", what, got, want)
	}
}

// clOpen connects (TLS 1.3) to route sni as the client called name with
// cert, sends "cl-ping <name> <sni>" and checks it comes back. The
// connection stays open until the test (or subtest) ends. The error is the
// handshake's or, as the client's TLS 1.3 handshake ends before tlsedge
// has checked its certificate, the first read's.
func clOpen(t testing.TB, addr, sni, name string, cert tls.Certificate) (*tls.Conn, error) {
	t.Helper()
	conf := &tls.Config{ServerName: sni, RootCAs: thePKI.serverCA.Pool(), Certificates: []tls.Certificate{cert}}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: waitLong}, "tcp", addr, conf)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	if err := clPing(c, "cl-ping "+name+" "+sni+"\n"); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// clMustOpen is clOpen that fails the test on error.
func clMustOpen(t testing.TB, addr, sni, name string, cert tls.Certificate) *tls.Conn {
	t.Helper()
	c, err := clOpen(t, addr, sni, name, cert)
	if err != nil {
		t.Fatalf("client %s on %s: %v; want its line echoed", name, sni, err)
	}
	return c
}

// clPing writes msg on c and reads it back, within waitLong. The read
// goes on after a failed write: a refusal's alert waits in the socket.
func clPing(c *tls.Conn, msg string) error {
	_ = c.SetDeadline(time.Now().Add(waitLong))
	defer c.SetDeadline(time.Time{})
	_, werr := io.WriteString(c, msg)
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if werr != nil {
		return werr
	}
	if string(got) != msg {
		return fmt.Errorf("echoed %q; want %q", got, msg)
	}
	return nil
}

// clReason is the access line's reason for a client beyond connections n.
func clReason(n int) string {
	return fmt.Sprintf("access denied: client has client_limits.connections (%d) open", n)
}

// clDeniedLine waits for the access line of sni and checks it is a
// refusal for client_limits.connections n of the certificate with
// subject: that reason, level warn, no server.
func clDeniedLine(t testing.TB, e *edgeProc, sni, subject string, n int) {
	t.Helper()
	l := e.waitLog(t, "access line of sni "+sni, func(l logLine) bool {
		return l.msg() == "connection" && l.str("sni") == sni
	})
	if l.str("reason") != clReason(n) || l.str("client_cert") != subject || l.str("level") != "warn" || l.str("server") != "" {
		t.Errorf("access line %v: want reason %q, client_cert %q, level warn and no server", l, clReason(n), subject)
	}
}

// clWantRefused checks that a Go client's connection to sni failed with
// alert 49 and was logged as a refusal for connections n.
func clWantRefused(t testing.TB, e *edgeProc, err error, sni, subject string, n int) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), "remote error: tls: access denied") {
		t.Errorf("connection to %s: %v; want remote error: tls: access denied (alert 49)", sni, err)
	}
	clDeniedLine(t, e, sni, subject, n)
}

// clMetric waits (bounded) until metric name with labels reaches want,
// then checks it is exactly want.
func clMetric(t testing.TB, admin *adminClient, name string, labels map[string]string, want float64) {
	t.Helper()
	var m promFamilies
	poll(waitLong, func() bool { m = admin.metrics(); return m.value(name, labels) >= want })
	if got := m.value(name, labels); got != want {
		t.Errorf("%s%v = %v; want exactly %v\n%s", name, labels, got, want, m.series(name))
	}
}

// clHTTP is a Go HTTP client of tlsedge at addr with a client
// certificate: HTTP/2, or HTTP/1.1 over at most conns keep-alive
// connections. dials counts the TCP connections it opened.
type clHTTP struct {
	c     *http.Client
	port  string
	dials atomic.Int64
}

func clNewHTTP(t testing.TB, addr string, cert tls.Certificate, h2 bool, conns int) *clHTTP {
	h := &clHTTP{}
	_, h.port, _ = net.SplitHostPort(addr)
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: thePKI.serverCA.Pool(), Certificates: []tls.Certificate{cert}},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			h.dials.Add(1)
			return (&net.Dialer{Timeout: waitLong}).DialContext(ctx, network, addr)
		},
		MaxConnsPerHost:     conns,
		MaxIdleConnsPerHost: conns,
		ForceAttemptHTTP2:   h2,
		TLSHandshakeTimeout: waitLong,
	}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{} // no h2
	}
	h.c = &http.Client{Transport: tr, Timeout: waitLong}
	t.Cleanup(tr.CloseIdleConnections)
	return h
}

// clResult is one answer (or the error instead).
type clResult struct {
	path       string
	status     int
	proto      int // ProtoMajor
	retryAfter string
	body       string
	err        error
}

// get sends GET https://<host>:<port><path> and reads the whole answer.
func (h *clHTTP) get(host, path string) clResult {
	r := clResult{path: path}
	resp, err := h.c.Get("https://" + net.JoinHostPort(host, h.port) + path)
	if err != nil {
		r.err = err
		return r
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	r.status, r.proto, r.retryAfter, r.body, r.err = resp.StatusCode, resp.ProtoMajor, resp.Header.Get("Retry-After"), string(b), err
	return r
}

// clBody429 is tlsedge's body for a request beyond the client's rate.
const clBody429 = "429 too many requests: this client's request rate is limited on this route\n"

// ---------------------------------------------------------------- connections

// connections: 3 on a tcp route. Client A (partner-a) opens 3 connections
// that are echoed; then each of these fails with alert 49: a 4th from Go
// ("remote error: tls: access denied"), from openssl s_client in TLS 1.3
// and 1.2 ("alert access denied", alert number 49), and a TLS 1.3
// resumption (openssl -sess_in, no certificate sent: A's identity comes
// from the ticket, "Reused"); each is logged with reason "access denied:
// client has client_limits.connections (3) open", A's subject and no
// server, and the server saw exactly A's 3 (and the earlier openssl
// connection that made the session). Client B (partner-b) meanwhile opens
// 3 that are echoed. A's 3 are still served; once A closes one (its access
// line written), A's next connection is echoed. With key: uri, partner-a
// and partner-a-2 (other certificates, the same URI SAN) are one client:
// 2 + 1 admitted, then each is refused; partner-b (another URI) is
// admitted. tlsedge_access_denied_total{stage="handshake"} and
// tlsedge_tls_handshakes_total{result="access_denied"} count exactly the
// refusals of each route (4 and 2).
func TestClientLimitsConnections(t *testing.T) {
	t.Parallel()
	f := azWriteFiles(t)
	pk := thePKI.az
	bySHA, byURI := clStartEcho(t, "by-sha256"), clStartEcho(t, "by-uri")
	shaRoute := azRoute(f, "tcp.example.com", "tcp", "by-sha256", "require", nil)
	shaRoute["client_limits"] = cfgMap{"connections": 3}
	uriRoute := azRoute(f, "pin.example.com", "tcp", "by-uri", "require", nil)
	uriRoute["client_limits"] = cfgMap{"connections": 3, "key": "uri"}
	cfg := azConfig(f, []any{shaRoute, uriRoute},
		httpBackendCfg("by-sha256", bySHA.Addr()), httpBackendCfg("by-uri", byURI.Addr()))
	admin := newAdmin(t, withAdmin(t, cfg))
	e := runEdge(t, cfg)
	certA, certA2, certB := pk.leaves[azPartnerA].TLS, pk.leaves[azPartnerA2].TLS, pk.leaves[azPartnerB].TLS
	subjectA, subjectA2 := azSubject(t, f.cert[azPartnerA]), azSubject(t, f.cert[azPartnerA2])

	t.Run("sha256", func(t *testing.T) {
		// A TLS 1.3 session of A for the resumption below; its slot is
		// back once its access line is written.
		sess := filepath.Join(f.dir, "a.sess")
		const rsni = "resume.tcp.example.com"
		out, alerts := azSClient(t, f, e.addr, rsni, azPartnerA, true, "-tls1_3", "-sess_out", sess)
		if len(alerts) != 0 || !strings.Contains(out, "az-ping "+rsni) {
			t.Fatalf("A's first connection: alerts %v; want its line echoed\n%s", alerts, out)
		}
		if !poll(waitLong, func() bool { st, err := os.Stat(sess); return err == nil && st.Size() > 0 }) {
			t.Fatalf("openssl wrote no session to %s\n%s", sess, out)
		}
		e.waitLog(t, "access line of "+rsni, func(l logLine) bool { return l.msg() == "connection" && l.str("sni") == rsni })

		var held []*tls.Conn
		for i := 1; i <= 3; i++ {
			held = append(held, clMustOpen(t, e.addr, fmt.Sprintf("a%d.tcp.example.com", i), "A", certA))
		}
		_, err := clOpen(t, e.addr, "a4.tcp.example.com", "A", certA)
		clWantRefused(t, e, err, "a4.tcp.example.com", subjectA, 3)
		for _, v := range []string{"-tls1_3", "-tls1_2"} {
			sni := "a5-" + strings.ReplaceAll(v, "-tls1_", "v1") + ".tcp.example.com"
			out, alerts := azSClient(t, f, e.addr, sni, azPartnerA, false, v)
			azWantDenied(t, out, alerts)
			clDeniedLine(t, e, sni, subjectA, 3)
		}
		// A resumed session is A too (no certificate sent: it is in the ticket).
		out, alerts = azSClient(t, f, e.addr, rsni, "", false, "-tls1_3", "-sess_in", sess)
		azWantDenied(t, out, alerts)
		if !strings.Contains(out, "Reused, TLSv1.3") {
			t.Errorf("want the refused connection to be a resumption (\"Reused, TLSv1.3\")\n%s", out)
		}
		l := e.waitLog(t, "the refused resumption's access line", func(l logLine) bool {
			return l.msg() == "connection" && l.str("sni") == rsni && strings.HasPrefix(l.str("reason"), "access denied")
		})
		if l.str("reason") != clReason(3) || l.str("client_cert") != subjectA || l.str("server") != "" {
			t.Errorf("access line %v: want reason %q, client_cert %q and no server", l, clReason(3), subjectA)
		}
		for i := 1; i <= 3; i++ {
			clMustOpen(t, e.addr, fmt.Sprintf("b%d.tcp.example.com", i), "B", certB)
		}
		clWantSeen(t, "A beyond its 3, B with 3", bySHA, map[string]int{"A": 3, "B": 3, "other": 1})
		for i, c := range held {
			if err := clPing(c, "cl-again\n"); err != nil {
				t.Errorf("A's connection %d after the refusals: %v; want it still echoed", i+1, err)
			}
		}
		// A closes one: the access line is written once its slot is back.
		e.closeAndLog(t, held[0])
		clMustOpen(t, e.addr, "a6.tcp.example.com", "A", certA)
		clWantSeen(t, "after A closed one and opened another", bySHA, map[string]int{"A": 4, "B": 3, "other": 1})
	})

	t.Run("uri", func(t *testing.T) {
		clMustOpen(t, e.addr, "a1.pin.example.com", "A", certA)
		clMustOpen(t, e.addr, "a2.pin.example.com", "A", certA)
		clMustOpen(t, e.addr, "a3.pin.example.com", "A2", certA2)
		_, err := clOpen(t, e.addr, "a4.pin.example.com", "A2", certA2)
		clWantRefused(t, e, err, "a4.pin.example.com", subjectA2, 3)
		_, err = clOpen(t, e.addr, "a5.pin.example.com", "A", certA)
		clWantRefused(t, e, err, "a5.pin.example.com", subjectA, 3)
		clMustOpen(t, e.addr, "b1.pin.example.com", "B", certB)
		clWantSeen(t, "one URI on two certificates", byURI, map[string]int{"A": 2, "A2": 1, "B": 1})
	})

	for route, n := range map[string]float64{"tcp.example.com": 4, "pin.example.com": 2} {
		clMetric(t, admin, "tlsedge_access_denied_total", map[string]string{"listener": "public", "route": route, "stage": "client_limit"}, n)
		clMetric(t, admin, "tlsedge_tls_handshakes_total", map[string]string{"listener": "public", "route": route, "result": "client_limit"}, n)
	}
}

// ---------------------------------------------------------------- request rate

// requests_per_second: 10, burst: 5 on protocol http routes, one per HTTP
// version (each route has its own counts). Client A (partner-a) sends 100
// GETs as fast as it can, HTTP/1.1 from 4 workers over at most 4
// keep-alive connections, HTTP/2 from 8 workers over one connection.
// Every answer is 200 or 429; at least one is 429 and at least 5 (the
// burst) are 200; the 200s are at most 5 + 10 × the elapsed seconds (+2:
// a count bound from the measured time, not a timing threshold); each 429
// has Retry-After: 1 (the wait for one token at 10/s, rounded up to whole
// seconds) and tlsedge's body; the server received exactly the requests
// answered 200; each 429 is logged with reason "too many requests:
// client_limits.requests_per_second 10" and no server. Client B
// (partner-b), sending 5 once A is being refused, gets five 200s. The
// route's tlsedge_http_requests_total counts the 429s as code 4xx.
func TestClientLimitsRequestRate(t *testing.T) {
	t.Parallel()
	f := azWriteFiles(t)
	route := func(name, backend string) cfgMap {
		r := azRoute(f, name, "http", backend, "require", nil)
		r["client_limits"] = cfgMap{"requests_per_second": 10, "burst": 5}
		return r
	}
	b1, b2 := startHTTPBackend(t, "cl-h1"), startHTTPBackend(t, "cl-h2")
	cfg := azConfig(f, []any{route("devices.example.com", "h1"), route("fleet.example.com", "h2")},
		httpBackendCfg("h1", b1.Addr()), httpBackendCfg("h2", b2.Addr()))
	admin := newAdmin(t, withAdmin(t, cfg))
	e := runEdge(t, cfg)
	for _, tc := range []struct {
		name, route string
		h2          bool
		server      *httpBackend
	}{
		{"HTTP/1.1", "devices.example.com", false, b1},
		{"HTTP/2", "fleet.example.com", true, b2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clFlood(t, f, e, admin, tc.route, tc.h2, tc.server)
		})
	}
}

// clFlood is one case of TestClientLimitsRequestRate on route.
func clFlood(t *testing.T, f *azFiles, e *edgeProc, admin *adminClient, route string, h2 bool, server *httpBackend) {
	const total, rate, burst = 100, 10, 5
	pk := thePKI.az
	workers, conns, proto := 4, 4, 1
	if h2 {
		workers, conns, proto = 8, 1, 2
	}
	a := clNewHTTP(t, e.addr, pk.leaves[azPartnerA].TLS, h2, conns)
	b := clNewHTTP(t, e.addr, pk.leaves[azPartnerB].TLS, h2, 1)
	hostA, hostB := "a."+route, "b."+route

	var (
		mu       sync.Mutex
		results  []clResult
		next     atomic.Int64
		once     sync.Once
		limited  = make(chan struct{}) // closed at A's first 429
		finished = make(chan struct{}) // closed when A's flood is over
		wg       sync.WaitGroup
	)
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= total {
					return
				}
				r := a.get(hostA, fmt.Sprintf("/a/%d", i))
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
				if r.status == http.StatusTooManyRequests {
					once.Do(func() { close(limited) })
				}
			}
		})
	}
	// B starts once A is refused (or A is done), while A goes on.
	var bResults []clResult
	bDone := make(chan struct{})
	go func() {
		defer close(bDone)
		select {
		case <-limited:
		case <-finished:
		}
		for i := range burst {
			bResults = append(bResults, b.get(hostB, fmt.Sprintf("/b/%d", i)))
		}
	}()
	wg.Wait()
	elapsed := time.Since(start)
	close(finished)
	<-bDone // bounded: each request has the client's timeout

	var ok200, ok429 int
	var passed []string
	for _, r := range results {
		switch {
		case r.err != nil:
			t.Errorf("A %s: %v; want an answer", r.path, r.err)
		case r.proto != proto:
			t.Errorf("A %s: HTTP/%d; want HTTP/%d", r.path, r.proto, proto)
		case r.status == http.StatusOK:
			ok200++
			passed = append(passed, r.path)
		case r.status == http.StatusTooManyRequests:
			ok429++
			if r.retryAfter != "1" || r.body != clBody429 {
				t.Errorf("A %s: 429 with Retry-After %q, body %q; want Retry-After \"1\" and body %q", r.path, r.retryAfter, r.body, clBody429)
			}
		default:
			t.Errorf("A %s: status %d; want 200 or 429", r.path, r.status)
		}
	}
	bound := burst + rate*elapsed.Seconds() + 2
	t.Logf("A: %d × 200, %d × 429 in %v (bound on 200s %.1f); %d connections", ok200, ok429, elapsed, bound, a.dials.Load())
	if ok429 < 1 || ok200 < burst || float64(ok200) > bound {
		t.Errorf("A: %d × 200 and %d × 429 in %v; want at least one 429 and from %d (the burst) to %.1f (burst + rate × elapsed + 2) 200s",
			ok200, ok429, elapsed, burst, bound)
	}
	if n := a.dials.Load(); n < 1 || n > int64(conns) {
		t.Errorf("A opened %d connections; want 1 to %d (429 keeps the connection)", n, conns)
	}
	for _, r := range bResults {
		if r.err != nil || r.status != http.StatusOK {
			t.Errorf("B %s: status %d, %v; want 200 (its own counts)", r.path, r.status, r.err)
		}
	}

	// The server received exactly the requests answered 200.
	var gotA, gotB []string
	for _, r := range server.Requests() {
		switch {
		case strings.HasPrefix(r.Path, "/a/"):
			gotA = append(gotA, r.Path)
		case strings.HasPrefix(r.Path, "/b/"):
			gotB = append(gotB, r.Path)
		}
	}
	slices.Sort(gotA)
	slices.Sort(passed)
	if !slices.Equal(gotA, passed) {
		t.Errorf("the server received %d of A's requests; want exactly the %d answered 200\ngot  %v\nwant %v", len(gotA), len(passed), gotA, passed)
	}
	if len(gotB) != burst {
		t.Errorf("the server received %d of B's requests; want %d", len(gotB), burst)
	}

	subjectA := azSubject(t, f.cert[azPartnerA])
	if ok429 > 0 {
		lines := e.waitLogs(t, ok429, "request lines of A's 429s", func(l logLine) bool {
			return l.msg() == "request" && l.str("host") == hostA && l.num("status") == 429
		})
		if len(lines) != ok429 {
			t.Errorf("%d request lines with status 429; want %d", len(lines), ok429)
		}
		for _, l := range lines {
			if l.str("reason") != "too many requests: client_limits.requests_per_second 10" || l.str("server") != "" || l.str("client_cert") != subjectA {
				t.Errorf("request line %v: want reason \"too many requests: client_limits.requests_per_second 10\", no server, client_cert %q", l, subjectA)
				break
			}
		}
	}
	onRoute := map[string]string{"listener": "public", "route": route}
	with := func(code string) map[string]string {
		m := map[string]string{"code": code}
		for k, v := range onRoute {
			m[k] = v
		}
		return m
	}
	clMetric(t, admin, "tlsedge_http_requests_total", with("4xx"), float64(ok429))
	clMetric(t, admin, "tlsedge_http_requests_total", with("2xx"), float64(ok200+burst))
}

// ---------------------------------------------------------------- reloads

// The counts survive reloads. Route tcp (connections: 3): A holds 3
// connections. Route devices (protocol http, requests_per_second 0.01,
// burst 2: a token every 100 s): A's 3rd request gets 429 with
// Retry-After from 1 to 100. A SIGHUP reload that adds a route before
// them, makes tcp's min_version "1.3" and changes devices'
// http.read_header_timeout (a new HTTP proxy) keeps both limits in force:
// A's 4th connection fails with alert 49, A's next request gets 429, and
// B's request gets 200 (A's counts, not a new limit). A's 3 connections
// are still echoed. A reload that raises connections to 4 admits exactly
// one more A connection: the 5th is refused with "(4) open". The servers
// saw exactly what was admitted.
func TestClientLimitsReload(t *testing.T) {
	t.Parallel()
	f := azWriteFiles(t)
	pk := thePKI.az
	echo, other := clStartEcho(t, "tcp"), clStartEcho(t, "open")
	web := startHTTPBackend(t, "cl-web")
	tcp := azRoute(f, "tcp.example.com", "tcp", "tcp", "require", nil)
	tcp["client_limits"] = cfgMap{"connections": 3}
	devices := azRoute(f, "devices.example.com", "http", "web", "require", nil)
	devices["client_limits"] = cfgMap{"requests_per_second": 0.01, "burst": 2}
	cfg := azConfig(f, []any{tcp, devices},
		httpBackendCfg("tcp", echo.Addr()), httpBackendCfg("web", web.Addr()), httpBackendCfg("open", other.Addr()))
	e := runEdge(t, cfg)
	certA, certB := pk.leaves[azPartnerA].TLS, pk.leaves[azPartnerB].TLS
	subjectA := azSubject(t, f.cert[azPartnerA])

	// get sends one request as client cert over a new HTTP/1.1 connection.
	get := func(cert tls.Certificate, host, path string) clResult {
		return clNewHTTP(t, e.addr, cert, false, 1).get(host, path)
	}
	wantLimited := func(what string, r clResult) {
		t.Helper()
		ra, err := strconv.Atoi(r.retryAfter)
		if r.err != nil || r.status != http.StatusTooManyRequests || err != nil || ra < 1 || ra > 100 || r.body != clBody429 {
			t.Errorf("%s: status %d, Retry-After %q, body %q, %v; want 429, Retry-After 1 to 100 and body %q", what, r.status, r.retryAfter, r.body, r.err, clBody429)
		}
	}

	var held []*tls.Conn
	for i := 1; i <= 3; i++ {
		held = append(held, clMustOpen(t, e.addr, fmt.Sprintf("a%d.tcp.example.com", i), "A", certA))
	}
	for i := range 2 {
		if r := get(certA, "a.devices.example.com", fmt.Sprintf("/a/%d", i)); r.err != nil || r.status != http.StatusOK {
			t.Fatalf("A's request %d: status %d, %v; want 200 (the burst)", i, r.status, r.err)
		}
	}
	wantLimited("A's 3rd request", get(certA, "a.devices.example.com", "/a/2"))

	// Reload 1: nothing about the limits changes.
	first := cfgMap{"sni": []any{"open.example.com"}, "mode": "terminate", "protocol": "tcp", "backend": "open",
		"tls": cfgMap{"cert": f.edgeCert, "key": f.edgeKey}}
	tcp["tls"].(cfgMap)["min_version"] = "1.3"
	devices["http"] = cfgMap{"read_header_timeout": "7s"}
	listenerCfg(t, cfg, 0)["routes"] = []any{first, tcp, devices}
	reloadTLSEdge(t, e, cfg)
	_, err := clOpen(t, e.addr, "a4.tcp.example.com", "A", certA)
	clWantRefused(t, e, err, "a4.tcp.example.com", subjectA, 3)
	wantLimited("A's request after the reload", get(certA, "a.devices.example.com", "/a/3"))
	if r := get(certB, "b.devices.example.com", "/b/0"); r.err != nil || r.status != http.StatusOK {
		t.Errorf("B's request after the reload: status %d, %v; want 200", r.status, r.err)
	}
	for i, c := range held {
		if err := clPing(c, "cl-again\n"); err != nil {
			t.Errorf("A's connection %d after the reload: %v; want it still echoed", i+1, err)
		}
	}
	clWantSeen(t, "after reload 1", echo, map[string]int{"A": 3})

	// Reload 2: connections 4.
	tcp["client_limits"] = cfgMap{"connections": 4}
	reloadTLSEdge(t, e, cfg)
	clMustOpen(t, e.addr, "a5.tcp.example.com", "A", certA)
	_, err = clOpen(t, e.addr, "a6.tcp.example.com", "A", certA)
	clWantRefused(t, e, err, "a6.tcp.example.com", subjectA, 4)
	clWantSeen(t, "after reload 2", echo, map[string]int{"A": 4})
	clWantSeen(t, "the added route", other, map[string]int{})

	var paths []string
	for _, r := range web.Requests() {
		paths = append(paths, r.Path)
	}
	slices.Sort(paths)
	if want := []string{"/a/0", "/a/1", "/b/0"}; !slices.Equal(paths, want) {
		t.Errorf("the HTTP server received %v; want exactly %v (no 429 reaches it)", paths, want)
	}
}

// ---------------------------------------------------------------- validate

// `tlsedge validate -c` refuses client_limits where it cannot work,
// naming the key: on a passthrough route, without client certificates,
// requests_per_second on a tcp route, burst without a rate, an unknown
// key, no limit set. The same keys written correctly validate.
func TestClientLimitsValidate(t *testing.T) {
	t.Parallel()
	f := azWriteFiles(t)
	backend := cfgMap{"name": "app", "servers": []any{cfgMap{"address": "127.0.0.1:9001"}}, "health": cfgMap{"type": "none"}}
	with := func(r cfgMap, limits cfgMap) cfgMap {
		r["client_limits"] = limits
		return r
	}
	httpRoute := func(clientAuth string) cfgMap { return azRoute(f, "app.example.com", "http", "app", clientAuth, nil) }
	tcpRoute := func() cfgMap { return azRoute(f, "app.example.com", "tcp", "app", "require", nil) }
	const p = "listeners[0].routes[0].client_limits"
	cases := []struct {
		name     string
		route    cfgMap
		key, why string // the problem's key path and the start of its message
	}{
		{"passthrough", with(cfgMap{"sni": []any{"app.example.com"}, "mode": "passthrough", "backend": "app"}, cfgMap{"connections": 3}),
			p, "passthrough never sees the client certificate that identifies a client"},
		{"no client certificates", with(httpRoute(""), cfgMap{"connections": 3}),
			p, "client limits count verified client certificates"},
		{"rate on tcp", with(tcpRoute(), cfgMap{"requests_per_second": 10}),
			p + ".requests_per_second", "requests are counted on protocol http routes only"},
		{"burst without a rate", with(httpRoute("require"), cfgMap{"connections": 3, "burst": 5}),
			p + ".burst", "is the bucket of requests_per_second"},
		{"unknown key", with(httpRoute("require"), cfgMap{"connections": 3, "key": "serial"}),
			p + ".key", `"serial" is not valid`},
		{"no limit", with(httpRoute("require"), cfgMap{"key": "uri"}),
			p, "sets no limit"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := azConfig(f, []any{tc.route}, backend)
			listenerCfg(t, cfg, 0)["address"] = "127.0.0.1:9443" // validate binds nothing
			path := writeConfig(t, cfg)
			stdout, stderr, code := runTlsedge(t, "validate", "-c", path)
			prefix := path + ": " + tc.key + ": " + tc.why
			if code != 1 || stdout != "" || !strings.HasPrefix(stderr, prefix) || strings.Count(stderr, "\n") != 1 {
				t.Errorf("validate: exit %d, stdout %q, stderr:\n%s\nwant exit 1 and one line starting %q", code, stdout, stderr, prefix)
			}
		})
	}
	t.Run("valid", func(t *testing.T) {
		t.Parallel()
		r := with(httpRoute("verify_if_given"), cfgMap{"connections": 3, "requests_per_second": 0.5, "burst": 4, "key": "subject"})
		tr := with(azRoute(f, "tcp.example.com", "tcp", "app", "require", nil), cfgMap{"connections": 1, "key": "uri"})
		cfg := azConfig(f, []any{r, tr}, backend)
		listenerCfg(t, cfg, 0)["address"] = "127.0.0.1:9443"
		path := writeConfig(t, cfg)
		stdout, stderr, code := runTlsedge(t, "validate", "-c", path)
		if code != 0 || stdout != path+": ok\n" || stderr != "" {
			t.Errorf("validate: exit %d, stdout %q, stderr %q; want exit 0 and %q", code, stdout, stderr, path+": ok\n")
		}
	})
}
