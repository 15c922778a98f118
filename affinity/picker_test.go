package affinity

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"sync"
	"testing"
)

func TestNewPicker(t *testing.T) {
	tests := []struct {
		name     string
		c        Config
		wantErr  bool
		wantType string
	}{
		{"zero", Config{}, false, "*affinity.roundRobin"},
		{"leastconn", Config{Balance: LeastConn}, false, "*affinity.leastConn"},
		{"random", Config{Balance: Random}, false, "*affinity.random"},
		{"source_ip", Config{Affinity: SourceIP}, false, "*affinity.rendezvous"},
		{"five_tuple leastconn", Config{Affinity: FiveTuple, Balance: LeastConn}, false, "*affinity.rendezvous"},
		{"bounded", Config{Affinity: ClassC, HashBalanceFactor: 1.25}, false, "*affinity.bounded"},
		{"factor +Inf is off", Config{Affinity: ClassC, HashBalanceFactor: math.Inf(1)}, false, "*affinity.rendezvous"},
		{"factor ignored without affinity", Config{HashBalanceFactor: 1.25}, false, "*affinity.roundRobin"},
		{"factor 1", Config{Affinity: SourceIP, HashBalanceFactor: 1}, true, ""},
		{"factor 0.5", Config{Affinity: SourceIP, HashBalanceFactor: 0.5}, true, ""},
		{"factor negative", Config{Affinity: SourceIP, HashBalanceFactor: -1.25}, true, ""},
		{"factor NaN", Config{Affinity: SourceIP, HashBalanceFactor: math.NaN()}, true, ""},
		{"factor 0.5 without affinity", Config{HashBalanceFactor: 0.5}, true, ""},
		{"bad balance", Config{Balance: Balance(9)}, true, ""},
		{"bad mode", Config{Affinity: Mode(9)}, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewPicker(tt.c)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v; want error %v", err, tt.wantErr)
			}
			if err != nil {
				if !errors.Is(err, ErrInvalidConfig) {
					t.Errorf("errors.Is(%v, ErrInvalidConfig): got false; want true", err)
				}
				return
			}
			if got := fmt.Sprintf("%T", p); got != tt.wantType {
				t.Errorf("got %s; want %s", got, tt.wantType)
			}
		})
	}
}

// Keys that are not Valid (no affinity key could be built) go to the
// balance policy.
func TestHashingFallsBackWithoutKey(t *testing.T) {
	servers := newServers(3, []int{1, 1, 1})
	for _, factor := range []float64{0, 1.25} {
		t.Run(fmt.Sprintf("factor=%v", factor), func(t *testing.T) {
			p := mustPicker(t, Config{Affinity: SourceIP, Balance: RoundRobin, HashBalanceFactor: factor})
			got := map[string]int{}
			for range 30 {
				got[p.Pick(servers, Key{}, nil).Address]++
			}
			for _, s := range servers {
				if got[s.Address] != 10 {
					t.Errorf("%s: got %d picks; want 10 (round-robin)", s.Address, got[s.Address])
				}
			}
		})
	}
}

func TestPickerFunc(t *testing.T) {
	servers := newServers(2, nil)
	var p Picker = PickerFunc(func(ss []*Server, k Key, skip func(*Server) bool) *Server {
		if k.Valid {
			return ss[1]
		}
		return ss[0]
	})
	if got := p.Pick(servers, Key{Valid: true}, nil); got != servers[1] {
		t.Errorf("got %v; want %v", got, servers[1])
	}
}

