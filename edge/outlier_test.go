package edge

import (
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/affinity"
)

func agIntp(n int) *int { return &n }

// The ejection state machine on a fake clock: threshold, reset by a
// success, growing time capped, decay per interval, return after the time.
func TestOutlierStateMachine(t *testing.T) {
	t.Parallel()
	set := agOutlierSettingsOf(&OutlierConfig{ConsecutiveFailures: agIntp(3), Consecutive5xx: 2,
		BaseEjectionTime: 10 * time.Second, MaxEjectionTime: 25 * time.Second, Interval: time.Minute})
	var o agOutlierState
	t0 := time.Unix(1000, 0)
	if o.failure("connect", set, t0) || o.failure("tls", set, t0) {
		t.Fatal("tripped before 3 failures")
	}
	o.success("connect")
	first, second, third := o.failure("connect", set, t0), o.failure("connect", set, t0), o.failure("connect", set, t0)
	if first || second || !third {
		t.Fatalf("3 failures after a success tripped %v %v %v: want a trip at the third only", first, second, third)
	}
	if d := o.eject("connect", set, t0); d != 10*time.Second || !o.ejected(t0.Add(9*time.Second)) {
		t.Fatalf("first ejection: %v, ejected at +9s %v; want 10s, true", d, o.ejected(t0.Add(9*time.Second)))
	}
	if o.failure("connect", set, t0.Add(time.Second)) {
		t.Fatal("a failure while ejected counted")
	}
	if o.expire(t0.Add(9 * time.Second)) {
		t.Fatal("expired before its time")
	}
	t1 := t0.Add(10 * time.Second)
	if !o.expire(t1) || o.ejected(t1) {
		t.Fatal("not back at its time")
	}
	// 5xx: its own count; an answer below 500 resets it.
	if o.failure("5xx", set, t1) {
		t.Fatal("tripped at one 5xx")
	}
	o.success("answer")
	o.failure("5xx", set, t1)
	if !o.failure("5xx", set, t1) {
		t.Fatal("2 5xx in a row: want a trip")
	}
	if d := o.eject("5xx", set, t1); d != 20*time.Second {
		t.Fatalf("second ejection: %v; want 2 × 10s", d)
	}
	t2 := t1.Add(20 * time.Second)
	o.expire(t2)
	if d := o.eject("connect", set, t2); d != 25*time.Second {
		t.Fatalf("third ejection: %v; want 30s capped at 25s", d)
	}
	t3 := t2.Add(25 * time.Second)
	o.expire(t3)
	// two intervals calm: the count 3 drops to 1, so the next is 2 × base
	if d := o.eject("connect", set, t3.Add(2*time.Minute)); d != 20*time.Second || o.total != 4 {
		t.Fatalf("after 2 calm intervals: %v, total %d; want 20s, 4", d, o.total)
	}
}

func TestOutlierDefaults(t *testing.T) {
	t.Parallel()
	s := agOutlierSettingsOf(&OutlierConfig{})
	want := agOutlierSettings{failures: 5, base: 30 * time.Second, maxTime: 300 * time.Second, maxPercent: 50, interval: 30 * time.Second}
	if *s != want {
		t.Errorf("defaults %+v; want %+v", *s, want)
	}
	if agOutlierSettingsOf(nil) != nil {
		t.Error("nil config: want nil settings")
	}
}

// max_ejection_percent and the last available server.
func TestOutlierBudget(t *testing.T) {
	t.Parallel()
	three := []*affinity.Server{affinity.NewServer("a:1", 1), affinity.NewServer("b:1", 1), affinity.NewServer("c:1", 1)}
	if !agMayEject(three, three[0], 50) {
		t.Fatal("1 of 3 at 50%: refused")
	}
	three[0].SetEjected(true)
	if agMayEject(three, three[1], 50) {
		t.Fatal("2 of 3 at 50%: allowed")
	}
	if !agMayEject(three, three[1], 100) {
		t.Fatal("2 of 3 at 100%: refused")
	}
	three[1].SetEjected(true)
	if agMayEject(three, three[2], 100) {
		t.Fatal("the last available server at 100%: allowed")
	}
	one := []*affinity.Server{affinity.NewServer("a:1", 1)}
	if agMayEject(one, one[0], 100) {
		t.Fatal("a pool's only server: allowed")
	}
}

// Through a pool with a fake clock: ejections stop at the budget, an
// ejected server is not picked, and it comes back when the timer fires.
func TestOutlierPool(t *testing.T) {
	t.Parallel()
	now := time.Unix(5000, 0)
	var timers []func()
	var durs []time.Duration
	bc := &BackendConfig{Name: "b", Retries: agIntp(0), Servers: []ServerConfig{
		{Address: "127.0.0.1:1", Weight: agIntp(1)}, {Address: "127.0.0.1:2", Weight: agIntp(1)}, {Address: "127.0.0.1:3", Weight: agIntp(1)}},
		Outlier: &OutlierConfig{ConsecutiveFailures: agIntp(2), BaseEjectionTime: 5 * time.Second}}
	p, err := newPool(bc, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.commit()
	p.outGroup.now = func() time.Time { return now }
	p.outGroup.after = func(d time.Duration, f func()) { durs = append(durs, d); timers = append(timers, f) }
	a, b := p.Servers[0], p.Servers[1]
	p.agFailure(a, "connect")
	p.agFailure(b, "connect")
	p.agFailure(a, "connect") // a: 2 in a row, ejected
	p.agFailure(b, "connect") // b: 2 in a row, over 50 % of 3
	if !a.Ejected() || b.Ejected() || len(timers) != 1 || durs[0] != 5*time.Second {
		t.Fatalf("ejected a=%v b=%v, timers %v; want a only, for 5s", a.Ejected(), b.Ejected(), durs)
	}
	for range 30 {
		if s := p.picker.Pick(p.Servers, affinity.Key{}, nil); s == a {
			t.Fatal("picked the ejected server")
		}
	}
	now = now.Add(5 * time.Second)
	timers[0]()
	if a.Ejected() {
		t.Fatal("not back after its time")
	}
	if until, total, reason := p.states[a].agEjectionInfo(); until != nil || total != 1 || reason != "connect" {
		t.Fatalf("info %v %d %q; want nil, 1, connect", until, total, reason)
	}
}
