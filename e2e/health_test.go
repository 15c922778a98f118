package e2e

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Health checks of type tls and http, end to end: servers whose TCP works
// but whose TLS or HTTP does not, switched broken and healthy while tlsedge
// runs, observed through the admin API, the log and /metrics, and through
// where real clients land. Checks run every 100 ms with rise 2 and fall 2;
// no assertion depends on how long anything took, only on states reached
// within bounded polls.

// hcFast is the health block of these tests, without its type.
func hcFast(typ string) cfgMap {
	return cfgMap{"type": typ, "interval": "100ms", "timeout": "500ms", "rise": 2, "fall": 2}
}

// hcRise and hcFall are the rise and fall of hcFast.
const hcRise, hcFall = 2, 2

// hcCheckTLS is a backends[].tls block with which a tls check completes the
// handshake of the harness's mTLS servers: their CA, and a client
// certificate they accept.
func hcCheckTLS() cfgMap {
	return cfgMap{"ca": thePKI.serverCAFile, "cert": thePKI.clientCert, "key": thePKI.clientKey}
}

// hcPassthroughCfg is a config with one listener of passthrough routes (sni
// pattern -> backend name), the given backends, and the admin API on; it
// returns the admin address too.
func hcPassthroughCfg(t *testing.T, routes map[string]string, backends ...cfgMap) (cfgMap, string) {
	t.Helper()
	var rs []any
	for sni, b := range routes {
		rs = append(rs, cfgMap{"sni": []any{sni}, "mode": "passthrough", "backend": b})
	}
	bs := make([]any, len(backends))
	for i, b := range backends {
		bs[i] = b
	}
	cfg := cfgMap{
		"log":       cfgMap{"level": "info", "format": "json", "access": true},
		"listeners": []any{cfgMap{"name": "public", "address": "", "routes": rs}},
		"backends":  bs,
	}
	return cfg, withAdmin(t, cfg)
}

// ---------------------------------------------------------------- a server whose TLS can break

// flipServer listens on one address for its whole life and is, at any
// moment, either broken (it accepts, reads what the peer sends first, and
// closes: TCP works, TLS never completes) or a real mTLS echo server like
// backend (banner "<name> CN=<cn>\n", then echo). Flipping keeps the
// listener, so the server "comes back" on the very same address and no
// other process can take the port in between. It counts what it sees, so
// a test can tell health checks (no SNI: tlsedge checks an address) from
// client connections (their ClientHello carries the route's name).
type flipServer struct {
	name  string
	sni   string // the route's name: a ClientHello holding it is a client's
	conf  *tls.Config
	ln    net.Listener
	on    atomic.Bool // TLS works
	group *connGroup  // the connections; t.Cleanup stops it

	mu          sync.Mutex
	brokenConns int // accepted while broken
	tlsConns    int // accepted while TLS works (counted before the handshake)
	clientsLost int // accepted while broken with a ClientHello for sni
	clients     int // TLS handshakes completed with SNI sni
	checks      int // TLS handshakes completed without SNI (tlsedge's checks)
}

// startFlipServer starts a flipServer on 127.0.0.1:0, TLS working or not;
// t.Cleanup stops it.
func startFlipServer(t testing.TB, name, sni string, tlsOn bool) *flipServer {
	t.Helper()
	cert, err := thePKI.serverCert(name)
	if err != nil {
		t.Fatal(err)
	}
	return startFlipServerCert(t, name, sni, tlsOn, cert.TLS)
}

// startFlipServerCert is startFlipServer with another certificate.
func startFlipServerCert(t testing.TB, name, sni string, tlsOn bool, cert tls.Certificate) *flipServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &flipServer{
		name: name, sni: sni, ln: ln, group: newConnGroup(t, "server "+name),
		conf: &tls.Config{
			Certificates: []tls.Certificate{cert},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    thePKI.clientCA.Pool(),
			MinVersion:   tls.VersionTLS12,
		},
	}
	s.on.Store(tlsOn)
	s.group.serve(ln, s.serve)
	t.Cleanup(s.group.stop)
	return s
}

// serve serves c as the server is now, TLS working or broken, and counts
// it so (before the handshake).
func (s *flipServer) serve(c net.Conn) {
	on := s.on.Load()
	s.mu.Lock()
	if on {
		s.tlsConns++
	} else {
		s.brokenConns++
	}
	s.mu.Unlock()
	if on {
		s.serveTLS(c)
	} else {
		s.serveBroken(c)
	}
}

