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
}

func newServerState(s *affinity.Server, configured int) *serverState {
	return &serverState{srv: s, configured: configured, override: -1, stateFrom: time.Now()}
}

// weights returns the configured weight, the one in force, and whether an
// API override set it.
func (st *serverState) weights() (configured, effective int, overridden bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.configured, st.srv.Weight(), st.override >= 0
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

func (st *serverState) applyLocked() {
	if st.override >= 0 {
		st.srv.SetWeight(st.override)
	} else {
		st.srv.SetWeight(st.configured)
	}
}

// startDrain marks the server draining (by "api" or "reload"); false when
// it already was.
func (st *serverState) startDrain(by string) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.srv.Draining() {
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

// setHealthy records a health verdict; true when the state changed.
func (st *serverState) setHealthy(ok bool) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.srv.Healthy() == ok {
		return false
	}
	st.srv.SetHealthy(ok)
	st.stateFrom = time.Now()
	return true
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
