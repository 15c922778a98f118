package tlsmode

import (
	"bytes"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// goid is the calling goroutine's id, from its stack trace's first line.
func goid() int {
	b := make([]byte, 64)
	b = b[:runtime.Stack(b, false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	n, _ := strconv.Atoi(string(b[:bytes.IndexByte(b, ' ')]))
	return n
}

// waitIdle waits until n workers wait for work.
func waitIdle(t *testing.T, n int32) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); goIdle.Load() != n; {
		if time.Now().After(deadline) {
			t.Fatalf("%d workers waiting, want %d", goIdle.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// burst runs n functions with Go at once (each waits until all have
// started: none can wait for another's goroutine) and returns the ids of
// the goroutines they ran on.
func burst(n int) map[int]bool {
	var started, release sync.WaitGroup
	started.Add(n)
	release.Add(1)
	ids := make(chan int, n)
	for range n {
		Go(func() { ids <- goid(); started.Done(); release.Wait() })
	}
	started.Wait()
	release.Done()
	set := map[int]bool{}
	for range n {
		set[<-ids] = true
	}
	return set
}

// Go runs work on waiting workers, keeps at most goIdleMax of them
// waiting, and never makes work wait for a worker.
func TestGoReusesWorkers(t *testing.T) {
	first := burst(goIdleMax + 10) // also takes any worker left by other tests
	if len(first) != goIdleMax+10 {
		t.Fatalf("%d goroutines ran %d functions started at once", len(first), goIdleMax+10)
	}
	waitIdle(t, goIdleMax)
	time.Sleep(20 * time.Millisecond) // the workers counted reach their receive
	if got := goIdle.Load(); got != goIdleMax {
		t.Errorf("%d workers wait after the burst, want %d", got, goIdleMax)
	}
	reused := 0
	for id := range burst(goIdleMax) {
		if first[id] {
			reused++
		}
	}
	if reused < goIdleMax/2 { // all, unless a worker was slow to reach its receive
		t.Errorf("%d of %d functions ran on a waiting worker", reused, goIdleMax)
	}
}
