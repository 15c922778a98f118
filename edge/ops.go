package edge

import (
	"context"
	"runtime/debug"
	"sync"
	"time"

	"github.com/tlsedge/tlsedge/affinity"
	"github.com/tlsedge/tlsedge/tlsmode"
)

// ops runs drains and rebalances: it closes the streams of draining
// servers, at most drain_rate a second per pool, once their drain_timeout
// has passed; it closes connections of overloaded servers for a rebalance
// at its rate; and it closes draining servers' idle HTTP keep-alive
// connections. One goroutine per Edge; it ticks only while there is work.
type ops struct {
	ctx      context.Context
	e        *Edge
	wake     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
	cancel   context.CancelFunc

	mu       sync.Mutex
	drains   map[*affinity.Server]*drainJob
	rebal    map[string]*rebalJob // by pool
	buckets  map[string]*bucket   // drain tokens by pool
	autoNext map[string]time.Time // next automatic rebalance check by pool
}

// drainJob is one draining server.
type drainJob struct {
	pool     string
	st       *serverState
	deadline time.Time
	rate     float64 // the pool's drain_rate when the pool is gone
	removed  bool    // removed from the config by a reload
	pending  []*tlsmode.Conn
	lastIdle time.Time // when its idle HTTP connections were last closed
	sweeps   int       // idle sweeps still to do once no request is in flight
}

// rebalJob closes a planned set of connections at a rate.
type rebalJob struct {
	plan    *RebalancePlan
	pending []*tlsmode.Conn
	// from is the server each pending connection was planned off: one
	// bound elsewhere by then (a WebSocket that failed over) is skipped.
	from   map[*tlsmode.Conn]*affinity.Server
	tok    bucket
	closed int
}

// bucket is a token bucket: rate tokens a second, at most max(1, rate/100).
type bucket struct {
	tokens float64
	last   time.Time
}

func (b *bucket) refill(now time.Time, rate float64) {
	if b.last.IsZero() {
		b.last, b.tokens = now, 1
		return
	}
	b.tokens += rate * now.Sub(b.last).Seconds()
	b.tokens = min(b.tokens, max(1, rate/100))
	b.last = now
}

func newOps(ctx context.Context, e *Edge) *ops {
	ctx, cancel := context.WithCancel(ctx)
	o := &ops{ctx: ctx, cancel: cancel, e: e, wake: make(chan struct{}, 1), done: make(chan struct{}),
		drains: map[*affinity.Server]*drainJob{}, rebal: map[string]*rebalJob{},
		buckets: map[string]*bucket{}, autoNext: map[string]time.Time{}}
	go o.loop()
	return o
}

func (o *ops) poke() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// stop ends the loop (shutdown); jobs are dropped.
func (o *ops) stop() {
	o.stopOnce.Do(func() {
		o.cancel()
		<-o.done
	})
}

// configChanged is called after each apply: automatic rebalances follow
// the pools in force.
func (o *ops) configChanged() { o.poke() }

// loop runs step whenever something is due, until the Edge stops. A
// panic in a step is logged with its stack and the loop goes on: drains
// must not stop for good because of one bad step.
func (o *ops) loop() {
	defer close(o.done)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		wait := o.safeStep(time.Now())
		t.Reset(wait)
		select {
		case <-o.ctx.Done():
			return
		case <-o.wake:
		case <-t.C:
		}
	}
}

func (o *ops) safeStep(now time.Time) (wait time.Duration) {
	defer func() {
		if r := recover(); r != nil {
			o.e.log.Error().Interface("panic", r).Bytes("stack", debug.Stack()).Msg("drain and rebalance step crashed")
			wait = time.Second
		}
	}()
	return o.step(now)
}

// idleWait is the longest the loop sleeps while drains are going on.
const idleWait = 250 * time.Millisecond

// step does what is due and returns how long to sleep.
func (o *ops) step(now time.Time) time.Duration {
	run := o.e.running.Load()
	return min(o.stepJobs(now, run), o.autoRebalance(now, run))
}

