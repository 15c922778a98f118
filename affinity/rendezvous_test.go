package affinity

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

const nKeys = 100_000

// Removing one of N servers, by any of the ways a server leaves, moves only
// the keys that were on it, about 1/N of all keys, spread over the others.
func TestRendezvousRemoveOne(t *testing.T) {
	t.Parallel()
	keys := testKeys(nKeys)
	ways := []struct {
		name string
		// leave makes servers[r] leave; it returns the pool and skip to use.
		leave func(servers []*Server, r int) ([]*Server, func(*Server) bool)
	}{
		{"removed", func(ss []*Server, r int) ([]*Server, func(*Server) bool) {
			return append(append([]*Server{}, ss[:r]...), ss[r+1:]...), nil
		}},
		{"unhealthy", func(ss []*Server, r int) ([]*Server, func(*Server) bool) {
			ss[r].SetHealthy(false)
			return ss, nil
		}},
		{"draining", func(ss []*Server, r int) ([]*Server, func(*Server) bool) {
			ss[r].SetDraining(true)
			return ss, nil
		}},
		{"weight 0", func(ss []*Server, r int) ([]*Server, func(*Server) bool) {
			ss[r].SetWeight(0)
			return ss, nil
		}},
		{"skipped", func(ss []*Server, r int) ([]*Server, func(*Server) bool) {
			gone := ss[r]
			return ss, func(s *Server) bool { return s == gone }
		}},
	}
	for _, cfg := range []Config{{Affinity: SourceIP}, {Affinity: SourceIP, HashBalanceFactor: 1.25}} {
		for _, n := range []int{5, 10} {
			// Bounded load with idle servers must behave as plain rendezvous.
			before := assign(mustPicker(t, cfg), newServers(n, nil), keys, nil)
			for _, way := range ways {
				name := fmt.Sprintf("factor=%v/N=%d/%s", cfg.HashBalanceFactor, n, way.name)
				t.Run(name, func(t *testing.T) {
					p := mustPicker(t, cfg)
					servers := newServers(n, nil) // same addresses: same assignment
					r := n / 2
					gone := servers[r].Address
					pool, skip := way.leave(servers, r)
					after := assign(p, pool, keys, skip)

					moved := 0
					movedTo := map[string]int{}
					for i := range keys {
						switch {
						case before[i] != gone && after[i] != before[i]:
							t.Fatalf("key %d: got %s; want %s (it was not on the removed server)", i, after[i], before[i])
						case after[i] == gone || after[i] == "":
							t.Fatalf("key %d: got %q; want a remaining server", i, after[i])
						case before[i] == gone:
							moved++
							movedTo[after[i]]++
						}
					}
					frac, want := float64(moved)/nKeys, 1/float64(n)
					if math.Abs(frac-want) > 0.1*want {
						t.Errorf("moved fraction: got %.4f; want %.4f ± 10%%", frac, want)
					}
					// The removed server's keys spread evenly over the others.
					if len(movedTo) != n-1 {
						t.Errorf("servers receiving moved keys: got %d; want %d", len(movedTo), n-1)
					}
					for addr, c := range movedTo {
						share, want := float64(c)/float64(moved), 1/float64(n-1)
						if math.Abs(share-want) > 0.2*want {
							t.Errorf("%s took %.4f of the moved keys; want %.4f ± 20%%", addr, share, want)
						}
					}
				})
			}
		}
	}
}

// Adding a server takes about 1/(N+1) of the keys, and every moved key moves
// to the new server.
func TestRendezvousAddOne(t *testing.T) {
	t.Parallel()
	keys := testKeys(nKeys)
	for _, n := range []int{5, 10} {
		t.Run(fmt.Sprintf("N=%d", n), func(t *testing.T) {
			p := mustPicker(t, Config{Affinity: SourceIP})
			servers := newServers(n+1, nil)
			before := assign(p, servers[:n], keys, nil)
			after := assign(p, servers, keys, nil)
			added := servers[n].Address
			moved := 0
			for i := range keys {
				if after[i] != before[i] {
					moved++
					if after[i] != added {
						t.Fatalf("key %d: got %s; want %s or %s", i, after[i], before[i], added)
					}
				}
			}
			frac, want := float64(moved)/nKeys, 1/float64(n+1)
			if math.Abs(frac-want) > 0.1*want {
				t.Errorf("moved fraction: got %.4f; want %.4f ± 10%%", frac, want)
			}
		})
	}
}

