package main

import (
	"math"
	"math/bits"
	"time"
)

// hist is a log-linear latency histogram: exact below 64ns, then 32 buckets
// per power of two, so a quantile is off by at most 1/32 (about 3%) of its
// value. Memory is fixed (15 KiB) however long the run; one per worker,
// merged at the end, so recording takes no lock.
type hist struct {
	counts [histBuckets]uint64
	n      uint64
	max    time.Duration
}

const (
	histSub     = 32 // buckets per power of two
	histBuckets = 2*histSub + (64-6)*histSub
)

// bucketOf maps a duration in ns to its bucket: values below 64 have their
// own bucket; above, e = bits.Len64(v)-6 is how far v is shifted so its top
// 6 bits m fall in [32, 64), and the bucket is 64 + (e-1)*32 + (m-32).
func bucketOf(v uint64) int {
	if v < 2*histSub {
		return int(v)
	}
	e := bits.Len64(v) - 6
	m := v >> uint(e)
	return 2*histSub + (e-1)*histSub + int(m-histSub)
}

// bucketRange is the inverse of bucketOf: the values [lo, hi) of bucket i.
func bucketRange(i int) (lo, hi uint64) {
	if i < 2*histSub {
		return uint64(i), uint64(i) + 1
	}
	k := i - 2*histSub
	e := uint(k/histSub + 1)
	m := uint64(k%histSub + histSub)
	return m << e, (m + 1) << e
}

func (h *hist) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[bucketOf(uint64(d))]++
	h.n++
	if d > h.max {
		h.max = d
	}
}

func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	if o.max > h.max {
		h.max = o.max
	}
}

// quantile returns the q-quantile (0 < q <= 1): the middle of the bucket
// holding the sample of rank ceil(q*n), never more than the largest sample.
// It is 0 when nothing was recorded.
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	if q >= 1 {
		return h.max
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := bucketRange(i)
			mid := time.Duration(lo + (hi-lo)/2)
			if mid > h.max {
				mid = h.max
			}
			return mid
		}
	}
	return h.max
}
