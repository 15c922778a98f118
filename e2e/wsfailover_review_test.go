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
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// WebSocket failover, the review's findings: the affinity cookie never
// reaches a server, a server's refusal passes whole, a stale drain or
// rebalance never moves a WebSocket off a server it no longer is on, a
// message has read_body_timeout to be complete, TLS failures of failover
// dials count for passive ejection, a failed health check with no other
// server keeps the WebSocket, the 1 MiB limits, and nothing leaks after
// switches (harness: wsfailover_harness_test.go).

// wfDialHdr opens a WebSocket through tlsedge's failover route with extra
// request headers (the client certificate of the harness).
func wfDialHdr(t *testing.T, addr, path string, hdr http.Header) (*websocket.Conn, *http.Response) {
	t.Helper()
	cert := thePKI.term.clients[cliValid].TLS
	host := "d1.devices.example.com"
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
		TLSClientConfig: &tls.Config{ServerName: host, RootCAs: thePKI.serverCA.Pool(),
			Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}},
	}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "wss://"+net.JoinHostPort(host, portOf(addr))+path,
		&websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}, HTTPHeader: hdr})
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	t.Cleanup(func() { _ = c.CloseNow() })
	return c, resp
}

// wfRoute is the failover route of a wfSetup config.
func wfRoute(cfg cfgMap) cfgMap {
	return cfg["listeners"].([]any)[0].(cfgMap)["routes"].([]any)[0].(cfgMap)
}

// wfEcho sends msg and reads one answer, bounded by waitLong.
func wfEcho(ws *websocket.Conn, msg string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if err := ws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		return "", err
	}
	_, got, err := ws.Read(ctx)
	return string(got), err
}

// M1: the affinity cookie is tlsedge's: with failover too, the server's
// handshake carries the client's other cookies, never the affinity one.
func TestWFCookieStripped(t *testing.T) {
	t.Parallel()
	for _, failover := range []bool{false, true} {
		t.Run(fmt.Sprintf("failover=%v", failover), func(t *testing.T) {
			t.Parallel()
			e, servers, _ := wfSetupMod(t, failover, func(cfg cfgMap) {
				b := backendCfg(t, cfg, "ws")
				b["affinity"] = "cookie"
				b["cookie"] = cfgMap{"name": "tlsedge_server"}
			}, "ws-a")
			ws, _ := wfDialHdr(t, e.addr, "/wf/cookie", http.Header{"Cookie": {"tlsedge_server=forged-value; app=1"}})
			if got, err := wfEcho(ws, "m1"); err != nil || got != "ws-a m1" {
				t.Fatalf("echo: %q %v; want \"ws-a m1\"", got, err)
			}
			hs := servers["ws-a"].handshakes()
			if len(hs) != 1 {
				t.Fatalf("%d handshakes at the server; want 1", len(hs))
			}
			if got := hs[0].Values("Cookie"); len(got) != 1 || got[0] != "app=1" {
				t.Errorf("Cookie at the server: %q; want only \"app=1\" (the affinity cookie stripped)", got)
			}
		})
	}
}

// M3 and L7: a server refusing the upgrade with a 288,000-byte 403: the
// client gets its status, Content-Length and body whole.
func TestWFRefusalBody(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Repeat("denied by the application server: token expired\n", 6000)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("X-Refused-By", "app")
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, body)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	for _, failover := range []bool{false, true} {
		t.Run(fmt.Sprintf("failover=%v", failover), func(t *testing.T) {
			t.Parallel()
			e, _, _ := wfSetupMod(t, failover, func(cfg cfgMap) {
				backendCfg(t, cfg, "ws")["servers"] = []any{cfgMap{"address": ln.Addr().String()}}
			}, "ws-a")
			cert := thePKI.term.clients[cliValid].TLS
			tc, err := tls.Dial("tcp", e.addr, &tls.Config{ServerName: "d1.devices.example.com", RootCAs: thePKI.serverCA.Pool(),
				Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}})
			if err != nil {
				t.Fatal(err)
			}
			defer tc.Close()
			_ = tc.SetDeadline(time.Now().Add(3 * waitLong))
			fmt.Fprintf(tc, "GET /ws HTTP/1.1\r\nHost: d1.devices.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
				"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusForbidden || err != nil || string(got) != body {
				t.Errorf("answer %d, body %d bytes (error %v); want 403 with the server's %d bytes", resp.StatusCode, len(got), err, len(body))
			}
			if resp.ContentLength != int64(len(body)) || resp.Header.Get("X-Refused-By") != "app" {
				t.Errorf("Content-Length %d, X-Refused-By %q; want %d and app", resp.ContentLength, resp.Header.Get("X-Refused-By"), len(body))
			}
		})
	}
}

