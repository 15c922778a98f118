package main

import (
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// waitFor polls cond every 10 ms for up to 30 s and fails the test with what
// when it never holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 3000 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("%s: not after 30s", what)
}

// TestIdleWebSocketHoldsEveryConnection: idle-ws against the HTTPS
// -serve-http server: each connection is upgraded to a WebSocket, echoes one
// message, is held (the server has every one open while the load waits),
// and echoes another at the end.
func TestIdleWebSocketHoldsEveryConnection(t *testing.T) {
	t.Parallel()
	dir, h := httpsServer(t)
	var openAtReady, acceptedAtReady int64 = -1, -1
	res := runIdle(t, idleOpts(dir, h.ln.Addr().String(), "api.load.test", "idle-ws", 25), func(int64, int64) {
		openAtReady = int64(h.s.openWebSockets())
		acceptedAtReady = h.s.wsAccepted.Load()
	})
	switch {
	case res.Ops != 25 || res.Held != 25 || res.Attempted != 25 || res.Errors != 0 || res.Conns != 25:
		t.Errorf("ops %d held %d attempted %d errors %d conns %d (first error %q); want 25 25 25 0 25",
			res.Ops, res.Held, res.Attempted, res.Errors, res.Conns, res.FirstError)
	case res.Bytes != 50*int64(len(wsMessage)):
		t.Errorf("%d message bytes back; want %d (one message per WebSocket, twice)", res.Bytes, 50*len(wsMessage))
	case res.Identity != "tls CN=tlsedge-load client" || res.Proto != "HTTP/1.1":
		t.Errorf("identity %q proto %q; want the client's CN on the HTTP/1.1 101", res.Identity, res.Proto)
	case openAtReady != 25 || acceptedAtReady != 25:
		t.Errorf("while held the server had %d WebSockets open, %d accepted; want 25 and 25", openAtReady, acceptedAtReady)
	case h.s.requests.Load() != 25:
		t.Errorf("server saw %d requests; want 25 (one upgrade each)", h.s.requests.Load())
	}
	// The server counts an echo once its write returned, which may be after
	// the client read it; and its handlers end once the client closed.
	waitFor(t, "the server echoed 50 messages", func() bool { return h.s.wsEchoed.Load() == 50 })
	waitFor(t, "the server's WebSockets ended after the run", func() bool { return h.s.openWebSockets() == 0 })
}

// TestIdleWebSocketCountsClosedWhileHeld: the server ends 6 of 25 held
// WebSockets before the final check; held counts the 19 others.
func TestIdleWebSocketCountsClosedWhileHeld(t *testing.T) {
	t.Parallel()
	dir, h := httpsServer(t)
	res := runIdle(t, idleOpts(dir, h.ln.Addr().String(), "api.load.test", "idle-ws", 25), func(int64, int64) {
		h.s.wsMu.Lock()
		var cut []*websocket.Conn
		for c := range h.s.wsOpen {
			if len(cut) == 6 {
				break
			}
			cut = append(cut, c)
		}
		h.s.wsMu.Unlock()
		for _, c := range cut {
			c.CloseNow()
		}
	})
	if res.Ops != 25 || res.Held != 19 || res.Errors != 0 {
		t.Errorf("ops %d held %d errors %d (first error %q); want 25 opened, 19 held (6 cut), 0 errors",
			res.Ops, res.Held, res.Errors, res.FirstError)
	}
}

// TestServeHTTPWebSocketStop: stopping the server ends the WebSockets it
// holds (http.Server.Close does not know them) and a client sees its
// WebSocket closed.
func TestServeHTTPWebSocketStop(t *testing.T) {
	t.Parallel()
	dir, h := httpsServer(t)
	o := idleOpts(dir, h.ln.Addr().String(), "api.load.test", "idle-ws", 1)
	cfg, err := clientConfig(o)
	if err != nil {
		t.Fatal(err)
	}
	cfg.NextProtos = []string{"http/1.1"}
	r := &runner{o: o, tls: cfg, start: time.Now()}
	if err := r.wsSetup(); err != nil {
		t.Fatal(err)
	}
	ic, err := r.wsOpen(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer ic.close()
	if n := h.s.openWebSockets(); n != 1 {
		t.Fatalf("server holds %d WebSockets; want 1", n)
	}
	h.stop()
	if n := h.s.openWebSockets(); n != 0 {
		t.Errorf("after stop the server holds %d WebSockets; want 0", n)
	}
	if err := r.wsTrip(ic.ws); err == nil {
		t.Error("a round trip after the server stopped succeeded; want an error")
	}
}

// TestUpgradeWebSocketToken: which Upgrade headers the -serve-http server
// takes for a WebSocket upgrade (the others get the ordinary answer).
func TestUpgradeWebSocketToken(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		upgrade []string
		want    bool
	}{
		{nil, false},
		{[]string{"h2c"}, false},
		{[]string{"websocket"}, true},
		{[]string{"WebSocket"}, true},
		{[]string{"foo, websocket"}, true},
		{[]string{"foo", " websocket "}, true},
		{[]string{"websockets"}, false},
	} {
		h := http.Header{}
		for _, v := range tc.upgrade {
			h.Add("Upgrade", v)
		}
		if got := headerHasToken(h, "Upgrade", "websocket"); got != tc.want {
			t.Errorf("Upgrade %q: %v; want %v", tc.upgrade, got, tc.want)
		}
	}
}