// serveBroken reads the first bytes (a ClientHello, or nothing from a tcp
// check) and closes without answering.
func (s *flipServer) serveBroken(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(waitLong))
	buf := make([]byte, 4096)
	n, _ := c.Read(buf)
	if s.sni != "" && bytes.Contains(buf[:n], []byte(s.sni)) {
		s.mu.Lock()
		s.clientsLost++
		s.mu.Unlock()
	}
}

func (s *flipServer) serveTLS(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(waitLong))
	tc := tls.Server(c, s.conf)
	if err := tc.Handshake(); err != nil {
		return
	}
	_ = c.SetDeadline(time.Time{})
	st := tc.ConnectionState()
	s.mu.Lock()
	if st.ServerName == s.sni {
		s.clients++
	} else {
		s.checks++
	}
	s.mu.Unlock()
	if _, err := fmt.Fprintf(tc, "%s CN=%s\n", s.name, st.PeerCertificates[0].Subject.CommonName); err != nil {
		return
	}
	_, _ = io.Copy(tc, tc)
	_ = tc.CloseWrite()
}

// setTLS makes TLS work (true) or break (false) for the next connections.
func (s *flipServer) setTLS(on bool) { s.on.Store(on) }

func (s *flipServer) Addr() string { return s.ln.Addr().String() }

// counts returns what the server saw so far.
func (s *flipServer) counts() (brokenConns, tlsConns, clientsLost, clients, checks int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.brokenConns, s.tlsConns, s.clientsLost, s.clients, s.checks
}

// ---------------------------------------------------------------- an HTTP server whose health can break

// statusServer is an HTTP (or HTTPS) server: GET /healthz answers the
// status set with setStatus (200 at first), anything else "<name> <path>"
// with the header X-Backend: <name>. It counts the health answers given
// with the status in force since the last setStatus, so a test can check
// that a state change came after at least rise (or fall) of them.
type statusServer struct {
	name string
	addr string

	mu      sync.Mutex
	status  int
	since   int // /healthz answered with status since setStatus
	checks  int // /healthz answered in all
	traffic int // other requests
	mtls    int // /healthz over TLS with the client certificate CN=device-42
}

// startStatusServer starts a plain HTTP statusServer.
func startStatusServer(t testing.TB, name string) *statusServer {
	return startStatusServerTLS(t, name, nil)
}

// startStatusServerTLS starts a statusServer that speaks HTTPS with conf
// (plain HTTP when nil).
func startStatusServerTLS(t testing.TB, name string, conf *tls.Config) *statusServer {
	t.Helper()
	var ln net.Listener
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if conf != nil {
		ln = tls.NewListener(ln, conf)
	}
	s := &statusServer{name: name, addr: addr, status: http.StatusOK}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: waitLong, ErrorLog: stdlog.New(io.Discard, "", 0)}
	serveHTTP(t, "HTTP server "+name, srv, ln)
	return s
}

func (s *statusServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Backend", s.name)
	s.mu.Lock()
	if r.URL.Path != "/healthz" {
		s.traffic++
		s.mu.Unlock()
		fmt.Fprintf(w, "%s %s\n", s.name, r.URL.Path)
		return
	}
	// Counted before the answer leaves: tlsedge cannot act on an answer
	// that is not counted yet.
	status := s.status
	s.since++
	s.checks++
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 && r.TLS.PeerCertificates[0].Subject.CommonName == "device-42" {
		s.mtls++
	}
	s.mu.Unlock()
	w.WriteHeader(status)
	fmt.Fprintf(w, "%s health %d\n", s.name, status)
}

// setStatus sets what /healthz answers from now on.
func (s *statusServer) setStatus(code int) {
	s.mu.Lock()
	s.status, s.since = code, 0
	s.mu.Unlock()
}

// counts: health answers with the status in force since setStatus, health
// answers in all, other requests.
func (s *statusServer) counts() (since, checks, traffic int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.since, s.checks, s.traffic
}

func (s *statusServer) Addr() string { return s.addr }

// mutualTLSChecks returns the number of health answers given over TLS to
// a client that presented CN=device-42, and of health answers in all.
func (s *statusServer) mutualTLSChecks() (mtls, checks int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mtls, s.checks
}

// ---------------------------------------------------------------- helpers

