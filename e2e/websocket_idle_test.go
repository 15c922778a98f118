package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/coder/websocket"
)

// What an idle WebSocket keeps in tlsedge, read from the running binary's
// goroutine profile (the admin endpoint's /debug/pprof): the goroutine of
// its client side waiting on the device's socket, and none for its server
// side, which is parked in the shared epoll set (tlsmode/upgrade_lean.go,
// upgrade_park_linux.go) and resumed by the server's next message; the
// echoes keep working after each park.
func TestWebSocketIdleKeepsOneGoroutine(t *testing.T) {
	t.Parallel()
	e, adminAddr, _ := idleTermEdge(t, "ws.example.com", "idle-1")

	const n = 10
	var conns []*websocket.Conn
	for _, d := range issueDevices(t, n) {
		c, _, _ := wsDialCert(t, e.addr, "ws.example.com", "/ws/"+d.name, d.cert)
		conns = append(conns, c)
	}
	for round := range 3 {
		for i, c := range conns {
			msg := fmt.Sprintf("round %d device %d", round, i)
			ctx, cancel := context.WithTimeout(context.Background(), waitLong)
			err := c.Write(ctx, websocket.MessageText, []byte(msg))
			var got []byte
			if err == nil {
				_, got, err = c.Read(ctx)
			}
			cancel()
			if err != nil || string(got) != msg {
				t.Fatalf("round %d, WebSocket %d: echo %q, %v; want %q", round, i, got, err, msg)
			}
		}
		var client, server int
		if !poll(waitLong, func() bool {
			client, server = wsRelayGoroutines(t, adminAddr)
			return client == n && server == 0
		}) {
			t.Fatalf("round %d: %d goroutines relay clients and %d servers for %d idle WebSockets; want %d and 0",
				round, client, server, n, n)
		}
	}
}

// idleTermEdge runs tlsedge with one terminate http route for host
// (client certificates required, XFCC) to a new HTTP backend named backend,
// and an admin endpoint; it returns the edge, the admin address and the
// backend.
func idleTermEdge(t *testing.T, host, backend string) (*edgeProc, string, *httpBackend) {
	t.Helper()
	p := writeTermFiles(t)
	b := startHTTPBackend(t, backend)
	cfg := cfgMap{
		"certs": cfgMap{"storage": filepath.Join(p.dir, "data")},
		"log":   cfgMap{"level": "info", "format": "json"},
		"listeners": []any{cfgMap{"name": "public", "address": "", "routes": []any{
			termRoute(p, host, "terminate", "http", "fleet", "require", "xfcc")}}},
		"backends": []any{cfgMap{"name": "fleet", "servers": servers(b.Addr()), "health": cfgMap{"type": "none"}}},
	}
	adminAddr := withAdmin(t, cfg)
	return runEdge(t, cfg), adminAddr, b
}

// wsRelayGoroutines counts the goroutines of the edge at adminAddr that
// relay the client side and the server side of upgraded streams.
func wsRelayGoroutines(t *testing.T, adminAddr string) (client, server int) {
	t.Helper()
	n := goroutinesWith(t, adminAddr, "(*upRelay).fromServer", "(*upRelay).fromClient")
	return n[1], n[0]
}

// goroutinesWith counts, for each frame, the goroutines of the edge at
// adminAddr that have it in their stacks (a stack is counted for the first
// frame it has), from one goroutine profile.
func goroutinesWith(t *testing.T, adminAddr string, frames ...string) []int {
	t.Helper()
	resp, err := http.Get("http://" + adminAddr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("goroutine profile: %d, %v", resp.StatusCode, err)
	}
	counts := make([]int, len(frames))
	// Blocks of "N @ pcs" and their frames, one block per distinct stack
	// (the first one after the profile's header line).
	for _, block := range strings.Split(string(body), "\n\n") {
		k := 0
		for line := range strings.SplitSeq(block, "\n") {
			if count, _, ok := strings.Cut(line, " @ "); ok {
				if n, err := strconv.Atoi(count); err == nil {
					k = n
					break
				}
			}
		}
		for i, f := range frames {
			if strings.Contains(block, f) {
				counts[i] += k
				break
			}
		}
	}
	return counts
}
