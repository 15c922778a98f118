package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// WebSocket failover (websocket: {failover: true}): a client's WebSocket
// survives its server being killed, failing its health check, drained or
// closed through the admin API; a server's own close frame and tlsedge's
// shutdown end it as before (harness: wsfailover_harness_test.go).

// Issue 11: "a client exchanging messages every 100 ms keeps its connection
// while its server is killed; messages after the switch are answered by
// another server". The new server gets the original handshake: the
// identity headers of the client's certificate included.
func TestWFServerKilled(t *testing.T) {
	t.Parallel()
	ids := []string{"ws-a", "ws-b"}
	e, servers, admin := wfSetup(t, true, ids...)
	c := wfDialClient(t, e.addr, "/wf/killed?x=1")
	first := c.first
	if servers[first] == nil {
		t.Fatalf("the 101 came from %q; want one of %v (the server's X-Backend passed on)", first, ids)
	}
	other := wfOther(ids, first)
	c.waitReplies(t, first, 5, "before the kill")

	servers[first].kill()
	c.waitReplies(t, other, 10, "after killing "+first)

	// Once the other server answered, the killed one never does again, and
	// the answers of the other are to later messages.
	rs, _ := c.snapshot()
	switched, lastFirst := -1, -1
	for i, r := range rs {
		switch {
		case r.server == other && switched < 0:
			switched = i
		case r.server == first && switched >= 0:
			t.Errorf("reply %d %v from the killed server after the switch (replies %v)", i, r, rs)
		case r.server == first:
			lastFirst = r.seq
		case r.server != other:
			t.Errorf("reply %d %v from an unknown server", i, r)
		}
	}
	if rs[switched].seq <= lastFirst {
		t.Errorf("the first reply of %s is to message %d, not after %s's last (%d)", other, rs[switched].seq, first, lastFirst)
	}

	// The other server's handshake was the client's: path and query, the
	// identity headers from its certificate.
	hs := servers[other].handshakes()
	if len(hs) != 1 {
		t.Fatalf("%s got %d handshakes; want 1", other, len(hs))
	}
	orig := servers[first].handshakes()[0]
	for _, h := range []string{"X-Device-Subject", "X-Device-Serial", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host"} {
		if got, want := hs[0].Get(h), orig.Get(h); got == "" || got != want {
			t.Errorf("%s on the new server's handshake: %q; want the first server's %q (not empty)", h, got, want)
		}
	}
	if got := hs[0].Get("X-Device-Subject"); got != "CN=device-42" {
		t.Errorf("X-Device-Subject on the new server's handshake: %q; want CN=device-42", got)
	}

	// The switch is logged with both servers and the reason.
	l := e.waitLog(t, "the switch's log line", func(l logLine) bool { return l.msg() == "websocket moved to another server" })
	if l.str("from") != servers[first].addr() || l.str("to") != servers[other].addr() ||
		(l.str("reason") != "server reset" && l.str("reason") != "server closed without a close frame") {
		t.Errorf("switch log line %v: want from %s to %s, reason server reset (or closed without a close frame)", l, servers[first].addr(), servers[other].addr())
	}
	// The connection directory shows the client on its new server, and the
	// move is counted.
	a := newAdmin(t, admin)
	conns := a.connections("route=" + url.QueryEscape("*.devices.example.com"))
	if len(conns) != 1 || conns[0].Server != servers[other].addr() || conns[0].Protocol != "websocket" {
		t.Errorf("connections of the route %+v; want one websocket on %s", conns, servers[other].addr())
	}
	if n := a.metrics().value("tlsedge_websocket_failovers_total", map[string]string{"result": "moved"}); n != 1 {
		t.Errorf("tlsedge_websocket_failovers_total{result=moved} = %v; want 1", n)
	}
}

