package affinity

import (
	"math"
	"sync/atomic"
)

// MaxWeight is the largest weight a Server takes (21,474,836); larger
// values are clamped to it. The effective weight, weight × the reported
// percent, then stays within 2^31 - 1 without clamping (a clamp would make
// two large weights equal), which keeps the integer arithmetic of the
// policies (weight sums, connections × weight products) far from overflow.
const MaxWeight = math.MaxInt32 / 100

// maxEffective is the largest effective weight: MaxWeight at 100 %.
const maxEffective = MaxWeight * 100

// Server is one upstream server. Pools share a Server across reloads (carried
// over by pool name and address), so every mutable field is atomic and safe
// to use from any goroutine. A Server must not be copied after first use;
// always create it with [NewServer]. (A zero Server has weight 0 and is never
// picked.)
type Server struct {
	// Address is host:port. It is the server's identity for consistent
	// hashing and must not change after NewServer.
	Address string

	hash     uint64 // addressHash(Address), fixed at NewServer
	weight   atomic.Int64
	active   atomic.Int64
	healthy  atomic.Bool
	draining atomic.Bool
	// percent scales the weight for picking (the load the server reports:
	// agent checks, a health-check header), 0-100; 100 from NewServer.
	percent atomic.Int64
	// ejected: passive ejection (outlier detection) took the server out of
	// picking for a while.
	ejected atomic.Bool

	// healthCh is closed, and cleared, when the health verdict changes
	// (HealthChanged).
	healthCh atomic.Pointer[chan struct{}]

	// onRelease, when set, runs after each Release (see SetOnRelease).
	onRelease atomic.Pointer[func()]

	// rrCurrent is the "current weight" of smooth weighted round-robin
	// (roundrobin.go). The round-robin picker updates it under its own
	// mutex; it is atomic only so that two pickers sharing this Server
	// (the pool snapshots before and after a reload) never race.
	rrCurrent atomic.Int64
}

// NewServer returns a healthy, not draining server. weight is clamped to
// [0, MaxWeight]; 0 means the server takes no new connections. (The config
// default of 1 for an omitted weight lives in package edge.)
func NewServer(address string, weight int) *Server {
	s := &Server{Address: address, hash: addressHash(address)}
	s.SetWeight(weight)
	s.percent.Store(100)
	s.healthy.Store(true)
	return s
}

// String returns the address, so a *Server prints well in logs and tests.
func (s *Server) String() string { return s.Address }

// Weight returns the current weight.
func (s *Server) Weight() int { return int(s.weight.Load()) }

// SetWeight changes the weight at run time (admin API, reload). It is clamped
// to [0, MaxWeight]; 0 means the server takes no new connections, while its
// live ones carry on. Consistent hashing then moves keys to or from this
// server in proportion to the change.
func (s *Server) SetWeight(w int) {
	s.weight.Store(int64(min(max(w, 0), MaxWeight)))
}

// Percent returns the share of its weight the server takes, 0-100.
func (s *Server) Percent() int { return int(s.percent.Load()) }

// SetPercent sets the share of its weight the server takes (reported load),
// clamped to [0, 100]: every policy picks by the effective weight,
// Weight × Percent. 0 means no new connections, like weight 0.
func (s *Server) SetPercent(p int) { s.percent.Store(int64(min(max(p, 0), 100))) }

// EffectiveWeight is what the policies pick by: Weight × Percent (the
// weight in hundredths), at most maxEffective. Scaling every server by the
// same 100 leaves each policy's choices as with the weights alone, so
// servers at 100 % are placed exactly as before; the integer product
// keeps two instances with the same reports in agreement.
func (s *Server) EffectiveWeight() int64 { return effective(s.weight.Load(), s.percent.Load()) }

func effective(w, pct int64) int64 { return min(w*pct, maxEffective) }

// Ejected reports whether passive ejection took the server out of picking.
func (s *Server) Ejected() bool { return s.ejected.Load() }

// SetEjected ejects (true) or brings back (false) the server: an ejected
// server takes no new connections, its live ones carry on.
func (s *Server) SetEjected(e bool) { s.ejected.Store(e) }

// Active returns the number of live connections (Acquire minus Release).
func (s *Server) Active() int64 { return s.active.Load() }

// Acquire counts one more live connection. Call it once a server is chosen,
// before dialing, so leastconn and bounded load see connections still being
// set up; pair every Acquire with exactly one Release.
func (s *Server) Acquire() { s.active.Add(1) }

// TryAcquire is Acquire unless the server already has limit live
// connections or more; it reports whether it counted one. limit <= 0 means
// no limit. Two callers racing for the last slot cannot both get it.
func (s *Server) TryAcquire(limit int64) bool {
	if limit <= 0 {
		s.Acquire()
		return true
	}
	for {
		n := s.active.Load()
		if n >= limit {
			return false
		}
		if s.active.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// Release counts one live connection fewer, then calls the function set
// by SetOnRelease, if any. See Acquire.
func (s *Server) Release() {
	s.active.Add(-1)
	if f := s.onRelease.Load(); f != nil {
		(*f)()
	}
}

// SetOnRelease sets a function that every Release calls once it has
// counted the connection out (the edge wakes connections waiting for a
// slot at a connection cap); nil removes it. f runs on the releasing
// goroutine: it must be quick and must not block nor call Release.
func (s *Server) SetOnRelease(f func()) {
	if f == nil {
		s.onRelease.Store(nil)
		return
	}
	s.onRelease.Store(&f)
}

// Healthy reports the last health-check verdict.
func (s *Server) Healthy() bool { return s.healthy.Load() }

// SetHealthy records a health-check verdict; a change closes the channel
// HealthChanged handed out.
func (s *Server) SetHealthy(ok bool) {
	if s.healthy.Swap(ok) != ok {
		if ch := s.healthCh.Swap(nil); ch != nil {
			close(*ch)
		}
	}
}

// HealthChanged returns a channel closed at the next change of the health
// verdict: a waiter takes it, then reads Healthy, then waits on it (no
// change is missed, and nobody polls).
func (s *Server) HealthChanged() <-chan struct{} {
	for {
		if ch := s.healthCh.Load(); ch != nil {
			return *ch
		}
		ch := make(chan struct{})
		if s.healthCh.CompareAndSwap(nil, &ch) {
			return ch
		}
	}
}

// Draining reports whether the server is draining: it takes no new
// connections while its live ones finish.
func (s *Server) Draining() bool { return s.draining.Load() }

// SetDraining starts (true) or ends (false) draining.
func (s *Server) SetDraining(d bool) { s.draining.Store(d) }

// Available reports whether the server may take a new connection:
// healthy, not draining, not ejected and effective weight > 0.
func (s *Server) Available() bool {
	return s.EffectiveWeight() > 0 && s.healthy.Load() && !s.draining.Load() && !s.ejected.Load()
}

// load returns Active, read once and never below 0 (an unpaired Release must
// not make a server look better than idle).
func (s *Server) load() int64 { return max(s.active.Load(), 0) }

// candidate reports whether s may be picked in this Pick, and its
// effective weight (Weight × Percent), read once so that one Pick works
// with one consistent value.
func candidate(s *Server, skip func(*Server) bool) (weight int64, ok bool) {
	w := s.EffectiveWeight()
	if w <= 0 || !s.healthy.Load() || s.draining.Load() || s.ejected.Load() {
		return 0, false
	}
	if skip != nil && skip(s) {
		return 0, false
	}
	return w, true
}
