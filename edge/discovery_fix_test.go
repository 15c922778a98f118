package edge

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/tlsedge/tlsedge/internal/dnszone"
)

// discMembersOf returns the addresses of p's servers that came from DNS.
func discMembersOf(p *Pool) []string {
	var out []string
	for _, s := range p.Servers {
		if p.discSource(s.Address) == "dns" {
			out = append(out, s.Address)
		}
	}
	return out
}

// Changing discovery while DNS fails never empties the pool: the same name
// starts from the old set (no lookup while the pool is built); a new name
// that fails to resolve (SERVFAIL, NXDOMAIN) keeps the old set; a new name
// that resolves replaces it.
func TestDiscChangeWhileDNSFails(t *testing.T) {
	t.Parallel()
	z := dnszone.Start(t)
	z.SetSRV("_api._tcp.disc.test", "1 5 9003 a.disc.test")
	z.SetAddrs("a.disc.test", "127.0.0.1")
	p, err := newPool(discBackend(t, z.Addr, "_api._tcp.disc.test"), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"127.0.0.1:9003"}
	if got := discMembersOf(p); !slices.Equal(got, want) {
		t.Fatalf("first pool: dns servers %v; want %v", got, want)
	}
	z.SetMode("servfail")
	// Same name, new refresh and resolver.
	bc := discBackend(t, z.Addr, "_api._tcp.disc.test")
	bc.Discovery.Refresh = 3 * time.Second
	p2, err := newPool(bc, p)
	if err != nil {
		t.Fatal(err)
	}
	if got := discMembersOf(p2); p2.disc == p.disc || !slices.Equal(got, want) {
		t.Errorf("same name, DNS failing: dns servers %v (new discoverer %v); want %v", got, p2.disc != p.disc, want)
	}
	if n := z.Count("_api._tcp.disc.test", "SRV"); n != 1 {
		t.Errorf("same name: %d SRV queries; want 1 (none while the pool is built)", n)
	}
	// Its first lookup follows the usual rules: an error keeps the set.
	if p2.disc.record(discAnswer{result: discError, err: errors.New("SERVFAIL")}, time.Now()) || !slices.Equal(p2.disc.current(), p.disc.current()) {
		t.Errorf("same name: a failed first lookup changed the set to %v", p2.disc.current())
	}
	// New name, SERVFAIL: the old set stays.
	p3, err := newPool(discBackend(t, z.Addr, "_other._tcp.disc.test"), p2)
	if err != nil {
		t.Fatal(err)
	}
	if got := discMembersOf(p3); !slices.Equal(got, want) || p3.disc.result != discError {
		t.Errorf("new name, SERVFAIL: dns servers %v, result %s; want %v, error", got, p3.disc.result, want)
	}
	// New name, NXDOMAIN: kept (its NXDOMAIN run starts now).
	z.SetMode("")
	p4, err := newPool(discBackend(t, z.Addr, "_nothing._tcp.disc.test"), p3)
	if err != nil {
		t.Fatal(err)
	}
	if got := discMembersOf(p4); !slices.Equal(got, want) || p4.disc.result != discNXDomain || p4.disc.nxSince.IsZero() {
		t.Errorf("new name, NXDOMAIN: dns servers %v, result %s, nxdomain since %v; want %v, nxdomain, set",
			got, p4.disc.result, p4.disc.nxSince, want)
	}
	// New name that resolves: its servers replace the old ones.
	z.SetSRV("_other._tcp.disc.test", "1 5 9004 a.disc.test")
	p5, err := newPool(discBackend(t, z.Addr, "_other._tcp.disc.test"), p4)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := discMembersOf(p5), []string{"127.0.0.1:9004"}; !slices.Equal(got, want) {
		t.Errorf("new name, ok: dns servers %v; want %v", got, want)
	}
}

