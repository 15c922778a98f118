package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// Spec, "Affinity semantics": source_ip "Same client, same server"; class_c
// "the client's /24 ... stays on one server"; five_tuple "every new
// connection may land elsewhere, but the choice is deterministic".
// Source addresses are real: the client binds 127.0.0.x.
func TestAffinityFromSourceAddresses(t *testing.T) {
	t.Parallel()
	bs := []*backend{startBackend(t, "s-1"), startBackend(t, "s-2"), startBackend(t, "s-3")}
	cfg := loadExample(t, "affinity.yaml")
	mapServers(t, cfg, map[string]string{
		"127.0.0.1:9001": bs[0].Addr(), "127.0.0.1:9002": bs[1].Addr(), "127.0.0.1:9003": bs[2].Addr(),
	})
	e := runEdge(t, cfg)

	// reach connects from ip, checks the echo, closes, and returns the
	// backend it reached. Each subtest uses its own source IPs.
	reach := func(t *testing.T, sni, ip string) string {
		t.Helper()
		return oneShot(t, e.addr, clientOpts{SNI: sni, LocalIP: ip})
	}

	t.Run("source_ip", func(t *testing.T) {
		t.Parallel()
		// hash_balance_factor 1.25 bounds live connections: wait for each
		// connection's access line (it is written after the server slot is
		// released) so that the next one sees an idle pool.
		seen := map[string]int{}
		for range 20 {
			name, l := e.served(t, clientOpts{SNI: "ip.example.com", LocalIP: "127.0.0.2"})
			if !strings.HasPrefix(l.str("client"), "127.0.0.2:") || l.str("backend") != "by-source-ip" {
				t.Fatalf("access line %v; want client 127.0.0.2:*, backend by-source-ip", l)
			}
			seen[name]++
		}
		if len(seen) != 1 {
			t.Errorf("20 connections from 127.0.0.2 reached %v; want one server", seen)
		}
		spread := map[string]int{}
		for i := 3; i <= 14; i++ {
			name, _ := e.served(t, clientOpts{SNI: "ip.example.com", LocalIP: fmt.Sprintf("127.0.0.%d", i)})
			spread[name]++
		}
		if len(spread) < 2 {
			t.Errorf("12 source IPs all reached %v; want them spread over more than one server", spread)
		}
	})

	t.Run("class_c", func(t *testing.T) {
		t.Parallel()
		seen := map[string]int{}
		for i := 5; i <= 50; i++ {
			name := reach(t, "net.example.com", fmt.Sprintf("127.0.1.%d", i))
			seen[name]++
		}
		if len(seen) != 1 {
			t.Errorf("127.0.1.5 .. 127.0.1.50 reached %v; want one server for the whole /24", seen)
		}
		spread := map[string]int{}
		for i := 2; i <= 13; i++ {
			name := reach(t, "net.example.com", fmt.Sprintf("127.0.%d.1", i))
			spread[name]++
		}
		if len(spread) < 2 {
			t.Errorf("12 different /24s all reached %v; want them spread over more than one server", spread)
		}
	})

	t.Run("five_tuple", func(t *testing.T) {
		t.Parallel()
		seen := map[string]int{}
		for range 30 {
			name := reach(t, "conn.example.com", "127.0.0.200")
			seen[name]++
		}
		if len(seen) < 2 {
			t.Errorf("30 connections from 127.0.0.200 (new source ports) all reached %v; want more than one server", seen)
		}
	})
}

// Spec: `balance: leastconn` ("long-lived WebSockets: fewest live connections
// wins", examples/passthrough.yaml). Placement is asserted exactly.
func TestLeastConnPlacesOnFewestLive(t *testing.T) {
	t.Parallel()
	e := startPassthrough(t, nil)
	open := func() *edgeConn { return mustDial(t, e.addr, clientOpts{SNI: "d1.devices.example.com"}) }
	closeAndWait := func(c *edgeConn) { e.closeAndLog(t, c) }

	// Four long-lived connections, opened one after the other: 1 goes
	// anywhere, 2 to the other server, 3 anywhere, 4 to the other: 2 and 2.
	by := map[string][]*edgeConn{}
	var first string
	for i := range 4 {
		c := open()
		if i == 0 {
			first = c.Backend
		}
		by[c.Backend] = append(by[c.Backend], c)
	}
	if len(by["dev-1"]) != 2 || len(by["dev-2"]) != 2 {
		t.Fatalf("4 connections placed dev-1:%d dev-2:%d; want 2 and 2", len(by["dev-1"]), len(by["dev-2"]))
	}
	a, b := first, "dev-1"
	if a == "dev-1" {
		b = "dev-2"
	}

	// Close both on a: a has 0 live, b has 2. The next two go to a.
	for _, c := range by[a] {
		closeAndWait(c)
	}
	for i := range 2 {
		if c := open(); c.Backend != a {
			t.Fatalf("new connection %d went to %s with %s at %d live and %s at 2; want %s",
				i+1, c.Backend, a, i, b, a)
		}
	}
	// Now 2 and 2. Close one on b: b has 1, a has 2. The next goes to b.
	closeAndWait(by[b][0])
	if c := open(); c.Backend != b {
		t.Fatalf("new connection went to %s with %s at 2 live and %s at 1; want %s", c.Backend, a, b, b)
	}
	// The long-lived connections that stayed open still work.
	if err := by[b][1].echo("still here\n"); err != nil {
		t.Errorf("long-lived connection: %v", err)
	}
}

