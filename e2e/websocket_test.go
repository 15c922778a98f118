package e2e

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// wsHold is how long each WebSocket stays open exchanging messages (hours
// or days in production; 10s in the suite; `make soak` sets
// TLSEDGE_SOAK=5m), and wsEvery the pace.
var wsHold = func() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("TLSEDGE_SOAK")); err == nil && d > 0 {
		return d
	}
	return 10 * time.Second
}()

const wsEvery = 200 * time.Millisecond

// wsConnect opens a WebSocket to wss://host/path through tlsedge at addr,
// presenting cert, within waitLong. It returns the connection, the backend
// that answered (the X-Backend header of the 101 response) and the
// client's address as tlsedge sees it. The caller closes the connection.
func wsConnect(addr, host, path string, cert tls.Certificate) (c *websocket.Conn, backend, local string, err error) {
	var localAddr atomic.Value
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			nc, err := d.DialContext(ctx, network, addr)
			if err == nil {
				localAddr.Store(nc.LocalAddr().String())
			}
			return nc, err
		},
		TLSClientConfig: &tls.Config{
			ServerName:   host,
			RootCAs:      thePKI.serverCA.Pool(),
			Certificates: []tls.Certificate{cert},
			NextProtos:   []string{"http/1.1"},
		},
	}
	// The upgraded connection is not idle: this closes only what a failed
	// upgrade left behind.
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "wss://"+net.JoinHostPort(host, portOf(addr))+path,
		&websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		return nil, "", "", err
	}
	local, _ = localAddr.Load().(string)
	return c, resp.Header.Get("X-Backend"), local, nil
}

// wsDialCert is wsConnect that fails the test on error; t.Cleanup closes
// the connection.
func wsDialCert(t testing.TB, addr, host, path string, cert tls.Certificate) (c *websocket.Conn, backend, local string) {
	t.Helper()
	c, backend, local, err := wsConnect(addr, host, path, cert)
	if err != nil {
		t.Fatalf("WebSocket to %s%s through tlsedge: %v", host, path, err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c, backend, local
}

// wsDial is wsDialCert presenting the client certificate client of
// termPKI. It returns the connection and the backend that answered.
func wsDial(t testing.TB, addr, host, path, client string) (*websocket.Conn, string) {
	t.Helper()
	c, backend, _ := wsDialCert(t, addr, host, path, thePKI.term.clients[client].TLS)
	return c, backend
}

// wsExchange sends a message every wsEvery for d and checks each echo; it
// returns how many came back right and the first error.
func wsExchange(c *websocket.Conn, name string, d time.Duration) (int, error) {
	ok := 0
	tick := time.NewTicker(wsEvery)
	defer tick.Stop()
	end := time.Now().Add(d)
	for i := 0; time.Now().Before(end); i++ {
		msg := fmt.Sprintf("%s message %d", name, i)
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		err := c.Write(ctx, websocket.MessageText, []byte(msg))
		var typ websocket.MessageType
		var got []byte
		if err == nil {
			typ, got, err = c.Read(ctx)
		}
		cancel()
		if err != nil {
			return ok, fmt.Errorf("message %d: %w", i, err)
		}
		if typ != websocket.MessageText || string(got) != msg {
			return ok, fmt.Errorf("message %d: echo %v %q; want text %q", i, typ, got, msg)
		}
		ok++
		<-tick.C
	}
	return ok, nil
}

// exchangeAll runs wsExchange on every conn at once and checks that every
// message of every one came back.
func exchangeAll(t *testing.T, conns map[string]*websocket.Conn) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	want := int(wsHold / wsEvery)
	for name, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := wsExchange(c, name, wsHold)
			mu.Lock()
			defer mu.Unlock()
			if err != nil || n < want-1 {
				t.Errorf("WebSocket %s: %d messages echoed in %v (want about %d), error %v", name, n, wsHold, want, err)
			}
		}()
	}
	wg.Wait()
}

