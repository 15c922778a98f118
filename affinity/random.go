package affinity

import (
	"math/rand/v2"
	"sync"
)

// random is weighted "power of two choices" (Mitzenmacher, "The Power of Two
// Choices in Randomized Load Balancing", 2001): draw two candidates at
// random, each with probability proportional to its weight, and keep the one
// with fewer live connections per unit of weight, Active/weight. On a tie,
// idle servers in particular, the first draw wins.
//
// With every server idle (short connections), the first draw always wins,
// so each server is picked in exact proportion to its weight. Under load,
// comparing two choices instead of one keeps the most loaded server far
// below what pure random placement gives (O(log log n) instead of
// O(log n / log log n) above the average), without the global scan and
// herding of least connections across many balancers. The draws are with
// replacement: both may hit the same server.
//
// Comparison without floats: a1/w1 ≤ a2/w2 ⇔ a1 × w2 ≤ a2 × w1 (w > 0).
//
// Randomness: math/rand/v2's global functions, which are safe for
// concurrent use and never block. Tests may set rng to a seeded generator;
// it is then guarded by mu.
type random struct {
	mu  sync.Mutex
	rng *rand.Rand // nil: the global source
}

func (p *random) uint64n(n uint64) uint64 {
	if p.rng == nil {
		return rand.Uint64N(n)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rng.Uint64N(n)
}

func (p *random) Pick(servers []*Server, _ Key, skip func(*Server) bool) *Server {
	var sumW int64
	for _, s := range servers {
		if w, ok := candidate(s, skip); ok {
			sumW += w
		}
	}
	if sumW == 0 {
		return nil
	}
	// Two draws in [0, sumW); server i owns the interval of its weight.
	r1 := int64(p.uint64n(uint64(sumW)))
	r2 := int64(p.uint64n(uint64(sumW)))
	var a, b, last *Server
	var wa, wb, wLast, acc int64
	for _, s := range servers {
		w, ok := candidate(s, skip)
		if !ok {
			continue
		}
		last, wLast = s, w
		acc += w
		if a == nil && r1 < acc {
			a, wa = s, w
		}
		if b == nil && r2 < acc {
			b, wb = s, w
		}
		if a != nil && b != nil {
			break
		}
	}
	// Health or weights changed between the two passes: a draw beyond the
	// new total falls on the last candidate.
	if last == nil {
		return nil
	}
	if a == nil {
		a, wa = last, wLast
	}
	if b == nil {
		b, wb = last, wLast
	}
	if b.load()*wa < a.load()*wb {
		return b
	}
	return a
}
