package affinity

import (
	"math"
	"math/rand/v2"
	"testing"
)

// refNegLog2 is -log2((h|1)/2^64) in float64, computed without cancellation
// when u is close to 1.
func refNegLog2(h uint64) float64 {
	x := h | 1
	if x >= 1<<63 { // u ≥ 1/2: -log2(1 - d) with d = 1 - u exact
		d := float64(-x) * 0x1p-64
		return -math.Log1p(-d) / math.Ln2
	}
	return 64 - math.Log2(float64(x))
}

func TestNegLog2(t *testing.T) {
	hs := []uint64{0, 1, 2, 3, 1 << 12, 1<<63 - 1, 1 << 63, 1<<63 + 1, math.MaxUint64, math.MaxUint64 - 1, math.MaxUint64 - 1<<20}
	for i := range 64 {
		hs = append(hs, 1<<i, 1<<i-1, 1<<i+1)
	}
	r := rand.New(rand.NewPCG(3, 4))
	for range 200_000 {
		hs = append(hs, r.Uint64(), math.MaxUint64-r.Uint64N(1<<40)) // the latter: u very close to 1
	}
	worstAbs, worstRel := 0.0, 0.0
	for _, h := range hs {
		e := negLog2(h)
		if e == 0 || e > 64<<32 {
			t.Fatalf("h=%#x: got e=%d; want in [1, 2^38]", h, e)
		}
		got, want := float64(e)*0x1p-32, refNegLog2(h)
		abs := math.Abs(got - want)
		worstAbs = max(worstAbs, abs)
		// Quantization (2^-32) dominates for tiny values; skip those for the
		// relative bound.
		if want > 1e-6 {
			worstRel = max(worstRel, abs/want)
		}
	}
	if worstAbs > 0x1p-22 {
		t.Errorf("worst absolute error: got %g; want ≤ 2^-22", worstAbs)
	}
	if worstRel > 3e-4 {
		t.Errorf("worst relative error: got %g; want ≤ 3e-4", worstRel)
	}
	t.Logf("worst absolute error %g, relative %g", worstAbs, worstRel)
}

// negLog2 never increases with h, across the table's segment boundaries too.
func TestNegLog2Monotonic(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 100_000 {
		h := r.Uint64()
		if h == math.MaxUint64 {
			continue
		}
		// Same lz: a segment boundary is where the low 53 bits of m wrap.
		h2 := h + 1 + r.Uint64N(1<<(r.IntN(60)+1))
		if h2 < h {
			continue // wrapped
		}
		if negLog2(h2) > negLog2(h) {
			t.Fatalf("negLog2(%#x) = %d > negLog2(%#x) = %d; want non-increasing", h2, negLog2(h2), h, negLog2(h))
		}
	}
}

func TestLog2Table(t *testing.T) {
	for i, v := range log2Table {
		want := math.Log2(1+float64(i)/(1<<log2TableBits)) * (1 << 32)
		if math.Abs(float64(v)-want) > 16 { // 2^-28
			t.Errorf("log2Table[%d]: got %d; want %.0f", i, v, want)
		}
		if i > 0 && v <= log2Table[i-1] {
			t.Errorf("log2Table[%d] = %d ≤ log2Table[%d] = %d; want increasing", i, v, i-1, log2Table[i-1])
		}
	}
}

func TestRankCmp(t *testing.T) {
	a, b := NewServer("10.0.0.1:443", 1), NewServer("10.0.0.2:443", 1)
	tests := []struct {
		name   string
		ra, rb rank
		want   int
		aFirst bool
	}{
		{"higher weight same e", rank{2, 100}, rank{1, 100}, 1, true},
		{"lower e same weight", rank{1, 50}, rank{1, 100}, 1, true},
		{"cross 3/7 vs 2/5", rank{3, 7}, rank{2, 5}, 1, true}, // 0.4286 > 0.4
		{"cross 2/5 vs 3/7", rank{2, 5}, rank{3, 7}, -1, false},
		{"equal fractions: lower address", rank{2, 10}, rank{1, 5}, 0, true},
		// Products beyond 2^64: (2^31-1)/2^38 > (2^31-2)/(2^38-1).
		{"big values", rank{MaxWeight, 64 << 32}, rank{MaxWeight - 1, 64<<32 - 1}, 1, true},
		{"big values reversed", rank{MaxWeight - 1, 64<<32 - 1}, rank{MaxWeight, 64 << 32}, -1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.ra.cmp(tt.rb); got != tt.want {
				t.Errorf("cmp: got %d; want %d", got, tt.want)
			}
			if got := outranks(tt.ra, a, tt.rb, b); got != tt.aFirst {
				t.Errorf("outranks: got %v; want %v", got, tt.aFirst)
			}
		})
	}
	if got := outranks(rank{1, 5}, b, rank{1, 5}, a); got {
		t.Errorf("tie, higher address first: got %v; want false", got)
	}
}
