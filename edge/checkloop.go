package edge

import (
	"context"
	"math/rand/v2"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/tlsedge/tlsedge/affinity"
)

// checkLoops runs one kind of per-server check (the health check of
// health.go, the agent check of agent.go) on every server of the pools
// that have it turned on: one goroutine per server, started when the
// server first appears with the check on, handed the pool of each reload,
// and stopped when the server leaves the config or its pool turns the
// check off. S is the kind's own state per server (rise/fall counts, a log
// throttle); it lives on the loop, so it outlives reloads.
//
// The function fields are set once, before the first update; update and
// stop are serialized by the caller (healthChecks.mu).
type checkLoops[S any] struct {
	name  string                             // what checks: "health check" logs "health check crashed"
	log   *zerolog.Logger                    // the crash log, read at each crash
	loops map[*affinity.Server]*checkLoop[S] // by server; nil until the first update

	// enabled says whether the servers of p get this check.
	enabled func(p *Pool) bool
	// interval is the time between two checks under p, before the ±10 %
	// jitter; called only when enabled(p), it must be positive.
	interval func(p *Pool) time.Duration
	// once runs one check of l's server with p's settings and applies
	// its result (state, weight, the lines logged on a change, metrics).
	// A result read after ctx ended must not be applied.
	once func(ctx context.Context, p *Pool, l *checkLoop[S])
	// off, if set, undoes the check's effect on a server that stays in
	// the config after its pool turned the check off. It runs after the
	// loop's ctx was cancelled, under the caller's lock.
	off func(l *checkLoop[S])
}

// checkLoop is the loop of one server.
type checkLoop[S any] struct {
	st     *serverState
	pool   atomic.Pointer[Pool] // the settings: replaced by reloads
	cancel context.CancelFunc   // stops the loop
	own    S                    // the kind's state (see checkLoops)
}

// update starts, re-configures and stops the loops for the pools now in
// force. New loops run under ctx.
func (c *checkLoops[S]) update(ctx context.Context, pools map[string]*Pool) {
	if c.loops == nil {
		c.loops = map[*affinity.Server]*checkLoop[S]{}
	}
	live, kept := map[*affinity.Server]bool{}, map[*affinity.Server]bool{}
	for _, p := range pools {
		on := c.enabled(p)
		for _, s := range p.Servers {
			kept[s] = true
			if !on {
				continue
			}
			live[s] = true
			if l := c.loops[s]; l != nil {
				l.pool.Store(p)
				continue
			}
			lctx, cancel := context.WithCancel(ctx)
			l := &checkLoop[S]{st: p.states[s], cancel: cancel}
			l.pool.Store(p)
			c.loops[s] = l
			go c.run(lctx, l)
		}
	}
	for s, l := range c.loops {
		if live[s] {
			continue
		}
		l.cancel()
		delete(c.loops, s)
		if kept[s] && c.off != nil { // the check turned off: its effect goes
			c.off(l)
		}
	}
}

// stop stops every loop (shutdown: nothing is undone).
func (c *checkLoops[S]) stop() {
	for s, l := range c.loops {
		l.cancel()
		delete(c.loops, s)
	}
}

// run checks l's server until ctx is done: the first check at once, then
// every interval with ±10 % jitter so that the checks of many servers (and
// of several tlsedge instances) do not fall into step. It owns its timer;
// a panic in one check is logged with its stack and the checks go on
// (house rule 13).
func (c *checkLoops[S]) run(ctx context.Context, l *checkLoop[S]) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p := l.pool.Load()
		if !c.enabled(p) {
			return
		}
		c.safeOnce(ctx, p, l)
		if ctx.Err() != nil {
			return
		}
		d := c.interval(p)
		t.Reset(d - d/10 + time.Duration(rand.Int64N(int64(d/5)+1)))
	}
}

// safeOnce runs one check, logging a panic in it with its stack.
func (c *checkLoops[S]) safeOnce(ctx context.Context, p *Pool, l *checkLoop[S]) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error().Str("backend", p.Name).Str("server", l.st.srv.Address).
				Interface("panic", r).Bytes("stack", debug.Stack()).Msg(c.name + " crashed")
		}
	}()
	c.once(ctx, p, l)
}