// Issue 11: "without failover the client's connection closes" when its
// server is killed (the bytes are relayed as they come, as before).
func TestWFWithoutFailoverCloses(t *testing.T) {
	t.Parallel()
	ids := []string{"ws-a", "ws-b"}
	e, servers, _ := wfSetup(t, false, ids...)
	c := wfDialClient(t, e.addr, "/wf/nofailover")
	if servers[c.first] == nil {
		t.Fatalf("the 101 came from %q; want one of %v", c.first, ids)
	}
	c.waitReplies(t, c.first, 5, "before the kill")
	servers[c.first].kill()
	select {
	case <-c.done:
	case <-time.After(3 * waitLong):
		t.Fatalf("the client's WebSocket is still open %v after its server was killed", 3*waitLong)
	}
	if _, err := c.snapshot(); err == nil {
		t.Fatal("the client's reader ended without an error")
	}
	if n := c.count(wfOther(ids, c.first)); n != 0 {
		t.Errorf("%d replies from the other server; want none without failover", n)
	}
	if ls := e.findLogs(func(l logLine) bool { return l.msg() == "websocket moved to another server" }); len(ls) != 0 {
		t.Errorf("switch log lines without failover: %v", ls)
	}
}

// Issue 11: a server drained through the admin API: once its drain_timeout
// passed, its WebSocket moves to another server (the client's connection
// stays open) and the old server gets a close frame 1001.
func TestWFDrainMoves(t *testing.T) {
	t.Parallel()
	ids := []string{"ws-a", "ws-b"}
	e, servers, admin := wfSetup(t, true, ids...)
	c := wfDialClient(t, e.addr, "/wf/drain")
	first := c.first
	if servers[first] == nil {
		t.Fatalf("the 101 came from %q; want one of %v", first, ids)
	}
	other := wfOther(ids, first)
	c.waitReplies(t, first, 5, "before the drain")

	a := newAdmin(t, admin)
	if st := a.do(http.MethodPost, "/api/v1/backends/ws/servers/"+url.PathEscape(servers[first].addr())+"/drain", nil, nil); st != http.StatusOK {
		t.Fatalf("drain %s: status %d; want 200", first, st)
	}
	c.waitReplies(t, other, 10, "after draining "+first)

	// The old server got tlsedge's close frame 1001.
	if !poll(waitLong, func() bool { return len(servers[first].endings()) == 1 }) {
		t.Fatalf("the drained server's WebSocket did not end within %v", waitLong)
	}
	if err := servers[first].endings()[0]; websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Errorf("the drained server's WebSocket ended with %v; want a close frame 1001", err)
	}
	l := e.waitLog(t, "the switch's log line", func(l logLine) bool { return l.msg() == "websocket moved to another server" })
	if l.str("from") != servers[first].addr() || l.str("to") != servers[other].addr() || l.str("reason") != "drained: drain_timeout passed" {
		t.Errorf("switch log line %v: want from %s to %s, reason drained: drain_timeout passed", l, servers[first].addr(), servers[other].addr())
	}
	if srv := a.server("ws", servers[first].addr()); srv.Active != 0 {
		t.Errorf("drained server %s: %d active; want 0 (its slot given back)", first, srv.Active)
	}
}

