package affinity

import "math/bits"

// This file holds the arithmetic of rendezvous scores, shared by rendezvous.go
// and bounded.go. The score of a server for a key is
//
//	score = weight / -log2(u),  u = pairHash(key, server) mapped into (0, 1)
//
// which is -weight/ln(u) divided by ln 2: the same ranking (rendezvous.go
// explains why this formula honours weights). It is computed in integers
// only, so it is bit-for-bit the same on every CPU architecture and compiler:
// two instances built from one config (amd64 beside arm64, say) rank every
// server alike for every key. Floating-point math.Log would not guarantee
// that: it is assembly on amd64, Go elsewhere, and the compiler may fuse
// multiply-adds on some architectures. It is also about four times faster.

// pairHash hashes a key together with a server, so each key sees its own
// independent ranking of the servers. Both inputs are already well-mixed
// 64-bit hashes; one more mix64 round over their XOR decorrelates the
// servers of one key. (It makes keys k and k^a^b swap their values on
// servers a and b: a pairing that leaves every distribution unchanged.)
func pairHash(key, server uint64) uint64 {
	return mix64(key ^ server)
}

// Fixed-point -log2: values are Q32 (units of 2^-32).
const (
	log2TableBits = 10 // 1024 segments of the mantissa's log2 curve
	q32One        = 1 << 32
)

// log2Table[i] = 2^32 × log2(1 + i/1024), computed in integers at init.
var log2Table = func() (t [1<<log2TableBits + 1]uint64) {
	for i := range t[:1<<log2TableBits] {
		t[i] = log2MantissaQ32(1<<61 + uint64(i)<<(61-log2TableBits))
	}
	t[1<<log2TableBits] = q32One // log2(2) = 1
	return t
}()

// log2MantissaQ32 returns 2^32 × log2(y / 2^61) for y in [2^61, 2^62), that
// is the log2 of a Q61 number in [1, 2), by the classic bit-by-bit method:
// squaring y doubles its log2, so after each squaring the integer part (0 or
// 1) of the doubled log2 is the next bit; when it is 1, halve y. Integer
// only, and truncating, so it is deterministic; accurate to about 2^-29.
func log2MantissaQ32(y uint64) uint64 {
	var r uint64
	for bit := uint64(1) << 31; bit != 0; bit >>= 1 {
		hi, lo := bits.Mul64(y, y) // Q122
		y = hi<<3 | lo>>61         // back to Q61: y² in [1, 4) fits in [2^61, 2^63)
		if y >= 1<<62 {            // y² ≥ 2
			y >>= 1
			r |= bit
		}
	}
	return r
}

// negLog2 returns -log2(u) in Q32 for u = (h|1) / 2^64, which lies in the
// open interval (0, 1) (the |1 keeps u away from 0). The result is in
// [1, 64 × 2^32]: never 0, so scores are finite.
//
// With x = h|1 = m × 2^(63-lz) where m has its top bit set,
// -log2(u) = 64 - log2(x) = lz + 1 - log2(m / 2^63), and log2 of the
// mantissa m / 2^63 in [1, 2) comes from log2Table by linear interpolation:
// the 10 bits after the leading one pick the segment, the next 32 bits place
// the point inside it. Interpolation error is below 2^-22 absolute, and
// below 0.03% relative even when u is close to 1, where -log2(u) is small.
// The result never increases with h, so equal weights rank servers exactly
// by their pair hashes.
func negLog2(h uint64) uint64 {
	x := h | 1
	lz := uint64(bits.LeadingZeros64(x))
	m := x << lz
	i := (m >> (63 - log2TableBits)) & (1<<log2TableBits - 1)
	frac := (m >> (63 - log2TableBits - 32)) & (q32One - 1)
	lo, hi := log2Table[i], log2Table[i+1]
	f := lo + (hi-lo)*frac>>32 // < hi ≤ 2^32: (hi-lo) < 2^23, so no overflow
	return (lz+1)<<32 - f
}

// rank is the score of one server for one key, weight / -log2(u), kept as
// the fraction w/e so that it can be compared exactly in integers.
type rank struct {
	w uint64 // weight, > 0
	e uint64 // negLog2(pairHash(key, server)), > 0
}

func rankOf(key uint64, s *Server, w int64) rank {
	return rank{w: uint64(w), e: negLog2(pairHash(key, s.hash))}
}

// cmp compares the scores a.w/a.e and b.w/b.e by cross-multiplication in
// 128 bits (w ≤ 2^31, e ≤ 2^38): +1 if a's is higher, -1 if lower, 0 if equal.
func (a rank) cmp(b rank) int {
	h1, l1 := bits.Mul64(a.w, b.e)
	h2, l2 := bits.Mul64(b.w, a.e)
	switch {
	case h1 != h2:
		if h1 > h2 {
			return 1
		}
		return -1
	case l1 != l2:
		if l1 > l2 {
			return 1
		}
		return -1
	}
	return 0
}

// outranks reports whether server a with rank ra ranks strictly before
// server b with rank rb: a higher score, or on a tie the lower Address, so
// that every instance breaks ties alike whatever the order of the slice.
func outranks(ra rank, a *Server, rb rank, b *Server) bool {
	if c := ra.cmp(rb); c != 0 {
		return c > 0
	}
	return a.Address < b.Address
}
