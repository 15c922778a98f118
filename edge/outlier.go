package edge

import (
	"strings"
	"sync"
	"time"

	"github.com/tlsedge/tlsedge/affinity"
	"github.com/tlsedge/tlsedge/tlsmode"
)

// Passive ejection (Envoy's outlier detection): real traffic that fails
// takes a server out of picking for a while, before the next health check
// would notice.
//
//   - consecutive_failures connect failures or TLS handshake failures to
//     the server (reencrypt) in a row, or consecutive_5xx 5xx answers in a
//     row (http routes, when set), eject it;
//   - an ejection lasts base_ejection_time × the server's ejection count
//     (this one included), at most max_ejection_time; each interval spent
//     without an ejection takes one off the count;
//   - at most max_ejection_percent of the pool's servers are ejected at
//     once, and never the pool's last available server: a server that
//     trips past that budget stays in, and trips again on its next failure;
//   - an ejected server takes no new connections (its live ones carry on)
//     and comes back by itself once its time is up; a success resets its
//     failure count.
//
// Ejection is each instance's own view: two instances may eject different
// servers, and while one server is ejected on one of them only, their
// choices for that server's keys differ.
const (
	agOutlierDefaultFailures   = 5
	agOutlierDefaultBase       = 30 * time.Second
	agOutlierDefaultMaxTime    = 300 * time.Second
	agOutlierDefaultMaxPercent = 50
)

// agOutlierSettings is OutlierConfig with its defaults.
type agOutlierSettings struct {
	failures, fivexx int // thresholds; 0 = off
	base, maxTime    time.Duration
	maxPercent       int
	interval         time.Duration
}

// agOutlierSettingsOf returns the settings of oc, nil when oc is nil.
func agOutlierSettingsOf(oc *OutlierConfig) *agOutlierSettings {
	if oc == nil {
		return nil
	}
	s := &agOutlierSettings{failures: agOutlierDefaultFailures, fivexx: oc.Consecutive5xx,
		base: oc.BaseEjectionTime, maxTime: oc.MaxEjectionTime, maxPercent: agOutlierDefaultMaxPercent, interval: oc.Interval}
	if oc.ConsecutiveFailures != nil {
		s.failures = *oc.ConsecutiveFailures
	}
	if oc.MaxEjectionPercent != nil {
		s.maxPercent = *oc.MaxEjectionPercent
	}
	if s.base <= 0 {
		s.base = agOutlierDefaultBase
	}
	if s.maxTime <= 0 {
		s.maxTime = agOutlierDefaultMaxTime
	}
	s.maxTime = max(s.maxTime, s.base)
	if s.interval <= 0 {
		s.interval = s.base
	}
	return s
}

// agOutlierState is one server's passive ejection state: a pure state
// machine driven with explicit times (tests use a fake clock). The
// serverState holding it guards it with its mu.
type agOutlierState struct {
	fails, fails5xx int       // failures in a row
	count           int       // ejections not yet forgiven: the time multiplier
	total           int       // ejections ever
	until           time.Time // the current ejection's end; zero = not ejected
	calmSince       time.Time // when the last ejection ended (the decay's start)
	lastReason      string    // what tripped the last ejection
}

// ejected reports whether an ejection is in force at now.
func (o *agOutlierState) ejected(now time.Time) bool {
	return !o.until.IsZero() && now.Before(o.until)
}

// failure counts a failure of kind ("connect", "tls" or "5xx") and reports
// whether it reaches its threshold (the caller then decides on eject).
// Failures of a server already ejected (its live connections) are not
// counted.
func (o *agOutlierState) failure(kind string, set *agOutlierSettings, now time.Time) bool {
	if o.ejected(now) {
		return false
	}
	if kind == "5xx" {
		o.fails5xx++
		return set.fivexx > 0 && o.fails5xx >= set.fivexx
	}
	o.fails++
	return set.failures > 0 && o.fails >= set.failures
}

// success resets the failure count of kind: "connect" (a connect, or a
// TLS handshake, that worked) or "answer" (an HTTP answer below 500, which
// also proves the connection).
func (o *agOutlierState) success(kind string) {
	o.fails = 0
	if kind == "answer" {
		o.fails5xx = 0
	}
}