// Spec/README: "HTTP/1.1, HTTP/2 and WebSocket from clients"; "a WebSocket
// holds its server's slot (leastconn) as long as it lives";
// examples/terminate-http.yaml, devices: "signage players: WebSockets held
// for days", balance leastconn "new WebSockets go where the fewest live
// ones are". Real WebSockets (github.com/coder/websocket) on both sides.
func TestWebSocketThroughTerminateAndReencrypt(t *testing.T) {
	t.Parallel()

	t.Run("terminate, leastconn", func(t *testing.T) {
		t.Parallel()
		e := startTermHTTP(t, nil)
		ws1, b1 := wsDial(t, e.addr, "d1.devices.example.com", "/ws/1", cliValid)
		ws2, b2 := wsDial(t, e.addr, "d2.devices.example.com", "/ws/2", cliValid)
		if b1 == b2 || e.bs[b1] == nil || e.bs[b2] == nil {
			t.Fatalf("two live WebSockets on leastconn backend devices landed on %q and %q; want dev-1 and dev-2", b1, b2)
		}
		for _, path := range []string{"/ws/1", "/ws/2"} {
			got, _ := findRequest(t, path, e.dev()...)
			if !got.Upgrade || got.Header.Get("X-Device-Subject") != "CN=device-42" || got.Header.Get("X-Device-Verify") != "SUCCESS" {
				t.Errorf("upgrade request %s: upgrade %v, X-Device-Subject %q, X-Device-Verify %q; want the identity headers on the upgrade",
					path, got.Upgrade, got.Header.Get("X-Device-Subject"), got.Header.Get("X-Device-Verify"))
			}
		}
		exchangeAll(t, map[string]*websocket.Conn{"terminate-1": ws1, "terminate-2": ws2})
		if n1, n2 := e.bs[b1].LiveWebSockets(), e.bs[b2].LiveWebSockets(); n1 != 1 || n2 != 1 {
			t.Errorf("live WebSockets after %v: %s %d, %s %d; want 1 and 1", wsHold, b1, n1, b2, n2)
		}

		// Closing the first frees its server's slot: the next one goes there.
		if err := ws1.Close(websocket.StatusNormalClosure, "bye"); err != nil {
			t.Errorf("closing WebSocket 1: %v", err)
		}
		// Its request line is written once the upgrade is over and the slot released.
		if l := e.requestLine(t, "/ws/1"); int(l.num("status")) != http.StatusSwitchingProtocols || l.str("server") != e.bs[b1].Addr() {
			t.Errorf("request line of the first WebSocket %v: want status 101 (what the client got), server %s", l, e.bs[b1].Addr())
		}
		ws3, b3 := wsDial(t, e.addr, "d3.devices.example.com", "/ws/3", cliValid)
		if b3 != b1 {
			t.Errorf("after closing the WebSocket on %s (the other still open on %s), a new one landed on %s; want %s", b1, b2, b3, b1)
		}
		if n, err := wsExchange(ws3, "terminate-3", time.Second); err != nil || n == 0 {
			t.Errorf("WebSocket 3: %d messages echoed, error %v", n, err)
		}
		_ = ws2.Close(websocket.StatusNormalClosure, "bye")
		_ = ws3.Close(websocket.StatusNormalClosure, "bye")
	})

	t.Run("reencrypt", func(t *testing.T) {
		t.Parallel()
		e := startReencrypt(t)
		ws, b := wsDial(t, e.addr, "api.example.com", "/ws/re", cliValid)
		if b != "sapi-1" {
			t.Fatalf("WebSocket through reencrypt answered by %q; want sapi-1", b)
		}
		got, _ := findRequest(t, "/ws/re", e.api)
		der := thePKI.term.clients[cliValid].TLS.Certificate[0]
		if want := ":" + base64.StdEncoding.EncodeToString(der) + ":"; !got.Upgrade || got.PeerCN != "tlsedge-upstream" || got.Header.Get("Client-Cert") != want {
			t.Errorf("upgrade request: upgrade %v, client CN %q, Client-Cert %q; want an upgrade over tlsedge's certificate with Client-Cert %q",
				got.Upgrade, got.PeerCN, got.Header.Get("Client-Cert"), want)
		}
		exchangeAll(t, map[string]*websocket.Conn{"reencrypt": ws})
		if err := ws.Close(websocket.StatusNormalClosure, "bye"); err != nil {
			t.Errorf("closing: %v", err)
		}
		if l := e.requestLine(t, "/ws/re"); int(l.num("status")) != http.StatusSwitchingProtocols || l.str("route") != "api.example.com" {
			t.Errorf("request line %v: want status 101 (what the client got), route api.example.com", l)
		}
	})
}