// hcDownLine and hcUpLine match tlsedge's "server down" / "server up" lines of
// server addr.
func hcDownLine(addr string) func(logLine) bool {
	return func(l logLine) bool { return l.msg() == "server down" && l.str("server") == addr }
}

func hcUpLine(addr string) func(logLine) bool {
	return func(l logLine) bool { return l.msg() == "server up" && l.str("server") == addr }
}

// hcTransitions is tlsedge_server_health_transitions_total of one server
// into state (up or down).
func hcTransitions(a *adminClient, backend, server, state string) int {
	return int(a.metrics().value("tlsedge_server_health_transitions_total",
		map[string]string{"backend": backend, "server": server, "state": state}))
}

// ---------------------------------------------------------------- tests

// Issue: "health check types tls and http: a tls check does a full verified
// handshake with the backend's tls settings (tls.ca, tls.cert/key as client
// certificate)"; spec: health "type: tcp | tls | http", "rise", "fall";
// admin API: "GET /api/v1/backends ... health". A server that accepts TCP
// but fails TLS is marked down by tls checks (API state and last_error, a
// "server down" line with the reason) and not by tcp checks; so are a
// server that accepts and never answers, and one whose certificate tls.ca
// does not vouch for (the handshake is verified); no client is sent to them while down, the real TLS server
// beside them takes them all; once its TLS works again the first comes
// back after `rise` good checks and takes clients again. (It flips on the
// same listener rather than restarting on the same port: no other process
// can take the port in between, and it counts the checks it answered.)
func TestHealthTLSCheckCatchesBrokenTLS(t *testing.T) {
	t.Parallel()
	const sniTLS, sniTCP = "tls-checked.example.com", "tcp-checked.example.com"
	realTLS := startBackend(t, "real-tls")
	flaky := startFlipServer(t, "flaky", sniTLS, false) // TCP yes, TLS no
	realTCP := startBackend(t, "real-tcp")
	brokenTCP := startFlipServer(t, "broken-tcp", sniTCP, false)
	rogue := startFlipServerCert(t, "rogue", sniTLS, true, thePKI.term.rogueSrv.TLS) // another CA
	mute := startSilentBackend(t)                                                    // accepts, never answers

	// A TLS check's handshake (mutual, under -race, on 2 busy cores) may
	// take more than hcFast's 500 ms: cut at the timeout, real-tls would
	// see a failed handshake. 3 s leaves it room; the mute server is still
	// down within 2 × (100 ms + 3 s).
	tlsHealth := hcFast("tls")
	tlsHealth["timeout"] = "3s"
	byTLS := cfgMap{"name": "by-tls", "balance": "roundrobin", "health": tlsHealth, "tls": hcCheckTLS(),
		"servers": servers(realTLS.Addr(), flaky.Addr(), rogue.Addr(), mute.Addr())}
	byTCP := cfgMap{"name": "by-tcp", "balance": "roundrobin", "health": hcFast("tcp"),
		"servers": servers(realTCP.Addr(), brokenTCP.Addr())}
	cfg, adminAddr := hcPassthroughCfg(t, map[string]string{sniTLS: "by-tls", sniTCP: "by-tcp"}, byTLS, byTCP)
	e := runEdge(t, cfg)
	a := newAdmin(t, adminAddr)

	// The tls checks mark the server whose TLS fails down.
	st := a.waitServer("by-tls", flaky.Addr(), waitLong, "the server without TLS down", func(s apiServer) bool {
		return s.Health.State == "down"
	})
	if st.Health.Check != "tls" {
		t.Errorf("check of %s: got %q; want %q", flaky.Addr(), st.Health.Check, "tls")
	}
	if !strings.HasPrefix(st.Health.LastError, "tls: ") {
		t.Errorf("last_error of %s: got %q; want a TLS failure (\"tls: ...\")", flaky.Addr(), st.Health.LastError)
	}
	down := e.waitLog(t, "server down for "+flaky.Addr(), hcDownLine(flaky.Addr()))
	if down.str("backend") != "by-tls" || down.str("check") != "tls" || !strings.HasPrefix(down.str("reason"), "tls: ") ||
		int(down.num("fall")) != hcFall {
		t.Errorf("server down line %v: want backend by-tls, check tls, a reason \"tls: ...\", fall %d", down, hcFall)
	}
	if n := len(e.findLogs(hcDownLine(flaky.Addr()))); n != 1 {
		t.Errorf("server down lines for %s: got %d; want 1", flaky.Addr(), n)
	}
	// The server with a certificate of another CA: its TLS works, but the
	// check verifies it against tls.ca.
	st = a.waitServer("by-tls", rogue.Addr(), waitLong, "the server of another CA down", func(s apiServer) bool {
		return s.Health.State == "down"
	})
	if want := "tls: failed to verify certificate: x509: certificate signed by unknown authority"; st.Health.LastError != want {
		t.Errorf("last_error of %s (another CA): got %q; want %q", rogue.Addr(), st.Health.LastError, want)
	}
	// The server that accepts and never answers: each check runs into
	// health.timeout.
	st = a.waitServer("by-tls", mute.Addr(), waitLong, "the server that never answers down", func(s apiServer) bool {
		return s.Health.State == "down"
	})
	if le := st.Health.LastError; !strings.HasPrefix(le, "tls: ") || !strings.Contains(le, "timeout") && !strings.Contains(le, "deadline exceeded") {
		t.Errorf("last_error of %s (never answers): got %q; want a TLS timeout", mute.Addr(), le)
	}

	// The same kind of server behind tcp checks stays up: wait until it
	// has answered more than 2 × fall checks, then look.
	if !poll(waitLong, func() bool { n, _, _, _, _ := brokenTCP.counts(); return n > 2*hcFall }) {
		n, _, _, _, _ := brokenTCP.counts()
		t.Fatalf("the tcp-checked server saw %d connections within %v; want more than %d checks", n, waitLong, 2*hcFall)
	}
	tcpState := a.server("by-tcp", brokenTCP.Addr())
	if tcpState.Health.State != "up" || tcpState.Health.Check != "tcp" || tcpState.Health.LastError != "" {
		t.Errorf("tcp-checked server %s: got state %q, check %q, last_error %q; want %q, %q, %q",
			brokenTCP.Addr(), tcpState.Health.State, tcpState.Health.Check, tcpState.Health.LastError, "up", "tcp", "")
	}
	if l := e.findLogs(hcDownLine(brokenTCP.Addr())); len(l) != 0 {
		t.Errorf("tcp checks marked %s down: %v; want it up (its TCP works)", brokenTCP.Addr(), l[0])
	}

	// The real TLS server passes tls checks: they complete the handshake
	// with tlsedge's client certificate (the server requires one).
	if !poll(waitLong, func() bool { return len(realTLS.Conns()) > 2*hcFall }) {
		t.Fatalf("real-tls completed %d check handshakes within %v; want more than %d", len(realTLS.Conns()), waitLong, 2*hcFall)
	}
	for _, c := range realTLS.Conns() {
		if c.CN != "device-42" {
			t.Errorf("CN of the client certificate of a tls check: got %q; want %q (backends[].tls.cert)", c.CN, "device-42")
			break
		}
	}
	if f := realTLS.Failures(); len(f) != 0 {
		t.Errorf("real-tls saw failed handshakes: %q; want none", f)
	}
	if s := a.server("by-tls", realTLS.Addr()); s.Health.State != "up" || s.Health.LastError != "" {
		t.Errorf("real-tls: got state %q, last_error %q; want %q, %q", s.Health.State, s.Health.LastError, "up", "")
	}

	// No client reaches the server that is down: the real one takes all.
	for i := range 8 {
		if name := oneShot(t, e.addr, clientOpts{SNI: sniTLS}); name != "real-tls" {
			t.Fatalf("connection %d while %s is down: got %q; want %q", i+1, flaky.Addr(), name, "real-tls")
		}
	}
	if _, _, lost, _, _ := flaky.counts(); lost != 0 {
		t.Errorf("client hellos for %s that reached the server while it was down: got %d; want 0", sniTLS, lost)
	}
	if _, _, _, clients, _ := rogue.counts(); clients != 0 {
		t.Errorf("clients that reached the server of another CA: got %d; want 0", clients)
	}

	// Its TLS works again: up after rise good checks, never earlier.
	flaky.setTLS(true)
	if !poll(waitLong, func() bool { return a.server("by-tls", flaky.Addr()).Health.State == "up" }) {
		t.Fatalf("%s did not come back up within %v of its TLS working: %+v", flaky.Addr(), waitLong, a.server("by-tls", flaky.Addr()))
	}
	// Counted after the state was seen, so every check tlsedge acted on
	// is in: fewer than rise means it came up too early.
	_, tlsConns, _, _, _ := flaky.counts()
	if tlsConns < hcRise {
		t.Errorf("%s was up after %d connections with working TLS; want at least rise = %d checks", flaky.Addr(), tlsConns, hcRise)
	}
	up := e.waitLog(t, "server up for "+flaky.Addr(), hcUpLine(flaky.Addr()))
	if up.str("backend") != "by-tls" || up.str("check") != "tls" || int(up.num("rise")) != hcRise {
		t.Errorf("server up line %v: want backend by-tls, check tls, rise %d", up, hcRise)
	}
	if s := a.server("by-tls", flaky.Addr()); s.Health.LastError != "" {
		t.Errorf("last_error of %s once up: got %q; want %q", flaky.Addr(), s.Health.LastError, "")
	}
	seen := map[string]int{}
	for range 8 {
		seen[oneShot(t, e.addr, clientOpts{SNI: sniTLS})]++
	}
	if seen["flaky"] == 0 || seen["real-tls"] == 0 {
		t.Errorf("8 connections (roundrobin) once both are up reached %v; want both servers", seen)
	}
	if _, _, _, clients, _ := flaky.counts(); clients != seen["flaky"] {
		t.Errorf("client handshakes on flaky: got %d; want %d", clients, seen["flaky"])
	}
}

