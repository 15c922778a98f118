package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The flood test of SECURITY.md's threat model ("an attacker can open any
// number of TCP connections from many addresses ... read slowly or not at
// all"): 2,000 junk and slow connections (flood_junk_test.go) from 200
// source addresses hit one listener while 50 established mTLS streams and
// a steady rate of mTLS HTTP requests go on. It runs a tlsedge built
// without -race (the race detector multiplies memory and CPU, so its
// figures would say nothing about tlsedge), reads go_goroutines and
// process_resident_memory_bytes from the admin endpoint's /metrics, and
// the Go heap right after a GC from its /debug/pprof/heap?gc=1&debug=1
// (runtime.MemStats, the figures runtime/metrics' heap classes give).

const (
	flJunkCount   = 2000
	flWarmSilent  = 1000 // more silent connections in the warm-up flood: its peak tops the measured one's
	flStreamCount = 50
	flStreamEvery = 200 * time.Millisecond
	flRequestGap  = 50 * time.Millisecond  // a steady 20 requests a second
	flBeforeFor   = 2 * time.Second        // traffic measured before the flood
	flAfterFor    = 500 * time.Millisecond // and after it
	// flGoroutineSlack is what go_goroutines may exceed its baseline by
	// afterwards without a leak: a scrape gathers the collectors on a
	// few goroutines of its own, and timers (failure-log summaries,
	// session ticket rotation) briefly run on one. A leak of the flood
	// would be hundreds.
	flGoroutineSlack = 5
	// flHeapSlack: the Go heap's objects after a GC (the live heap) are
	// afterwards within 10 % of the baseline. The heap in use (spans)
	// is reported: it also counts the free room in spans, which moves
	// by 2-8 % from run to run (fragmentation), not with what is kept.
	flHeapSlack   = 0.10
	flSettleBound = 30 * time.Second
	// RSS is watched after the flood until it has come down (flat
	// within 1 % for flRSSFlat, at least half-way back), at most
	// flRSSBound: Go returns freed pages to the OS lazily (a paced
	// background scavenger), here over about 2-10 s.
	flRSSFlat  = 5 * time.Second
	flRSSBound = 30 * time.Second
)