// eject starts an ejection at now for reason and returns how long it lasts:
// base × the count (after the interval decay), at most maxTime.
func (o *agOutlierState) eject(reason string, set *agOutlierSettings, now time.Time) time.Duration {
	if !o.calmSince.IsZero() && set.interval > 0 {
		o.count = max(o.count-int(now.Sub(o.calmSince)/set.interval), 0)
	}
	o.count++
	o.total++
	d := set.maxTime
	if o.count <= int(set.maxTime/set.base) {
		d = min(set.base*time.Duration(o.count), set.maxTime)
	}
	o.until = now.Add(d)
	o.fails, o.fails5xx = 0, 0
	o.lastReason = reason
	return d
}

// expire ends the ejection if its time is up at now; true when it did.
func (o *agOutlierState) expire(now time.Time) bool {
	if o.until.IsZero() || now.Before(o.until) {
		return false
	}
	o.until = time.Time{}
	o.calmSince = now
	return true
}

// agMayEject reports whether s of servers may be ejected now: the ejected
// servers, s included, stay within maxPercent of the pool, and another
// server stays available.
func agMayEject(servers []*affinity.Server, s *affinity.Server, maxPercent int) bool {
	ejected, others := 0, 0
	for _, o := range servers {
		if o.Ejected() {
			ejected++
		}
		if o != s && o.Available() {
			others++
		}
	}
	return others > 0 && (ejected+1)*100 <= maxPercent*len(servers)
}

// agOutlierGroup serializes a pool's ejection decisions (the percentage
// bound looks at every server); shared across reloads like the queue.
type agOutlierGroup struct {
	mu    sync.Mutex
	now   func() time.Time
	after func(time.Duration, func()) // time.AfterFunc; tests replace both
}

func newAgOutlierGroup() *agOutlierGroup {
	return &agOutlierGroup{now: time.Now, after: func(d time.Duration, f func()) { time.AfterFunc(d, f) }}
}

// agFailure counts a failure of kind on s and ejects it when that reaches
// the threshold and the pool's budget allows.
func (p *Pool) agFailure(s *affinity.Server, kind string) {
	set, st := p.outlier, p.state(s)
	if set == nil || st == nil {
		return
	}
	g := p.outGroup
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	st.mu.Lock()
	trip := st.out.failure(kind, set, now)
	st.mu.Unlock()
	if !trip || !agMayEject(p.Servers, s, set.maxPercent) {
		return
	}
	st.mu.Lock()
	d := st.out.eject(kind, set, now)
	n := st.out.count
	st.mu.Unlock()
	s.SetEjected(true)
	threshold := set.failures
	if kind == "5xx" {
		threshold = set.fivexx
	}
	if p.m != nil && p.m.discEdge != nil {
		p.m.discEdge.log.Warn().Str("backend", p.Name).Str("server", s.Address).Str("reason", kind).
			Int("consecutive", threshold).Dur("ejection_time", d).Int("ejections", n).
			Msg("server ejected (passive: failures on real traffic)")
	}
	p.m.agEjected(p.Name, s.Address, kind)
	name, m := p.Name, p.m
	g.after(d, func() { agExpire(g, name, m, st) })
}

// agExpire brings st's server back if its ejection is over.
func agExpire(g *agOutlierGroup, pool string, m *metrics, st *serverState) {
	g.mu.Lock()
	defer g.mu.Unlock()
	st.mu.Lock()
	done := st.out.expire(g.now())
	st.mu.Unlock()
	if !done {
		return
	}
	st.srv.SetEjected(false)
	if m != nil && m.discEdge != nil {
		m.discEdge.log.Info().Str("backend", pool).Str("server", st.srv.Address).Msg("server back from ejection")
	}
}

// agSuccess resets s's failure count of kind (see agOutlierState.success).
func (p *Pool) agSuccess(s *affinity.Server, kind string) {
	if p.outlier == nil {
		return
	}
	if st := p.state(s); st != nil {
		st.mu.Lock()
		st.out.success(kind)
		st.mu.Unlock()
	}
}