// M2 and L7: a rebalance moves WebSockets off the server over its share;
// when that server dies during the rebalance, its WebSockets fail over at
// once, and the rebalance never moves them again off the servers they went
// to (which were never over their share): every move for the rebalance is
// off ws-a, and every client keeps its WebSocket.
func TestWFRebalanceThenKill(t *testing.T) {
	t.Parallel()
	ids := []string{"ws-a", "ws-b", "ws-c"}
	e, servers, admin := wfSetupMod(t, true, func(cfg cfgMap) {
		backendCfg(t, cfg, "ws")["drain_timeout"] = "1h"
	}, ids...)
	a := newAdmin(t, admin)
	for _, id := range []string{"ws-b", "ws-c"} {
		if st := a.do(http.MethodPost, "/api/v1/backends/ws/servers/"+servers[id].addr()+"/drain", nil, nil); st != http.StatusOK {
			t.Fatalf("drain %s: %d", id, st)
		}
	}
	var cs []*wfClient
	for i := 0; i < 6; i++ {
		c := wfDialClient(t, e.addr, fmt.Sprintf("/wf/rb%d", i))
		if c.first != "ws-a" {
			t.Fatalf("client %d on %s; want ws-a (the others draining)", i, c.first)
		}
		c.waitReplies(t, "ws-a", 2, "before the rebalance")
		cs = append(cs, c)
	}
	for _, id := range []string{"ws-b", "ws-c"} {
		if st := a.do(http.MethodPost, "/api/v1/backends/ws/servers/"+servers[id].addr()+"/enable", nil, nil); st != http.StatusOK {
			t.Fatalf("enable %s: %d", id, st)
		}
	}
	if st := a.do(http.MethodPost, "/api/v1/backends/ws/rebalance", map[string]any{"above": 1, "rate": 0.5}, nil); st != http.StatusAccepted {
		t.Fatalf("rebalance: %d", st)
	}
	first := e.waitLog(t, "the first rebalance move", func(l logLine) bool {
		return l.msg() == "websocket moved to another server" && l.str("reason") == "rebalanced"
	})
	if first.str("from") != servers["ws-a"].addr() {
		t.Errorf("first rebalance move %v; want from ws-a %s", first, servers["ws-a"].addr())
	}
	servers["ws-a"].kill()
	// Every client answered from ws-b or ws-c after the kill.
	for i, c := range cs {
		n := c.count("ws-b") + c.count("ws-c")
		ok := poll(3*waitLong, func() bool {
			_, err := c.snapshot()
			return err != nil || c.count("ws-b")+c.count("ws-c") >= n+5
		})
		if _, err := c.snapshot(); err != nil || !ok {
			t.Fatalf("client %d after the kill: ended %v, answered %v; want 5 more answers from ws-b or ws-c", i, err, ok)
		}
	}
	// The rebalance planned 4 moves at 0.5/s: it is over within 8 s of
	// its start; wait until it says so (bounded), then count.
	e.waitLog(t, "the rebalance's end", func(l logLine) bool { return l.msg() == "rebalance done" })
	for _, l := range e.findLogs(func(l logLine) bool { return l.msg() == "websocket moved to another server" }) {
		if l.str("reason") == "rebalanced" && l.str("from") != servers["ws-a"].addr() {
			t.Errorf("moved for the rebalance off %s (%v); want only moves off ws-a %s", l.str("from"), l, servers["ws-a"].addr())
		}
	}
	for i, c := range cs {
		if _, err := c.snapshot(); err != nil {
			t.Errorf("client %d ended: %v", i, err)
		}
	}
}

