package edge

import (
	"context"
	"sync"
	"time"
)

// healthChecks runs the active checks of every pool's servers, each kind
// on its own loop per server (checkloop.go): the health check (health.type
// other than none) and the agent check (health.agent, agent.go). A loop
// lives as long as its server stays in the config with its check on (a
// reload hands it the new settings); it stops when its server leaves the
// config or the pool turns the check off.
type healthChecks struct {
	ctx context.Context
	e   *Edge

	mu     sync.Mutex             // serializes update and stop
	checks checkLoops[hcCounts]   // health.type checks
	agents checkLoops[agAgentOwn] // health.agent checks (agent.go)
}

func newHealthChecks(ctx context.Context, e *Edge) *healthChecks {
	h := &healthChecks{ctx: ctx, e: e}
	h.checks = checkLoops[hcCounts]{name: "health check", log: &e.log,
		enabled:  func(p *Pool) bool { return p.health.Type != "none" },
		interval: func(p *Pool) time.Duration { return p.health.Interval },
		once:     h.checkOnce,
	}
	h.agents = h.agLoops()
	return h
}

// checker actively health-checks one server. The server goes down after
// `fall` failed checks in a row and comes back after `rise` good ones;
// between transitions its state is left alone, so a single lost check does
// not flap it. The counts live on the loop, which outlives reloads, so
// frequent reloads cannot keep a dead server from reaching `fall`.
type checker = checkLoop[hcCounts]

// hcCounts are a checker's checks in a row.
type hcCounts struct {
	ok  int // good checks in a row
	bad int // failed checks in a row
}

// update starts, re-configures and stops the checks for the pools of the
// config now in force.
func (h *healthChecks) update(pools map[string]*Pool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checks.update(h.ctx, pools)
	h.agents.update(h.ctx, pools)
}

// stop stops every check.
func (h *healthChecks) stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checks.stop()
	h.agents.stop()
}

// checkOnce runs and records one health check; nothing is recorded when
// ctx ended meanwhile.
func (h *healthChecks) checkOnce(ctx context.Context, p *Pool, c *checker) {
	pct, err := p.checkWeight(ctx, c.st.srv)
	if ctx.Err() != nil {
		return
	}
	h.record(p, c, err)
	if err == nil && c.st.setReported(false, pct) {
		// X-Tlsedge-Weight changed (-1: absent now, 100 %)
		h.e.log.Info().Str("backend", p.Name).Str("server", c.st.srv.Address).Int("percent", pct).
			Msg("server weight set by its health check's " + agWeightHeader)
	}
}

// record counts a check's outcome and changes the server's state once rise
// or fall is reached; a change is logged once, with the reason, and counted.
func (h *healthChecks) record(p *Pool, c *checker, err error) {
	s := c.st.srv
	n := &c.own
	if err == nil {
		n.ok++
		n.bad = 0
		c.st.checkedAt(time.Now(), "")
		if !c.st.checkUp() && n.ok >= p.health.Rise && c.st.setHealthy(true) {
			h.e.log.Info().Str("backend", p.Name).Str("server", s.Address).Str("check", p.health.Type).
				Int("rise", p.health.Rise).Msg("server up")
			h.e.m.healthChanged(p.Name, s.Address, true)
		}
		return
	}
	n.bad++
	n.ok = 0
	c.st.checkedAt(time.Now(), err.Error())
	if c.st.checkUp() && n.bad >= p.health.Fall && c.st.setHealthy(false) {
		h.e.log.Warn().Str("backend", p.Name).Str("server", s.Address).Str("check", p.health.Type).
			Int("fall", p.health.Fall).Str("reason", err.Error()).Msg("server down")
		h.e.m.healthChanged(p.Name, s.Address, false)
	}
}
