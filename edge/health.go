package edge

import (
	"context"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tlsedge/tlsedge/affinity"
)

// healthChecks runs one checker goroutine per server of every pool with a
// health type other than none. A checker lives as long as its server stays
// in the config (a reload hands it the new settings); it stops when its
// server leaves the config or the pool's checks are turned off.
type healthChecks struct {
	ctx context.Context
	e   *Edge

	mu       sync.Mutex
	checkers map[*affinity.Server]*checker
	agents   map[*affinity.Server]*agAgent // agent checks (agent.go)
}

func newHealthChecks(ctx context.Context, e *Edge) *healthChecks {
	return &healthChecks{ctx: ctx, e: e, checkers: map[*affinity.Server]*checker{}}
}

// checker actively health-checks one server. The server goes down after
// `fall` failed checks in a row and comes back after `rise` good ones;
// between transitions its state is left alone, so a single lost check does
// not flap it. The counts live on the checker, which outlives reloads, so
// frequent reloads cannot keep a dead server from reaching `fall`.
type checker struct {
	st     *serverState
	pool   atomic.Pointer[Pool] // the settings: replaced by reloads
	cancel context.CancelFunc
	ok     int // good checks in a row
	bad    int // failed checks in a row
}

// update starts, re-configures and stops checkers for the pools of the
// config now in force.
func (h *healthChecks) update(pools map[string]*Pool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	live := map[*affinity.Server]bool{}
	for _, p := range pools {
		if p.health.Type == "none" {
			continue
		}
		for _, s := range p.Servers {
			live[s] = true
			if c := h.checkers[s]; c != nil {
				c.pool.Store(p)
				continue
			}
			ctx, cancel := context.WithCancel(h.ctx)
			c := &checker{st: p.states[s], cancel: cancel}
			c.pool.Store(p)
			h.checkers[s] = c
			go h.run(ctx, c)
		}
	}
	for s, c := range h.checkers {
		if !live[s] {
			c.cancel()
			delete(h.checkers, s)
		}
	}
	h.agUpdate(pools)
}

// stop stops every checker.
func (h *healthChecks) stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s, c := range h.checkers {
		c.cancel()
		delete(h.checkers, s)
	}
	for s, a := range h.agents {
		a.cancel()
		delete(h.agents, s)
	}
}

// run checks until ctx is done, every interval with ±10 % jitter so that
// the checks of many servers (and of several tlsedge instances) do not
// fall into step. It owns its timer; a panic in one check is logged with
// its stack and the checks go on (house rule 13).
func (h *healthChecks) run(ctx context.Context, c *checker) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p := c.pool.Load()
		if !h.checkOnce(ctx, p, c) {
			return
		}
		d := p.health.Interval
		t.Reset(d - d/10 + time.Duration(rand.Int64N(int64(d/5)+1)))
	}
}

// checkOnce runs and records one check; false when ctx ended meanwhile.
func (h *healthChecks) checkOnce(ctx context.Context, p *Pool, c *checker) (goOn bool) {
	defer func() {
		if r := recover(); r != nil {
			h.e.log.Error().Str("backend", p.Name).Str("server", c.st.srv.Address).
				Interface("panic", r).Bytes("stack", debug.Stack()).Msg("health check crashed")
			goOn = true
		}
	}()
	pct, err := p.checkWeight(ctx, c.st.srv)
	if ctx.Err() != nil {
		return false
	}
	h.record(p, c, err)
	if err == nil && c.st.setReported(false, pct) {
		// X-Tlsedge-Weight changed (-1: absent now, 100 %)
		h.e.log.Info().Str("backend", p.Name).Str("server", c.st.srv.Address).Int("percent", pct).
			Msg("server weight set by its health check's " + agWeightHeader)
	}
	return true
}

// record counts a check's outcome and changes the server's state once rise
// or fall is reached; a change is logged once, with the reason, and counted.
func (h *healthChecks) record(p *Pool, c *checker, err error) {
	s := c.st.srv
	if err == nil {
		c.ok++
		c.bad = 0
		c.st.checkedAt(time.Now(), "")
		if !c.st.checkUp() && c.ok >= p.health.Rise && c.st.setHealthy(true) {
			h.e.log.Info().Str("backend", p.Name).Str("server", s.Address).Str("check", p.health.Type).
				Int("rise", p.health.Rise).Msg("server up")
			h.e.m.healthChanged(p.Name, s.Address, true)
		}
		return
	}
	c.bad++
	c.ok = 0
	c.st.checkedAt(time.Now(), err.Error())
	if c.st.checkUp() && c.bad >= p.health.Fall && c.st.setHealthy(false) {
		h.e.log.Warn().Str("backend", p.Name).Str("server", s.Address).Str("check", p.health.Type).
			Int("fall", p.health.Fall).Str("reason", err.Error()).Msg("server down")
		h.e.m.healthChanged(p.Name, s.Address, false)
	}
}
