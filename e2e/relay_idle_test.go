package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// rlProcCounts counts the sockets and pipes a process holds
// (/proc/PID/fd).
func rlProcCounts(t *testing.T, pid int) (sockets, pipes int) {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		l, _ := os.Readlink(dir + "/" + e.Name())
		switch {
		case strings.HasPrefix(l, "socket:"):
			sockets++
		case strings.HasPrefix(l, "pipe:"):
			pipes++
		}
	}
	return sockets, pipes
}

// Design, "Fast paths": an idle passthrough connection holds its two
// sockets and no pipe (the relay replaced io.Copy's pipe pair per
// direction: 6 descriptors). 200 idle mutual-TLS connections through the
// binary cost exactly 400 sockets more and no pipe; each still echoes
// afterwards, and each ends with one access line giving its bytes.
func TestRlPassthroughIdleTwoSockets(t *testing.T) {
	t.Parallel()
	api := startBackend(t, "idle-1")
	cfg := loadYAML(t, "testdata/nodefault.yaml")
	mapServers(t, cfg, map[string]string{"127.0.0.1:9001": api.Addr()})
	be := asMap(t, asList(t, cfg["backends"], "backends")[0], "backends[0]")
	be["health"] = map[string]any{"type": "none"} // no probe sockets coming and going
	e := runEdge(t, cfg)
	pid := e.pid()

	warm := mustDial(t, e.addr, clientOpts{SNI: "api.example.com"}) // starts the relay's loops
	s0, p0 := rlProcCounts(t, pid)
	const n = 200
	conns := make([]*edgeConn, n)
	for i := range conns {
		conns[i] = mustDial(t, e.addr, clientOpts{SNI: "api.example.com"})
	}
	// The edge side of the last connections may still be on its way
	// into the relay: wait (bounded) for the count to settle at its end.
	var s1, p1 int
	for deadline := time.Now().Add(waitLong); ; {
		s1, p1 = rlProcCounts(t, pid)
		if s1-s0 == 2*n || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if s1-s0 != 2*n {
		t.Errorf("sockets: %d more for %d idle passthrough connections; want %d (2 each)", s1-s0, n, 2*n)
	}
	if p1 > p0 {
		t.Errorf("pipes: %d, had %d; want none held by idle connections", p1, p0)
	}
	for i, c := range conns {
		if err := c.echo(fmt.Sprintf("still here %d\n", i)); err != nil {
			t.Fatalf("connection %d after idling: %v", i, err)
		}
	}
	// Closed without close_notify (a FIN before anything the server could
	// answer): the client's end is the first the relay sees.
	l := e.closeAndLog(t, conns[0].NetConn())
	if got := l.str("reason"); got != "client closed" {
		t.Errorf("access line reason: got %q; want %q", got, "client closed")
	}
	if up, _ := l["bytes_up"].(float64); up <= 0 {
		t.Errorf("access line bytes_up = %v; want > 0", l["bytes_up"])
	}
	warm.Close()
}
