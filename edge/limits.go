package edge

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// What a listener limits per client address, and what it does at the
// limits: max_connections_per_ip, connection_rate_per_ip with its burst,
// max_handshakes, and the failure lines of log.failure_burst.

// Reasons (and refused_total kinds) of connections refused by a limit.
const (
	reasonPerIP      = "too many connections from this address"
	reasonRate       = "connection rate of this address exceeded"
	reasonHandshakes = "too many handshakes in progress"

	refusedPerIP      = "per_ip"
	refusedRate       = "rate"
	refusedHandshakes = "handshakes"
	refusedQueue      = "server_queue"
)

// refusedKinds are the reason label values of tlsedge_connections_refused_total.
var refusedKinds = []string{refusedPerIP, refusedRate, refusedHandshakes, refusedQueue}

// ipTableMax is the soft bound of the per-address table: past it, the
// addresses with no open connection are forgotten (losing their rate
// history, never an open count). Only addresses with open connections,
// themselves bounded by max_connections, can make it larger.
const ipTableMax = 1 << 16

// ipSweepEvery is how often the table drops addresses that have nothing
// left to remember: no open connection and a full bucket.
const ipSweepEvery = 30 * time.Second

// ipLimiter counts, per client address, the open connections and a token
// bucket of new ones. It is safe for concurrent use; time is passed in, so
// tests drive it with their own clock.
type ipLimiter struct {
	mu        sync.Mutex
	m         map[netip.Addr]*ipEntry
	lastSweep time.Time
	sweepAt   int // the size that triggers the next sweep
}

type ipEntry struct {
	open   int       // connections admitted and not yet released
	tokens float64   // the bucket, as of last
	last   time.Time // when tokens was brought up to date
}

// ipLimits are the limits admit applies, from the listener's config in force.
type ipLimits struct {
	perIP int     // open connections; 0 = unlimited
	rate  float64 // new connections a second; 0 = unlimited
	burst int     // the bucket's size; < 1 = max(1, 2 × rate)
}

func (l ipLimits) off() bool { return l.perIP <= 0 && l.rate <= 0 }

func (l ipLimits) size() float64 {
	if l.burst >= 1 {
		return float64(l.burst)
	}
	return max(1, 2*l.rate)
}

// admit decides on a new connection from a at now. It returns "" and held
// true when the connection is admitted and counted (call release(a) when it
// ends), "" and held false when no limit applies, or the refused kind
// (refusedPerIP, refusedRate) and its reason. A refused connection takes
// no token and holds nothing.
func (t *ipLimiter) admit(a netip.Addr, lim ipLimits, now time.Time) (kind, reason string, held bool) {
	if lim.off() {
		return "", "", false
	}
	a = limitKey(a)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[netip.Addr]*ipEntry{}
		t.lastSweep = now
		t.sweepAt = ipTableMax
	}
	e := t.m[a]
	if e == nil {
		if len(t.m) >= t.sweepAt || now.Sub(t.lastSweep) >= ipSweepEvery {
			t.sweep(lim, now)
		}
		e = &ipEntry{tokens: lim.size(), last: now}
		t.m[a] = e
	}
	if lim.perIP > 0 && e.open >= lim.perIP {
		return refusedPerIP, reasonPerIP, false
	}
	if lim.rate > 0 {
		e.refill(lim, now)
		if e.tokens < 1 {
			return refusedRate, reasonRate, false
		}
		e.tokens--
	}
	e.open++
	return "", "", true
}

// release ends a connection admit counted (held true).
func (t *ipLimiter) release(a netip.Addr) {
	a = limitKey(a)
	t.mu.Lock()
	if e := t.m[a]; e != nil && e.open > 0 {
		e.open--
	}
	t.mu.Unlock()
}