// Spec (the hardening issue; SECURITY.md "a handshake flood starving
// established traffic"; clienthello_timeout, handshake_timeout,
// read_header_timeout): during a flood of 2,000 junk connections the
// established mTLS streams and the keep-alive requests see no error, their
// connections are never dropped and no request is sent twice; tlsedge
// closes every junk connection itself; a client without a certificate and
// a dribbled head never reach the server; afterwards go_goroutines is back
// at its baseline (+flGoroutineSlack) and the Go heap (live objects, after
// a GC) within 10 %.
// Latencies and RSS are reported, never asserted.
func TestFlood(t *testing.T) {
	t.Parallel()
	began := time.Now()
	f := flStart(t, flBuildPlain(t))
	t.Logf("tlsedge built (without -race) and started in %v", time.Since(began).Round(time.Millisecond))
	hello, err := flClientHello()
	if err != nil {
		t.Fatalf("capturing a ClientHello: %v", err)
	}
	junk := &flJunk{addr: f.addr, halfHello: hello[:len(hello)/2], roots: thePKI.serverCA.Pool(), cert: f.cert,
		work: make(chan struct{}, flJunkHandshakes)}
	steady := f.newSteady(t)
	if _, err := steady.get("/first"); err != nil {
		t.Fatalf("first request: %v", err)
	}
	fresh := f.settledBaseline(t)

	// Warm-up: a rehearsal of the measured run (streams, requests, a
	// flood larger than the measured one), so that the baseline holds
	// what Go keeps at its peak size once reached: the runtime's
	// goroutine descriptors (about 0.5 KB per goroutine at the peak),
	// maps grown to the peak's size. A leak is then what the measured
	// run adds.
	tr := f.startTraffic(t, steady, flWarmup)
	warm := junk.flood(flJunkCount, flWarmSilent)
	tr.end(t)
	base := f.settledBaseline(t)
	t.Logf("before any flood: goroutines %v, heap objects %s, heap in use %s, RSS %s",
		fresh.goroutines, flMiB(fresh.heap), flMiB(fresh.spans), flMiB(fresh.rss))
	t.Logf("baseline (after a warm-up flood of %d + %d silent, %v; settled, GC run): goroutines %v, heap objects %s, heap in use %s, RSS %s",
		flJunkCount, flWarmSilent, warm.took.Round(time.Millisecond), base.goroutines, flMiB(base.heap), flMiB(base.spans), flMiB(base.rss))

	// The measured run: traffic alone, then the flood (sampled every
	// 250 ms for the peaks), then a little traffic after it.
	tr = f.startTraffic(t, steady, flBefore)
	time.Sleep(flBeforeFor)
	t0 := f.tallies(t)
	tr.phase.Store(flDuring)
	floodDone := make(chan *flJunkTally, 1)
	go func() { floodDone <- junk.flood(flJunkCount, 0) }()
	peak := base
	var tally *flJunkTally
	for tally == nil {
		select {
		case tally = <-floodDone:
		case <-time.After(250 * time.Millisecond):
			peak = peak.max(f.snapshot(t, false))
		}
	}
	tr.phase.Store(flAfter)
	rssDone := make(chan flRSSWatch, 1)
	go func() { rssDone <- flWatchRSS(f.pid(), fresh.rss, flRSSBound) }()
	time.Sleep(flAfterFor)
	tr.end(t)
	t1 := f.tallies(t)
	t.Logf("flood of %d junk connections from %d addresses lasted %v (until the last ended); tlsedge used %.1f s of CPU\n%s",
		flJunkCount, flSources, tally.took.Round(time.Millisecond), t1.cpu-t0.cpu, tally.report())
	t.Logf("established traffic: %d streams, one message each per %v; requests one per %v on one keep-alive connection:\n%s",
		flStreamCount, flStreamEvery, flRequestGap, tr.lat.report())
	t.Logf("tlsedge's counts during the flood:\n%s", t1.diff(t0))

	// The steady requests: none failed, one connection throughout, and
	// each reached the server exactly once (a dropped connection would
	// make Go's client retry a GET silently).
	if errs := steady.failures(); len(errs) > 0 {
		t.Errorf("steady requests: %d of %d failed, e.g. %v", len(errs), steady.count(), errs[:min(len(errs), 5)])
	}
	if n := steady.dials.Load(); n != 1 {
		var lines []string
		for _, c := range steady.locals() {
			for _, l := range f.findLogs(isAccess(c)) {
				lines = append(lines, fmt.Sprintf("%s: %v", c, l))
			}
		}
		t.Errorf("the steady requests' keep-alive connection was dialled %d times; want 1 (never dropped); tlsedge's access lines of them:\n%s",
			n, strings.Join(lines, "\n"))
	}
	seen := map[string]int{}
	for _, r := range f.api.Requests() {
		seen[r.Path]++
		if r.Path == "/dribble" || r.Path == "/nocert" {
			t.Errorf("the server got %s %s from a junk connection; want it never contacted", r.Method, r.Path)
		}
	}
	for n := range steady.count() {
		if p := fmt.Sprintf("/steady/%d", n); seen[p] != 1 {
			t.Errorf("the server got %s %d times; want once", p, seen[p])
		}
	}

	// The junk of both floods: tlsedge ended every connection, nothing
	// came back to a client without a certificate, and the per-address
	// limits played no part.
	for _, j := range []*flJunkTally{warm, tally} {
		for k := range flKinds {
			if j.notClosed[k] > 0 || j.dialErrs[k] > 0 {
				t.Errorf("junk %s: %d still open at %v (tlsedge never closed them), %d connects failed (%s)",
					flKindNames[k], j.notClosed[k], flJunkBound, j.dialErrs[k], j.dialErr[k])
			}
		}
		for _, v := range j.violations {
			t.Errorf("junk connection: %s", v)
		}
	}
	for _, reason := range []string{"per_ip", "rate"} {
		if n := t1.refused[reason] - t0.refused[reason]; n != 0 {
			t.Errorf("refused{reason=%s} grew by %v during the flood; want 0 (the flood is spread over %d addresses to measure the flood, not the per-address limits)",
				reason, n, flSources)
		}
	}

	// Back to the baseline: goroutines and the live heap (after GCs),
	// polled (bounded) while tlsedge finishes closing.
	var after flSnap
	settleStart := time.Now()
	ok := poll(flSettleBound, func() bool {
		after = f.snapshot(t, true)
		return after.goroutines <= base.goroutines+flGoroutineSlack && after.heap <= base.heap*(1+flHeapSlack)
	})
	t.Logf("goroutines: baseline %v, peak %v, after %v (settled in %v)",
		base.goroutines, peak.goroutines, after.goroutines, time.Since(settleStart).Round(time.Millisecond))
	t.Logf("heap objects (live after a GC): baseline %s, peak %s, after %s (%+.1f %%)",
		flMiB(base.heap), flMiB(peak.heap), flMiB(after.heap), 100*(after.heap-base.heap)/base.heap)
	t.Logf("heap in use (spans, after a GC): baseline %s, peak %s, after %s (%+.1f %%; reported only)",
		flMiB(base.spans), flMiB(peak.spans), flMiB(after.spans), 100*(after.spans-base.spans)/base.spans)
	if !ok {
		if after.goroutines > base.goroutines+flGoroutineSlack {
			t.Errorf("go_goroutines %v %v after the flood ended; want at most the baseline %v + %d",
				after.goroutines, flSettleBound, base.goroutines, flGoroutineSlack)
		}
		if after.heap > base.heap*(1+flHeapSlack) {
			t.Errorf("Go heap objects (HeapAlloc after a GC) %s %v after the flood ended; want within %.0f %% of the baseline %s",
				flMiB(after.heap), flSettleBound, 100*flHeapSlack, flMiB(base.heap))
		}
	}
	if after.heap < base.heap*(1-flHeapSlack) {
		// Not a leak, but not "within 10 %" either: the baseline was not settled.
		t.Errorf("Go heap objects after the flood %s are more than %.0f %% below the baseline %s; the baseline was not settled",
			flMiB(after.heap), 100*flHeapSlack, flMiB(base.heap))
	}

	w := <-rssDone
	t.Logf("RSS: before any flood %s; peak %s in the flood (process_resident_memory_bytes, sampled), %s in the process's life (VmHWM, the warm-up included); %s (the test ran GCs through /debug/pprof in the first second)",
		flMiB(fresh.rss), flMiB(peak.rss), flMiB(float64(w.hwm)), w.report())
}

