package edge

// Returning the heap's free memory to the OS once the process has gone
// quiet.
//
// Go keeps the pages a burst of work freed for reuse: its scavenger returns
// only what lies above 110 % of the next GC's heap goal, and that goal is
// twice the live heap. Opening a connection allocates about 60 KB (the
// handshake, the client's certificate chain), most of it garbage once the
// connection is up, so a fleet of idle connections opened in a burst keeps
// up to twice its live size resident for as long as it stays idle. The
// trimmer samples the runtime's counters every trimTick: after trimQuietN
// ticks in a row with under trimQuietBytes allocated in each, when what a
// GC and a return to the OS would give back (free pages, and objects
// beyond the live heap of the last GC; not the free space inside spans in
// use, which no GC returns) exceeds trimMinExcess and an eighth of the
// live heap, beyond what the last trim could not return, it runs
// debug.FreeOSMemory (a GC, then every free page returned), at most once
// per trimEvery. A process allocating trimQuietBytes every trimTick never
// trims (its free pages are about to be used again), nor one run with
// GOGC=off.

import (
	"context"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"time"

	"github.com/rs/zerolog"
)

const (
	trimTick       = 5 * time.Second
	trimQuietN     = 2
	trimQuietBytes = 2 << 20
	trimMinExcess  = 8 << 20
	trimEvery      = time.Minute
)

// memSample is what the trimmer reads from the runtime.
type memSample struct {
	allocs  uint64 // bytes allocated since the process started
	objects uint64 // heap objects, live or not yet collected
	free    uint64 // free heap pages not returned to the OS
	live    uint64 // the live heap at the last GC
	gcOff   bool   // GOGC=off: the process asked for no collections
}

var memSampleNames = []string{
	"/gc/heap/allocs:bytes",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/free:bytes",
	"/gc/heap/live:bytes",
	"/gc/gogc:percent",
}

// uint64Samples makes the samples of names and reads them once; missing is
// the first name the runtime does not report as a uint64 ("" when none).
func uint64Samples(names []string) (buf []rtmetrics.Sample, missing string) {
	buf = make([]rtmetrics.Sample, len(names))
	for i, name := range names {
		buf[i].Name = name
	}
	rtmetrics.Read(buf)
	for _, b := range buf {
		if b.Value.Kind() != rtmetrics.KindUint64 {
			return buf, b.Name
		}
	}
	return buf, ""
}

// readMemSample reads the runtime's counters.
func readMemSample(buf []rtmetrics.Sample) memSample {
	rtmetrics.Read(buf)
	v := func(i int) uint64 { return buf[i].Value.Uint64() }
	return memSample{allocs: v(0), objects: v(1), free: v(2), live: v(3), gcOff: int64(v(4)) < 0} // off reads as -1
}

// excess is what a GC and a full return to the OS would give back: the
// free pages, and the objects beyond the last GC's live heap (garbage, or
// allocated since). Free space inside spans still in use (the heap's
// fragmentation) is not: no GC returns it.
func (s memSample) excess() uint64 {
	e := s.free
	if s.objects > s.live {
		e += s.objects - s.live
	}
	return e
}

// memTrim decides when to trim from successive samples.
type memTrim struct {
	prev    memSample
	started bool
	quiet   int       // quiet ticks in a row
	last    time.Time // the last trim
	floor   uint64    // the excess right after the last trim: what it could not return
}

// step takes the sample of a tick taken at now and says whether to trim.
func (m *memTrim) step(s memSample, now time.Time) bool {
	if !m.started {
		m.prev, m.started = s, true
		return false
	}
	allocated := s.allocs - m.prev.allocs
	m.prev = s
	if allocated >= trimQuietBytes {
		m.quiet = 0
		return false
	}
	m.quiet++
	if m.quiet < trimQuietN || now.Sub(m.last) < trimEvery || s.gcOff {
		return false
	}
	e := s.excess()
	if e < m.floor+trimMinExcess || e-m.floor < s.live/8 {
		return false
	}
	m.last, m.quiet = now, 0
	return true
}

// trimmed records the sample taken right after a trim.
func (m *memTrim) trimmed(after memSample) {
	m.prev = after // the GC's own allocations are not the process's
	m.floor = after.excess()
}

// TrimMemoryWhenQuiet returns the heap's free memory to the OS whenever
// the process has gone quiet (see above), until ctx ends. The command runs
// it once per process, beside its Edge.
func TrimMemoryWhenQuiet(ctx context.Context, log zerolog.Logger) { trimLoop(ctx, log, trimTick) }

// trimLoop samples every tick.
func trimLoop(ctx context.Context, log zerolog.Logger, tick time.Duration) {
	buf, missing := uint64Samples(memSampleNames)
	if missing != "" {
		log.Warn().Str("metric", missing).Msg("the Go runtime lacks a metric the memory trimmer reads: free heap memory is left to Go's own scavenger")
		return
	}
	var m memTrim
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s := readMemSample(buf)
			if !m.step(s, now) {
				continue
			}
			debug.FreeOSMemory()
			after := readMemSample(buf)
			m.trimmed(after)
			log.Debug().Uint64("freeable_before", s.excess()).Uint64("freeable_after", after.excess()).Uint64("live", after.live).
				Msg("quiet: returned the heap's free memory to the OS")
		}
	}
}
