package edge

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// t0 is the injected clock's start.
var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// Spec (docs/config.md): max_connections_per_ip "open connections of one
// client address ... excess ones are closed at once".
func TestIPLimiterOpenConnections(t *testing.T) {
	var l ipLimiter
	lim := ipLimits{perIP: 2}
	a := netip.MustParseAddr("192.0.2.1")
	b := netip.MustParseAddr("192.0.2.2")
	for i := range 2 {
		if kind, _, held := l.admit(a, lim, t0); kind != "" || !held {
			t.Fatalf("connection %d from %v: got refused %q, held %v; want admitted and held", i+1, a, kind, held)
		}
	}
	kind, reason, held := l.admit(a, lim, t0)
	if kind != refusedPerIP || reason != reasonPerIP || held {
		t.Errorf("third connection from %v: got %q %q held %v; want %q %q not held", a, kind, reason, held, refusedPerIP, reasonPerIP)
	}
	if kind, _, _ := l.admit(b, lim, t0); kind != "" {
		t.Errorf("first connection from another address %v: got refused %q; want admitted", b, kind)
	}
	l.release(a)
	if kind, _, _ := l.admit(a, lim, t0); kind != "" {
		t.Errorf("after one of two ended: got refused %q; want admitted", kind)
	}
	// An IPv4-mapped IPv6 address is the same client.
	if kind, _, _ := l.admit(netip.MustParseAddr("::ffff:192.0.2.1"), lim, t0); kind != refusedPerIP {
		t.Errorf("::ffff:192.0.2.1 with 192.0.2.1 at its cap: got %q; want %q", kind, refusedPerIP)
	}
}

// Spec: connection_rate_per_ip "new connections a second one client
// address may open (token bucket)", connection_burst_per_ip "the bucket's
// size".
func TestIPLimiterTokenBucket(t *testing.T) {
	tests := []struct {
		name  string
		rate  float64
		burst int
		// then: after sleeping `after`, `more` connections pass and the next is refused
		after time.Duration
		more  int
	}{
		{"rate 10 burst 5: 100ms buys one", 10, 5, 100 * time.Millisecond, 1},
		{"rate 10 burst 5: 1s refills to the burst, not beyond", 10, 5, time.Second, 5},
		{"rate 2 burst 0 is 4: 1s buys two", 2, 0, time.Second, 2},
		{"rate 0.5 burst 0 is 1: 1s buys none", 0.5, 0, time.Second, 0},
		{"rate 0.5 burst 0 is 1: 2s buys one", 0.5, 0, 2 * time.Second, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l ipLimiter
			lim := ipLimits{rate: tt.rate, burst: tt.burst}
			a := netip.MustParseAddr("198.51.100.7")
			now := t0
			n := 0
			for {
				kind, reason, _ := l.admit(a, lim, now)
				if kind != "" {
					if kind != refusedRate || reason != reasonRate {
						t.Fatalf("got %q %q; want %q %q", kind, reason, refusedRate, reasonRate)
					}
					break
				}
				l.release(a) // open connections are not what is limited here
				if n++; n > 100 {
					t.Fatal("more than 100 connections at once passed the bucket")
				}
			}
			if want := int(lim.size()); n != want {
				t.Errorf("burst: got %d connections at once; want %d", n, want)
			}
			now = now.Add(tt.after)
			got := 0
			for {
				kind, _, _ := l.admit(a, lim, now)
				if kind != "" {
					break
				}
				l.release(a)
				if got++; got > 100 {
					t.Fatal("runaway")
				}
			}
			if got != tt.more {
				t.Errorf("after %v: got %d more connections; want %d", tt.after, got, tt.more)
			}
			// Another address has its own bucket.
			if kind, _, _ := l.admit(netip.MustParseAddr("198.51.100.8"), lim, now); kind != "" {
				t.Errorf("another address: got refused %q; want admitted", kind)
			}
		})
	}
}

// A refused connection takes no token, and the per-address cap is checked
// first.
func TestIPLimiterRefusedTakesNothing(t *testing.T) {
	var l ipLimiter
	lim := ipLimits{perIP: 1, rate: 1, burst: 3}
	a := netip.MustParseAddr("203.0.113.9")
	if kind, _, _ := l.admit(a, lim, t0); kind != "" {
		t.Fatalf("first: got refused %q", kind)
	}
	for range 5 {
		if kind, _, _ := l.admit(a, lim, t0); kind != refusedPerIP {
			t.Fatalf("at the cap: got %q; want %q", kind, refusedPerIP)
		}
	}
	l.release(a)
	// Two tokens are left of three: two connections, one at a time, pass.
	for i := range 2 {
		if kind, _, _ := l.admit(a, lim, t0); kind != "" {
			t.Fatalf("connection %d after the refusals: got %q; want admitted (refusals take no token)", i+2, kind)
		}
		l.release(a)
	}
	if kind, _, _ := l.admit(a, lim, t0); kind != refusedRate {
		t.Errorf("fourth at once: got %q; want %q", kind, refusedRate)
	}
}

