package edge

import (
	"bytes"
	"context"
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestMemTrimStep: the trimmer trims only after trimQuietN quiet ticks in
// a row, with enough held beyond the live heap, and not twice within
// trimEvery.
func TestMemTrimStep(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	t0 := time.Unix(1_000_000, 0)
	type tick struct {
		allocated, heap, live uint64 // allocated during the tick
		at                    time.Duration
		trim                  bool
	}
	for _, tc := range []struct {
		name  string
		ticks []tick
	}{
		{"quiet after a burst: trims on the second quiet tick", []tick{
			{0, 300 * mib, 100 * mib, 0, false}, // the first sample only starts the count
			{500 * mib, 300 * mib, 100 * mib, 5 * time.Second, false},
			{1 * mib, 300 * mib, 100 * mib, 10 * time.Second, false},
			{1 * mib, 300 * mib, 100 * mib, 15 * time.Second, true},
		}},
		{"busy: never", []tick{
			{0, 300 * mib, 100 * mib, 0, false},
			{trimQuietBytes, 300 * mib, 100 * mib, 5 * time.Second, false},
			{trimQuietBytes, 300 * mib, 100 * mib, 10 * time.Second, false},
			{trimQuietBytes, 300 * mib, 100 * mib, 15 * time.Second, false},
		}},
		{"a busy tick starts the count again", []tick{
			{0, 300 * mib, 100 * mib, 0, false},
			{0, 300 * mib, 100 * mib, 5 * time.Second, false},
			{10 * mib, 300 * mib, 100 * mib, 10 * time.Second, false},
			{0, 300 * mib, 100 * mib, 15 * time.Second, false},
			{0, 300 * mib, 100 * mib, 20 * time.Second, true},
		}},
		{"too little to return", []tick{
			{0, 100*mib + trimMinExcess - 1, 100 * mib, 0, false},
			{0, 100*mib + trimMinExcess - 1, 100 * mib, 5 * time.Second, false},
			{0, 100*mib + trimMinExcess - 1, 100 * mib, 10 * time.Second, false},
		}},
		{"little beside a large live heap", []tick{
			{0, 1100 * mib, 1000 * mib, 0, false},
			{0, 1100 * mib, 1000 * mib, 5 * time.Second, false},
			{0, 1100 * mib, 1000 * mib, 10 * time.Second, false},
		}},
		{"at most once per trimEvery", []tick{
			{0, 300 * mib, 100 * mib, 0, false},
			{0, 300 * mib, 100 * mib, 5 * time.Second, false},
			{0, 300 * mib, 100 * mib, 10 * time.Second, true},
			{0, 300 * mib, 100 * mib, 15 * time.Second, false},
			{0, 300 * mib, 100 * mib, 20 * time.Second, false},
			{0, 300 * mib, 100 * mib, 10*time.Second + trimEvery - time.Second, false},
			{0, 300 * mib, 100 * mib, 10*time.Second + trimEvery, true},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m memTrim
			var allocs uint64
			for i, k := range tc.ticks {
				allocs += k.allocated
				// heap: the live objects and k.heap-k.live of free pages.
				if got := m.step(memSample{allocs: allocs, objects: k.live, free: k.heap - k.live, live: k.live}, t0.Add(k.at)); got != k.trim {
					t.Errorf("tick %d (%+v): trim %v; want %v", i, k, got, k.trim)
				}
			}
		})
	}
}

// TestTrimLoopReturnsFreeMemory: garbage freed by a GC stays with the
// process until the quiet trimmer returns it to the OS.
func TestTrimLoopReturnsFreeMemory(t *testing.T) {
	released := func() uint64 {
		s := []rtmetrics.Sample{{Name: "/memory/classes/heap/released:bytes"}}
		rtmetrics.Read(s)
		return s[0].Value.Uint64()
	}
	// What earlier tests (or this one's earlier run, -count) left free is
	// returned first: on top of it, the garbage below would pass the
	// scavenger's bound and go back to the OS without the trimmer.
	debug.FreeOSMemory()
	// 96 MiB live and 64 MiB of garbage, in 64 KiB pieces, then a GC: the
	// garbage's pages are free and below the next GC's goal (twice the live
	// heap), where Go's own scavenger leaves them.
	var live, garbage [][]byte
	for range 1536 {
		live = append(live, make([]byte, 64<<10))
	}
	for range 1024 {
		garbage = append(garbage, make([]byte, 64<<10))
	}
	runtime.KeepAlive(garbage)
	garbage = nil
	runtime.GC()
	defer runtime.KeepAlive(live)
	before := released()
	var logs bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() {
		trimLoop(ctx, zerolog.New(&logs).Level(zerolog.DebugLevel), 100*time.Millisecond)
		close(done)
	}()
	for released() < before+trimMinExcess && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	<-done // the loop wrote logs before it returned
	if got := released(); got < before+trimMinExcess {
		t.Errorf("released %d bytes, %d before; want at least %d more", got, before, trimMinExcess)
	}
	if !strings.Contains(logs.String(), "returned the heap's free memory to the OS") {
		t.Errorf("no debug line about the trim: %q", logs.String())
	}
}

// What a trim could not return (fragmentation it left, objects still
// live) is not asked for again: the next trim needs trimMinExcess (and an
// eighth of the live heap) more beyond it. With GOGC=off nothing trims.
func TestMemTrimFloorAndGCOff(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	t0 := time.Unix(1_000_000, 0)
	var m memTrim
	s := memSample{objects: 100 * mib, free: 200 * mib, live: 100 * mib}
	m.step(s, t0)
	m.step(s, t0.Add(5*time.Second))
	if !m.step(s, t0.Add(10*time.Second)) {
		t.Fatal("no trim of 200 MiB free while quiet")
	}
	// The trim left 40 MiB it could not give back.
	after := memSample{allocs: 1 * mib, objects: 140 * mib, live: 100 * mib}
	m.trimmed(after)
	for i, at := range []time.Duration{80, 85, 90, 95} {
		if m.step(after, t0.Add(at*time.Second)) {
			t.Errorf("tick %d: trimmed again with nothing more to return", i)
		}
	}
	more := after
	more.free = max(trimMinExcess, more.live/8)
	if !m.step(more, t0.Add(100*time.Second)) {
		t.Error("no trim once trimMinExcess (and an eighth of the live heap) more could be returned")
	}

	var off memTrim
	s.gcOff = true
	for i := range 5 {
		if off.step(s, t0.Add(time.Duration(i)*5*time.Second)) {
			t.Fatalf("tick %d: trimmed with GOGC=off", i)
		}
	}
}

// readMemSample sees the collector off as the runtime reports it (GOGC=off
// reads as -1 in /gc/gogc:percent), and on at any other setting.
func TestMemSampleSeesGCOff(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	buf, _ := uint64Samples(memSampleNames)
	if !readMemSample(buf).gcOff {
		t.Error("GOGC=off (SetGCPercent(-1)) not seen as off")
	}
	for _, p := range []int{0, 100} {
		debug.SetGCPercent(p)
		if readMemSample(buf).gcOff {
			t.Errorf("GOGC=%d seen as off", p)
		}
	}
}