// Issue: "an http check GETs `path` and expects 200-399 unless
// expect_status says otherwise"; spec: health "path: /healthz  # http
// only"; metrics: tlsedge_server_health_transitions_total. A server whose
// /healthz answers 503 goes down after fall answers (API last_error and the
// "server down" line say 503), takes no request while down, and comes back
// after rise good answers; the transitions counter moves by exactly one per
// transition.
func TestHealthHTTPCheckStatus(t *testing.T) {
	t.Parallel()
	p := writeTermFiles(t)
	sick, fine := startStatusServer(t, "sick"), startStatusServer(t, "fine")
	hc := hcFast("http")
	hc["path"] = "/healthz"
	cfg := cfgMap{
		"log":       cfgMap{"level": "info", "format": "json", "access": true},
		"listeners": []any{cfgMap{"name": "public", "address": "", "routes": []any{termRoute(p, "api.example.com", "terminate", "http", "web", "", nil)}}},
		"backends":  []any{cfgMap{"name": "web", "balance": "roundrobin", "health": hc, "servers": servers(sick.Addr(), fine.Addr())}},
	}
	useTermFiles(t, cfg, p)
	a := newAdmin(t, withAdmin(t, cfg))
	e := runEdge(t, cfg)
	client := httpsClient(e.addr, &tls.Config{ServerName: "api.example.com", RootCAs: thePKI.serverCA.Pool()}, false)
	get := func(path string) string {
		t.Helper()
		resp, err := client.Get("https://api.example.com" + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: got status %d; want %d", path, resp.StatusCode, http.StatusOK)
		}
		return resp.Header.Get("X-Backend")
	}
	web := func(state string) int { return hcTransitions(a, "web", sick.Addr(), state) }

	// Healthy first: checks pass, nothing moved.
	if !poll(waitLong, func() bool { _, n, _ := sick.counts(); return n > hcRise }) {
		t.Fatalf("sick got no %d health checks within %v", hcRise+1, waitLong)
	}
	if s := a.server("web", sick.Addr()); s.Health.State != "up" || s.Health.Check != "http" || s.Health.LastError != "" {
		t.Fatalf("sick before the 503s: got state %q, check %q, last_error %q; want %q, %q, %q",
			s.Health.State, s.Health.Check, s.Health.LastError, "up", "http", "")
	}
	if d, u := web("down"), web("up"); d != 0 || u != 0 {
		t.Fatalf("transitions before any: got down %d, up %d; want 0, 0", d, u)
	}

	// 503: down after fall bad answers, never earlier.
	sick.setStatus(http.StatusServiceUnavailable)
	if !poll(waitLong, func() bool { return a.server("web", sick.Addr()).Health.State == "down" }) {
		t.Fatalf("sick answering 503 was not marked down within %v: %+v", waitLong, a.server("web", sick.Addr()))
	}
	bad, _, _ := sick.counts() // after the state: every answer tlsedge acted on is in
	if bad < hcFall {
		t.Errorf("sick was down after %d answers of 503; want at least fall = %d", bad, hcFall)
	}
	st := a.server("web", sick.Addr())
	if want := "http: status 503 (want 200-399)"; st.Health.LastError != want {
		t.Errorf("last_error: got %q; want %q", st.Health.LastError, want)
	}
	down := e.waitLog(t, "server down for sick", hcDownLine(sick.Addr()))
	if down.str("backend") != "web" || down.str("check") != "http" || !strings.Contains(down.str("reason"), "status 503") {
		t.Errorf("server down line %v: want backend web, check http, a reason with \"status 503\"", down)
	}
	if d, u := web("down"), web("up"); d != 1 || u != 0 {
		t.Errorf("transitions after going down: got down %d, up %d; want 1, 0", d, u)
	}

	// While down, every request goes to the other server.
	for i := range 6 {
		if got := get(fmt.Sprintf("/while-down/%d", i)); got != "fine" {
			t.Fatalf("request %d while sick is down: got %q; want %q", i+1, got, "fine")
		}
	}
	if _, _, traffic := sick.counts(); traffic != 0 {
		t.Errorf("requests that reached sick while down: got %d; want 0", traffic)
	}

	// 200 again: up after rise good answers, never earlier.
	sick.setStatus(http.StatusOK)
	if !poll(waitLong, func() bool { return a.server("web", sick.Addr()).Health.State == "up" }) {
		t.Fatalf("sick answering 200 again did not come back within %v: %+v", waitLong, a.server("web", sick.Addr()))
	}
	good, _, _ := sick.counts()
	if good < hcRise {
		t.Errorf("sick was up after %d good answers; want at least rise = %d", good, hcRise)
	}
	e.waitLog(t, "server up for sick", hcUpLine(sick.Addr()))
	// Let more checks pass than a flap would need, then count again.
	_, checks, _ := sick.counts()
	if !poll(waitLong, func() bool { _, n, _ := sick.counts(); return n > checks+hcRise+hcFall }) {
		t.Fatalf("health checks of sick stopped after it came back")
	}
	if d, u := web("down"), web("up"); d != 1 || u != 1 {
		t.Errorf("transitions after one down and one up: got down %d, up %d; want 1, 1", d, u)
	}
	if s := a.server("web", sick.Addr()); s.Health.State != "up" || s.Health.LastError != "" {
		t.Errorf("sick once back: got state %q, last_error %q; want %q, %q", s.Health.State, s.Health.LastError, "up", "")
	}
	seen := map[string]int{}
	for i := range 6 {
		seen[get(fmt.Sprintf("/after/%d", i))]++
	}
	if seen["sick"] == 0 {
		t.Errorf("6 requests (roundrobin) after sick came back reached %v; want sick among them", seen)
	}
}