// No limit: nothing is remembered, nothing held.
func TestIPLimiterOff(t *testing.T) {
	var l ipLimiter
	for i := range 1000 {
		a := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		if kind, _, held := l.admit(a, ipLimits{}, t0); kind != "" || held {
			t.Fatalf("unlimited: got %q held %v; want admitted, not held", kind, held)
		}
	}
	if n := l.len(); n != 0 {
		t.Errorf("unlimited: %d addresses remembered; want 0", n)
	}
}

// The table forgets idle addresses (no open connection, full bucket) and
// stays bounded under a scan from many addresses; addresses with open
// connections are never forgotten.
func TestIPLimiterForgetsAndBounds(t *testing.T) {
	var l ipLimiter
	lim := ipLimits{perIP: 1, rate: 10, burst: 20}
	keep := netip.MustParseAddr("192.0.2.200")
	if kind, _, _ := l.admit(keep, lim, t0); kind != "" {
		t.Fatal(kind)
	}
	now := t0
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}) }
	for i := range 3 * ipTableMax {
		if i%1000 == 0 {
			now = now.Add(time.Millisecond)
		}
		a := addr(i)
		if kind, _, _ := l.admit(a, lim, now); kind != "" {
			t.Fatalf("address %v: got refused %q", a, kind)
		}
		l.release(a)
		if n := l.len(); n > ipTableMax+1 {
			t.Fatalf("after %d addresses: %d remembered; want at most %d", i+1, n, ipTableMax+1)
		}
	}
	if kind, _, _ := l.admit(keep, lim, now); kind != refusedPerIP {
		t.Errorf("an address with an open connection after the scan: got %q; want %q (never forgotten)", kind, refusedPerIP)
	}
	// Once every bucket is full again (2s at 10/s for 20), a sweep (due
	// every ipSweepEvery) forgets all idle addresses.
	now = now.Add(ipSweepEvery)
	if kind, _, _ := l.admit(netip.MustParseAddr("192.0.2.201"), lim, now); kind != "" {
		t.Fatal(kind)
	}
	if n := l.len(); n != 2 {
		t.Errorf("after %v: %d addresses remembered; want 2 (the two with open connections)", ipSweepEvery, n)
	}
}

// Concurrent admits and releases never lose a count (run with -race).
func TestIPLimiterConcurrent(t *testing.T) {
	var l ipLimiter
	lim := ipLimits{perIP: 1000, rate: 1e6, burst: 1e6}
	a := netip.MustParseAddr("192.0.2.50")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 500 {
				if kind, _, _ := l.admit(a, lim, t0); kind == "" {
					l.release(a)
				}
			}
		})
	}
	wg.Wait()
	l.mu.Lock()
	open := l.m[a].open
	l.mu.Unlock()
	if open != 0 {
		t.Errorf("open after balanced admits and releases: got %d; want 0", open)
	}
}