// No policy ever picks a server that is unhealthy, draining, of weight 0 or
// skipped, whatever the key; with none left, every policy returns nil.
func TestUnavailableNeverPicked(t *testing.T) {
	keys := testKeys(2_000)
	for _, pc := range allConfigs {
		t.Run(pc.name, func(t *testing.T) {
			servers := newServers(8, []int{1, 2, 1, 1, 3, 1, 1, 1})
			servers[1].SetHealthy(false)
			servers[2].SetDraining(true)
			servers[4].SetWeight(0)
			skipped := servers[6]
			skip := func(s *Server) bool { return s == skipped }
			ok := map[*Server]bool{servers[0]: true, servers[3]: true, servers[5]: true, servers[7]: true}
			p := mustPicker(t, pc.c)
			got := map[*Server]int{}
			for _, k := range keys {
				s := p.Pick(servers, k, skip)
				if !ok[s] {
					t.Fatalf("got %v (healthy %v, draining %v, weight %d); want one of 10.0.0.{1,4,6,8}",
						s, s.Healthy(), s.Draining(), s.Weight())
				}
				got[s]++
				if pc.name == "leastconn" {
					s.Acquire()
				}
			}
			if len(got) != len(ok) {
				t.Errorf("servers used: got %d; want %d", len(got), len(ok))
			}
			// Now take the rest away, one way each.
			servers[0].SetHealthy(false)
			servers[3].SetDraining(true)
			servers[5].SetWeight(0)
			skip = func(s *Server) bool { return s == skipped || s == servers[7] }
			for _, k := range keys[:50] {
				if s := p.Pick(servers, k, skip); s != nil {
					t.Fatalf("all unavailable: got %v; want nil", s)
				}
			}
			for _, pool := range [][]*Server{nil, {}} {
				if s := p.Pick(pool, keys[0], nil); s != nil {
					t.Fatalf("empty pool: got %v; want nil", s)
				}
			}
		})
	}
}

// Many goroutines pick, hold and release connections while health, drain
// and weights flip underneath; run with -race. Server 0 never leaves, so a
// Pick never comes back empty.
func TestConcurrentPicks(t *testing.T) {
	for _, pc := range allConfigs {
		t.Run(pc.name, func(t *testing.T) {
			servers := newServers(6, []int{1, 2, 3, 1, 2, 3})
			p := mustPicker(t, pc.c)
			stop := make(chan struct{})
			var flip sync.WaitGroup
			flip.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					s := servers[1+i%5]
					s.SetHealthy(i%3 != 0)
					s.SetDraining(i%7 == 0)
					s.SetWeight(i % 4)
				}
			})
			var wg sync.WaitGroup
			errs := make(chan error, 8)
			for g := range 8 {
				wg.Go(func() {
					var held []*Server
					for i := range 2_000 {
						src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(g), byte(i >> 8), byte(i)}), uint16(i))
						k := KeyFor(SourceIP, src, src)
						s := p.Pick(servers, k, func(s *Server) bool { return s == servers[5] && i%2 == 0 })
						if s == nil {
							errs <- fmt.Errorf("goroutine %d pick %d: got nil; want a server", g, i)
							return
						}
						s.Acquire()
						held = append(held, s)
						if len(held) > 10 {
							held[0].Release()
							held = held[1:]
						}
					}
					for _, s := range held {
						s.Release()
					}
				})
			}
			wg.Wait()
			close(stop)
			flip.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			for _, s := range servers {
				if s.Active() != 0 {
					t.Errorf("%s: got %d connections after all releases; want 0", s.Address, s.Active())
				}
			}
		})
	}
}

// Pick is on the per-connection path: it must not allocate.
func TestPickAllocs(t *testing.T) {
	servers := newServers(10, []int{1, 2, 3, 4, 5, 1, 2, 3, 4, 5})
	for _, s := range servers {
		s.Acquire()
	}
	skipped := servers[3]
	skip := func(s *Server) bool { return s == skipped }
	k := testKeys(1)[0]
	for _, pc := range allConfigs {
		p := mustPicker(t, pc.c)
		if got := testing.AllocsPerRun(200, func() { p.Pick(servers, k, skip) }); got != 0 {
			t.Errorf("%s: got %v allocs per Pick; want 0", pc.name, got)
		}
	}
}