// stepJobs advances the drains and rebalances under o.mu.
func (o *ops) stepJobs(now time.Time, run *running) time.Duration {
	wait := time.Hour
	o.mu.Lock()
	defer o.mu.Unlock()
	for s, j := range o.drains {
		if !s.Draining() { // enabled again
			delete(o.drains, s)
			continue
		}
		pool := run.pools[j.pool]
		rate := j.rate
		if pool != nil && !j.removed {
			// drain_timeout and drain_rate as the config in force says
			rate = pool.drainRate
			_, since := j.st.drain()
			j.deadline = since.Add(pool.drainTimeout)
		}
		// Idle HTTP keep-alive connections to it close after their
		// request: swept while requests are in flight, and twice more
		// once none is (a connection goes idle just after its request).
		active := s.Active() > 0
		if active {
			j.sweeps = 2
		}
		if j.sweeps > 0 {
			if now.Sub(j.lastIdle) >= idleWait {
				j.lastIdle = now
				for _, hp := range run.http[j.pool] {
					hp.CloseIdleFor(s.Address)
				}
				if !active {
					j.sweeps--
				}
			}
			wait = min(wait, idleWait)
		}
		if !active {
			if j.removed && j.sweeps == 0 {
				delete(o.drains, s) // gone: nothing left to show
				o.e.m.serverGone(j.pool, s.Address, addressInUse(run, s.Address))
			}
			continue // nothing to close until a connection comes (none will)
		}
		if now.Before(j.deadline) {
			wait = min(wait, j.deadline.Sub(now))
			continue
		}
		b := o.buckets[j.pool]
		if b == nil {
			b = &bucket{}
			o.buckets[j.pool] = b
		}
		b.refill(now, rate)
		for b.tokens >= 1 {
			if c := j.next(o.e.reg); c != nil {
				b.tokens--
				c.Shutdown(reasonDrained) // never blocks (a WebSocket's close frames go on their own goroutine)
				continue
			}
			// Then HTTP requests that outlive drain_timeout (long polls,
			// server-sent events, gRPC streams).
			if !cancelRequest(run.http[j.pool], s.Address) {
				break
			}
			b.tokens--
		}
		wait = min(wait, tokenWait(b.tokens, rate))
	}
	for name, j := range o.rebal {
		j.tok.refill(now, j.plan.Rate)
		for j.tok.tokens >= 1 && len(j.pending) > 0 {
			c := j.pending[0]
			j.pending = j.pending[1:]
			if c.ShutdownReason() != "" || o.e.reg.get(c.ID) != c || c.BoundServer() != j.from[c] {
				continue // ended or moved off its server meanwhile: costs nothing
			}
			j.tok.tokens--
			j.closed++
			c.Shutdown(reasonRebalance)
		}
		if len(j.pending) == 0 {
			delete(o.rebal, name)
			o.e.log.Info().Str("backend", name).Int("planned", j.plan.Closing).Int("closed", j.closed).Msg("rebalance done")
			continue
		}
		wait = min(wait, tokenWait(j.tok.tokens, j.plan.Rate))
	}
	return wait
}

// tokenWait is how long until a bucket at rate has a token again, never
// less than a millisecond nor more than idleWait (a rate from the config
// is at least 0.01 a second; the bound keeps any rounding from spinning).
func tokenWait(tokens, rate float64) time.Duration {
	d := time.Duration((1 - tokens) / rate * float64(time.Second))
	return min(max(d, 0)+time.Millisecond, idleWait)
}

// cancelRequest cancels one HTTP request in flight to addr through one of
// the proxies; false when none has any.
func cancelRequest(proxies []*tlsmode.HTTPProxy, addr string) bool {
	for _, hp := range proxies {
		if hp.CancelRequest(addr) {
			return true
		}
	}
	return false
}