// Each server gets a share of the keys proportional to its weight.
func TestRendezvousWeights(t *testing.T) {
	t.Parallel()
	keys := testKeys(nKeys)
	tests := []struct {
		name    string
		weights []int
	}{
		{"equal", []int{1, 1, 1, 1, 1}},
		{"1,2,3,4", []int{1, 2, 3, 4}},
		{"1,1,10", []int{1, 1, 10}},
		{"100,300", []int{100, 300}},
	}
	for _, mode := range []Mode{SourceIP, FiveTuple} {
		for _, tt := range tests {
			t.Run(mode.String()+"/"+tt.name, func(t *testing.T) {
				p := mustPicker(t, Config{Affinity: mode})
				servers := newServers(len(tt.weights), tt.weights)
				ks := keys
				if mode == FiveTuple {
					ks = fiveTupleKeys(nKeys)
				}
				counts := map[string]int{}
				for _, a := range assign(p, servers, ks, nil) {
					counts[a]++
				}
				sumW := 0
				for _, w := range tt.weights {
					sumW += w
				}
				for i, s := range servers {
					got, want := float64(counts[s.Address])/nKeys, float64(tt.weights[i])/float64(sumW)
					if math.Abs(got-want) > 0.05*want {
						t.Errorf("%s (weight %d): got share %.4f; want %.4f ± 5%%", s.Address, tt.weights[i], got, want)
					}
				}
			})
		}
	}
}

// fiveTupleKeys: one client, many source ports, as with five_tuple affinity.
func fiveTupleKeys(n int) []Key {
	keys := make([]Key, n)
	for i := range keys {
		src := netipAddrPort(fmt.Sprintf("203.0.113.%d:%d", 1+i/50000, 10000+i%50000))
		keys[i] = KeyFor(FiveTuple, src, netipAddrPort("192.0.2.1:443"))
	}
	return keys
}

// Changing one server's weight moves keys only to (raise) or from (lower)
// that server.
func TestRendezvousReweight(t *testing.T) {
	keys := testKeys(nKeys)
	for _, tt := range []struct {
		name string
		w    int
	}{{"raise", 3}, {"lower", 1}} {
		t.Run(tt.name, func(t *testing.T) {
			p := mustPicker(t, Config{Affinity: SourceIP})
			servers := newServers(6, []int{2, 2, 2, 2, 2, 2})
			changed := servers[2]
			before := assign(p, servers, keys, nil)
			changed.SetWeight(tt.w)
			after := assign(p, servers, keys, nil)
			moved := 0
			for i := range keys {
				if after[i] == before[i] {
					continue
				}
				moved++
				if tt.w > 2 && after[i] != changed.Address {
					t.Fatalf("key %d moved %s -> %s; want moves only to %s", i, before[i], after[i], changed.Address)
				}
				if tt.w < 2 && before[i] != changed.Address {
					t.Fatalf("key %d moved %s -> %s; want moves only from %s", i, before[i], after[i], changed.Address)
				}
			}
			if moved == 0 {
				t.Errorf("moved: got 0 keys; want some")
			}
		})
	}
}

// Two pools built from the same config, with separate Server values and in
// another order, agree on every key; so do two instances of the balancer.
func TestRendezvousAgree(t *testing.T) {
	keys := testKeys(20_000)
	weights := []int{1, 2, 3, 4, 5, 1, 1, 2}
	for _, cfg := range []Config{
		{Affinity: SourceIP},
		{Affinity: SourceIP, HashBalanceFactor: 1.25},
	} {
		t.Run(fmt.Sprintf("factor=%v", cfg.HashBalanceFactor), func(t *testing.T) {
			a := newServers(len(weights), weights)
			b := newServers(len(weights), weights)
			rand.New(rand.NewPCG(1, 2)).Shuffle(len(b), func(i, j int) { b[i], b[j] = b[j], b[i] })
			// One server down on both instances (health checks agree).
			for _, ss := range [][]*Server{a, b} {
				for _, s := range ss {
					if s.Address == "10.0.0.3:443" {
						s.SetHealthy(false)
					}
				}
			}
			pa, pb := mustPicker(t, cfg), mustPicker(t, cfg)
			ga, gb := assign(pa, a, keys, nil), assign(pb, b, keys, nil)
			for i := range keys {
				if ga[i] != gb[i] {
					t.Fatalf("key %d: got %s and %s; want the same server", i, ga[i], gb[i])
				}
			}
		})
	}
}

// The choice depends only on addresses, weights and the key, so it is
// stable across processes and versions; a change here moves clients.
func TestRendezvousStable(t *testing.T) {
	servers := newServers(5, []int{1, 2, 1, 3, 1})
	p := mustPicker(t, Config{Affinity: SourceIP})
	keys := testKeys(8)
	// Cross-checked against an independent Python implementation.
	want := []string{"10.0.0.4:443", "10.0.0.3:443", "10.0.0.4:443", "10.0.0.2:443",
		"10.0.0.3:443", "10.0.0.4:443", "10.0.0.5:443", "10.0.0.2:443"}
	got := assign(p, servers, keys, nil)
	for i := range keys {
		if got[i] != want[i] {
			t.Errorf("key %d: got %s; want %s", i, got[i], want[i])
		}
	}
}
