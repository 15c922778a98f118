package e2e

import (
	"bufio"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// Passive ejection, end to end: reencrypt routes to a real mTLS server and
// to servers that reset every connection (so the TLS handshake to them
// fails). Health checks are off (type none): only real traffic ejects.

// agResetter accepts and resets every connection (SO_LINGER 0), counting
// them.
type agResetter struct {
	addr string
	n    atomic.Int64
	ln   net.Listener
}

func agStartResetter(t *testing.T) *agResetter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &agResetter{addr: ln.Addr().String(), ln: ln}
	g := newConnGroup(t, "resetter")
	g.serve(ln, func(c net.Conn) {
		r.n.Add(1)
		// Read the ClientHello first: the connect has then succeeded for
		// sure, and what fails is the TLS handshake (a reset right after
		// accept can reach tlsedge's connect, under load, as a connect
		// failure).
		_ = c.SetReadDeadline(time.Now().Add(waitLong))
		_, _ = c.Read(make([]byte, 1))
		_ = c.(*net.TCPConn).SetLinger(0)
	})
	t.Cleanup(g.stop)
	return r
}

// agOneConn opens a connection through tlsedge, reads until the server's
// banner line or the close, and closes it; true when a banner came (the
// good server answered).
func agOneConn(t *testing.T, addr string) bool {
	t.Helper()
	c, err := agDial(addr)
	if err != nil {
		return false // tlsedge closed it: its server failed
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(waitLong))
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && line != ""
}

// agOutlierCfg is a reencrypt route to the given servers with outlier.
func agOutlierCfg(t *testing.T, pool string, outlier cfgMap, addrs ...string) (cfgMap, string) {
	var servers []any
	for _, a := range addrs {
		servers = append(servers, cfgMap{"address": a})
	}
	return agEdgeCfg(t, "reencrypt", cfgMap{"name": pool, "balance": "roundrobin", "servers": servers,
		"tls": hcCheckTLS(), "health": cfgMap{"type": "none"}, "outlier": outlier})
}

func agIsEjection(server string) func(logLine) bool {
	return func(l logLine) bool {
		return l.msg() == "server ejected (passive: failures on real traffic)" && l.str("server") == server
	}
}