// Spec: max_handshakes "a new connection waits for a slot at most
// clienthello_timeout, then is closed".
func TestHandshakeSlots(t *testing.T) {
	l := &listener{done: make(chan struct{})}
	far := time.Now().Add(time.Minute)
	s1, ok1 := l.handshakeSlot(2, far)
	s2, ok2 := l.handshakeSlot(2, far)
	if !ok1 || !ok2 {
		t.Fatalf("two slots of 2: got %v %v; want both", ok1, ok2)
	}
	start := time.Now()
	if _, ok := l.handshakeSlot(2, start.Add(100*time.Millisecond)); ok {
		t.Fatal("a third slot of 2: got one; want none")
	}
	if d := time.Since(start); d < 90*time.Millisecond || d > 5*time.Second {
		t.Errorf("a third slot was refused after %v; want after its 100ms wait", d)
	}
	// A waiter gets the slot given back.
	got := make(chan bool, 1)
	go func() { _, ok := l.handshakeSlot(2, time.Now().Add(10*time.Second)); got <- ok }()
	time.Sleep(20 * time.Millisecond)
	s1.release()
	s1.release() // once only
	select {
	case ok := <-got:
		if !ok {
			t.Fatal("waiter: got no slot; want the one released")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waiter: no slot within 5s of a release")
	}
	if n := len(*l.hsSem.Load()); n != 2 {
		t.Errorf("slots in use after a double release and a new holder: got %d; want 2", n)
	}
	// A reload to another size starts a new semaphore; old holders give
	// back to the old one.
	if _, ok := l.handshakeSlot(3, far); !ok {
		t.Error("after max_handshakes 2 -> 3: got no slot; want one")
	}
	s2.release()
	// The listener stopping ends the wait.
	for range 2 {
		l.handshakeSlot(3, far)
	}
	close(l.done)
	if _, ok := l.handshakeSlot(3, far); ok {
		t.Error("full, listener stopped: got a slot; want none")
	}
	if s, ok := l.handshakeSlot(0, far); !ok || s != nil {
		t.Errorf("max_handshakes 0: got %v %v; want no slot needed", s, ok)
	}
	var none *slot
	none.release() // a nil slot is a no-op
}

// Spec: log.failure_burst "at most this many lines of one kind (listener
// and reason) each failure_interval, then one line saying how many more
// were left out".
func TestFailureLog(t *testing.T) {
	type line struct {
		listener, class, reason string
		n                       int
	}
	var mu sync.Mutex
	var lines []line
	f := &failureLog{summary: func(listener, class, reason string, n int) {
		mu.Lock()
		lines = append(lines, line{listener, class, reason, n})
		mu.Unlock()
	}}
	const burst = 3
	interval := time.Hour // the timer never fires in this test; windows end by the clock
	now := t0
	allowed := func(listener, reason string, count int) int {
		ok := 0
		for range count {
			if f.allow(listener, reason, burst, interval, now) {
				ok++
			}
		}
		return ok
	}
	if got := allowed("public", "not TLS", 100); got != burst {
		t.Errorf("100 failures of one kind: %d lines allowed; want %d", got, burst)
	}
	// Another kind, another listener: their own budgets.
	if got := allowed("public", reasonRate, 2); got != 2 {
		t.Errorf("another reason: %d lines allowed; want 2", got)
	}
	if got := allowed("admin", "not TLS", 5); got != burst {
		t.Errorf("another listener: %d lines allowed; want %d", got, burst)
	}
	// Reasons of one class are one kind.
	if got := allowed("public", "malformed client hello: x", 1); got != 0 {
		t.Errorf("a reason of the same class (bad_hello): %d allowed; want 0", got)
	}
	if len(lines) != 0 {
		t.Fatalf("summaries before the interval ended: %v", lines)
	}
	// The next failure after the interval writes the summary first.
	now = now.Add(interval)
	if got := allowed("public", "not TLS", 1); got != 1 {
		t.Errorf("first failure of a new interval: %d allowed; want 1", got)
	}
	want := line{"public", "bad_hello", "malformed client hello: x", 100 - burst + 1}
	if len(lines) != 1 || lines[0] != want {
		t.Errorf("summaries: got %+v; want [%+v]", lines, want)
	}
	if got, want := failureSummary(97), "97 more failures like this in the last interval"; got != want {
		t.Errorf("summary message: got %q; want %q", got, want)
	}
	// burst 0: every line.
	if got := allowed("public", "not TLS", 50); got != burst-1 {
		t.Errorf("rest of the new window: %d allowed; want %d", got, burst-1)
	}
	for i := range 50 {
		if !f.allow("public", "not TLS", 0, interval, now) {
			t.Fatalf("failure_burst 0: line %d refused; want every line", i+1)
		}
	}
}

// The summary comes by itself when the interval ends, exactly once.
func TestFailureLogTimer(t *testing.T) {
	got := make(chan string, 10)
	f := &failureLog{summary: func(listener, class, _ string, n int) {
		got <- fmt.Sprintf("%s %s %d", listener, class, n)
	}}
	now := time.Now()
	for range 10 {
		f.allow("public", reasonPerIP, 2, 50*time.Millisecond, now)
	}
	select {
	case s := <-got:
		if want := "public per_ip 8"; s != want {
			t.Errorf("summary: got %q; want %q", s, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no summary within 5s of a 50ms interval")
	}
	// A failure in the next window does not repeat the summary.
	f.allow("public", reasonPerIP, 2, 50*time.Millisecond, time.Now())
	select {
	case s := <-got:
		t.Errorf("a second summary %q; want one only", s)
	case <-time.After(200 * time.Millisecond):
	}
}