// agReencryptRelease returns the Release of an upstream of a reencrypt
// route: when the connection ends, the close reason tells whether the
// TLS handshake with the server failed (tlsmode sets "server tls
// handshake: ..." before closing the upstream).
func (p *Pool) agReencryptRelease(c *tlsmode.Conn, s *affinity.Server) func() {
	return func() {
		if strings.HasPrefix(c.Reason, "server tls handshake") {
			p.agFailure(s, "tls")
		} else {
			p.agSuccess(s, "connect")
		}
		s.Release()
	}
}

// agOutlierRequest feeds one HTTP answer of an http route to passive
// ejection: 5xx counts towards consecutive_5xx, any other status resets
// it. connEvents.Request calls it with the status and the server that
// answered (nil: tlsedge answered itself).
func agOutlierRequest(c *tlsmode.Conn, s *affinity.Server, status int) {
	r := routeOf(c)
	if r == nil || r.pool == nil || s == nil || r.pool.outlier == nil {
		return
	}
	if status >= 500 {
		r.pool.agFailure(s, "5xx")
		return
	}
	r.pool.agSuccess(s, "answer")
}

// agEjectionInfo returns the ejection in force (nil: none), the ejections
// ever and what tripped the last one.
func (st *serverState) agEjectionInfo() (until *time.Time, total int, reason string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.out.until.IsZero() {
		u := st.out.until
		until = &u
	}
	return until, st.out.total, st.out.lastReason
}

// agEndEjection ends an ejection at once (passive ejection turned off by
// a reload).
func (st *serverState) agEndEjection() {
	st.mu.Lock()
	st.out.until = time.Time{}
	st.mu.Unlock()
	st.srv.SetEjected(false)
}

// agValidate checks a backend's health.agent and outlier keys.
func agValidate(ps *Problems, p string, b *BackendConfig) {
	if a := b.Health.Agent; a != nil {
		ap := p + ".health.agent"
		if a.Port < 1 || a.Port > 65535 {
			ps.Add(ap+".port", "%d: must be the agent's TCP port, 1 to 65535", a.Port)
		}
		if a.Interval < 0 {
			ps.Add(ap+".interval", "must be positive, e.g. 2s")
		}
		if a.Timeout < 0 {
			ps.Add(ap+".timeout", "must be positive, e.g. 1s")
		}
		if _, iv, _ := agAgentSettings(a); a.Timeout > iv {
			ps.Add(ap+".timeout", "%v is longer than the interval %v: an agent check must end before the next", a.Timeout, iv)
		}
	}
	o := b.Outlier
	if o == nil {
		return
	}
	op := p + ".outlier"
	if n := o.ConsecutiveFailures; n != nil && (*n < 0 || *n > 1000) {
		ps.Add(op+".consecutive_failures", "%d: must be from 0 (off) to 1000, e.g. 5", *n)
	}
	if n := o.Consecutive5xx; n < 0 || n > 1000 {
		ps.Add(op+".consecutive_5xx", "%d: must be from 0 (off) to 1000, e.g. 5 (http routes)", n)
	}
	if o.ConsecutiveFailures != nil && *o.ConsecutiveFailures == 0 && o.Consecutive5xx == 0 {
		ps.Add(op, "consecutive_failures and consecutive_5xx are both 0 (off): nothing would eject a server; remove outlier or set one")
	}
	if o.BaseEjectionTime < 0 {
		ps.Add(op+".base_ejection_time", "must be positive, e.g. 30s")
	}
	if o.MaxEjectionTime < 0 {
		ps.Add(op+".max_ejection_time", "must be positive, e.g. 300s")
	}
	if set := agOutlierSettingsOf(o); o.MaxEjectionTime > 0 && o.MaxEjectionTime < set.base {
		ps.Add(op+".max_ejection_time", "%v is shorter than base_ejection_time %v", o.MaxEjectionTime, set.base)
	}
	if n := o.MaxEjectionPercent; n != nil && (*n < 0 || *n > 100) {
		ps.Add(op+".max_ejection_percent", "%d: must be a percentage of the pool's servers, 0 to 100, e.g. 50", *n)
	}
	if o.Interval < 0 {
		ps.Add(op+".interval", "must be positive, e.g. 30s")
	}
}