// M4: a client that sends most of a message and never its end, pinging
// to stay busy, is cut read_body_timeout (1s here) after the message's
// first frame: close frame 1008 with the reason, the same reason on the
// connection's log line, and the server's WebSocket closed with 1001.
func TestWFPartialMessageCut(t *testing.T) {
	t.Parallel()
	e, servers, _ := wfSetupMod(t, true, func(cfg cfgMap) {
		wfRoute(cfg)["http"] = cfgMap{"read_body_timeout": "1s"}
	}, "ws-a")
	ws, _ := wfDialHdr(t, e.addr, "/wf/partial", nil)
	if got, err := wfEcho(ws, "m1"); err != nil || got != "ws-a m1" {
		t.Fatalf("echo: %q %v", got, err)
	}
	w, err := ws.Writer(context.Background(), websocket.MessageBinary)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for j := 0; j < 8; j++ { // 512 KiB, no FIN
		if _, err := w.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	stop := make(chan struct{})
	pinged := make(chan struct{})
	go func() { // pings keep the connection busy (idle_timeout away)
		defer close(pinged)
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = ws.Ping(ctx)
			cancel()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 3*waitLong)
	defer cancel()
	_, _, err = ws.Read(ctx) // also reads the pongs
	close(stop)
	<-pinged
	const reason = "client timeout: WebSocket message not complete within read_body_timeout 1s"
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusPolicyViolation || ce.Reason != reason {
		t.Errorf("the client's read ended with %v; want close frame 1008 %q", err, reason)
	}
	l := e.waitLog(t, "the connection's line", func(l logLine) bool {
		return l.msg() == "connection" && l.str("sni") == "d1.devices.example.com"
	})
	if l.str("reason") != reason {
		t.Errorf("connection line %v; want reason %q", l, reason)
	}
	if !poll(waitLong, func() bool { return len(servers["ws-a"].endings()) == 1 }) {
		t.Fatalf("the server's WebSocket did not end within %v", waitLong)
	}
	if err := servers["ws-a"].endings()[0]; websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Errorf("the server's WebSocket ended with %v; want close frame 1001", err)
	}
}

// L1: on a reencrypt route, a failover dial whose TLS handshake fails
// counts towards passive ejection: the server that resets after each
// ClientHello is ejected (reason tls) after consecutive_failures (2).
func TestWFReencryptTLSFailureEjects(t *testing.T) {
	t.Parallel()
	bad := agStartResetter(t)
	e, servers, _ := wfSetupFull(t, true, true, func(cfg cfgMap) {
		b := backendCfg(t, cfg, "ws")
		b["balance"] = "roundrobin"
		b["retries"] = 0
		b["outlier"] = cfgMap{"consecutive_failures": 2, "base_ejection_time": "10m", "max_ejection_percent": 50}
		b["servers"] = append(b["servers"].([]any), cfgMap{"address": bad.addr})
	}, "sws-a")
	cert := thePKI.term.clients[cliValid].TLS
	for i := 0; bad.n.Load() < 2; i++ {
		if i == 20 {
			t.Fatalf("20 handshakes, the failing server saw %d connections; want 2", bad.n.Load())
		}
		// Every other one goes to the failing server and is refused (502).
		if ws, _, _, err := wsConnect(e.addr, "d1.devices.example.com", fmt.Sprintf("/wf/tls%d", i), cert); err == nil {
			_ = ws.CloseNow()
		}
	}
	l := e.waitLog(t, "the failing server's ejection", agIsEjection(bad.addr))
	if l.str("reason") != "tls" {
		t.Errorf("ejection line %v; want reason tls", l)
	}
	before := bad.n.Load()
	for i := 0; i < 4; i++ {
		ws, backend, _ := wsDialCert(t, e.addr, "d1.devices.example.com", fmt.Sprintf("/wf/after%d", i), cert)
		if backend != "sws-a" {
			t.Errorf("WebSocket %d after the ejection answered by %q; want sws-a", i, backend)
		}
		_ = ws.CloseNow()
	}
	if n := bad.n.Load() - before; n != 0 || len(servers["sws-a"].handshakes()) < 4 {
		t.Errorf("the ejected server got %d connections after its ejection; want 0", n)
	}
}