// more reports whether the job's server has connections left to close,
// listing them again from the registry when the last list is used up.
func (j *drainJob) more(reg *registry) bool {
	for len(j.pending) > 0 && (j.pending[0].ShutdownReason() != "" || reg.get(j.pending[0].ID) != j.pending[0] ||
		j.pending[0].BoundServer() != j.st.srv) {
		// Closing already, ended on its own, or moved off the server
		// meanwhile (a WebSocket that failed over): not the drain's.
		j.pending = j.pending[1:]
	}
	if len(j.pending) == 0 {
		for _, c := range reg.onServer(j.st.srv) {
			if c.ShutdownReason() == "" {
				j.pending = append(j.pending, c)
			}
		}
	}
	return len(j.pending) > 0
}

// next returns the next connection of the job's server to close, or nil.
func (j *drainJob) next(reg *registry) *tlsmode.Conn {
	if !j.more(reg) {
		return nil
	}
	c := j.pending[0]
	j.pending = j.pending[1:]
	return c
}

// drain starts draining st of pool (by "api" or, removed by a reload,
// "reload"); false when it was draining already.
func (o *ops) drain(pool *Pool, st *serverState, by string) bool {
	o.mu.Lock()
	started := st.startDrain(by)
	j := o.drains[st.srv]
	if j == nil {
		_, since := st.drain()
		j = &drainJob{pool: pool.Name, st: st, deadline: since.Add(pool.drainTimeout), rate: pool.drainRate, sweeps: 2}
		o.drains[st.srv] = j
	}
	if by == "reload" {
		j.removed = true
	}
	o.mu.Unlock()
	o.poke()
	return started
}

// enable ends the drain of st; false when a reload removed the server
// (it drains until it is gone, or until a reload adds it back).
func (o *ops) enable(st *serverState) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if j := o.drains[st.srv]; j != nil && j.removed {
		return false
	}
	st.stopDrain()
	delete(o.drains, st.srv)
	return true
}

// revive ends the removal drain of a server a reload adds back; called
// when that reload is put in force.
func (o *ops) revive(st *serverState) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if j := o.drains[st.srv]; j != nil && j.removed {
		delete(o.drains, st.srv)
		st.stopDrain()
	}
}

// removedState returns the state of the server at addr of pool that a
// reload removed and that still drains, or nil.
func (o *ops) removedState(pool, addr string) *serverState {
	o.mu.Lock()
	defer o.mu.Unlock()
	for s, j := range o.drains {
		if j.removed && j.pool == pool && s.Address == addr {
			return j.st
		}
	}
	return nil
}

// removedServer is a server a reload removed that still drains.
type removedServer struct {
	st       *serverState
	deadline time.Time
}

// removed returns the servers a reload removed that still drain, by pool.
func (o *ops) removed() map[string][]removedServer {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := map[string][]removedServer{}
	for _, j := range o.drains {
		if j.removed {
			out[j.pool] = append(out[j.pool], removedServer{j.st, j.deadline})
		}
	}
	return out
}

// drainRemoved drains the servers of the running pools that the pools
// about to be put in force no longer have, with the new pool's drain
// settings (or the old one's when the whole backend is gone). Called under
// e.mu, before e.pools is replaced.
func (e *Edge) drainRemoved(next map[string]*Pool) {
	for name, old := range e.pools {
		np := next[name]
		settings := old
		if np != nil {
			settings = np
		}
		for _, s := range old.Servers {
			if np != nil && np.states[s] != nil {
				continue
			}
			st := old.states[s]
			e.ops.drain(&Pool{Name: name, drainTimeout: settings.drainTimeout, drainRate: settings.drainRate}, st, "reload")
			e.log.Info().Str("backend", name).Str("server", s.Address).Int64("connections", s.Active()).
				Dur("drain_timeout", settings.drainTimeout).Msg("server removed from the config: draining")
		}
	}
}

// addressInUse reports whether a pool in force has a server at addr.
func addressInUse(run *running, addr string) bool {
	for _, p := range run.pools {
		if p.Server(addr) != nil {
			return true
		}
	}
	return false
}
