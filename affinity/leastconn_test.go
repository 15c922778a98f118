package affinity

import (
	"testing"
)

func TestLeastConnPicks(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		active  []int64
		want    int // index
	}{
		{"fewest connections", []int{1, 1, 1}, []int64{5, 2, 9}, 1},
		{"per weight", []int{1, 4}, []int64{1, 4}, 1},            // 2/1 vs 5/4
		{"per weight heavy full", []int{1, 4}, []int64{0, 5}, 0}, // 1/1 vs 6/4
		{"idle prefers heavy", []int{1, 2, 1}, []int64{0, 0, 0}, 1},
		{"large counts", []int{3, 7}, []int64{3000, 7003}, 0}, // 3001/3 < 7004/7
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			servers := newServers(len(tt.weights), tt.weights)
			for i, n := range tt.active {
				for range n {
					servers[i].Acquire()
				}
			}
			p := mustPicker(t, Config{Balance: LeastConn})
			// Whatever the turn, the strict minimum wins.
			for range 2 * len(servers) {
				if got, want := p.Pick(servers, Key{}, nil), servers[tt.want]; got != want {
					t.Fatalf("got %v; want %v", got, want)
				}
			}
		})
	}
}

// Long-lived connections (Acquire, never Release) end up split by weight,
// and Release makes a server attractive again.
func TestLeastConnAcquireRelease(t *testing.T) {
	weights := []int{1, 2, 3, 4}
	servers := newServers(len(weights), weights)
	p := mustPicker(t, Config{Balance: LeastConn})
	for range 100 {
		p.Pick(servers, Key{}, nil).Acquire()
	}
	for i, s := range servers {
		if got, want := s.Active(), int64(10*weights[i]); got != want {
			t.Errorf("%s: got %d connections; want %d", s.Address, got, want)
		}
	}
	for range 5 {
		servers[0].Release()
	}
	for range 5 {
		s := p.Pick(servers, Key{}, nil)
		if s != servers[0] {
			t.Fatalf("after releases: got %v; want %v", s, servers[0])
		}
		s.Acquire()
	}
}

// Equal servers take turns instead of the first one taking every
// short-lived connection.
func TestLeastConnTiesRotate(t *testing.T) {
	servers := newServers(4, nil)
	servers[2].Acquire() // busier: never picked while the others are idle
	p := mustPicker(t, Config{Balance: LeastConn})
	got := map[string]int{}
	for range 300 {
		got[p.Pick(servers, Key{}, nil).Address]++ // no Acquire: idle stays idle
	}
	for i, s := range servers {
		want := 100
		if i == 2 {
			want = 0
		}
		if got[s.Address] != want {
			t.Errorf("%s: got %d picks; want %d", s.Address, got[s.Address], want)
		}
	}
}
