package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/internal/dnszone"
)

// discAPIServer and discAPIBackend are the parts of GET /api/v1/backends
// the discovery tests read.
type discAPIServer struct {
	Address  string `json:"address"`
	Source   string `json:"source"`
	Weight   int    `json:"weight"`
	Removed  bool   `json:"removed"`
	Health   struct{ State, Check string }
	Draining *struct {
		By string `json:"by"`
	} `json:"draining"`
}

type discAPIBackend struct {
	Name      string          `json:"name"`
	Servers   []discAPIServer `json:"servers"`
	Discovery *struct {
		DNS        string     `json:"dns"`
		Result     string     `json:"result"`
		LastLookup *time.Time `json:"last_lookup"`
		NextLookup *time.Time `json:"next_lookup"`
		Servers    int        `json:"servers"`
	} `json:"discovery"`
}

// discBackendOf returns pool name from the admin API.
func discBackendOf(t testing.TB, a *adminClient, name string) discAPIBackend {
	t.Helper()
	var body struct {
		Backends []discAPIBackend `json:"backends"`
	}
	if st := a.get("/api/v1/backends", &body); st != http.StatusOK {
		t.Fatalf("GET /api/v1/backends: status %d", st)
	}
	for _, b := range body.Backends {
		if b.Name == name {
			return b
		}
	}
	t.Fatalf("backend %s not in GET /api/v1/backends", name)
	return discAPIBackend{}
}

// discDescribe is "address source weight [removed] [drain:by]" per server.
func discDescribe(b discAPIBackend) []string {
	var out []string
	for _, s := range b.Servers {
		d := fmt.Sprintf("%s %s %d", s.Address, s.Source, s.Weight)
		if s.Removed {
			d += " removed"
		}
		if s.Draining != nil {
			d += " drain:" + s.Draining.By
		}
		out = append(out, d)
	}
	slices.Sort(out)
	return out
}

// discWaitServers polls the admin API until the pool's servers read want
// (see discDescribe), failing the test after waitLong × 3.
func discWaitServers(t testing.TB, a *adminClient, e *edgeProc, want ...string) discAPIBackend {
	t.Helper()
	slices.Sort(want)
	var b discAPIBackend
	if !poll(3*waitLong, func() bool {
		b = discBackendOf(t, a, "pool")
		return slices.Equal(discDescribe(b), want)
	}) {
		t.Fatalf("pool servers %q; want %q\n%s", discDescribe(b), want, e.stderr.String())
	}
	return b
}

