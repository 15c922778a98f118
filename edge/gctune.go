package edge

// A floor under the GC's heap goal while the live heap is small.
//
// With Go's default (GOGC=100) the next GC comes when the heap has grown by
// its live size, and never below 4 MiB. A balancer's live heap is small
// until it holds many connections (about 1 MiB with 16 keep-alive
// connections), while each request allocates about 10 KiB of short-lived
// garbage: a GC every few hundred requests, about 1.5 ms of CPU each, 4 % of
// the CPU of a terminated keep-alive request (GODEBUG=gctrace=1). The tuner
// sets GOGC after each GC so that the goal is at least gcFloor above the
// live heap: GOGC = 100 * gcFloor / live, between 100 and gcMaxPercent. At
// gcMaxPercent Go's own minimum goal is 4 MiB * 4 = 16 MiB; from a live heap
// of gcFloor up (about 1,300 idle connections) it is 100, Go's default, so
// the memory of a large fleet is what it was. What the floor costs is at
// most gcFloor of garbage more, under load only: once quiet the trimmer
// (memtrim.go) returns it. GOGC set in the environment (or by
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

// gcPercentFor is the GOGC for a live heap of live bytes.
func gcPercentFor(live uint64) int {
	if live == 0 {
		return gcMaxPercent
	}
	p := uint64(100) * gcFloor / live
	switch {
	case p < 100:
		return 100
	case p > gcMaxPercent:
		return gcMaxPercent
	}
	return int(p)
}

// gcTuner sets GOGC after each GC (see the top of the file).
type gcTuner struct {
	ctx  context.Context
	buf  []rtmetrics.Sample
	cur  int          // the GOGC set last
	sets atomic.Int64 // how many times it was changed (tests)
}

// TuneGC keeps a floor under the GC's heap goal until ctx ends, unless
// GOGC is set in the environment or is not 100 now (someone chose it).
func TuneGC(ctx context.Context, log zerolog.Logger) {
	if t, gogc := startGCTuner(ctx, os.Getenv("GOGC")); t != nil {
		log.Debug().Int("gogc", gogc).Msg("GC: a floor under the heap goal while the live heap is small (GOGC in the environment turns this off)")
	}
}

// startGCTuner starts the tuner and returns it with the GOGC it set; nil
// when env (GOGC's value) or the current setting says the user chose.
func startGCTuner(ctx context.Context, env string) (*gcTuner, int) {
	if env != "" {
		return nil, 0
	}
	t := &gcTuner{ctx: ctx, buf: []rtmetrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/gogc:percent"}}}
	rtmetrics.Read(t.buf)
	if t.buf[1].Value.Uint64() != 100 {
		return nil, 0
	}
	t.cur = 100
	t.adjust()
	gogc := t.cur
	t.arm() // from here on t is the finalizer's
	return t, gogc
}

// arm makes an object whose finalizer runs after the next GC has found it
// unreachable: the tuner adjusts then, and arms again.
func (t *gcTuner) arm() {
	s := new(gcSentinel)
	runtime.SetFinalizer(s, func(*gcSentinel) {
		if t.ctx.Err() != nil {
			if t.cur != 100 {
				debug.SetGCPercent(100)
			}
			return
		}
		t.adjust()
		t.arm()
	})
}

// gcSentinel is big enough not to share a tiny-allocation block (whose
// finalizer would wait for its neighbours).
type gcSentinel struct{ _ [32]byte }

// adjust sets GOGC for the live heap of the last GC, when it moved by
// more than an eighth or to a bound.
func (t *gcTuner) adjust() {
	rtmetrics.Read(t.buf)
	p := gcPercentFor(t.buf[0].Value.Uint64())
	if d := p - t.cur; d != 0 && (d*8 > t.cur || -d*8 > t.cur || p == 100 || p == gcMaxPercent) {
		debug.SetGCPercent(p)
		t.cur = p
		t.sets.Add(1)
	}
}