// A server that resets every connection is ejected after 3 TLS failures
// (logged, counted, in the API), gets 0 of 10 connections while ejected,
// comes back after base_ejection_time and is tried again; its second
// ejection lasts twice as long.
func TestOutlierEjectResetting(t *testing.T) {
	t.Parallel()
	good := startBackend(t, "ag-good")
	bad := agStartResetter(t)
	// 20 s: ten connections while ejected fit in it even on a loaded
	// machine; interval 1h: no decay of the ejection count between the two.
	cfg, admin := agOutlierCfg(t, "ag-out", cfgMap{"consecutive_failures": 3, "base_ejection_time": "20s", "max_ejection_time": "60s",
		"interval": "1h", "max_ejection_percent": 50},
		good.Addr(), bad.addr)
	e := runEdge(t, cfg)
	a := newAdmin(t, admin)

	for i := 0; bad.n.Load() < 3; i++ {
		if i == 20 {
			t.Fatalf("20 connections, the resetting server saw %d; want 3", bad.n.Load())
		}
		agOneConn(t, e.addr)
	}
	l := e.waitLog(t, "the resetting server's ejection", agIsEjection(bad.addr))
	if l.str("reason") != "tls" || l["consecutive"] != float64(3) || l["ejections"] != float64(1) {
		t.Errorf("ejection log %v; want reason tls, consecutive 3, ejections 1", l)
	}
	m := a.metrics()
	if v := m.value("tlsedge_server_ejections_total", map[string]string{"backend": "ag-out", "server": bad.addr, "reason": "tls"}); v != 1 {
		t.Errorf("tlsedge_server_ejections_total{reason=tls} = %v; want 1", v)
	}
	if v := m.value("tlsedge_server_ejected", map[string]string{"backend": "ag-out", "server": bad.addr}); v != 1 {
		t.Errorf("tlsedge_server_ejected = %v; want 1", v)
	}
	if s := agServers(a, "ag-out")[bad.addr]; s.EjectedUntil == nil || s.Ejections != 1 {
		t.Errorf("API: ejected_until %v, ejections %d; want a time, 1", s.EjectedUntil, s.Ejections)
	}

	before := bad.n.Load()
	for i := range 10 {
		if !agOneConn(t, e.addr) {
			t.Errorf("connection %d while ejected: no answer; want the good server's", i)
		}
	}
	back := e.findLogs(func(l logLine) bool { return l.msg() == "server back from ejection" })
	if len(back) != 0 {
		t.Fatalf("the ejection (20s) ended before 10 connections were done: the machine is too slow for this test's premise")
	}
	if got := bad.n.Load() - before; got != 0 {
		t.Errorf("while ejected the resetting server got %d of 10 connections; want 0", got)
	}

	if !poll(40*time.Second, func() bool { // the 20 s ejection, with room
		return len(e.findLogs(func(l logLine) bool {
			return l.msg() == "server back from ejection" && l.str("server") == bad.addr
		})) > 0
	}) {
		t.Fatal("the server was not back 40 s after a 20 s ejection")
	}
	if v := a.metrics().value("tlsedge_server_ejected", map[string]string{"backend": "ag-out", "server": bad.addr}); v != 0 {
		t.Errorf("tlsedge_server_ejected after its time = %v; want 0", v)
	}
	before = bad.n.Load()
	for i := 0; bad.n.Load() == before; i++ {
		if i == 10 {
			t.Fatal("10 connections after the ejection: the server was not tried again")
		}
		agOneConn(t, e.addr)
	}
	for i := 0; bad.n.Load() < before+3; i++ {
		if i == 20 {
			t.Fatalf("20 connections, the resetting server saw %d more; want 3", bad.n.Load()-before)
		}
		agOneConn(t, e.addr)
	}
	l2 := e.waitLogs(t, 2, "the second ejection", agIsEjection(bad.addr))[1]
	if l2["ejections"] != float64(2) || l2["ejection_time"] != 2*l["ejection_time"].(float64) {
		t.Errorf("second ejection log %v; want ejections 2 and twice the first's ejection_time %v", l2, l["ejection_time"])
	}
}

// Two resetting servers of three with max_ejection_percent 50: only one is
// ejected; the other keeps failing past its threshold and stays in.
func TestOutlierMaxEjectionPercent(t *testing.T) {
	t.Parallel()
	good := startBackend(t, "ag-good2")
	b1, b2 := agStartResetter(t), agStartResetter(t)
	cfg, admin := agOutlierCfg(t, "ag-pct", cfgMap{"consecutive_failures": 2, "base_ejection_time": "60s", "max_ejection_percent": 50},
		good.Addr(), b1.addr, b2.addr)
	e := runEdge(t, cfg)
	a := newAdmin(t, admin)
	for range 18 {
		agOneConn(t, e.addr)
	}
	e.waitLogs(t, 1, "one ejection", func(l logLine) bool { return l.msg() == "server ejected (passive: failures on real traffic)" })
	if n := len(e.findLogs(func(l logLine) bool { return l.msg() == "server ejected (passive: failures on real traffic)" })); n != 1 {
		t.Errorf("%d ejections logged; want 1 (max_ejection_percent 50 of 3 servers)", n)
	}
	srv := agServers(a, "ag-pct")
	ejected, other := 0, (*agResetter)(nil)
	for _, r := range []*agResetter{b1, b2} {
		if srv[r.addr].EjectedUntil != nil {
			ejected++
		} else {
			other = r
		}
	}
	if ejected != 1 || other == nil {
		t.Fatalf("ejected servers: %d; want exactly 1 (servers %+v)", ejected, srv)
	}
	if n := other.n.Load(); n <= 2 {
		t.Errorf("the server left in saw %d connections; want more than its threshold 2 (it tripped and stayed)", n)
	}
	if v := a.metrics().value("tlsedge_server_ejected", map[string]string{"backend": "ag-pct"}); v != 1 {
		t.Errorf("sum of tlsedge_server_ejected = %v; want 1", v)
	}
}
