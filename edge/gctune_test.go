package edge

import (
	"context"
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"testing"
	"time"
)

func TestGCPercentFor(t *testing.T) {
	for _, tc := range []struct {
		live uint64
		want int
	}{
		{0, 400}, {1 << 20, 400}, {4 << 20, 400}, {5 << 20, 320}, {8 << 20, 200},
		{16 << 20, 100}, {17 << 20, 100}, {1 << 30, 100},
	} {
		if got := gcPercentFor(tc.live); got != tc.want {
			t.Errorf("gcPercentFor(%d MiB) = %d, want %d", tc.live>>20, got, tc.want)
		}
	}
}

// gcNow reads the GOGC in force and the live heap of the last GC.
func gcNow() (gogc int, live uint64) {
	s := []rtmetrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/heap/live:bytes"}}
	rtmetrics.Read(s)
	return int(s[0].Value.Uint64()), s[1].Value.Uint64()
}

// gcWait runs GCs until GOGC is want (the tuner's finalizer runs after a
// GC, on a goroutine of its own), at most 10 s.
func gcWait(t *testing.T, want func(live uint64) int, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
		gogc, live := gcNow()
		if gogc == want(live) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: GOGC %d with a live heap of %.1f MiB, want %d", what, gogc, float64(live)/(1<<20), want(live))
		}
	}
}

// The tuner follows the live heap GC after GC, and puts GOGC back to 100
// once its context ends. Not parallel: GOGC is the process's.
func TestGCTunerFollowsLiveHeap(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tu, gogc := startGCTuner(ctx, "")
	if tu == nil {
		t.Fatal("the tuner did not start with GOGC 100 and none in the environment")
	}
	if now, live := gcNow(); gogc != now || now != gcPercentFor(live) {
		t.Errorf("after the start: GOGC %d (reported %d), want %d for a live heap of %d bytes", now, gogc, gcPercentFor(live), live)
	}
	gcWait(t, gcPercentFor, "small live heap")
	ballast := make([]byte, 40<<20) // live: the tuner must come down to 100
	gcWait(t, func(uint64) int { return 100 }, "live heap over 40 MiB")
	runtime.KeepAlive(ballast)
	ballast = nil
	gcWait(t, gcPercentFor, "the ballast collected")
	if tu.sets.Load() < 2 {
		t.Errorf("the tuner changed GOGC %d times, want at least 2 (down to 100 and back)", tu.sets.Load())
	}
	cancel()
	gcWait(t, func(uint64) int { return 100 }, "the tuner's context ended")
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
}
