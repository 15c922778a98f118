//go:build linux

package tlsmode

import (
	"bytes"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rlFDs counts this process's sockets and pipes.
func rlFDs(t testing.TB) (sockets, pipes int) {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		l, _ := os.Readlink("/proc/self/fd/" + e.Name())
		switch {
		case strings.HasPrefix(l, "socket:"):
			sockets++
		case strings.HasPrefix(l, "pipe:"):
			pipes++
		}
	}
	return sockets, pipes
}

// rlRSS is this process's resident set size in bytes (/proc/self/statm).
func rlRSS(t testing.TB) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return pages * int64(os.Getpagesize())
}

// rlIdle opens n idle relayed streams on relay, each having carried one
// small message each way, and returns them.
func rlIdle(t testing.TB, relay *rlRelay, n int) []*rlTestStream {
	t.Helper()
	streams := make([]*rlTestStream, n)
	buf := make([]byte, 5)
	for i := range streams {
		s := rlNewStream(t, relay)
		for _, p := range [][2]*net.TCPConn{{s.client, s.server}, {s.server, s.client}} {
			if _, err := p[0].Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			_ = p[1].SetReadDeadline(time.Now().Add(rlWaitLong))
			if _, err := io.ReadFull(p[1], buf); err != nil || !bytes.Equal(buf, []byte("hello")) {
				t.Fatalf("stream %d: %q, %v", i, buf, err)
			}
		}
		streams[i] = s
	}
	return streams
}

// 2,000 idle relayed streams: the goroutine count does not grow with them
// (fewer than 50 more), the relay holds exactly 2 descriptors per stream
// (sockets: the test's own two ends are the other 2 of 4) and no pipe
// (its own counts: held by streams and pooled, whatever other tests'
// relays and Pipe's pools hold).
func TestRelayFootprint(t *testing.T) {
	const n = 2000
	relay := rlTestRelay(t, 2, nil)
	rlIdle(t, relay, 1) // warm up: the netpoller, the loops' buffers
	runtime.GC()
	g0 := runtime.NumGoroutine()
	fd0, _ := rlFDs(t)
	streams := rlIdle(t, relay, n)
	runtime.GC()
	g1 := runtime.NumGoroutine()
	fd1, _ := rlFDs(t)
	if got, _, _ := relay.stats(); got != n+1 {
		t.Fatalf("streams in the relay: got %d; want %d", got, n+1)
	}
	if g1-g0 >= 50 {
		t.Errorf("goroutines: got %d more for %d idle streams; want fewer than 50", g1-g0, n)
	}
	if fd1-fd0 != 4*n {
		t.Errorf("sockets: got %d more for %d streams; want %d (the relay's 2 and the test's 2 per stream)", fd1-fd0, n, 4*n)
	}
	if _, _, pipes := relay.stats(); pipes != 0 || relay.pooled() != 0 {
		t.Errorf("pipes: %d held by idle streams, %d pooled; want none", pipes, relay.pooled())
	}
	t.Logf("%d idle streams: %+d goroutines, %.2f descriptors per stream besides the test's own two", n, g1-g0, float64(fd1-fd0)/n-2)
	for _, s := range streams {
		s.client.Close()
		s.server.Close()
	}
	for _, s := range streams {
		s.wait(t)
	}
}

// BenchmarkRelayIdle reports what an idle relayed stream costs:
// goroutines, descriptors and resident memory per stream (the memory
// includes the test's own two ends, Go conns of ~1 KB each).
//
//	go test ./tlsmode -run '^$' -bench RelayIdle -benchtime 2000x
func BenchmarkRelayIdle(b *testing.B) {
	relay := rlTestRelay(b, runtime.GOMAXPROCS(0), nil)
	rlIdle(b, relay, 1)
	runtime.GC()
	g0, rss0 := runtime.NumGoroutine(), rlRSS(b)
	fd0, _ := rlFDs(b)
	b.ResetTimer()
	streams := rlIdle(b, relay, b.N)
	b.StopTimer()
	runtime.GC()
	fd1, _ := rlFDs(b)
	b.ReportMetric(float64(runtime.NumGoroutine()-g0)/float64(b.N), "goroutines/stream")
	b.ReportMetric(float64(fd1-fd0)/float64(b.N)-2, "relay-fds/stream")
	b.ReportMetric(float64(rlRSS(b)-rss0)/float64(b.N), "rss-bytes/stream")
	for _, s := range streams {
		s.client.Close()
		s.server.Close()
	}
}