// limitKey is the client a per-IP limit counts: an IPv4 address, or an
// IPv6 address's /64 (one host usually has a whole /64, so counting single
// IPv6 addresses would let it open connections without bound).
func limitKey(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// refill brings the bucket up to now: rate tokens a second, at most the
// bucket's size. A clock that went back adds nothing.
func (e *ipEntry) refill(lim ipLimits, now time.Time) {
	if d := now.Sub(e.last); d > 0 {
		e.tokens = min(lim.size(), e.tokens+d.Seconds()*lim.rate)
	}
	e.last = now
}

// idle: forgetting the entry loses nothing (no open connection, and its
// bucket would be full again by now).
func (e *ipEntry) idle(lim ipLimits, now time.Time) bool {
	if e.open > 0 {
		return false
	}
	if lim.rate <= 0 {
		return true
	}
	return e.tokens+now.Sub(e.last).Seconds()*lim.rate >= lim.size()
}

// sweep drops idle entries; when the table is still at its bound, every
// entry without an open connection too. The next size-triggered sweep
// comes once the table has grown by as much again, so sweeps cost O(1) a
// connection however full the table is. Call with t.mu held.
func (t *ipLimiter) sweep(lim ipLimits, now time.Time) {
	t.lastSweep = now
	for a, e := range t.m {
		if e.idle(lim, now) {
			delete(t.m, a)
		}
	}
	if len(t.m) >= ipTableMax {
		for a, e := range t.m {
			if e.open == 0 {
				delete(t.m, a)
			}
		}
	}
	t.sweepAt = max(ipTableMax, 2*len(t.m))
}

// len is the number of addresses remembered.
func (t *ipLimiter) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// handshakeSlots is the semaphore of max_handshakes: a connection holds a
// slot from accept until routed (passthrough) or until its TLS handshake
// ended (terminate, reencrypt).
type handshakeSlots chan struct{}

// slot is one held handshake slot; release gives it back once, however
// often it is called, from any goroutine.
type slot struct {
	sem  handshakeSlots
	done atomic.Bool
}

func (s *slot) release() {
	if s != nil && !s.done.Swap(true) {
		<-s.sem
	}
}

// handshakeSlot waits for a slot of the listener's max_handshakes n
// (n <= 0: no limit, nil slot) until deadline or until the listener
// stops. A reload that changes n makes a new semaphore; slots held in the
// old one are given back there.
func (l *listener) handshakeSlot(n int, deadline time.Time) (*slot, bool) {
	if n <= 0 {
		return nil, true
	}
	sem := l.hsSem.Load()
	for sem == nil || cap(*sem) != n {
		nu := make(handshakeSlots, n)
		if l.hsSem.CompareAndSwap(sem, &nu) {
			sem = &nu
			break
		}
		sem = l.hsSem.Load()
	}
	select { // the common case: a slot is free
	case *sem <- struct{}{}:
		return &slot{sem: *sem}, true
	default:
	}
	wait := time.NewTimer(time.Until(deadline))
	defer wait.Stop()
	select {
	case *sem <- struct{}{}:
		return &slot{sem: *sem}, true
	case <-wait.C:
	case <-l.done:
	}
	return nil, false
}

// failureLog bounds the warn lines of failed connections of one listener
// (log.failure_burst, log.failure_interval): at most burst lines of one
// kind (listener and reason class) per interval; the rest are counted and
// reported in one line when the interval ends. A scan cannot flood the log.
type failureLog struct {
	mu    sync.Mutex
	kinds map[failureKey]*failureWindow
	// summary writes the line for n failures left out (set by the listener).
	summary func(listener, class, lastReason string, n int)
}

type failureKey struct{ listener, class string }

type failureWindow struct {
	start   time.Time
	logged  int
	dropped int
	reason  string // the last reason dropped, as an example
	timer   *time.Timer
}

// allow reports whether a failure line of this listener and reason may be
// written at now. burst <= 0 allows every line.
func (f *failureLog) allow(listener, reason string, burst int, interval time.Duration, now time.Time) bool {
	if burst <= 0 {
		return true
	}
	if interval <= 0 {
		interval = DefaultFailureInterval
	}
	k := failureKey{listener, reasonClass(reason)}
	f.mu.Lock()
	if f.kinds == nil {
		f.kinds = map[failureKey]*failureWindow{}
	}
	w := f.kinds[k]
	var flush *failureWindow
	if w != nil && now.Sub(w.start) >= interval {
		// The window is over: its summary is due now (its timer may not
		// have fired yet), and a new window starts.
		if w.timer != nil {
			w.timer.Stop()
		}
		if w.dropped > 0 {
			flush = w
		}
		w = nil
	}
	if w == nil {
		w = &failureWindow{start: now}
		f.kinds[k] = w
	}
	ok := w.logged < burst
	if ok {
		w.logged++
	} else {
		w.dropped++
		w.reason = reason
		if w.timer == nil {
			w.timer = time.AfterFunc(interval-now.Sub(w.start), func() { f.flush(k, w) })
		}
	}
	f.mu.Unlock()
	if flush != nil && f.summary != nil {
		f.summary(k.listener, k.class, flush.reason, flush.dropped)
	}
	return ok
}

// flush ends window w of kind k, when it is still the current one, and
// writes its summary line.
func (f *failureLog) flush(k failureKey, w *failureWindow) {
	f.mu.Lock()
	if f.kinds[k] != w || w.dropped == 0 {
		f.mu.Unlock()
		return
	}
	delete(f.kinds, k)
	n, reason := w.dropped, w.reason
	f.mu.Unlock()
	if f.summary != nil {
		f.summary(k.listener, k.class, reason, n)
	}
}

// failureSummary is the message of the line that reports n failure lines
// left out.
func failureSummary(n int) string {
	return fmt.Sprintf("%d more failures like this in the last interval", n)
}
