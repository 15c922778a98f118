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
// ticks in a row with under trimQuietBytes allocated in each, when the heap
// holds more than trimMinExcess (and more than an eighth of the live heap)
// beyond what was live at the last GC, it runs debug.FreeOSMemory (a GC,
// then every free page returned), at most once per trimEvery. A busy
// process never trims: its free pages are about to be used again.

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
	trimMinExcess  = 32 << 20
	trimEvery      = time.Minute
)

// memSample is what the trimmer reads from the runtime.
type memSample struct {
	allocs uint64 // bytes allocated since the process started
	heap   uint64 // heap memory held: objects, unused span space, free pages not returned
	live   uint64 // the live heap at the last GC
}

var memSampleNames = []string{
	"/gc/heap/allocs:bytes",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/unused:bytes",
	"/memory/classes/heap/free:bytes",
	"/gc/heap/live:bytes",
}

// readMemSample reads the runtime's counters.
func readMemSample(buf []rtmetrics.Sample) memSample {
	rtmetrics.Read(buf)
	v := func(i int) uint64 {
		if buf[i].Value.Kind() != rtmetrics.KindUint64 {
			return 0
		}
		return buf[i].Value.Uint64()
	}
	return memSample{allocs: v(0), heap: v(1) + v(2) + v(3), live: v(4)}
}

// memTrim decides when to trim from successive samples.
type memTrim struct {
	prev    memSample
	started bool
	quiet   int       // quiet ticks in a row
	last    time.Time // the last trim
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
	if m.quiet < trimQuietN || now.Sub(m.last) < trimEvery || s.heap < s.live {
		return false
	}
	excess := s.heap - s.live
	if excess < trimMinExcess || excess < s.live/8 {
		return false
	}
	m.last, m.quiet = now, 0
	return true
}

// TrimMemoryWhenQuiet returns the heap's free memory to the OS whenever
// the process has gone quiet (see above), until ctx ends. The command runs
// it once per process, beside its Edge.
func TrimMemoryWhenQuiet(ctx context.Context, log zerolog.Logger) { trimLoop(ctx, log, trimTick) }

// trimLoop samples every tick.
func trimLoop(ctx context.Context, log zerolog.Logger, tick time.Duration) {
	buf := make([]rtmetrics.Sample, len(memSampleNames))
	for i, name := range memSampleNames {
		buf[i].Name = name
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
			m.prev = after // the GC's own allocations are not the process's
			log.Debug().Uint64("heap_before", s.heap).Uint64("heap_after", after.heap).Uint64("live", after.live).
				Msg("quiet: returned the heap's free memory to the OS")
		}
	}
}