// A server's own close frame (1000, its reason) reaches the client as it
// is, and no other server is tried.
func TestWFServerCloseFramePassed(t *testing.T) {
	t.Parallel()
	ids := []string{"ws-a", "ws-b"}
	e, servers, _ := wfSetup(t, true, ids...)
	ws, backend, _ := wsDialCert(t, e.addr, "d1.devices.example.com", "/wf/close", thePKI.term.clients[cliValid].TLS)
	if servers[backend] == nil {
		t.Fatalf("the 101 came from %q; want one of %v", backend, ids)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if err := ws.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := ws.Read(ctx); err != nil || string(msg) != backend+" hello" {
		t.Fatalf("echo: %q, %v; want %q", msg, err, backend+" hello")
	}
	if err := ws.Write(ctx, websocket.MessageText, []byte("close")); err != nil {
		t.Fatal(err)
	}
	_, msg, err := ws.Read(ctx)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusNormalClosure || ce.Reason != "bye from "+backend {
		t.Fatalf("after the server's close: message %q, error %v; want close frame 1000 %q", msg, err, "bye from "+backend)
	}
	if hs := servers[wfOther(ids, backend)].handshakes(); len(hs) != 0 {
		t.Errorf("the other server got %d handshakes after a normal close; want none", len(hs))
	}
	if ls := e.findLogs(func(l logLine) bool { return l.msg() == "websocket moved to another server" }); len(ls) != 0 {
		t.Errorf("switch log lines after a normal close: %v", ls)
	}
}

// Shutdown still ends a failover WebSocket as before: a close frame 1001
// "shutting down" to the client (and 1001 to the server).
func TestWFShutdownCloses1001(t *testing.T) {
	t.Parallel()
	e, servers, _ := wfSetup(t, true, "ws-a")
	c := wfDialClient(t, e.addr, "/wf/shutdown")
	c.waitReplies(t, "ws-a", 3, "before the shutdown")
	e.stop()
	select {
	case <-c.done:
	case <-time.After(waitLong):
		t.Fatalf("the client's WebSocket still open %v after tlsedge stopped", waitLong)
	}
	_, err := c.snapshot()
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusGoingAway || ce.Reason != "shutting down" {
		t.Errorf("the client's WebSocket ended with %v; want close frame 1001 \"shutting down\"", err)
	}
	if ends := servers["ws-a"].endings(); len(ends) != 1 || websocket.CloseStatus(ends[0]) != websocket.StatusGoingAway {
		t.Errorf("the server's WebSocket ended with %v; want a close frame 1001", ends)
	}
}

// With one server, killing it leaves no server: the client gets close 1013
// (try again later), and the warning says why.
func TestWFNoServerLeft(t *testing.T) {
	t.Parallel()
	e, servers, _ := wfSetup(t, true, "ws-a")
	c := wfDialClient(t, e.addr, "/wf/alone")
	c.waitReplies(t, "ws-a", 3, "before the kill")
	servers["ws-a"].kill()
	select {
	case <-c.done:
	case <-time.After(3 * waitLong):
		t.Fatalf("the client's WebSocket still open %v after its only server was killed", 3*waitLong)
	}
	_, err := c.snapshot()
	if websocket.CloseStatus(err) != websocket.StatusTryAgainLater {
		t.Errorf("the client's WebSocket ended with %v; want a close frame 1013", err)
	}
	l := e.waitLog(t, "the give-up warning", func(l logLine) bool {
		return l.msg() == "websocket failover: no server left, client closed with 1013"
	})
	if l.str("level") != "warn" || l.str("from") != servers["ws-a"].addr() {
		t.Errorf("give-up line %v: want level warn, from %s", l, servers["ws-a"].addr())
	}
}

// Issue 11: a server that fails its health check (an http check answering
// 503) while its WebSocket still works: the WebSocket moves to another
// server, and the old one gets a close frame 1001.
func TestWFHealthFailMoves(t *testing.T) {
	t.Parallel()
	ids := []string{"ws-a", "ws-b"}
	e, servers, _ := wfSetupMod(t, true, func(cfg cfgMap) {
		backendCfg(t, cfg, "ws")["health"] = cfgMap{"type": "http", "path": "/healthz", "interval": "200ms", "rise": 1, "fall": 1}
	}, ids...)
	c := wfDialClient(t, e.addr, "/wf/health")
	first := c.first
	if servers[first] == nil {
		t.Fatalf("the 101 came from %q; want one of %v", first, ids)
	}
	other := wfOther(ids, first)
	c.waitReplies(t, first, 5, "before the health check fails")
	servers[first].sick.Store(true)
	c.waitReplies(t, other, 10, "after "+first+"'s health check failed")
	l := e.waitLog(t, "the switch's log line", func(l logLine) bool { return l.msg() == "websocket moved to another server" })
	if l.str("from") != servers[first].addr() || l.str("to") != servers[other].addr() || l.str("reason") != "health check failed" {
		t.Errorf("switch log line %v: want from %s to %s, reason health check failed", l, servers[first].addr(), servers[other].addr())
	}
	if !poll(waitLong, func() bool { return len(servers[first].endings()) == 1 }) {
		t.Fatalf("the unhealthy server's WebSocket did not end within %v", waitLong)
	}
	if err := servers[first].endings()[0]; websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Errorf("the unhealthy server's WebSocket ended with %v; want a close frame 1001", err)
	}
}

