package affinity

import (
	"fmt"
	"math"
	"testing"
)

// Keys assigned one by one, each connection staying open (Acquire on the
// chosen server): after every step, no server holds more than
// ceil(factor × total × weight / sumWeights).
func TestBoundedInvariant(t *testing.T) {
	const steps = 10_000
	tests := []struct {
		name    string
		factor  float64
		weights []int
		keys    func() []Key
	}{
		{"1.25 equal", 1.25, []int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, func() []Key { return testKeys(steps) }},
		{"1.25 weighted", 1.25, []int{1, 2, 3, 4}, func() []Key { return testKeys(steps) }},
		{"1.01 equal", 1.01, []int{1, 1, 1, 1, 1}, func() []Key { return testKeys(steps) }},
		{"2 weighted", 2, []int{5, 1, 1, 1}, func() []Key { return testKeys(steps) }},
		// One hot client network: every key identical, so plain consistent
		// hashing would put everything on one server.
		{"1.25 one hot key", 1.25, []int{1, 1, 1, 1, 1, 1}, func() []Key { return sameKeys(steps) }},
		{"1.5 one hot key weighted", 1.5, []int{3, 1, 2}, func() []Key { return sameKeys(steps) }},
		{"1.25 100 servers hot key", 1.25, ones(100), func() []Key { return sameKeys(steps) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustPicker(t, Config{Affinity: ClassC, HashBalanceFactor: tt.factor})
			servers := newServers(len(tt.weights), tt.weights)
			sumW := 0
			for _, w := range tt.weights {
				sumW += w
			}
			for step, k := range tt.keys() {
				s := p.Pick(servers, k, nil)
				if s == nil {
					t.Fatalf("step %d: got nil; want a server", step)
				}
				s.Acquire()
				total := step + 1
				for i, s := range servers {
					limit := int64(math.Ceil(tt.factor * float64(total) * float64(tt.weights[i]) / float64(sumW)))
					if s.Active() > limit {
						t.Fatalf("step %d: %s has %d connections; want at most %d", step, s.Address, s.Active(), limit)
					}
				}
			}
		})
	}
}

func sameKeys(n int) []Key {
	keys := make([]Key, n)
	for i := range keys {
		keys[i] = Key{Hash: 0x1234, Valid: true}
	}
	return keys
}

func ones(n int) []int {
	w := make([]int, n)
	for i := range w {
		w[i] = 1
	}
	return w
}

// While every server is below its cap, bounded load picks exactly what plain
// rendezvous hashing picks; a full server hands the key to the key's
// next-ranked server.
func TestBoundedFollowsRanking(t *testing.T) {
	keys := testKeys(5_000)
	servers := newServers(7, []int{1, 2, 1, 3, 1, 1, 2})
	plain := mustPicker(t, Config{Affinity: SourceIP})
	b := mustPicker(t, Config{Affinity: SourceIP, HashBalanceFactor: 1.25})
	want := assign(plain, servers, keys, nil)
	if got := assign(b, servers, keys, nil); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("idle servers: bounded and plain rendezvous disagree")
	}
	for i, k := range keys[:200] {
		top := plain.Pick(servers, k, nil)
		second := plain.Pick(servers, k, func(s *Server) bool { return s == top })
		// Fill top to beyond its cap: with 100 connections on top and none
		// elsewhere, cap(top) = ceil(1.25 × 101 × w/12) < 100 for w ≤ 3.
		for range 100 {
			top.Acquire()
		}
		if got := b.Pick(servers, k, nil); got != second {
			t.Errorf("key %d with %s full: got %v; want %v", i, top, got, second)
		}
		for range 100 {
			top.Release()
		}
	}
}

// Servers that share an address (config validation rejects that, but a
// Picker must cope) are still told apart: each gets its share.
func TestBoundedDuplicateAddresses(t *testing.T) {
	servers := []*Server{NewServer("10.0.0.1:443", 1), NewServer("10.0.0.1:443", 1), NewServer("10.0.0.1:443", 1)}
	p := mustPicker(t, Config{Affinity: SourceIP, HashBalanceFactor: 1.01})
	k := Key{Hash: 99, Valid: true}
	for step := range 30 {
		s := p.Pick(servers, k, nil)
		if s == nil {
			t.Fatalf("step %d: got nil; want a server", step)
		}
		s.Acquire()
	}
	// cap after 30 = ceil(1.01 × 30 / 3) = 11, so none may hold more and
	// each holds at least 30 - 2×11 = 8: the walk reached every duplicate.
	for i, s := range servers {
		if got := s.Active(); got < 8 || got > 11 {
			t.Errorf("server %d: got %d connections; want 8 to 11", i, got)
		}
	}
}
