package edge

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tlsedge/tlsedge/affinity"
)

// agOffAgentServer answers every connection with line; it stops in
// t.Cleanup. It returns its port.
func agOffAgentServer(t *testing.T, line string) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(line))
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// A reload turning the agent off while a check has already read its answer:
// the answer is not applied after the reports were cleared (the server is
// left at its configured weight, up and not drained). Without the turn-off
// the same answer is applied (the control: the test can see it).
func TestAgentOffDuringCheck(t *testing.T) {
	t.Parallel()
	port := agOffAgentServer(t, "25% drain down\n")
	for _, turnOff := range []bool{false, true} {
		s := affinity.NewServer("127.0.0.1:1", 4)
		st := newServerState(s, 4)
		st.setHealthy(true)
		pool := func(agent *AgentCheckConfig) *Pool {
			p := &Pool{Name: "b", Servers: []*affinity.Server{s}, states: map[*affinity.Server]*serverState{s: st}}
			p.health.Agent = agent
			return p
		}
		p := pool(&AgentCheckConfig{Port: port, Timeout: 30 * time.Second, Interval: time.Minute})
		h := newHealthChecks(context.Background(), &Edge{log: zerolog.Nop()})
		ctx, cancel := context.WithCancel(context.Background())
		a := &agAgent{st: st, cancel: cancel}
		a.pool.Store(p)
		h.agents.loops = map[*affinity.Server]*agAgent{s: a}
		if turnOff {
			// the reload, under h.mu in real life
			a.own.beforeApply = func() { h.agents.update(h.ctx, map[string]*Pool{"b": pool(nil)}) }
		}
		h.agOnce(ctx, p, a)
		cancel()
		_, eff, _ := st.weights()
		by, _ := st.drain()
		if !turnOff {
			if eff != 1 || st.weightSource() != "agent" || by != "agent" || s.Healthy() {
				t.Errorf("agent on: weight %v from %s, drain by %q, healthy %v; want 1 from agent, agent, false",
					eff, st.weightSource(), by, s.Healthy())
			}
			continue
		}
		if len(h.agents.loops) != 0 {
			t.Fatalf("the reload did not turn the agent off: %d agents", len(h.agents.loops))
		}
		if eff != 4 || st.weightSource() != "config" || by != "" || !s.Healthy() || !s.Available() {
			t.Errorf("agent turned off mid-check: weight %v from %s, drain by %q, healthy %v, available %v; want 4 from config, no drain, healthy, available",
				eff, st.weightSource(), by, s.Healthy(), s.Available())
		}
	}
}
