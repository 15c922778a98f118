package e2e

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// reloadTo rewrites the running config of e from cfg (listener address and
// admin kept) and reloads it through the API, failing the test unless 200.
func reloadTo(t *testing.T, e *edgeProc, admin *adminClient, cfg cfgMap) {
	t.Helper()
	listenerCfg(t, cfg, 0)["address"] = e.addr
	rewriteConfig(t, e.cfgPath, cfg)
	var body apiError
	if st := admin.do(http.MethodPost, "/api/v1/reload", nil, &body); st != http.StatusOK {
		t.Fatalf("POST /api/v1/reload: status %d %+v; want 200", st, body)
	}
}

// Issue, admin: "Runtime changes (drain, weight) stay in force across
// reloads for as long as the server stays in the config, and the API says
// they are overrides."
func TestOverridesSurviveReload(t *testing.T) {
	t.Parallel()
	a, b := startBackend(t, "ov-a"), startBackend(t, "ov-b")
	cfg, adminAddr := drainConfig(t, map[string]int{a.Addr(): 1, b.Addr(): 1}, cfgMap{})
	e := runEdge(t, cfg)
	admin := newAdmin(t, adminAddr)
	base := "/api/v1/backends/pool/servers/"
	if st := admin.do(http.MethodPut, base+a.Addr()+"/weight", map[string]int{"weight": 7}, nil); st != http.StatusOK {
		t.Fatalf("PUT weight: %d", st)
	}
	if st := admin.do(http.MethodPost, base+b.Addr()+"/drain", nil, nil); st != http.StatusOK {
		t.Fatalf("POST drain: %d", st)
	}
	// A reload that changes the config's weights keeps the overrides.
	next, _ := drainConfig(t, map[string]int{a.Addr(): 3, b.Addr(): 2}, cfgMap{})
	next["admin"] = cfgMap{"address": adminAddr}
	reloadTo(t, e, admin, next)
	sa, sb := admin.server("pool", a.Addr()), admin.server("pool", b.Addr())
	if sa.Weight != 7 || sa.ConfiguredWeight != 3 || !contains(sa.Overrides, "weight") {
		t.Errorf("ov-a after the reload: weight %d, configured %d, overrides %v; want 7, 3, [weight]", sa.Weight, sa.ConfiguredWeight, sa.Overrides)
	}
	if sb.Draining == nil || !contains(sb.Overrides, "drain") || sb.ConfiguredWeight != 2 {
		t.Errorf("ov-b after the reload: %+v; want still draining (an override), configured weight 2", sb)
	}
	for range 4 {
		if name := oneShot(t, e.addr, clientOpts{SNI: "x.example.com"}); name != "ov-a" {
			t.Errorf("a new connection reached %s; want ov-a (ov-b drains)", name)
		}
	}
	// DELETE weight goes back to the config's; enable ends the drain.
	var s apiServer
	if st := admin.do(http.MethodDelete, base+a.Addr()+"/weight", nil, &s); st != http.StatusOK || s.Weight != 3 || len(s.Overrides) != 0 {
		t.Errorf("DELETE weight: %d %+v; want 200, weight 3, no override", st, s)
	}
	if st := admin.do(http.MethodPost, base+b.Addr()+"/enable", nil, &s); st != http.StatusOK || s.Draining != nil {
		t.Errorf("enable: %d %+v; want 200, not draining", st, s)
	}
	// Bad requests name what is wrong.
	var e400, e404 apiError
	if st := admin.do(http.MethodPut, base+a.Addr()+"/weight", map[string]int{"weight": -1}, &e400); st != http.StatusBadRequest || e400.Error == "" {
		t.Errorf("PUT weight -1: %d %+v; want 400 with an error", st, e400)
	}
	var big apiError
	if st := admin.do(http.MethodPut, base+a.Addr()+"/weight", map[string]int{"weight": 21474837}, &big); st != http.StatusBadRequest || !strings.Contains(big.Error, "21474836") {
		t.Errorf("PUT weight 21474837: %d %+v; want 400 naming the largest weight 21474836", st, big)
	}
	if st := admin.do(http.MethodPost, base+"127.0.0.1:1/drain", nil, &e404); st != http.StatusNotFound || e404.Error == "" {
		t.Errorf("drain of an unknown server: %d %+v; want 404 with an error", st, e404)
	}
	if st := admin.do(http.MethodPost, "/api/v1/backends/nope/rebalance", nil, &e404); st != http.StatusNotFound {
		t.Errorf("rebalance of an unknown pool: %d; want 404", st)
	}
}