// The same name carries the NXDOMAIN run over: the new discoverer empties
// the set once the run that began under the old one lasts refresh × 3.
func TestDiscChangeKeepsNXDomainRun(t *testing.T) {
	t.Parallel()
	t0 := time.Now().Add(-time.Hour)
	set := []discServer{{"10.0.0.1:80", 1}}
	bc := discBackend(t, "127.0.0.1:1", "_api._tcp.disc.test")
	bc.Discovery.Refresh = 10 * time.Second
	old := newDiscoverer(bc, nil) // its lookup fails (nothing on port 1)
	old.mu.Lock()
	old.servers, old.nxSince = set, t0
	old.mu.Unlock()
	bc2 := discBackend(t, "127.0.0.1:1", "_API._tcp.disc.test.") // the same name, written otherwise
	bc2.Discovery.Refresh = 20 * time.Second
	d := newDiscoverer(bc2, old)
	if !slices.Equal(d.current(), set) || !d.nxSince.Equal(t0) || d.first != nil {
		t.Fatalf("seeded: set %v, nxdomain since %v, first lookup %v; want %v, %v, none", d.current(), d.nxSince, d.first, set, t0)
	}
	if d.record(discAnswer{result: discNXDomain}, t0.Add(59*time.Second)) || !slices.Equal(d.current(), set) {
		t.Errorf("NXDOMAIN for 59s (refresh 20s): set %v; want kept", d.current())
	}
	if !d.record(discAnswer{result: discNXDomain}, t0.Add(60*time.Second)) || len(d.current()) != 0 {
		t.Errorf("NXDOMAIN for 60s (refresh 20s): set %v; want emptied", d.current())
	}
}

// discPanicErr panics from its second Error call on (record calls it
// first, logLocked second, with d.mu held).
type discPanicErr struct{ calls atomic.Int32 }

func (e *discPanicErr) Error() string {
	if e.calls.Add(1) > 1 {
		panic("discPanicErr")
	}
	return "first"
}