// Spec: "health: type tcp, interval, rise, fall"; "retries: other servers
// tried when a connect fails, before any byte is sent". A stopped server is
// marked down after `fall` failed checks and up after `rise` good ones;
// clients never see the outage.
func TestHealthChecksAndRetries(t *testing.T) {
	t.Parallel()
	e := startPassthrough(t, func(cfg cfgMap) {
		backendCfg(t, cfg, "api")["health"] = cfgMap{"type": "tcp", "interval": "200ms", "timeout": "500ms", "rise": 2, "fall": 2}
	})
	api1 := e.backends["api-1"]
	addr1 := api1.Addr()
	api1.stop()

	onlyAPI2 := func(phase string) {
		t.Helper()
		for i := range 6 {
			if name := oneShot(t, e.addr, clientOpts{SNI: "api.example.com"}); name != "api-2" {
				t.Fatalf("%s: connection %d reached %s; want api-2 (api-1 is stopped)", phase, i+1, name)
			}
		}
	}
	onlyAPI2("before the health check noticed") // retries cover the window
	l := e.waitLog(t, "server down for api-1", func(l logLine) bool {
		return l.msg() == "server down" && l.str("server") == addr1
	})
	if l.str("backend") != "api" {
		t.Errorf("server down line %v: want backend api", l)
	}
	onlyAPI2("after server down")

	if err := api1.listen(addr1); err != nil {
		t.Fatalf("restarting api-1 on %s: %v", addr1, err)
	}
	e.waitLog(t, "server up for api-1", func(l logLine) bool {
		return l.msg() == "server up" && l.str("server") == addr1 && l.str("backend") == "api"
	})
	seen := map[string]int{}
	for range 6 {
		seen[oneShot(t, e.addr, clientOpts{SNI: "api.example.com"})]++
	}
	if seen["api-1"] == 0 {
		t.Errorf("after server up, 6 connections reached %v; want api-1 among them (weights 1:2)", seen)
	}
}

// Spec: "max_connections: 0 = unlimited; excess connections wait in the
// accept queue".
func TestMaxConnectionsQueues(t *testing.T) {
	t.Parallel()
	e := startPassthrough(t, func(cfg cfgMap) { listenerCfg(t, cfg, 0)["max_connections"] = 2 })
	o := clientOpts{SNI: "api.example.com"}
	c1 := mustDial(t, e.addr, o)
	c2 := mustDial(t, e.addr, o)

	type result struct {
		c   *edgeConn
		err error
	}
	third := make(chan result, 1)
	go func() {
		c, err := dialTLS(e.addr, clientOpts{SNI: "api.example.com", Deadline: 30 * time.Second})
		third <- result{c, err}
	}()
	select {
	case r := <-third:
		if r.c != nil {
			r.c.Close()
		}
		t.Fatalf("third connection finished its handshake (err %v) within 1 s while 2 of max_connections 2 were open", r.err)
	case <-time.After(time.Second):
	}
	if err := c2.echo("two is the limit\n"); err != nil {
		t.Fatalf("open connection: %v", err)
	}
	// A full listener is silent to clients, so it says so in the log.
	e.waitLog(t, "the max_connections warning", func(l logLine) bool {
		return l.str("level") == "warn" && strings.HasPrefix(l.msg(), "listener at max_connections")
	})
	c1.Close()
	select {
	case r := <-third:
		if r.err != nil {
			t.Fatalf("third connection after one of two closed: %v", r.err)
		}
		defer r.c.Close()
		if err := r.c.echo("my turn\n"); err != nil {
			t.Errorf("third connection: %v", err)
		}
		e.waitLog(t, "the listener accepting again", func(l logLine) bool {
			return strings.HasPrefix(l.msg(), "listener below max_connections again")
		})
	case <-time.After(waitLong):
		t.Fatalf("third connection did not complete within %v after one of two closed", waitLong)
	}
}