// ---------------------------------------------------------------- measures

// flSnap is one reading of tlsedge's goroutines, Go heap and RSS.
type flSnap struct {
	goroutines float64
	heap       float64 // heap objects: /memory/classes/heap/objects (go_memstats_heap_alloc_bytes)
	spans      float64 // heap in use: objects + unused in their spans (go_memstats_heap_inuse_bytes)
	rss        float64
}

func (s flSnap) max(o flSnap) flSnap {
	return flSnap{max(s.goroutines, o.goroutines), max(s.heap, o.heap), max(s.spans, o.spans), max(s.rss, o.rss)}
}

// flGC is the admin request that runs a GC (runtime.GC) and answers the
// heap profile in text, ending with the runtime.MemStats read right after
// that GC, before the profile is written.
const flGC = "/debug/pprof/heap?gc=1&debug=1"

// flMemStat finds "# <name> = <n>" in flGC's answer: HeapAlloc (bytes of
// heap objects, = /memory/classes/heap/objects) and HeapInuse (bytes of
// in-use spans, = objects + /memory/classes/heap/unused).
var flMemStat = regexp.MustCompile(`(?m)^# (HeapAlloc|HeapInuse) = (\d+)$`)

// snapshot reads go_goroutines, go_memstats_heap_alloc_bytes,
// go_memstats_heap_inuse_bytes and process_resident_memory_bytes from
// /metrics. With gc, the two heap figures are instead the ones read right
// after a GC (the second of two: it also empties what sync.Pools kept
// through the first): /metrics would count the garbage of the profile
// written since, which grows with the profile's records (0.3 MiB after
// two floods, 5 % of the heap).
func (f *flEdge) snapshot(t *testing.T, gc bool) flSnap {
	t.Helper()
	stats := map[string]float64{}
	for i := 0; gc && i < 2; i++ {
		resp, err := f.admin.c.Get(f.admin.base + flGC)
		if err != nil {
			t.Fatalf("GET %s: %v", flGC, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: status %d, %v", flGC, resp.StatusCode, err)
		}
		for _, m := range flMemStat.FindAllSubmatch(body, -1) {
			stats[string(m[1])], _ = strconv.ParseFloat(string(m[2]), 64)
		}
		if len(stats) != 2 {
			t.Fatalf("GET %s: no HeapAlloc and HeapInuse lines in the answer", flGC)
		}
	}
	m := f.admin.metrics()
	s := flSnap{m.value("go_goroutines", nil), m.value("go_memstats_heap_alloc_bytes", nil),
		m.value("go_memstats_heap_inuse_bytes", nil), m.value("process_resident_memory_bytes", nil)}
	if gc {
		s.heap, s.spans = stats["HeapAlloc"], stats["HeapInuse"]
	}
	return s
}

// settledBaseline takes snapshots (after GCs) until go_goroutines reads
// the same twice in a row, 500 ms apart (bounded), and returns the last.
func (f *flEdge) settledBaseline(t *testing.T) flSnap {
	t.Helper()
	prev := f.snapshot(t, true)
	var s flSnap
	if !poll(waitLong, func() bool {
		time.Sleep(500 * time.Millisecond)
		s = f.snapshot(t, true)
		same := s.goroutines == prev.goroutines
		prev = s
		return same
	}) {
		t.Fatalf("go_goroutines did not settle within %v after the warm-up: last %v", waitLong, s.goroutines)
	}
	return s
}

// flTallies are tlsedge's own counts of what it refused and why.
type flTallies struct {
	cpu      float64 // process_cpu_seconds_total
	accepted float64
	refused  map[string]float64 // by reason
	hello    map[string]float64 // clienthello errors by kind
	hs       map[string]float64 // handshakes by result
}

func (f *flEdge) tallies(t *testing.T) flTallies {
	t.Helper()
	m := f.admin.metrics()
	by := func(name, label string) map[string]float64 {
		out := map[string]float64{}
		if fam := m[name]; fam != nil {
			for _, s := range fam.Metric {
				for _, l := range s.Label {
					if l.GetName() == label {
						out[l.GetValue()] += s.GetCounter().GetValue()
					}
				}
			}
		}
		return out
	}
	return flTallies{
		cpu:      m.value("process_cpu_seconds_total", nil),
		accepted: m.value("tlsedge_connections_accepted_total", nil),
		refused:  by("tlsedge_connections_refused_total", "reason"),
		hello:    by("tlsedge_clienthello_errors_total", "kind"),
		hs:       by("tlsedge_tls_handshakes_total", "result"),
	}
}

// diff is what grew from o to t, for the log.
func (t flTallies) diff(o flTallies) string {
	line := func(name string, now, then map[string]float64) string {
		var parts []string
		for k, v := range now {
			if d := v - then[k]; d != 0 {
				parts = append(parts, fmt.Sprintf("%s %v", k, d))
			}
		}
		slices.Sort(parts)
		if len(parts) == 0 {
			parts = []string{"none"}
		}
		return fmt.Sprintf("  %s: %s\n", name, strings.Join(parts, ", "))
	}
	return fmt.Sprintf("  accepted: %v\n", t.accepted-o.accepted) + line("refused", t.refused, o.refused) +
		line("clienthello errors", t.hello, o.hello) + line("handshakes", t.hs, o.hs)
}

// flMiB formats bytes as MiB.
func flMiB(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }

// flRSSWatch is RSS read from /proc every 250 ms after the flood.
type flRSSWatch struct {
	fresh   float64 // RSS before any flood
	hwm     int64   // VmHWM: the peak RSS of the process
	samples []flRSSSample
	err     error
}

type flRSSSample struct {
	at  time.Duration // since the flood ended
	rss int64
}

// flWatchRSS reads /proc/pid/status every 250 ms until RSS has come down
// (see down), or bound has passed.
func flWatchRSS(pid int, fresh float64, bound time.Duration) flRSSWatch {
	w := flRSSWatch{fresh: fresh}
	start := time.Now()
	for {
		rss, hwm, err := flProcRSS(pid)
		if err != nil {
			w.err = err
			return w
		}
		w.hwm = hwm
		w.samples = append(w.samples, flRSSSample{time.Since(start), rss})
		if w.down() >= 0 || time.Since(start) > bound {
			return w
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// down is the index of the sample where RSS came down: from it on, RSS
// stayed within 1 % of the last sample for flRSSFlat, below half-way
// between the peak and RSS before any flood. -1: not yet.
func (w flRSSWatch) down() int {
	last := w.samples[len(w.samples)-1]
	if float64(last.rss) > w.fresh+(float64(w.hwm)-w.fresh)/2 {
		return -1
	}
	i := len(w.samples) - 1
	for i > 0 && flAbs(float64(w.samples[i-1].rss-last.rss)) <= float64(last.rss)/100 {
		i--
	}
	if last.at-w.samples[i].at < flRSSFlat {
		return -1
	}
	return i
}

func flAbs(x float64) float64 { return max(x, -x) }

// report says how RSS came down after the flood.
func (w flRSSWatch) report() string {
	if w.err != nil || len(w.samples) == 0 {
		return fmt.Sprintf("not watched: %v", w.err)
	}
	first, last := w.samples[0], w.samples[len(w.samples)-1]
	i := w.down()
	if i < 0 {
		return fmt.Sprintf("%s when the flood ended, still %s %v later (not flat, or not half-way down yet)",
			flMiB(float64(first.rss)), flMiB(float64(last.rss)), last.at.Round(10*time.Millisecond))
	}
	s := w.samples[i]
	return fmt.Sprintf("%s when the flood ended, down to %s (%+.0f %% over RSS before any flood) %v later, flat (±1 %%) for the %v after that",
		flMiB(float64(first.rss)), flMiB(float64(s.rss)), 100*(float64(s.rss)-w.fresh)/w.fresh,
		s.at.Round(10*time.Millisecond), (last.at - s.at).Round(10*time.Millisecond))
}

// flProcRSS reads VmRSS and VmHWM (bytes) of process pid.
func flProcRSS(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/status %s: %w", pid, k, err)
		}
		if k == "VmRSS" {
			rss = n << 10
		} else {
			hwm = n << 10
		}
	}
	return rss, hwm, nil
}