// A panic while a step holds d.mu (in logLocked) is recovered and leaves
// d usable: the loop goes on and current/info do not block.
func TestDiscStepPanicUnlocks(t *testing.T) {
	t.Parallel()
	d := &discoverer{backend: "api", refresh: time.Hour}
	d.lookup = func(context.Context) discAnswer { return discAnswer{result: discError, err: &discPanicErr{}} }
	e := &Edge{log: zerolog.Nop()}
	done := make(chan bool, 1)
	go func() { done <- d.safeStep(context.Background(), e) }()
	select {
	case goOn := <-done:
		if !goOn {
			t.Errorf("safeStep after a panic = false; want true (the loop goes on)")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("safeStep did not return after a panic: d.mu left locked")
	}
	got := make(chan int, 1)
	go func() { d.info(); got <- len(d.current()) }()
	select {
	case <-got:
	case <-time.After(30 * time.Second):
		t.Fatal("info/current blocked after a recovered panic")
	}
}

// Each lookup of the loop has a deadline of min(refresh, 10s).
func TestDiscLoopLookupDeadline(t *testing.T) {
	t.Parallel()
	for refresh, limit := range map[time.Duration]time.Duration{3 * time.Second: 3 * time.Second, time.Hour: 10 * time.Second} {
		d := &discoverer{backend: "api", refresh: refresh}
		var left time.Duration
		var has bool
		d.lookup = func(ctx context.Context) discAnswer {
			var dl time.Time
			dl, has = ctx.Deadline()
			left = time.Until(dl)
			return discAnswer{result: discEmpty}
		}
		if !d.step(context.Background(), &Edge{log: zerolog.Nop()}) {
			t.Fatalf("refresh %v: step = false", refresh)
		}
		if !has || left > limit || left <= 0 {
			t.Errorf("refresh %v: lookup deadline %v (set %v) away; want set, at most %v", refresh, left, has, limit)
		}
	}
}

// One SRV target that does not resolve keeps its previous addresses (on
// its record's port and weight) and without any is left out, the rest of
// the answer used; an AAAA SERVFAIL for a name with A answers is not a
// failure (its previous IPv6 addresses are kept).
func TestDiscPartialFailures(t *testing.T) {
	t.Parallel()
	z := dnszone.Start(t)
	z.SetSRV("_api._tcp.disc.test", "1 5 9001 a.disc.test", "1 7 9002 b.disc.test")
	z.SetAddrs("a.disc.test", "10.0.0.1")
	z.SetAddrs("b.disc.test", "10.0.0.2", "fd00::2")
	r := discResolver{server: z.Addr}
	ctx := context.Background()
	srv := discTarget{name: "_api._tcp.disc.test."}
	first := r.lookup(ctx, srv, nil)
	all := []discServer{{"10.0.0.1:9001", 5}, {"10.0.0.2:9002", 7}, {"[fd00::2]:9002", 7}}
	if first.result != discOK || !slices.Equal(first.servers, all) {
		t.Fatalf("first lookup = %s %v (%v); want ok %v", first.result, first.servers, first.err, all)
	}
	z.SetAddrs("b.disc.test", "10.0.0.99") // not seen: b fails
	z.SetFail("b.disc.test", "A", true)
	z.SetFail("b.disc.test", "AAAA", true)
	a := r.lookup(ctx, srv, first.addrs)
	if a.result != discOK || !slices.Equal(a.servers, all) || a.err == nil || !strings.Contains(a.err.Error(), "b.disc.test") {
		t.Errorf("b failing, known: lookup = %s %v (%v); want ok %v and an error naming b.disc.test", a.result, a.servers, a.err, all)
	}
	if a := r.lookup(ctx, srv, nil); a.result != discOK || !slices.Equal(a.servers, all[:1]) {
		t.Errorf("b failing, nothing known: lookup = %s %v (%v); want ok %v", a.result, a.servers, a.err, all[:1])
	}
	z.SetFail("a.disc.test", "A", true)
	z.SetFail("a.disc.test", "AAAA", true)
	if a := r.lookup(ctx, srv, nil); a.result != discError {
		t.Errorf("every target failing, nothing known: lookup = %s %v; want error", a.result, a.servers)
	}
	// Through a discoverer: the set it keeps is the known addresses.
	z.SetFail("a.disc.test", "A", false)
	z.SetFail("a.disc.test", "AAAA", false)
	z.SetFail("b.disc.test", "A", false)
	z.SetFail("b.disc.test", "AAAA", false)
	z.SetAddrs("b.disc.test", "10.0.0.2", "fd00::2")
	d := newDiscoverer(discBackend(t, z.Addr, "_api._tcp.disc.test"), nil)
	if !slices.Equal(d.current(), all) {
		t.Fatalf("discoverer: set %v; want %v", d.current(), all)
	}
	z.SetFail("b.disc.test", "AAAA", true)
	z.SetFail("b.disc.test", "A", true)
	if d.record(d.lookup(ctx), time.Now()) || !slices.Equal(d.current(), all) || d.result != discOK {
		t.Errorf("discoverer, b failing: set %v, result %s; want %v unchanged, ok", d.current(), d.result, all)
	}

	// A/AAAA name: AAAA SERVFAIL with A answers.
	z.SetAddrs("api.disc.test", "127.0.0.2", "::5")
	name := discTarget{name: "api.disc.test.", port: 8443}
	good := r.lookup(ctx, name, nil)
	both := []discServer{{"127.0.0.2:8443", 1}, {"[::5]:8443", 1}}
	if good.result != discOK || !slices.Equal(good.servers, both) {
		t.Fatalf("A/AAAA lookup = %s %v; want ok %v", good.result, good.servers, both)
	}
	z.SetFail("api.disc.test", "AAAA", true)
	if a := r.lookup(ctx, name, nil); a.result != discOK || !slices.Equal(a.servers, both[:1]) || a.err == nil {
		t.Errorf("AAAA SERVFAIL, nothing known: lookup = %s %v (%v); want ok %v with the error", a.result, a.servers, a.err, both[:1])
	}
	if a := r.lookup(ctx, name, good.addrs); a.result != discOK || !slices.Equal(a.servers, both) {
		t.Errorf("AAAA SERVFAIL, known: lookup = %s %v (%v); want ok %v (IPv6 kept)", a.result, a.servers, a.err, both)
	}
	z.SetFail("api.disc.test", "A", true)
	if a := r.lookup(ctx, name, good.addrs); a.result != discError {
		t.Errorf("A and AAAA SERVFAIL: lookup = %s %v; want error", a.result, a.servers)
	}
}
