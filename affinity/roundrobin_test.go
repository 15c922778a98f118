package affinity

import (
	"strings"
	"sync"
	"testing"
)

// nginx's own example: weights {a:5, b:1, c:1} give a a b a c a a.
func TestRoundRobinSequence(t *testing.T) {
	servers := []*Server{NewServer("a", 5), NewServer("b", 1), NewServer("c", 1)}
	p := mustPicker(t, Config{Balance: RoundRobin})
	var got []string
	for range 14 {
		got = append(got, p.Pick(servers, Key{}, nil).Address)
	}
	want := "a a b a c a a a a b a c a a"
	if g := strings.Join(got, " "); g != want {
		t.Errorf("got %q; want %q", g, want)
	}
}

// Over every cycle of Σweight picks, each server is picked exactly weight
// times, also with a server skipped or down and for a Key that is Valid
// (round-robin ignores keys).
func TestRoundRobinCycle(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		down    int // index of an unhealthy server, -1 for none
		skip    int // index of a skipped server, -1 for none
	}{
		{"1,2,3,4", []int{1, 2, 3, 4}, -1, -1},
		{"equal", []int{1, 1, 1, 1, 1}, -1, -1},
		{"10,1", []int{10, 1}, -1, -1},
		{"1,2,3,4 one down", []int{1, 2, 3, 4}, 1, -1},
		{"1,2,3,4 one skipped", []int{1, 2, 3, 4}, -1, 3},
		{"weight 0", []int{2, 0, 3}, -1, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			servers := newServers(len(tt.weights), tt.weights)
			var skip func(*Server) bool
			if tt.down >= 0 {
				servers[tt.down].SetHealthy(false)
			}
			if tt.skip >= 0 {
				skipped := servers[tt.skip]
				skip = func(s *Server) bool { return s == skipped }
			}
			want := map[string]int{}
			cycle := 0
			for i, w := range tt.weights {
				if i != tt.down && i != tt.skip {
					want[servers[i].Address] = w
					cycle += w
				}
			}
			p := mustPicker(t, Config{Balance: RoundRobin})
			for c := range 3 {
				got := map[string]int{}
				for range cycle {
					got[p.Pick(servers, Key{Hash: 7, Valid: true}, skip).Address]++
				}
				for _, s := range servers {
					if got[s.Address] != want[s.Address] {
						t.Errorf("cycle %d, %s: got %d picks; want %d", c, s.Address, got[s.Address], want[s.Address])
					}
				}
			}
		})
	}
}

// The round-robin state is guarded, so even with concurrent Picks every
// cycle's worth of picks splits exactly by weight.
func TestRoundRobinConcurrentExact(t *testing.T) {
	weights := []int{1, 2, 3, 4}
	servers := newServers(len(weights), weights)
	p := mustPicker(t, Config{Balance: RoundRobin})
	const goroutines, cycles = 8, 250 // 8 × 250 × 10 picks = 2000 full cycles
	counts := make([]map[string]int, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		counts[g] = map[string]int{}
		wg.Go(func() {
			for range cycles * 10 {
				counts[g][p.Pick(servers, Key{}, nil).Address]++
			}
		})
	}
	wg.Wait()
	for i, s := range servers {
		got := 0
		for _, c := range counts {
			got += c[s.Address]
		}
		if want := goroutines * cycles * weights[i]; got != want {
			t.Errorf("%s: got %d picks; want %d", s.Address, got, want)
		}
	}
}
