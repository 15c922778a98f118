package edge

// A floor under the collector's heap goal while the live heap is small.
//
// Go's goal for the next collection is the live heap plus GOGC % of what
// the collector scans (the live heap, goroutine stacks, globals), and
// never below 4 MiB × GOGC/100. A balancer's live heap is small until it
// holds many connections (about 1 MiB with 16 keep-alive connections),
// while each request leaves about 7 KiB of garbage: at GOGC=100 a
// collection every few hundred requests, about 1.5 ms of CPU each, 4 % of
// the CPU of a terminated keep-alive request (GODEBUG=gctrace=1). The tuner
// sets GOGC after each collection to 100 × gcFloor / scanned bytes, between
// 100 and gcMaxPercent, so that about gcFloor of garbage may gather
// between collections: the goal is 16 MiB (Go's minimum at GOGC=400) up to
// about 3 MiB scanned, then scanned + 16 MiB, and from 16 MiB scanned up
// (about a thousand idle connections) Go's default, twice the scanned
// bytes: a large fleet's memory is what it was. Under load a small
// instance holds up to about 12 MiB more than at Go's default; once quiet,
// the trimmer (memtrim.go) returns it. GOGC set in the environment (or by
// debug.SetGCPercent before the tuner starts) is the user's and is left
// alone.

import (
	"context"
	"os"
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"sync/atomic"

	"github.com/rs/zerolog"
)

const (
	gcFloor      = 16 << 20
	gcMaxPercent = 400
)

// gcPercentFor is the GOGC for scanned bytes (live heap, stacks, globals).
func gcPercentFor(scanned uint64) int {
	if scanned == 0 {
		return gcMaxPercent
	}
	p := uint64(100) * gcFloor / scanned
	switch {
	case p < 100:
		return 100
	case p > gcMaxPercent:
		return gcMaxPercent
	}
	return int(p)
}

// nextGCPercent is the GOGC to set after a collection that found scanned
// bytes, with cur in force; change is false when cur stays: the new value
// is within an eighth of it and not a bound (a small drift is not worth a
// change).
func nextGCPercent(cur int, scanned uint64) (p int, change bool) {
	p = gcPercentFor(scanned)
	d := p - cur
	if d == 0 || (d*8 <= cur && -d*8 <= cur && p != 100 && p != gcMaxPercent) {
		return cur, false
	}
	return p, true
}

// gcTuner sets GOGC after each collection (see the top of the file). After
// the start, only the cleanup that runs after each collection touches it.
type gcTuner struct {
	ctx     context.Context
	buf     []rtmetrics.Sample
	cur     int          // the GOGC set last
	sets    atomic.Int64 // how many times it changed GOGC (tests)
	stopped atomic.Bool  // its context ended and GOGC is back to 100 (tests)
}

// gcTunerOn keeps a second TuneGC from starting a second tuner.
var gcTunerOn atomic.Bool

var gcTunerMetrics = []string{"/gc/heap/live:bytes", "/gc/scan/stack:bytes", "/gc/scan/globals:bytes", "/gc/gogc:percent"}

// TuneGC keeps a floor under the collector's heap goal until ctx ends,
// unless GOGC is set in the environment or is not 100 now (someone chose
// it).
func TuneGC(ctx context.Context, log zerolog.Logger) {
	if t, gogc := startGCTuner(ctx, os.Getenv("GOGC")); t != nil {
		log.Debug().Int("gogc", gogc).Msg("GC: a floor under the heap goal while the live heap is small (GOGC in the environment turns this off)")
	}
}

// startGCTuner starts the tuner and returns it with the GOGC it set; nil
// when env (GOGC's value) or the current setting says the user chose, when
// a tuner runs already, or when the runtime lacks a metric it reads.
func startGCTuner(ctx context.Context, env string) (*gcTuner, int) {
	if env != "" {
		return nil, 0
	}
	buf, missing := uint64Samples(gcTunerMetrics)
	if missing != "" {
		return nil, 0
	}
	t := &gcTuner{ctx: ctx, buf: buf}
	if t.buf[3].Value.Uint64() != 100 || !gcTunerOn.CompareAndSwap(false, true) {
		return nil, 0
	}
	t.cur = 100
	t.adjust()
	gogc := t.cur
	t.arm() // from here on t is the cleanup's
	return t, gogc
}

// arm makes an object whose cleanup runs after the next collection has
// found it unreachable: the tuner adjusts then, and arms again. Cleanups
// have their own goroutine (a finalizer that blocks elsewhere in the
// process does not stop the tuner).
func (t *gcTuner) arm() {
	runtime.AddCleanup(new(gcSentinel), (*gcTuner).afterGC, t)
}

// gcSentinel is big enough not to share a tiny-allocation block (whose
// cleanup would wait for its neighbours).
type gcSentinel struct{ _ [32]byte }

func (t *gcTuner) afterGC() {
	if t.ctx.Err() != nil {
		if t.cur != 100 {
			debug.SetGCPercent(100)
		}
		gcTunerOn.Store(false)
		t.stopped.Store(true)
		return
	}
	t.adjust()
	t.arm()
}

// adjust sets GOGC for what the last collection scanned.
func (t *gcTuner) adjust() {
	rtmetrics.Read(t.buf)
	scanned := t.buf[0].Value.Uint64() + t.buf[1].Value.Uint64() + t.buf[2].Value.Uint64()
	if p, change := nextGCPercent(t.cur, scanned); change {
		debug.SetGCPercent(p)
		t.cur = p
		t.sets.Add(1)
	}
}
