package affinity

import (
	"math"
	"math/rand/v2"
	"testing"
)

// seededRandom returns the random policy with a fixed seed, so these
// statistical tests are deterministic.
func seededRandom(seed uint64) *random {
	return &random{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

func TestRandomShares(t *testing.T) {
	const picks = 100_000
	tests := []struct {
		name    string
		weights []int
		active  []int64
		acquire bool // keep every picked connection open
		want    []float64
	}{
		// Idle servers: the first draw wins, exactly weighted random.
		{"idle 1,2,3,4", []int{1, 2, 3, 4}, nil, false, []float64{0.1, 0.2, 0.3, 0.4}},
		// Equal weights, one busy: it is kept only when both draws hit it.
		{"one busy", []int{1, 1}, []int64{100, 0}, false, []float64{0.25, 0.75}},
		// Equal load per weight is a tie: weighted random again.
		{"equal load per weight", []int{1, 3}, []int64{10, 30}, false, []float64{0.25, 0.75}},
		// Long-lived connections end up split by weight.
		{"acquire 1,2,3,4", []int{1, 2, 3, 4}, nil, true, []float64{0.1, 0.2, 0.3, 0.4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			servers := newServers(len(tt.weights), tt.weights)
			for i, n := range tt.active {
				for range n {
					servers[i].Acquire()
				}
			}
			p := seededRandom(1)
			got := map[*Server]int{}
			for range picks {
				s := p.Pick(servers, Key{}, nil)
				got[s]++
				if tt.acquire {
					s.Acquire()
				}
			}
			for i, s := range servers {
				share := float64(got[s]) / picks
				if math.Abs(share-tt.want[i]) > 0.03*tt.want[i] {
					t.Errorf("%s: got share %.4f; want %.4f ± 3%%", s.Address, share, tt.want[i])
				}
			}
		})
	}
}

// Under load, two choices keep every server close to its weighted share at
// every moment, far closer than one random choice would.
func TestRandomBalancedUnderLoad(t *testing.T) {
	servers := newServers(10, nil)
	p := seededRandom(2)
	for step := 1; step <= 10_000; step++ {
		p.Pick(servers, Key{}, nil).Acquire()
		if step%100 != 0 {
			continue
		}
		avg := float64(step) / 10
		for _, s := range servers {
			// Two choices keep the gap to the average a few connections
			// (O(log log n)); one random choice drifts by O(√step).
			if d := math.Abs(float64(s.Active()) - avg); d > 5 {
				t.Fatalf("step %d: %s has %d connections; want within 5 of %.0f", step, s.Address, s.Active(), avg)
			}
		}
	}
}