// L3: a failed health check with no other server available keeps the
// WebSocket on its server (as the plain relay does), with one warning;
// it keeps being answered there.
func TestWFHealthFailNoServerKeeps(t *testing.T) {
	t.Parallel()
	e, servers, _ := wfSetupMod(t, true, func(cfg cfgMap) {
		backendCfg(t, cfg, "ws")["health"] = cfgMap{"type": "http", "path": "/healthz", "interval": "200ms", "rise": 1, "fall": 1}
	}, "ws-a")
	c := wfDialClient(t, e.addr, "/wf/keep")
	c.waitReplies(t, "ws-a", 3, "before the health check fails")
	servers["ws-a"].sick.Store(true)
	l := e.waitLog(t, "the keep warning", func(l logLine) bool {
		return l.msg() == "websocket failover: no other server, the websocket stays on its server"
	})
	if l.str("level") != "warn" || l.str("from") != servers["ws-a"].addr() || l.str("reason") != "health check failed" {
		t.Errorf("keep line %v; want level warn, from %s, reason health check failed", l, servers["ws-a"].addr())
	}
	n := c.count("ws-a")
	c.waitReplies(t, "ws-a", n+20, "while ws-a fails its health check") // 2 s of polls at 0.5 s
	if ls := e.findLogs(func(l logLine) bool { return strings.HasPrefix(l.msg(), "websocket failover") }); len(ls) != 1 {
		t.Errorf("failover warnings %v; want the one keep line", ls)
	}
	if ends := servers["ws-a"].endings(); len(ends) != 0 {
		t.Errorf("the server's WebSocket ended: %v; want it kept", ends)
	}
}

// L7: the 1 MiB limits. A 1 MiB client message reaches the server; the
// server's echo (over 1 MiB) closes the client with 1011 and the server
// with 1009. A client message over 1 MiB closes the client with 1009.
func TestWFMessageLimits(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []int
	var ends []error
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(8 << 20)
		for {
			typ, msg, err := c.Read(context.Background())
			mu.Lock()
			if err != nil {
				ends = append(ends, err)
				mu.Unlock()
				return
			}
			got = append(got, len(msg))
			mu.Unlock()
			_ = c.Write(context.Background(), typ, append([]byte("echo "), msg...))
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	e, _, _ := wfSetupMod(t, true, func(cfg cfgMap) {
		backendCfg(t, cfg, "ws")["servers"] = []any{cfgMap{"address": ln.Addr().String()}}
	}, "ws-a")
	ctx, cancel := context.WithTimeout(context.Background(), 3*waitLong)
	defer cancel()

	ws, _ := wfDialHdr(t, e.addr, "/wf/big", nil)
	ws.SetReadLimit(4 << 20)
	if err := ws.Write(ctx, websocket.MessageText, []byte(strings.Repeat("x", 1<<20))); err != nil {
		t.Fatal(err)
	}
	_, _, err = ws.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusInternalError {
		t.Errorf("client after the server's 1 MiB + 5 echo: %v; want close frame 1011", err)
	}
	poll(waitLong, func() bool { mu.Lock(); defer mu.Unlock(); return len(ends) == 1 })
	mu.Lock()
	if len(got) != 1 || got[0] != 1<<20 || len(ends) != 1 || websocket.CloseStatus(ends[0]) != websocket.StatusMessageTooBig {
		t.Errorf("server got messages of %v bytes, ended %v; want one of %d bytes, then close frame 1009", got, ends, 1<<20)
	}
	mu.Unlock()

	ws2, _ := wfDialHdr(t, e.addr, "/wf/big2", nil)
	_ = ws2.Write(ctx, websocket.MessageText, []byte(strings.Repeat("x", 1<<20+1))) // may fail once tlsedge closed
	_, _, err = ws2.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
		t.Errorf("client after a message of 1 MiB + 1: %v; want close frame 1009", err)
	}
}