// The admin API's close is the operator ending this client's connection:
// with failover too it ends (close frame 1001 to the client and to the
// server), and no other server is asked.
func TestWFAdminCloseCloses(t *testing.T) {
	t.Parallel()
	ids := []string{"ws-a", "ws-b"}
	e, servers, admin := wfSetup(t, true, ids...)
	c := wfDialClient(t, e.addr, "/wf/admin")
	first := c.first
	if servers[first] == nil {
		t.Fatalf("the 101 came from %q; want one of %v", first, ids)
	}
	other := wfOther(ids, first)
	c.waitReplies(t, first, 3, "before the admin close")
	a := newAdmin(t, admin)
	conns := a.connections("route=" + url.QueryEscape("*.devices.example.com"))
	if len(conns) != 1 || conns[0].Server != servers[first].addr() {
		t.Fatalf("connections of the route %+v; want one on %s", conns, servers[first].addr())
	}
	if st := a.do(http.MethodDelete, fmt.Sprintf("/api/v1/connections/%d", conns[0].ID), nil, nil); st != http.StatusOK {
		t.Fatalf("DELETE connection %d: status %d; want 200", conns[0].ID, st)
	}
	select {
	case <-c.done:
	case <-time.After(waitLong):
		t.Fatalf("the client's WebSocket still open %v after the admin API closed it", waitLong)
	}
	_, err := c.snapshot()
	if websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Errorf("the client's WebSocket ended with %v; want a close frame 1001", err)
	}
	if n := c.count(other); n != 0 {
		t.Errorf("%d replies from %s; want none (the connection was closed, not moved)", n, other)
	}
	if moved := e.findLogs(func(l logLine) bool { return l.msg() == "websocket moved to another server" }); len(moved) != 0 {
		t.Errorf("switch log lines %v; want none", moved)
	}
}

// Failover on a reencrypt route: the new server is reached over verified
// TLS with tlsedge's client certificate, and gets the client's identity
// headers, as the first did.
func TestWFReencryptServerKilled(t *testing.T) {
	t.Parallel()
	ids := []string{"sws-a", "sws-b"}
	e, servers, _ := wfSetupFull(t, true, true, nil, ids...)
	c := wfDialClient(t, e.addr, "/wf/reencrypt")
	first := c.first
	if servers[first] == nil {
		t.Fatalf("the 101 came from %q; want one of %v", first, ids)
	}
	other := wfOther(ids, first)
	c.waitReplies(t, first, 5, "before the kill")
	servers[first].kill()
	c.waitReplies(t, other, 5, "after killing "+first)
	s := servers[other]
	s.mu.Lock()
	peers, hs := append([]string(nil), s.peers...), append([]http.Header(nil), s.hdrs...)
	s.mu.Unlock()
	if len(peers) != 1 || peers[0] != "tlsedge-upstream" || len(hs) != 1 || hs[0].Get("X-Device-Subject") != "CN=device-42" {
		t.Errorf("the new server's handshake: client certificates %v, headers %v; want one, from tlsedge-upstream, with X-Device-Subject CN=device-42", peers, hs)
	}
}
