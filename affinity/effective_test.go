package affinity

import "testing"

// Every policy picks by Weight × Percent.
func TestEffectiveWeightPicking(t *testing.T) {
	t.Parallel()
	mk := func() []*Server {
		s := []*Server{NewServer("10.0.0.1:1", 1), NewServer("10.0.0.2:1", 1), NewServer("10.0.0.3:1", 1)}
		s[2].SetPercent(25)
		return s
	}
	t.Run("roundrobin", func(t *testing.T) {
		servers := mk()
		p := mustPicker(t, Config{Balance: RoundRobin})
		n := map[*Server]int{}
		for range 225 * 4 {
			n[p.Pick(servers, Key{}, nil)]++
		}
		if n[servers[0]] != 400 || n[servers[1]] != 400 || n[servers[2]] != 100 {
			t.Errorf("picks %d %d %d; want 400 400 100", n[servers[0]], n[servers[1]], n[servers[2]])
		}
	})
	t.Run("leastconn held", func(t *testing.T) {
		servers := mk()
		p := mustPicker(t, Config{Balance: LeastConn})
		for range 900 {
			p.Pick(servers, Key{}, nil).Acquire()
		}
		if a, b, c := servers[0].Active(), servers[1].Active(), servers[2].Active(); a != 400 || b != 400 || c != 100 {
			t.Errorf("live %d %d %d; want 400 400 100 (connections ÷ effective weight equal)", a, b, c)
		}
	})
	t.Run("zero percent", func(t *testing.T) {
		servers := mk()
		servers[2].SetPercent(0)
		for _, c := range []Config{{Balance: RoundRobin}, {Balance: LeastConn}, {Balance: Random}, {Affinity: SourceIP}, {Affinity: SourceIP, HashBalanceFactor: 1.25}} {
			p := mustPicker(t, c)
			for i, k := range testKeys(300) {
				if c.Affinity == None {
					k = Key{}
				}
				if s := p.Pick(servers, k, nil); s == servers[2] {
					t.Fatalf("%+v pick %d: the 0%% server", c, i)
				}
			}
		}
	})
	t.Run("hashing agrees", func(t *testing.T) {
		// Two instances with the same reports place every key alike, and
		// servers all at 100 % place keys as plain weights did.
		a, b := mk(), mk()
		plain := []*Server{NewServer("10.0.0.1:1", 4), NewServer("10.0.0.2:1", 4), NewServer("10.0.0.3:1", 1)}
		pa, pb := mustPicker(t, Config{Affinity: SourceIP}), mustPicker(t, Config{Affinity: SourceIP})
		pp := mustPicker(t, Config{Affinity: SourceIP})
		moved := 0
		for i, k := range testKeys(2000) {
			sa, sb := pa.Pick(a, k, nil), pb.Pick(b, k, nil)
			if sa.Address != sb.Address {
				t.Fatalf("key %d: instance A %s, B %s", i, sa, sb)
			}
			if sa.Address != pp.Pick(plain, k, nil).Address {
				moved++
			}
		}
		if moved != 0 {
			t.Errorf("%d keys differ between weights 1,1,1 at 100,100,25 %% and weights 4,4,1; want 0", moved)
		}
	})
}

// The largest weights keep their order at every reported percent: the
// effective weight never saturates (two servers of weights MaxWeight and
// MaxWeight-1 at 100 % must not weigh the same).
func TestEffectiveWeightNoSaturation(t *testing.T) {
	t.Parallel()
	a, b := NewServer("10.0.0.1:1", MaxWeight), NewServer("10.0.0.2:1", MaxWeight-1)
	for _, pct := range []int{100, 99, 50, 1} {
		a.SetPercent(pct)
		b.SetPercent(pct)
		if a.EffectiveWeight() <= b.EffectiveWeight() {
			t.Errorf("at %d %%: effective weights %d and %d; want the first larger", pct, a.EffectiveWeight(), b.EffectiveWeight())
		}
		if got, want := a.EffectiveWeight(), int64(MaxWeight)*int64(pct); got != want {
			t.Errorf("at %d %%: effective weight %d; want %d", pct, got, want)
		}
	}
	if c := NewServer("10.0.0.3:1", MaxWeight*50); c.Weight() != MaxWeight {
		t.Errorf("weight %d; want clamped to MaxWeight %d", c.Weight(), MaxWeight)
	}
}