// L7: slots, connections and goroutines come back after switches: twelve
// clients move twice (ws-a killed, then ws-b), then close; every server's
// active count and the connection list are back to 0, and the goroutines
// to what they were before (a leak of one per client would show as 12).
func TestWFNoLeak(t *testing.T) {
	t.Parallel()
	ids := []string{"ws-a", "ws-b", "ws-c"}
	e, servers, admin := wfSetup(t, true, ids...)
	a := newAdmin(t, admin)
	gor := func() float64 { return a.metrics()["go_goroutines"].Metric[0].GetGauge().GetValue() }
	base := gor()
	var clients []*websocket.Conn
	for i := 0; i < 12; i++ {
		ws, _ := wfDialHdr(t, e.addr, fmt.Sprintf("/wf/leak%d", i), nil)
		clients = append(clients, ws)
	}
	echo := func(what string) {
		for i, ws := range clients {
			if _, err := wfEcho(ws, fmt.Sprintf("m%d", i)); err != nil {
				t.Fatalf("%s: client %d: %v", what, i, err)
			}
		}
	}
	echo("before")
	moved := 0
	for _, id := range []string{"ws-a", "ws-b"} {
		// Every client on id moves (one log line each) before the next
		// echo: a message written just before the reset may be lost.
		moved += len(servers[id].handshakes())
		servers[id].kill()
		e.waitLog(t, fmt.Sprintf("%d moves", moved), func(logLine) bool {
			return len(e.findLogs(func(l logLine) bool { return l.msg() == "websocket moved to another server" })) >= moved
		})
		echo("after killing " + id)
	}
	if n := len(servers["ws-c"].handshakes()); n != 12 {
		t.Errorf("ws-c got %d handshakes; want 12 (every client on it)", n)
	}
	for _, ws := range clients {
		_ = ws.Close(websocket.StatusNormalClosure, "bye")
	}
	ok := poll(3*waitLong, func() bool {
		return a.server("ws", servers["ws-c"].addr()).Active == 0 && len(a.connections("")) == 0 && gor() <= base+3
	})
	if !ok {
		// +3: the admin API's own connections may come and go.
		t.Errorf("after the closes: goroutines %v (before %v), ws-c active %d, connections %d; want at most %v, 0, 0",
			gor(), base, a.server("ws", servers["ws-c"].addr()).Active, len(a.connections("")), base+3)
	}
}

// A WebSocket kept on a server marked down (no other server could take it)
// moves as soon as another server can: ws-b is down when ws-a fails its
// health check, and once ws-b is up again the WebSocket goes on there.
func TestWFKeptMovesWhenAnotherComesUp(t *testing.T) {
	t.Parallel()
	e, servers, _ := wfSetupMod(t, true, func(cfg cfgMap) {
		backendCfg(t, cfg, "ws")["health"] = cfgMap{"type": "http", "path": "/healthz", "interval": "200ms", "rise": 1, "fall": 1}
	}, "ws-a", "ws-b")
	servers["ws-b"].sick.Store(true)
	e.waitLog(t, "ws-b marked down", func(l logLine) bool {
		return l.msg() == "server down" && l.str("server") == servers["ws-b"].addr()
	})
	c := wfDialClient(t, e.addr, "/wf/kept")
	if c.first != "ws-a" {
		t.Fatalf("the 101 came from %q; want ws-a (ws-b is down)", c.first)
	}
	c.waitReplies(t, "ws-a", 3, "before ws-a fails its health check")
	servers["ws-a"].sick.Store(true)
	e.waitLog(t, "the keep warning", func(l logLine) bool {
		return l.msg() == "websocket failover: no other server, the websocket stays on its server"
	})
	servers["ws-b"].sick.Store(false)
	c.waitReplies(t, "ws-b", 3, "after ws-b came back")
	l := e.waitLog(t, "the move to ws-b", func(l logLine) bool { return l.msg() == "websocket moved to another server" })
	if l.str("from") != servers["ws-a"].addr() || l.str("to") != servers["ws-b"].addr() || l.str("reason") != "health check failed" {
		t.Errorf("switch line %v; want from ws-a to ws-b, reason health check failed", l)
	}
}