// Issue: "an http check GETs `path` (over that TLS when the backend has
// tls) and expects 200-399 unless expect_status says otherwise". One HTTPS
// server that requires a client certificate, checked by two pools: one
// with the default statuses, one with expect_status [5xx]. While /healthz
// answers 200, the first has it up (its checks ran over TLS with tlsedge's
// client certificate: the server speaks nothing else) and the second down;
// when it answers 503, the other way round, each saying why.
func TestHealthHTTPCheckOverTLSAndExpectStatus(t *testing.T) {
	t.Parallel()
	cert, err := thePKI.serverCert("https-health")
	if err != nil {
		t.Fatal(err)
	}
	srv := startStatusServerTLS(t, "https-health", &tls.Config{
		Certificates: []tls.Certificate{cert.TLS},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    thePKI.clientCA.Pool(),
		MinVersion:   tls.VersionTLS12,
	})
	pool := func(name string, expect ...any) cfgMap {
		hc := hcFast("http")
		hc["path"] = "/healthz"
		if len(expect) > 0 {
			hc["expect_status"] = expect
		}
		return cfgMap{"name": name, "health": hc, "tls": hcCheckTLS(), "servers": servers(srv.Addr())}
	}
	cfg, adminAddr := hcPassthroughCfg(t, map[string]string{"default.example.com": "default", "inverse.example.com": "inverse"},
		pool("default"), pool("inverse", "5xx"))
	runEdge(t, cfg)
	a := newAdmin(t, adminAddr)
	states := func(def, inv string) func() bool {
		return func() bool {
			return a.server("default", srv.Addr()).Health.State == def && a.server("inverse", srv.Addr()).Health.State == inv
		}
	}
	check := func(pool, state, lastErr string) {
		t.Helper()
		s := a.server(pool, srv.Addr())
		if s.Health.State != state || s.Health.LastError != lastErr {
			t.Errorf("pool %s: got state %q, last_error %q; want %q, %q", pool, s.Health.State, s.Health.LastError, state, lastErr)
		}
	}

	if !poll(waitLong, states("up", "down")) {
		t.Fatalf("with /healthz 200: default %+v, inverse %+v; want up, down",
			a.server("default", srv.Addr()).Health, a.server("inverse", srv.Addr()).Health)
	}
	// More good checks than fall: a check that failed would show.
	_, checks, _ := srv.counts()
	if !poll(waitLong, func() bool { _, n, _ := srv.counts(); return n > checks+2*hcFall }) {
		t.Fatalf("health checks stopped")
	}
	check("default", "up", "")
	check("inverse", "down", "http: status 200 (want 5xx)")
	if m, n := srv.mutualTLSChecks(); m != n {
		t.Errorf("health answers over TLS with the client certificate: got %d of %d; want all", m, n)
	}

	srv.setStatus(http.StatusServiceUnavailable)
	if !poll(waitLong, states("down", "up")) {
		t.Fatalf("with /healthz 503: default %+v, inverse %+v; want down, up",
			a.server("default", srv.Addr()).Health, a.server("inverse", srv.Addr()).Health)
	}
	_, checks, _ = srv.counts()
	if !poll(waitLong, func() bool { _, n, _ := srv.counts(); return n > checks+2*hcFall }) {
		t.Fatalf("health checks stopped")
	}
	check("default", "down", "http: status 503 (want 200-399)")
	check("inverse", "up", "")
	if m, n := srv.mutualTLSChecks(); m != n {
		t.Errorf("health answers over TLS with the client certificate: got %d of %d; want all", m, n)
	}
}