// Issue, drain: "A draining server (API, or removed from the config by a
// reload ...) gets no new connections ... Long-lived streams may finish
// until drain_timeout; then the rest are closed at no more than
// drain_rate per second per pool."
func TestRemovedServerDrains(t *testing.T) {
	t.Parallel()
	a, b := startBackend(t, "rm-a"), startBackend(t, "rm-b")
	cfg, adminAddr := drainConfig(t, map[string]int{a.Addr(): 1, b.Addr(): 0}, cfgMap{"drain_timeout": "1s", "drain_rate": 50})
	e := runEdge(t, cfg)
	admin := newAdmin(t, adminAddr)
	var held []*edgeConn
	for range 5 {
		held = append(held, mustDial(t, e.addr, clientOpts{SNI: "x.example.com"}))
	}
	next, _ := drainConfig(t, map[string]int{b.Addr(): 1}, cfgMap{"drain_timeout": "1s", "drain_rate": 50})
	next["admin"] = cfgMap{"address": adminAddr}
	reloadTo(t, e, admin, next)

	var removed apiServer
	for _, s := range admin.backends()["pool"].Servers {
		if s.Address == a.Addr() {
			removed = s
		}
	}
	if !removed.Removed || removed.Draining == nil || removed.Draining.By != "reload" {
		t.Errorf("rm-a after the reload removed it: %+v; want listed as removed, draining by reload", removed)
	}
	var conflict apiError
	if st := admin.do(http.MethodPost, "/api/v1/backends/pool/servers/"+a.Addr()+"/enable", nil, &conflict); st != http.StatusConflict {
		t.Errorf("enable of a removed server: %d %+v; want 409", st, conflict)
	}
	if name := oneShot(t, e.addr, clientOpts{SNI: "x.example.com"}); name != "rm-b" {
		t.Errorf("a new connection reached %s; want rm-b", name)
	}
	// The held streams go on until drain_timeout, then end.
	if err := held[0].echo("still streaming\n"); err != nil {
		t.Errorf("a stream to the removed server right after the reload: %v", err)
	}
	var wg sync.WaitGroup
	for i, c := range held {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.SetReadDeadline(time.Now().Add(waitLong))
			if _, err := c.Read(make([]byte, 16)); err == nil {
				t.Errorf("stream %d to the removed server: read data; want its end", i)
			}
		}()
	}
	wg.Wait()
	var last apiServer
	if !poll(waitLong, func() bool {
		for _, s := range admin.backends()["pool"].Servers {
			if s.Address == a.Addr() {
				last = s
				return false
			}
		}
		return true
	}) {
		t.Errorf("rm-a is still listed after its streams ended: %+v; want it gone\n%s", last, e.stderr.String())
	}
}

