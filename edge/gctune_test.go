package edge

import (
	"context"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestGCPercentFor(t *testing.T) {
	for _, tc := range []struct {
		scanned uint64
		want    int
	}{
		{0, 400}, {1 << 20, 400}, {4 << 20, 400}, {5 << 20, 320}, {8 << 20, 200},
		{16 << 20, 100}, {17 << 20, 100}, {1 << 30, 100},
	} {
		if got := gcPercentFor(tc.scanned); got != tc.want {
			t.Errorf("gcPercentFor(%d MiB) = %d, want %d", tc.scanned>>20, got, tc.want)
		}
	}
}

// GOGC moves when the new value is more than an eighth away, or a bound.
func TestNextGCPercent(t *testing.T) {
	for _, tc := range []struct {
		cur     int
		scanned uint64
		want    int
		change  bool
	}{
		{400, 4300 << 10, 400, false}, // 381: within an eighth
		{400, 5 << 20, 320, true},
		{100, 15 << 20, 100, false}, // 106
		{180, 16 << 20, 100, true},  // a bound: always
		{350, 1 << 20, 400, true},   // the other bound
		{100, 0, 400, true},
		{200, 8 << 20, 200, false},
		{200, 9 << 20, 200, false}, // 177
		{200, 10 << 20, 160, true},
	} {
		p, change := nextGCPercent(tc.cur, tc.scanned)
		if p != tc.want || change != tc.change {
			t.Errorf("nextGCPercent(%d, %d KiB) = %d, %v; want %d, %v", tc.cur, tc.scanned>>10, p, change, tc.want, tc.change)
		}
	}
}

// gcNow reads the GOGC in force and what the last GC scanned.
func gcNow() (gogc int, scanned uint64) {
	s, _ := uint64Samples(gcTunerMetrics) // live, stacks, globals, GOGC
	return int(s[3].Value.Uint64()), s[0].Value.Uint64() + s[1].Value.Uint64() + s[2].Value.Uint64()
}

// gcWait runs GCs until GOGC is what ok accepts for what was scanned (the
// tuner's cleanup runs after a GC, on a goroutine of its own), at most 10 s.
func gcWait(t *testing.T, ok func(gogc int, scanned uint64) bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
		gogc, scanned := gcNow()
		if ok(gogc, scanned) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: GOGC %d with %.1f MiB scanned (want %d)", what, gogc, float64(scanned)/(1<<20), gcPercentFor(scanned))
		}
	}
}

// tuned: GOGC is what the tuner keeps for scanned.
func tuned(gogc int, scanned uint64) bool {
	_, change := nextGCPercent(gogc, scanned)
	return !change
}

// The tuner follows the live heap GC after GC, and puts GOGC back to 100
// once its context ends. Not parallel: GOGC is the process's.
func TestGCTunerFollowsLiveHeap(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	ctx, cancel := context.WithCancel(context.Background())
	tu, gogc := startGCTuner(ctx, "")
	if tu == nil {
		cancel()
		t.Fatal("the tuner did not start with GOGC 100 and none in the environment")
	}
	t.Cleanup(func() { // a failure must not leave a tuner running into later tests
		cancel()
		for i := 0; i < 1000 && !tu.stopped.Load(); i++ {
			runtime.GC()
			time.Sleep(time.Millisecond)
		}
	})
	if now, scanned := gcNow(); gogc != now || !tuned(now, scanned) {
		t.Errorf("after the start: GOGC %d (reported %d), want %d for %d bytes scanned", now, gogc, gcPercentFor(scanned), scanned)
	}
	if again, _ := startGCTuner(context.Background(), ""); again != nil {
		t.Error("a second tuner started beside the first")
	}
	gcWait(t, tuned, "small live heap")
	ballast := make([]byte, 40<<20) // live: the tuner must come down to 100
	gcWait(t, func(gogc int, _ uint64) bool { return gogc == 100 }, "live heap over 40 MiB")
	runtime.KeepAlive(ballast)
	gcWait(t, func(gogc int, scanned uint64) bool { return gogc > 100 && tuned(gogc, scanned) }, "the ballast collected")
	if tu.sets.Load() < 2 {
		t.Errorf("the tuner changed GOGC %d times, want at least 2 (down to 100 and back)", tu.sets.Load())
	}
	cancel()
	gcWait(t, func(gogc int, _ uint64) bool { return gogc == 100 && tu.stopped.Load() }, "the tuner's context ended")
}

// GOGC in the environment, or a GOGC already set otherwise, is the
// user's: no tuner.
func TestGCTunerLeavesUsersSetting(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	if tu, _ := startGCTuner(context.Background(), "200"); tu != nil {
		t.Error("the tuner started with GOGC=200 in the environment")
	}
	debug.SetGCPercent(150)
	if tu, _ := startGCTuner(context.Background(), ""); tu != nil {
		t.Error("the tuner started with GOGC set to 150 by someone else")
	}
	if gogc, _ := gcNow(); gogc != 150 {
		t.Errorf("GOGC %d, want the 150 set before", gogc)
	}
	debug.SetGCPercent(-1)
	if tu, _ := startGCTuner(context.Background(), ""); tu != nil {
		t.Error("the tuner started with the collector off")
	}
}