// Issue 11, DNS discovery: "A DNS server in the test (miekg/dns on
// loopback) serves SRV and A records for a pool; tlsedge follows additions
// within refresh; a removed server is drained while its live connections
// finish; a DNS outage keeps the pool", and NXDOMAIN for less than
// refresh × 3 keeps it too (longer empties it).
func TestDiscSRVPoolFollowsDNS(t *testing.T) {
	t.Parallel()
	z := dnszone.Start(t)
	bs := map[string]*backend{"a": startBackend(t, "disc-a"), "b": startBackend(t, "disc-b"), "c": startBackend(t, "disc-c")}
	port := func(n string) string { return strings.TrimPrefix(bs[n].Addr(), "127.0.0.1:") }
	srv := func(n string, w int) string { return fmt.Sprintf("10 %d %s node.disc.test", w, port(n)) }
	const name = "_edge._tcp.disc.test"
	z.SetAddrs("node.disc.test", "127.0.0.1")
	z.SetSRV(name, srv("a", 10), srv("b", 20), "20 50 1 fallback.disc.test")

	cfg := cfgMap{
		"log": cfgMap{"level": "info", "format": "json", "access": true},
		"listeners": []any{cfgMap{"name": "public", "address": "", "connection_rate_per_ip": 0,
			"routes": []any{cfgMap{"sni": []any{"*"}, "backend": "pool"}}}},
		"backends": []any{cfgMap{"name": "pool", "balance": "roundrobin", "drain_timeout": "10m",
			"discovery": cfgMap{"dns": name, "refresh": "1s", "resolver": z.Addr},
			"health":    cfgMap{"type": "tcp", "interval": "500ms"}}},
	}
	admin := newAdmin(t, withAdmin(t, cfg))
	e := runEdge(t, cfg)
	A, B, C := bs["a"].Addr(), bs["b"].Addr(), bs["c"].Addr()

	// Found at start: both priority 10 records with their weights; the
	// priority 20 one is not used.
	b := discWaitServers(t, admin, e, A+" dns 10", B+" dns 20")
	if d := b.Discovery; d == nil || d.DNS != name || d.Result != "ok" || d.LastLookup == nil || d.NextLookup == nil || d.Servers != 2 {
		t.Errorf("discovery state %+v; want dns %s, result ok, last and next lookup set, 2 servers", d, name)
	}
	for _, s := range b.Servers {
		if s.Health.Check != "tcp" {
			t.Errorf("server %s health check %q; want tcp (health-checked like configured servers)", s.Address, s.Health.Check)
		}
	}

	// An addition is followed: C is listed, health-checked, and reached.
	z.SetSRV(name, srv("a", 10), srv("b", 20), srv("c", 10))
	discWaitServers(t, admin, e, A+" dns 10", B+" dns 20", C+" dns 10")
	reached := map[string]int{}
	for range 40 {
		reached[oneShot(t, e.addr, clientOpts{SNI: "x.example.com"})]++
	}
	if reached["disc-c"] == 0 || reached["disc-a"] == 0 || reached["disc-b"] == 0 {
		t.Errorf("40 connections after C was added reached %v; want all of disc-a, disc-b, disc-c", reached)
	}

	// A stream held on A, then A leaves DNS: it drains (listed as removed,
	// drain by dns), its stream goes on, new connections go elsewhere.
	var heldA *edgeConn
	for range 40 {
		c := mustDial(t, e.addr, clientOpts{SNI: "x.example.com"})
		if c.Backend == "disc-a" {
			heldA = c
			break
		}
		c.Close()
	}
	if heldA == nil {
		t.Fatal("40 connections never reached disc-a")
	}
	z.SetSRV(name, srv("b", 20), srv("c", 10))
	discWaitServers(t, admin, e, A+" dns 10 removed drain:dns", B+" dns 20", C+" dns 10")
	if err := heldA.echo("still streaming\n"); err != nil {
		t.Errorf("the stream to disc-a after it left DNS: %v; want it to go on until drain_timeout", err)
	}
	for i := range 20 {
		if n := oneShot(t, e.addr, clientOpts{SNI: "x.example.com"}); n == "disc-a" {
			t.Fatalf("new connection %d reached disc-a after it left DNS", i)
		}
	}
	e.waitLog(t, "the removal logged", func(l logLine) bool {
		return l.msg() == "servers changed in DNS" && strings.Contains(fmt.Sprint(l["gone"]), A)
	})

	// Outage: SERVFAIL, then no answer at all. The pool keeps serving,
	// the failure is logged and counted.
	errorsBefore := admin.metrics().value("tlsedge_discovery_lookups_total", map[string]string{"backend": "pool", "result": "error"})
	for _, mode := range []string{"servfail", "drop"} {
		z.SetMode(mode)
		base := z.Count(name, "SRV")
		if !poll(3*waitLong, func() bool { return z.Count(name, "SRV") >= base+2 }) {
			t.Fatalf("%s: tlsedge asked %d more times in %v; want 2 more lookups", mode, z.Count(name, "SRV")-base, 3*waitLong)
		}
		for range 6 {
			if n := oneShot(t, e.addr, clientOpts{SNI: "x.example.com"}); n != "disc-b" && n != "disc-c" {
				t.Errorf("%s: a connection reached %q; want disc-b or disc-c", mode, n)
			}
		}
		discWaitServers(t, admin, e, A+" dns 10 removed drain:dns", B+" dns 20", C+" dns 10")
	}
	z.SetMode("")
	e.waitLog(t, "lookups answering again", func(l logLine) bool { return l.msg() == "DNS discovery lookups answer again" })
	warn := e.findLogs(func(l logLine) bool { return l.msg() == "DNS discovery lookup failed: keeping the last good servers" })
	if len(warn) == 0 || warn[0].str("level") != "warn" || warn[0].str("result") != "error" || !strings.Contains(warn[0].str("error"), "SERVFAIL") {
		t.Errorf("failure log lines %v; want a warn line with result error naming SERVFAIL first", warn)
	}
	if errorsAfter := admin.metrics().value("tlsedge_discovery_lookups_total", map[string]string{"backend": "pool", "result": "error"}); errorsAfter < errorsBefore+4 {
		t.Errorf("tlsedge_discovery_lookups_total{result=error} went from %v to %v; want at least 4 more", errorsBefore, errorsAfter)
	}

	// NXDOMAIN for two lookups (refresh × 1 apart, under refresh × 3):
	// the pool is kept.
	changes := len(e.findLogs(func(l logLine) bool { return l.msg() == "servers changed in DNS" }))
	okBefore := admin.metrics().value("tlsedge_discovery_lookups_total", map[string]string{"backend": "pool", "result": "ok"})
	z.SetNXLeft(2)
	if !poll(3*waitLong, func() bool {
		return admin.metrics().value("tlsedge_discovery_lookups_total", map[string]string{"backend": "pool", "result": "ok"}) >= okBefore+2
	}) {
		t.Fatal("no good lookup after the two NXDOMAIN answers")
	}
	if nx := admin.metrics().value("tlsedge_discovery_lookups_total", map[string]string{"backend": "pool", "result": "nxdomain"}); nx != 2 {
		t.Errorf("tlsedge_discovery_lookups_total{result=nxdomain} = %v; want 2", nx)
	}
	if n := len(e.findLogs(func(l logLine) bool { return l.msg() == "servers changed in DNS" })); n != changes {
		t.Errorf("%d server changes logged during a short NXDOMAIN; want none", n-changes)
	}
	discWaitServers(t, admin, e, A+" dns 10 removed drain:dns", B+" dns 20", C+" dns 10")

	// NXDOMAIN that lasts refresh × 3: the name is gone, so are its servers
	// (they drain, and without connections are gone at once); a new
	// connection finds no server.
	z.SetMode("nxdomain")
	e.waitLog(t, "the NXDOMAIN removal logged", func(l logLine) bool {
		gone := fmt.Sprint(l["gone"])
		return l.msg() == "servers changed in DNS" && strings.Contains(gone, B) && strings.Contains(gone, C)
	})
	discWaitServers(t, admin, e, A+" dns 10 removed drain:dns")
	if c, err := dialTLS(e.addr, clientOpts{SNI: "x.example.com"}); err == nil {
		err = c.echo("anyone?\n")
		c.Close()
		if err == nil {
			t.Errorf("a connection to the emptied pool was served by %s; want it closed", c.Backend)
		}
	}
	if err := heldA.echo("still streaming at the end\n"); err != nil {
		t.Errorf("the stream to disc-a at the end: %v; want it to go on until drain_timeout (10m)", err)
	}
}