// Issue: health checks feed every policy: "a server whose checks fail is
// skipped by affinity too"; spec, affinity: "source_ip: Same client, same
// server". With affinity source_ip, a client's key moves to the other
// server while its own is down, and comes back when it recovers.
func TestHealthFailingServerSkippedByAffinity(t *testing.T) {
	t.Parallel()
	const sni = "sticky.example.com"
	s1, s2 := startFlipServer(t, "sticky-1", sni, true), startFlipServer(t, "sticky-2", sni, true)
	byName := map[string]*flipServer{"sticky-1": s1, "sticky-2": s2}
	pool := cfgMap{"name": "sticky", "affinity": "source_ip", "health": hcFast("tls"), "tls": hcCheckTLS(),
		"servers": servers(s1.Addr(), s2.Addr())}
	cfg, adminAddr := hcPassthroughCfg(t, map[string]string{sni: "sticky"}, pool)
	e := runEdge(t, cfg)
	a := newAdmin(t, adminAddr)
	const ip = "127.0.0.77"
	reach := func(phase string, n int) string {
		t.Helper()
		got := ""
		for i := range n {
			name := oneShot(t, e.addr, clientOpts{SNI: sni, LocalIP: ip})
			if got != "" && name != got {
				t.Fatalf("%s: connection %d from %s reached %q, the ones before %q; want one server", phase, i+1, ip, name, got)
			}
			got = name
		}
		return got
	}

	home := reach("both up", 4)
	other := "sticky-1"
	if home == other {
		other = "sticky-2"
	}
	h := byName[home]

	h.setTLS(false)
	a.waitServer("sticky", h.Addr(), waitLong, home+" down", func(s apiServer) bool { return s.Health.State == "down" })
	if got := reach(home+" down", 4); got != other {
		t.Errorf("while %s is down, %s reached %q; want %q", home, ip, got, other)
	}
	if _, _, lost, _, _ := h.counts(); lost != 0 {
		t.Errorf("client hellos that reached %s while it was down: got %d; want 0", home, lost)
	}

	h.setTLS(true)
	a.waitServer("sticky", h.Addr(), waitLong, home+" up again", func(s apiServer) bool { return s.Health.State == "up" })
	if got := reach(home+" up again", 4); got != home {
		t.Errorf("once %s is up again, %s reached %q; want %q (its own server)", home, ip, got, home)
	}
}
