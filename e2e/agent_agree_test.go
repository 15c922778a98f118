package e2e

import (
	"fmt"
	"net"
	"testing"
)

// Issue 11: "with the same config, two processes make the same choice for
// every affinity key, including after the same servers were ... re-weighted
// by their agents (effective weights come from the servers' own reports, so
// agents keep instances in step)." Four servers on 127.0.0.2-5 (one port),
// affinity source_ip, an agent beside each; two instances on the same
// config. Before any report, and after the agents of two servers answer
// 25% and 50%, the instances pick the same server for 1,000 real source
// addresses; the reports move sources off the two servers (and only onto
// others), as weighted rendezvous hashing should.
func TestAgentTwoInstancesAgree(t *testing.T) {
	t.Parallel()
	ips := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"}
	agents := agStartAgents(t, ips...)
	_, port, _ := net.SplitHostPort(freeAddr(t))
	var servers []any
	for _, ip := range ips {
		discNamer(t, ip, net.JoinHostPort(ip, port))
		servers = append(servers, cfgMap{"address": net.JoinHostPort(ip, port)})
	}
	cfg := func() cfgMap {
		return cfgMap{
			"log": cfgMap{"level": "info", "format": "json", "access": false},
			"listeners": []any{cfgMap{"name": "public", "address": "", "connection_rate_per_ip": 0,
				"routes": []any{cfgMap{"sni": []any{"*"}, "backend": "pool"}}}},
			"backends": []any{cfgMap{"name": "pool", "affinity": "source_ip", "servers": servers,
				"health": cfgMap{"type": "none", "agent": cfgMap{"port": agents.port, "interval": "250ms", "timeout": "250ms"}}}},
		}
	}
	c1, c2 := cfg(), cfg()
	a1, a2 := newAdmin(t, withAdmin(t, c1)), newAdmin(t, withAdmin(t, c2))
	e1, e2 := runEdge(t, c1), runEdge(t, c2)
	hello := discHello(t, "agree.example.com")
	addr := func(ip string) string { return net.JoinHostPort(ip, port) }

	// weightsAre waits until an instance shows the agents' reports.
	weightsAre := func(a *adminClient, want map[string]float64) {
		t.Helper()
		agWaitAPI(t, a, "pool", fmt.Sprintf("weights %v", want), func(m map[string]agAPIServer) bool {
			for _, ip := range ips {
				if m[addr(ip)].Weight != want[ip] {
					return false
				}
			}
			return true
		})
	}
	compare := func(phase string) map[string]string { return discAgree(t, phase, e1, e2, hello) }

	all := map[string]float64{"127.0.0.2": 1, "127.0.0.3": 1, "127.0.0.4": 1, "127.0.0.5": 1}
	weightsAre(a1, all)
	weightsAre(a2, all)
	before := compare("before the reports")

	agents.set("127.0.0.3", "25%")
	agents.set("127.0.0.4", "50%")
	reported := map[string]float64{"127.0.0.2": 1, "127.0.0.3": 0.25, "127.0.0.4": 0.5, "127.0.0.5": 1}
	weightsAre(a1, reported)
	weightsAre(a2, reported)
	after := compare("after the reports")

	count := func(m map[string]string, name string) int {
		n := 0
		for _, s := range m {
			if s == name {
				n++
			}
		}
		return n
	}
	for _, ip := range []string{"127.0.0.3", "127.0.0.4"} {
		if b, a := count(before, ip), count(after, ip); a >= b {
			t.Errorf("%s reports less load but holds %d sources after, %d before; want fewer", ip, a, b)
		}
	}
	// Rendezvous hashing: lowering a server's weight only moves sources off
	// it; a source of a server at 100 % stays.
	for src, s := range before {
		if (s == "127.0.0.2" || s == "127.0.0.5") && after[src] != s {
			t.Errorf("source %s moved from %s (still at 100 %%) to %s", src, s, after[src])
		}
	}
}
