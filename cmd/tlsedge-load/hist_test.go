package main

import (
	"math/rand/v2"
	"sort"
	"testing"
	"time"
)

func TestBucketRoundTrip(t *testing.T) {
	for _, v := range []uint64{0, 1, 63, 64, 65, 127, 128, 1000, 999_999, 1 << 40, 1<<63 - 1} {
		i := bucketOf(v)
		if i < 0 || i >= histBuckets {
			t.Fatalf("bucketOf(%d) = %d; want 0 <= i < %d", v, i, histBuckets)
		}
		lo, hi := bucketRange(i)
		if v < lo || (hi > lo && v >= hi) {
			t.Errorf("bucketOf(%d) = %d covering [%d, %d); want it to hold %d", v, i, lo, hi, v)
		}
	}
}

func TestQuantileWithinError(t *testing.T) {
	var h hist
	r := rand.New(rand.NewPCG(1, 2))
	var all []time.Duration
	for range 100_000 {
		d := time.Duration(r.ExpFloat64() * float64(300*time.Microsecond))
		all = append(all, d)
		h.record(d)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		want := all[int(q*float64(len(all)))-1]
		got := h.quantile(q)
		if diff := float64(got-want) / float64(want); diff > 1.0/32 || diff < -1.0/32 {
			t.Errorf("quantile(%v) = %v; want %v within 1/32", q, got, want)
		}
	}
	if got := h.quantile(1); got != all[len(all)-1] {
		t.Errorf("quantile(1) = %v; want the max %v", got, all[len(all)-1])
	}
	var empty hist
	if got := empty.quantile(0.5); got != 0 {
		t.Errorf("empty quantile = %v; want 0", got)
	}
}