// Issue, rebalance: "an optional backend key rebalance: {above: 1.25, rate:
// 10} that does it by itself every interval, ... so a server added after a
// scale-up fills up."
func TestAutomaticRebalance(t *testing.T) {
	t.Parallel()
	bs := []*backend{startBackend(t, "auto-1"), startBackend(t, "auto-2"), startBackend(t, "auto-3")}
	rb := cfgMap{"rebalance": cfgMap{"above": 1.2, "rate": 20, "interval": "500ms"}}
	cfg, adminAddr := drainConfig(t, map[string]int{bs[0].Addr(): 1, bs[1].Addr(): 1}, rb)
	e := runEdge(t, cfg)
	admin := newAdmin(t, adminAddr)

	// 20 clients that reconnect when tlsedge ends their stream.
	var spread clientSpread
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stop); wg.Wait() }()
	for i := range 20 {
		c := mustDial(t, e.addr, clientOpts{SNI: "x.example.com"})
		spread.set(i, c.Backend)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				_ = c.SetReadDeadline(time.Time{})
				done := make(chan struct{})
				go func() {
					select {
					case <-stop:
						c.Close()
					case <-done:
					}
				}()
				_, err := c.Read(make([]byte, 16))
				close(done)
				select {
				case <-stop:
					return
				default:
				}
				if err == nil {
					continue
				}
				nc, err := dialTLS(e.addr, clientOpts{SNI: "x.example.com"})
				if err != nil {
					return
				}
				c = nc
				spread.set(i, c.Backend)
			}
		}()
	}
	if got := spread.counts(); got["auto-1"] != 10 || got["auto-2"] != 10 {
		t.Fatalf("20 streams on leastconn: %v; want 10 on each", got)
	}
	next, _ := drainConfig(t, map[string]int{bs[0].Addr(): 1, bs[1].Addr(): 1, bs[2].Addr(): 1}, rb)
	next["admin"] = cfgMap{"address": adminAddr}
	reloadTo(t, e, admin, next)
	var got map[string]int
	if !poll(waitLong, func() bool { got = spread.counts(); return got["auto-3"] >= 6 }) {
		t.Fatalf("after adding auto-3 with rebalance every 500ms: %v; want auto-3 to fill up to about 6-7", got)
	}
	time.Sleep(1500 * time.Millisecond) // a few more intervals: it must settle, not oscillate
	got = spread.counts()
	for name, n := range got {
		if n < 6 || n > 8 {
			t.Errorf("after the automatic rebalance: %v; want 6-8 on each (%s has %d)", got, name, n)
		}
	}
	if l := e.findLogs(func(l logLine) bool { return l.msg() == "rebalance started" }); len(l) == 0 {
		t.Errorf("no \"rebalance started\" log line")
	}
}

// A server that a reload removed and a later reload adds back while it
// still drains is the same server again: listed once, not draining, its
// live streams counted (leastconn), and /metrics stays consistent.
func TestReaddedServerIsTheSame(t *testing.T) {
	t.Parallel()
	a, b := startBackend(t, "back-a"), startBackend(t, "back-b")
	both := map[string]int{a.Addr(): 1, b.Addr(): 0}
	cfg, adminAddr := drainConfig(t, both, cfgMap{"drain_timeout": "1h"})
	e := runEdge(t, cfg)
	admin := newAdmin(t, adminAddr)
	var held []*edgeConn
	for range 3 {
		held = append(held, mustDial(t, e.addr, clientOpts{SNI: "x.example.com"}))
	}
	onlyB, _ := drainConfig(t, map[string]int{b.Addr(): 1}, cfgMap{"drain_timeout": "1h"})
	onlyB["admin"] = cfgMap{"address": adminAddr}
	reloadTo(t, e, admin, onlyB)
	if s := admin.server("pool", a.Addr()); !s.Removed || s.Draining == nil {
		t.Fatalf("back-a after removal: %+v; want removed and draining", s)
	}
	again, _ := drainConfig(t, both, cfgMap{"drain_timeout": "1h"})
	again["admin"] = cfgMap{"address": adminAddr}
	reloadTo(t, e, admin, again)
	var list []apiServer
	for _, s := range admin.backends()["pool"].Servers {
		if s.Address == a.Addr() {
			list = append(list, s)
		}
	}
	if len(list) != 1 || list[0].Removed || list[0].Draining != nil || list[0].Active != 3 || list[0].Streams != 3 {
		t.Fatalf("back-a after it was added back: %+v; want one entry, not removed nor draining, with its 3 streams", list)
	}
	f := admin.metrics() // a duplicate series would make the scrape fail
	if v := f.value("tlsedge_server_active_connections", map[string]string{"server": a.Addr()}); v != 3 {
		t.Errorf("tlsedge_server_active_connections of back-a: %v; want 3", v)
	}
	for i, c := range held {
		if err := c.echo("still here\n"); err != nil {
			t.Errorf("stream %d to back-a after it came back: %v", i, err)
		}
	}
}
