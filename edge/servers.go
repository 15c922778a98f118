package edge

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/tlsedge/tlsedge/affinity"
)

// serverState is what the edge keeps about one server beyond what picking
// needs (that is on *affinity.Server): counters, the last health check,
// and the operator's runtime overrides. Like the *affinity.Server it
// belongs to, it is carried over by backend name and address across
// reloads, so counts and overrides survive them.
type serverState struct {
	srv *affinity.Server

	total    atomic.Int64 // connections (and HTTP requests) sent to it
	bytesIn  atomic.Int64 // from clients to it, counted when connections end
	bytesOut atomic.Int64

	mu sync.Mutex
	// configured is the weight the config gives; override >= 0 is the
	// weight set through the API, in force until reset or the server
	// leaves the config.
	configured int
	override   int
	// drain: who started it ("api", "reload": removed from the config) and
	// when; zero when not draining.
	drainBy    string
	drainSince time.Time
	// the last health check
	checked   time.Time
	checkErr  string
	stateFrom time.Time // when the health state last changed
	// checkDown: the health checks' verdict; agentDown: the agent's
	// ("down" until "up"). The server is up when neither holds it down.
	checkDown, agentDown bool
	// agentPct and headerPct are the reported load in percent of the
	// weight (agent check, X-Tlsedge-Weight), -1 = none reported.
	agentPct, headerPct int
	// the last agent check: its answer, when, and its error ("" = read)
	agentLine string
	agentAt   time.Time
	agentErr  string
	// out is the passive ejection state (outlier.go), under mu.
	out agOutlierState
}

func newServerState(s *affinity.Server, configured int) *serverState {
	return &serverState{srv: s, configured: configured, override: -1, agentPct: -1, headerPct: -1, stateFrom: time.Now()}
}

// weights returns the configured weight, the one in force (weight ×
// reported percent, in config units: 0.25 for weight 1 at 25 %), and
// whether an API override set it.
func (st *serverState) weights() (configured int, effective float64, overridden bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.configured, float64(st.srv.EffectiveWeight()) / 100, st.override >= 0
}

// weightSource says where the weight in force comes from: api (PUT
// weight, which wins while set), agent, health_header or config.
func (st *serverState) weightSource() string {
	st.mu.Lock()
	defer st.mu.Unlock()
	switch {
	case st.override >= 0:
		return "api"
	case st.agentPct >= 0:
		return "agent"
	case st.headerPct >= 0:
		return "health_header"
	}
	return "config"
}

// setReported records a reported load in percent (-1 = none) from the
// agent (agent true) or the health-check header, and applies it; false
// when it was already so.
func (st *serverState) setReported(agent bool, pct int) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	at := &st.headerPct
	if agent {
		at = &st.agentPct
	}
	if *at == pct {
		return false
	}
	*at = pct
	st.applyLocked()
	return true
}

// setOverride sets (w >= 0) or clears (w < 0) the API weight and applies it.
func (st *serverState) setOverride(w int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.override = w
	st.applyLocked()
}

// setConfigured records the config's weight and applies it unless an
// override is in force.
func (st *serverState) setConfigured(w int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.configured = w
	st.applyLocked()
}

// applyLocked puts the weight in force on the server: the API override
// as is (it wins over reports while set), else the config's weight scaled
// by the agent's percent, else by the health-check header's, else 100 %.
func (st *serverState) applyLocked() {
	w, pct := st.configured, 100
	switch {
	case st.override >= 0:
		w = st.override
	case st.agentPct >= 0:
		pct = st.agentPct
	case st.headerPct >= 0:
		pct = st.headerPct
	}
	st.srv.SetWeight(w)
	st.srv.SetPercent(pct)
}

// startDrain marks the server draining (by "api" or "reload"); false when
// it already was.
func (st *serverState) startDrain(by string) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.srv.Draining() {
		if st.drainBy == "agent" && by != "agent" {
			// The API's or a reload's drain is not the agent's to end, and
			// its drain_timeout starts now, not when the agent drained.
			st.drainBy, st.drainSince = by, time.Now()
			return true
		}
		return false
	}
	st.drainBy, st.drainSince = by, time.Now()
	st.srv.SetDraining(true)
	return true
}

// stopDrain ends a drain (the server takes new connections again).
func (st *serverState) stopDrain() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.drainBy, st.drainSince = "", time.Time{}
	st.srv.SetDraining(false)
}

// drain returns who started the drain and when; "" when not draining.
func (st *serverState) drain() (by string, since time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.drainBy, st.drainSince
}

// checkedAt records a health check's outcome (err "" = passed).
func (st *serverState) checkedAt(t time.Time, err string) {
	st.mu.Lock()
	st.checked, st.checkErr = t, err
	st.mu.Unlock()
}

// health returns the last check's time and error, and when the state last
// changed.
func (st *serverState) health() (checked time.Time, err string, since time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.checked, st.checkErr, st.stateFrom
}

// setHealthy records the health checks' verdict; true when it changed.
// The server is up when the checks pass and its agent has not said down.
func (st *serverState) setHealthy(ok bool) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.checkDown == !ok {
		return false
	}
	st.checkDown = !ok
	st.applyHealthLocked()
	return true
}

// checkUp reports the health checks' own verdict.
func (st *serverState) checkUp() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return !st.checkDown
}

// setAgentDown records the agent's "down" (true) or "up" (false); true
// when it changed.
func (st *serverState) setAgentDown(down bool) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.agentDown == down {
		return false
	}
	st.agentDown = down
	st.applyHealthLocked()
	return true
}

func (st *serverState) applyHealthLocked() {
	up := !st.checkDown && !st.agentDown
	if st.srv.Healthy() != up {
		st.srv.SetHealthy(up)
		st.stateFrom = time.Now()
	}
}

// eachServer calls f for every server of the pools in force, then for the
// servers a reload removed that still drain (removed = true).
func (e *Edge) eachServer(f func(pool string, st *serverState, removed bool)) {
	run := e.running.Load()
	for name, p := range run.pools {
		for _, s := range p.Servers {
			f(name, p.states[s], false)
		}
	}
	for name, list := range e.ops.removed() {
		for _, rm := range list {
			f(name, rm.st, true)
		}
	}
}
