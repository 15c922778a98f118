package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// The limits of docs/config.md a client cannot get past: per address
// (max_connections_per_ip, connection_rate_per_ip), per listener
// (max_handshakes), per server (max_connections_per_server with
// queue_timeout), the passthrough handshake_timeout, and the failure lines
// of the log (log.failure_burst, log.failure_interval).

// rawDialFrom opens a plain TCP connection to addr from source address ip;
// t.Cleanup closes it.
func rawDialFrom(t testing.TB, addr, ip string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: waitLong, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("connecting from %s: %v", ip, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedWithin reads from c until tlsedge closes it (EOF or a reset) and
// reports whether that happened within d, and the error seen.
func closedWithin(c net.Conn, d time.Duration) (bool, error) {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false, err
	}
	return true, err
}

// refused is tlsedge_connections_refused_total of listener public for reason.
func refused(a *adminClient, reason string) float64 {
	return a.metrics().value("tlsedge_connections_refused_total", map[string]string{"listener": "public", "reason": reason})
}

// Spec (docs/config.md): max_connections_per_ip "open connections of one
// client address ...; excess ones are closed at once, counted and logged".
// The N+1th connection from one address is closed before tlsedge reads a
// byte; another address still gets in; a freed slot is usable again.
func TestLimitPerIP(t *testing.T) {
	t.Parallel()
	var admin string
	e := startPassthrough(t, func(cfg cfgMap) {
		admin = withAdmin(t, cfg)
		listenerCfg(t, cfg, 0)["max_connections_per_ip"] = 2
	})
	a := newAdmin(t, admin)
	o := clientOpts{SNI: "api.example.com", LocalIP: "127.0.0.3"}
	c1 := mustDial(t, e.addr, o)
	c2 := mustDial(t, e.addr, o)

	start := time.Now()
	third := rawDialFrom(t, e.addr, "127.0.0.3")
	if ok, err := closedWithin(third, 5*time.Second); !ok {
		t.Fatalf("third connection from 127.0.0.3 with max_connections_per_ip 2: still open after 5s (%v); want closed at once", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("third connection closed after %v; want at once (clienthello_timeout is 5s)", d)
	}
	// Its line may come before any count could be taken: it is the first
	// closed connection from 127.0.0.3 (the other two are open), so no
	// older line can have its address.
	l := e.nextAccessLine(t, third.LocalAddr().String(), 0)
	if got, want := l.str("reason"), "too many connections from this address"; got != want || l.str("level") != "warn" {
		t.Errorf("access line of the third connection: reason %q level %q; want %q at warn", got, l.str("level"), want)
	}
	if _, ok := l["sni"]; ok {
		t.Errorf("access line of the refused connection has sni %v; want none (no byte read)", l["sni"])
	}

	// Another address is not affected.
	other := mustDial(t, e.addr, clientOpts{SNI: "api.example.com", LocalIP: "127.0.0.4"})
	if err := other.echo("from another address\n"); err != nil {
		t.Errorf("127.0.0.4 next to a capped 127.0.0.3: %v", err)
	}
	if got := refused(a, "per_ip"); got != 1 {
		t.Errorf("refused_total{reason=per_ip}: got %v; want 1\n%s", got, a.metrics().series("tlsedge_connections_refused_total"))
	}
	// The open ones still work; once one ends, the address may connect again.
	if err := c2.echo("still open\n"); err != nil {
		t.Errorf("an open connection of the capped address: %v", err)
	}
	e.closeAndLog(t, c1)
	if c := mustDial(t, e.addr, o); c.Backend == "" {
		t.Error("127.0.0.3 after one of its two connections ended: no banner")
	}
}

// Spec: connection_rate_per_ip "new connections a second one client
// address may open (token bucket); excess ones are closed at once";
// connection_burst_per_ip "the bucket's size". A burst past the bucket is
// refused; after a pause the address connects again.
func TestLimitRate(t *testing.T) {
	t.Parallel()
	var admin string
	e := startPassthrough(t, func(cfg cfgMap) {
		admin = withAdmin(t, cfg)
		l := listenerCfg(t, cfg, 0)
		l["connection_rate_per_ip"] = 1
		l["connection_burst_per_ip"] = 5
	})
	a := newAdmin(t, admin)

	// 10 connections at once from one address: the bucket holds 5 (and
	// refills one a second).
	conns := make([]net.Conn, 10)
	for i := range conns {
		conns[i] = rawDialFrom(t, e.addr, "127.0.0.5")
	}
	type res struct{ closed bool }
	results := make(chan res, len(conns))
	for _, c := range conns {
		go func() {
			ok, _ := closedWithin(c, 1500*time.Millisecond) // admitted ones wait for their hello
			results <- res{ok}
		}()
	}
	closed := 0
	for range conns {
		if (<-results).closed {
			closed++
		}
	}
	for _, c := range conns {
		c.Close()
	}
	admitted := len(conns) - closed
	if admitted < 5 || admitted > 6 || closed < 4 {
		t.Errorf("10 connections at once, rate 1/s, burst 5: %d admitted, %d closed at once; want 5 (6 if a second passed) admitted, the rest closed", admitted, closed)
	}
	if got := refused(a, "rate"); int(got) != closed {
		t.Errorf("refused_total{reason=rate}: got %v; want %d (the ones closed)", got, closed)
	}
	rateLines := e.findLogs(func(l logLine) bool {
		return l.msg() == "connection" && strings.HasPrefix(l.str("client"), "127.0.0.5:") && l.str("reason") == "connection rate of this address exceeded"
	})
	if len(rateLines) != closed {
		t.Errorf("access lines with reason \"connection rate of this address exceeded\": got %d; want %d", len(rateLines), closed)
	}

	// Another address has its own bucket.
	mustDial(t, e.addr, clientOpts{SNI: "api.example.com", LocalIP: "127.0.0.6"})

	// After a pause (1 token a second), the address gets in again.
	time.Sleep(2100 * time.Millisecond)
	c := mustDial(t, e.addr, clientOpts{SNI: "api.example.com", LocalIP: "127.0.0.5"})
	if err := c.echo("after a pause\n"); err != nil {
		t.Errorf("127.0.0.5 after a 2s pause: %v", err)
	}
}

// Spec: max_handshakes "connections in their handshake at once (from
// accept until routed, and for terminate until the TLS handshake is done):
// a flood of hellos cannot starve established traffic. A new connection
// waits for a slot at most clienthello_timeout, then is closed".
// Two clients send their hello to a terminate route and stall there: they
// hold both slots until handshake_timeout. (Slow hellos alone cannot hold
// a slot longer than a newcomer waits: both are bounded by
// clienthello_timeout.) A slow hello and a normal client behind them wait
// clienthello_timeout and are closed, while a WebSocket established before
// keeps flowing; once the stalled handshakes time out, clients get in.
func TestLimitMaxHandshakes(t *testing.T) {
	t.Parallel()
	var admin string
	e := startTermHTTP(t, func(cfg cfgMap, _ *termPaths) {
		admin = withAdmin(t, cfg)
		l := listenerCfg(t, cfg, 0)
		l["max_handshakes"] = 2
		l["clienthello_timeout"] = "1s"
		l["handshake_timeout"] = "4s"
	})
	a := newAdmin(t, admin)
	ws, _ := wsDial(t, e.addr, "d1.devices.example.com", "/limits/hs-ws", cliValid)

	hello := clientHello(t, clientOpts{SNI: "api.example.com"})
	var stalled []net.Conn
	for range 2 {
		c := rawDialFrom(t, e.addr, "127.0.0.1")
		if _, err := c.Write(hello); err != nil {
			t.Fatal(err)
		}
		stalled = append(stalled, c)
	}
	stallStart := time.Now()
	time.Sleep(300 * time.Millisecond) // both routed, in their TLS handshake

	type waiter struct {
		c    net.Conn
		n    int
		done chan bool
	}
	var waiters []waiter
	start := time.Now()
	for _, payload := range [][]byte{hello[:10], hello} { // a slow hello, a whole one
		c := rawDialFrom(t, e.addr, "127.0.0.1")
		w := waiter{c: c, n: e.accessCount(c.LocalAddr().String()), done: make(chan bool, 1)}
		if _, err := c.Write(payload); err != nil {
			t.Fatal(err)
		}
		go func() { ok, _ := closedWithin(c, waitLong); w.done <- ok }()
		waiters = append(waiters, w)
	}

	// While they wait, the established WebSocket flows.
	if n, err := wsExchange(ws, "during the flood", time.Second); err != nil || n == 0 {
		t.Errorf("established WebSocket while the handshake slots are taken: %d messages echoed, error %v", n, err)
	}
	for i, w := range waiters {
		if !<-w.done {
			t.Fatalf("connection %d behind 2 stalled handshakes (max_handshakes 2) was not closed within %v", i+1, waitLong)
		}
	}
	if d := time.Since(start); d < 900*time.Millisecond || d > 3500*time.Millisecond {
		t.Errorf("the waiting connections were closed after %v; want after their clienthello_timeout 1s (the slots are held 4s)", d)
	}
	for i, w := range waiters {
		l := e.nextAccessLine(t, w.c.LocalAddr().String(), w.n)
		if got, want := l.str("reason"), "too many handshakes in progress"; got != want {
			t.Errorf("waiting connection %d: reason %q; want %q", i+1, got, want)
		}
	}
	if got := refused(a, "handshakes"); got != 2 {
		t.Errorf("refused_total{reason=handshakes}: got %v; want 2", got)
	}
	// The stalled handshakes end at handshake_timeout; then the listener
	// serves again.
	for i, c := range stalled {
		if ok, err := closedWithin(c, waitLong); !ok {
			t.Fatalf("stalled handshake %d not closed within %v: %v", i+1, waitLong, err)
		}
	}
	if d := time.Since(stallStart); d < 3900*time.Millisecond {
		t.Errorf("stalled handshakes closed after %v; want after handshake_timeout 4s", d)
	}
	if r := e.curl(t, curlOpts{Host: "api.example.com", Path: "/limits/after-flood", Client: cliValid}); r.Status != http.StatusOK {
		t.Errorf("a request after the stalled handshakes ended: status %d; want 200", r.Status)
	}
	if n, err := wsExchange(ws, "after the flood", 300*time.Millisecond); err != nil || n == 0 {
		t.Errorf("established WebSocket after the flood: %d messages echoed, error %v", n, err)
	}
}

// Spec: handshake_timeout "for passthrough, the client's next bytes after
// its hello (its side of the handshake). A client that stalls is closed,
// reason `handshake timeout`". A normal mTLS client, quiet afterwards, is
// not.
func TestLimitPassthroughHandshakeTimeout(t *testing.T) {
	t.Parallel()
	e := startPassthrough(t, func(cfg cfgMap) { listenerCfg(t, cfg, 0)["handshake_timeout"] = "1s" })

	normal := mustDial(t, e.addr, clientOpts{SNI: "api.example.com"})

	stall := rawDialFrom(t, e.addr, "127.0.0.1")
	n := e.accessCount(stall.LocalAddr().String())
	start := time.Now()
	if _, err := stall.Write(clientHello(t, clientOpts{SNI: "api.example.com"})); err != nil {
		t.Fatal(err)
	}
	// It gets the server's first flight, then the end.
	if ok, err := closedWithin(stall, waitLong); !ok {
		t.Fatalf("a client that sent its hello and then nothing was not closed within %v: %v", waitLong, err)
	}
	if d := time.Since(start); d < 900*time.Millisecond || d > 5*time.Second {
		t.Errorf("stalled handshake closed after %v; want after handshake_timeout 1s", d)
	}
	l := e.nextAccessLine(t, stall.LocalAddr().String(), n)
	if got := l.str("reason"); got != "handshake timeout" || l.str("level") != "warn" {
		t.Errorf("stalled client's access line: reason %q level %q; want \"handshake timeout\" at warn", got, l.str("level"))
	}
	if l.str("server") == "" {
		t.Errorf("stalled client's access line %v: want the server it was routed to", l)
	}

	// The normal client finished its handshake long ago: quiet for twice
	// the timeout, it still works.
	time.Sleep(2 * time.Second)
	if err := normal.echo("quiet but handshaken\n"); err != nil {
		t.Errorf("a normal mTLS client after 2s of silence: %v", err)
	}
}

// Spec: backends[].max_connections_per_server "past it, a new one waits up
// to queue_timeout for a slot, then gets 503 (http) or is closed (tcp,
// passthrough)". Passthrough streams to a server capped at 2.
func TestLimitMaxConnectionsPerServerPassthrough(t *testing.T) {
	t.Parallel()
	var admin string
	e := startPassthrough(t, func(cfg cfgMap) {
		admin = withAdmin(t, cfg)
		api := backendCfg(t, cfg, "api")
		// One server: the other stays out of the way.
		api["servers"] = []any{asList(t, api["servers"], "servers")[0]}
		api["max_connections_per_server"] = 2
		api["queue_timeout"] = "2s"
	})
	a := newAdmin(t, admin)
	o := clientOpts{SNI: "api.example.com"}
	s1 := mustDial(t, e.addr, o)
	s2 := mustDial(t, e.addr, o)

	type result struct {
		c   *edgeConn
		err error
	}
	third := make(chan result, 1)
	go func() {
		c, err := dialTLS(e.addr, clientOpts{SNI: "api.example.com", Deadline: waitLong})
		third <- result{c, err}
	}()
	select {
	case r := <-third:
		if r.c != nil {
			r.c.Close()
		}
		t.Fatalf("third stream to a server capped at 2 finished its handshake (err %v) while two were open; want it to wait", r.err)
	case <-time.After(700 * time.Millisecond):
	}
	s1.Close()
	select {
	case r := <-third:
		if r.err != nil {
			t.Fatalf("third stream after one of two ended: %v; want the freed slot", r.err)
		}
		t.Cleanup(func() { r.c.Close() })
		if err := r.c.echo("my turn\n"); err != nil {
			t.Errorf("third stream: %v", err)
		}
	case <-time.After(waitLong):
		t.Fatalf("third stream did not get the freed slot within %v", waitLong)
	}

	// Nobody leaves: a fourth is closed after queue_timeout.
	raw := rawDialFrom(t, e.addr, "127.0.0.1")
	n := e.accessCount(raw.LocalAddr().String())
	start := time.Now()
	if c, err := handshakeOver(raw, o, waitLong); err == nil {
		c.Close()
		t.Fatal("fourth stream with 2 open on a server capped at 2: connected; want closed after queue_timeout")
	}
	if d := time.Since(start); d < 1900*time.Millisecond || d > 6*time.Second {
		t.Errorf("fourth stream closed after %v; want after queue_timeout 2s", d)
	}
	if got := e.nextAccessLine(t, raw.LocalAddr().String(), n).str("reason"); got != "server queue timeout" {
		t.Errorf("fourth stream's reason: %q; want \"server queue timeout\"", got)
	}
	if got := refused(a, "server_queue"); got != 1 {
		t.Errorf("refused_total{reason=server_queue}: got %v; want 1", got)
	}
	if err := s2.echo("unharmed\n"); err != nil {
		t.Errorf("an open stream: %v", err)
	}
	if got := a.server("api", e.backends["api-1"].Addr()).Active; got != 2 {
		t.Errorf("active connections of the capped server: %d; want 2", got)
	}
}

// The same for HTTP: a third WebSocket to a server capped at 2 waits and
// gets its slot when one ends; with nobody leaving, a request gets 503
// after queue_timeout and never reaches the server.
func TestLimitMaxConnectionsPerServerHTTP(t *testing.T) {
	t.Parallel()
	var admin string
	e := startTermHTTP(t, func(cfg cfgMap, _ *termPaths) {
		admin = withAdmin(t, cfg)
		dev := backendCfg(t, cfg, "devices")
		dev["servers"] = []any{asList(t, dev["servers"], "servers")[0]}
		dev["max_connections_per_server"] = 2
		dev["queue_timeout"] = "2s"
	})
	a := newAdmin(t, admin)
	cert := thePKI.term.clients[cliValid].TLS
	ws1, _ := wsDial(t, e.addr, "d1.devices.example.com", "/limits/ws1", cliValid)
	ws2, _ := wsDial(t, e.addr, "d2.devices.example.com", "/limits/ws2", cliValid)

	type result struct {
		c       *websocket.Conn
		backend string
		err     error
	}
	third := make(chan result, 1)
	go func() {
		c, b, _, err := wsConnect(e.addr, "d3.devices.example.com", "/limits/ws3", cert)
		third <- result{c, b, err}
	}()
	select {
	case r := <-third:
		if r.c != nil {
			r.c.CloseNow()
		}
		t.Fatalf("third WebSocket to a server capped at 2 answered (backend %q, err %v) while two were open; want it to wait", r.backend, r.err)
	case <-time.After(700 * time.Millisecond):
	}
	if err := ws1.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Errorf("closing WebSocket 1: %v", err)
	}
	var ws3 *websocket.Conn
	select {
	case r := <-third:
		if r.err != nil {
			t.Fatalf("third WebSocket after one of two ended: %v; want the freed slot", r.err)
		}
		ws3 = r.c
		t.Cleanup(func() { ws3.CloseNow() })
		if r.backend != "dev-1" {
			t.Errorf("third WebSocket answered by %q; want dev-1", r.backend)
		}
	case <-time.After(waitLong):
		t.Fatalf("third WebSocket did not get the freed slot within %v", waitLong)
	}
	if n, err := wsExchange(ws3, "third", 500*time.Millisecond); err != nil || n == 0 {
		t.Errorf("third WebSocket: %d messages echoed, error %v", n, err)
	}

	// Nobody leaves: a plain request waits queue_timeout, then 503.
	start := time.Now()
	r := e.curl(t, curlOpts{Host: "d4.devices.example.com", Path: "/limits/queued", Client: cliValid})
	if d := time.Since(start); r.Status != http.StatusServiceUnavailable || d < 1900*time.Millisecond {
		t.Errorf("request with the only server at its cap: status %d after %v; want 503 after queue_timeout 2s", r.Status, d)
	}
	if got, _ := findRequestMaybe("/limits/queued", e.dev()...); got {
		t.Error("the refused request reached a server; want none contacted")
	}
	if got := refused(a, "server_queue"); got != 1 {
		t.Errorf("refused_total{reason=server_queue}: got %v; want 1", got)
	}
	if n, err := wsExchange(ws2, "second", 300*time.Millisecond); err != nil || n == 0 {
		t.Errorf("an open WebSocket: %d messages echoed, error %v", n, err)
	}
}

// findRequestMaybe reports whether any of bs received a request for path.
func findRequestMaybe(path string, bs ...*httpBackend) (bool, *httpBackend) {
	for _, b := range bs {
		for _, r := range b.Requests() {
			if r.Path == path {
				return true, b
			}
		}
	}
	return false, nil
}

// Spec: log.failure_burst "failed connections are logged at warn, at most
// this many lines of one kind (listener and reason) each failure_interval,
// then one line saying how many more were left out (a scan cannot flood the
// log)". 100 refused connections give at most burst+1 warn lines.
func TestLimitFailureLogBurst(t *testing.T) {
	t.Parallel()
	const burst, total = 5, 100
	var admin string
	e := startPassthrough(t, func(cfg cfgMap) {
		admin = withAdmin(t, cfg)
		cfg["log"].(cfgMap)["failure_burst"] = burst
		cfg["log"].(cfgMap)["failure_interval"] = "5s"
		listenerCfg(t, cfg, 0)["max_connections_per_ip"] = 1
	})
	a := newAdmin(t, admin)
	hold := mustDial(t, e.addr, clientOpts{SNI: "api.example.com", LocalIP: "127.0.0.9"})

	start := time.Now()
	for i := range total {
		c := rawDialFrom(t, e.addr, "127.0.0.9")
		if ok, err := closedWithin(c, 5*time.Second); !ok {
			t.Fatalf("refused connection %d still open after 5s: %v", i+1, err)
		}
		c.Close()
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("%d refused connections took %v; the test needs them within one failure_interval (5s)", total, d)
	}
	if got := refused(a, "per_ip"); got != total {
		t.Errorf("refused_total{reason=per_ip}: got %v; want %d (every one counted)", got, total)
	}
	summary := e.waitLog(t, "the failure summary line", func(l logLine) bool {
		return l.str("kind") == "per_ip" && strings.HasSuffix(l.msg(), "more failures like this in the last interval")
	})
	if got, want := summary.msg(), fmt.Sprintf("%d more failures like this in the last interval", total-burst); got != want {
		t.Errorf("summary message: got %q; want %q", got, want)
	}
	if summary.str("level") != "warn" || summary.str("listener") != "public" || int(summary.num("count")) != total-burst {
		t.Errorf("summary line %v: want level warn, listener public, count %d", summary, total-burst)
	}
	isRefusal := func(l logLine) bool {
		return l.str("level") == "warn" && (l.msg() == "connection" && l.str("reason") == "too many connections from this address" ||
			l.str("kind") == "per_ip")
	}
	if got := len(e.findLogs(isRefusal)); got > burst+1 {
		t.Errorf("%d refused connections gave %d warn lines; want at most %d (burst + 1 summary)", total, got, burst+1)
	} else if got != burst+1 {
		t.Errorf("%d refused connections gave %d warn lines; want %d lines and 1 summary", total, got, burst)
	}
	if err := hold.echo("the held connection\n"); err != nil {
		t.Errorf("the connection holding the address's slot: %v", err)
	}
}
