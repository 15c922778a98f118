package edge

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// gatedOut records each Write; while gate is set, a Write waits on it.
type gatedOut struct {
	mu     sync.Mutex
	writes []string
	gate   chan struct{}
	inside chan struct{} // a Write reached the gate
}

func (o *gatedOut) Write(p []byte) (int, error) {
	o.mu.Lock()
	gate, inside := o.gate, o.inside
	o.mu.Unlock()
	if gate != nil {
		inside <- struct{}{}
		<-gate
	}
	o.mu.Lock()
	o.writes = append(o.writes, string(p))
	o.mu.Unlock()
	return len(p), nil
}

// Lines from many goroutines all reach the output once, each whole and in
// each writer's order; Close returns once they are written, and a line
// after Close is written at once.
func TestLogWriterKeepsEveryLine(t *testing.T) {
	out := &gatedOut{}
	w := NewLogWriter(out)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				fmt.Fprintf(w, "g%d %04d\n", g, i)
			}
		}()
	}
	wg.Wait()
	w.Close()
	fmt.Fprintf(w, "after close\n")
	text := strings.Join(out.writes, "")
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) != 8*500+1 || lines[len(lines)-1] != "after close" {
		t.Fatalf("%d lines, last %q; want %d, last \"after close\"", len(lines), lines[len(lines)-1], 8*500+1)
	}
	next := map[string]int{}
	for _, l := range lines[:len(lines)-1] {
		var g string
		var i int
		if _, err := fmt.Sscanf(l, "%s %d", &g, &i); err != nil || i != next[g] {
			t.Fatalf("line %q: want %s %04d (lines out of order, cut or lost)", l, g, next[g])
		}
		next[g]++
	}
}

// Lines that come while a write is under way go out together in the next
// write; when logBufMax bytes wait, Write waits for the output (nothing is
// dropped) and goes on once it takes them.
func TestLogWriterBatchesAndWaitsWhenFull(t *testing.T) {
	out := &gatedOut{gate: make(chan struct{}), inside: make(chan struct{}, 1)}
	w := NewLogWriter(out)
	fmt.Fprintf(w, "first\n")
	<-out.inside // the writer is inside the output's Write, held there
	queued := 0
	for i := range 100 {
		n, _ := fmt.Fprintf(w, "line %d\n", i)
		queued += n
	}
	big := bytes.Repeat([]byte("x"), logBufMax-queued-3) // the queue is 3 bytes short of full: the next line must wait
	big[len(big)-1] = '\n'
	w.Write(big)
	wrote := make(chan struct{})
	go func() {
		fmt.Fprintf(w, "waited\n")
		close(wrote)
	}()
	time.Sleep(50 * time.Millisecond) // time enough for a wrong Write to return
	select {
	case <-wrote:
		t.Fatal("a line was queued beyond logBufMax while the output was stuck")
	case <-out.inside: // cannot happen: the writer is still held
		t.Fatal("the writer wrote again while its write was held")
	default:
	}
	out.mu.Lock()
	gate := out.gate
	out.gate = nil // later writes go straight through
	out.mu.Unlock()
	close(gate)
	<-wrote
	w.Close()
	w.Close() // a second Close does nothing
	if len(out.writes) < 2 || out.writes[0] != "first\n" {
		t.Fatalf("writes %d, first %.20q", len(out.writes), out.writes)
	}
	second := out.writes[1]
	if !strings.HasPrefix(second, "line 0\nline 1\n") || !strings.Contains(second, "line 99\n") {
		t.Errorf("the 100 lines queued during the first write were not written together: second write starts %.40q", second)
	}
	if last := out.writes[len(out.writes)-1]; !strings.HasSuffix(last, "waited\n") {
		t.Errorf("the line that waited for room is missing at the end: %.40q", last)
	}
}

// logLines writes lines to w and waits for each to be written.
type logLines struct {
	t   *testing.T
	w   *LogWriter
	out *gatedOut
}

func (l logLines) writes() int {
	l.out.mu.Lock()
	defer l.out.mu.Unlock()
	return len(l.out.writes)
}

// line writes one line with size bytes of filler, and waits (10 s at
// most) for the write that carries it.
func (l logLines) line(what string, size int) {
	l.t.Helper()
	n := l.writes()
	fmt.Fprintf(l.w, "%s %s\n", what, strings.Repeat("x", size))
	for deadline := time.Now().Add(10 * time.Second); l.writes() == n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			l.t.Fatalf("%s: not written after 10 s (%d writes)", what, n)
		}
	}
}

// A batch waits every for more lines; once logBusyAfter batches in a row
// came at busyBytes an every or faster, the next waits busy instead. A
// slower batch ends that, before (the count starts again) and after (a
// batch cut short by logBufKeep bytes, slow for an hour's wait).
func TestLogWriterWaitsLongerWhenBusy(t *testing.T) {
	out := &gatedOut{}
	w := newLogWriter(out, time.Millisecond, time.Hour, time.Hour, 100)
	defer w.Close()
	l := logLines{t, w, out}
	for range logBusyAfter - 1 {
		l.line("big, not yet busy", 200)
	}
	l.line("small: the count starts again", 0)
	for range logBusyAfter {
		l.line("big, not yet busy", 200)
	}
	l.line("busy: cut short by logBufKeep bytes, slow for an hour", logBufKeep)
	l.line("not busy any more", 0)
	for range logBusyAfter {
		l.line("big, not yet busy", 200)
	}
	fmt.Fprintf(w, "busy now\n")
	time.Sleep(50 * time.Millisecond) // time enough for a wrong write
	want := 3*logBusyAfter + 2
	if n := l.writes(); n != want {
		t.Fatalf("%d writes: the line after %d batches at busyBytes was written without waiting busy", n, logBusyAfter)
	}
	w.Close()
	if n := l.writes(); n != want+1 || out.writes[n-1] != "busy now\n" {
		t.Fatalf("%d writes, last %.30q: Close did not write the waiting line", n, out.writes[n-1])
	}
}

// A pause between batches (longer than quiet) ends a flow: however many
// batches came at busyBytes, none waits busy; and a flow that had made
// the writer wait busy is over after a pause.
func TestLogWriterPauseEndsBusy(t *testing.T) {
	out := &gatedOut{}
	w := newLogWriter(out, time.Millisecond, time.Hour, time.Nanosecond, 100)
	defer w.Close()
	l := logLines{t, w, out}
	for range logBusyAfter + 2 {
		l.line("big, each after a pause", 200)
	}

	out2 := &gatedOut{}
	w2 := newLogWriter(out2, time.Millisecond, time.Hour, 200*time.Millisecond, 100)
	defer w2.Close()
	l2 := logLines{t, w2, out2}
	for range logBusyAfter {
		l2.line("big, in a flow", 200)
	}
	time.Sleep(300 * time.Millisecond) // a pause longer than quiet
	l2.line("after the pause: not busy", 0)
}

// Close while a Write waits for room: the queued lines and the waiting
// line are all written, and Close returns.
func TestLogWriterCloseWhileWaiting(t *testing.T) {
	out := &gatedOut{gate: make(chan struct{}), inside: make(chan struct{}, 1)}
	w := NewLogWriter(out)
	fmt.Fprintf(w, "first\n")
	<-out.inside
	big := bytes.Repeat([]byte("y"), logBufMax-1)
	big[len(big)-1] = '\n'
	w.Write(big)
	wrote := make(chan struct{})
	go func() {
		fmt.Fprintf(w, "waited\n") // no room: waits
		close(wrote)
	}()
	closed := make(chan struct{})
	go func() {
		w.Close()
		close(closed)
	}()
	time.Sleep(20 * time.Millisecond) // the Close is under way
	out.mu.Lock()
	gate := out.gate
	out.gate = nil
	out.mu.Unlock()
	close(gate)
	<-closed
	<-wrote
	text := strings.Join(out.writes, "")
	if !strings.HasPrefix(text, "first\ny") || !strings.HasSuffix(text, "y\nwaited\n") || len(text) != len("first\n")+len(big)+len("waited\n") {
		t.Errorf("written %d bytes, want every line once in order", len(text))
	}
}

// An output that takes nothing does not hold Close (and so the process's
// exit) for ever: Close gives up after logStuckAfter and says the last lines
// are lost; a line after it is dropped, not waited for.
func TestLogWriterCloseBounded(t *testing.T) {
	defer func(d time.Duration) { logStuckAfter = d }(logStuckAfter)
	logStuckAfter = 50 * time.Millisecond
	out := &gatedOut{gate: make(chan struct{}), inside: make(chan struct{}, 1)}
	defer close(out.gate) // lets the writer's goroutine end
	w := NewLogWriter(out)
	fmt.Fprintf(w, "stuck\n")
	<-out.inside // the writer is inside a Write that does not return
	fmt.Fprintf(w, "queued\n")
	closed := make(chan error, 1)
	go func() {
		err := w.Close()
		fmt.Fprintf(w, "after\n")
		closed <- err
	}()
	select {
	case err := <-closed:
		if err == nil || !strings.Contains(err.Error(), "lost") {
			t.Errorf("Close on a stuck output = %v, want an error saying the lines are lost", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close, or a line after it, waits for a stuck output")
	}
}

// A stuck output with the queue full: Write waits logStuckAfter, then
// lines are dropped (not waited for), until the output takes a batch
// again; then lines queue as before.
func TestLogWriterStuckOutputDrops(t *testing.T) {
	defer func(d time.Duration) { logStuckAfter = d }(logStuckAfter)
	logStuckAfter = 50 * time.Millisecond
	out := &gatedOut{gate: make(chan struct{}), inside: make(chan struct{}, 1)}
	w := NewLogWriter(out)
	defer w.Close()
	fmt.Fprintf(w, "first\n")
	<-out.inside // the writer holds "first" and waits at the gate
	big := bytes.Repeat([]byte("z"), logBufMax-1)
	big[len(big)-1] = '\n'
	w.Write(big) // the queue is full
	returned := make(chan struct{})
	go func() {
		fmt.Fprintf(w, "dropped 1\n") // waits, then is dropped
		fmt.Fprintf(w, "dropped 2\n") // dropped at once
		close(returned)
	}()
	select {
	case <-returned:
	case <-time.After(10 * time.Second):
		t.Fatal("Write waits for ever on a stuck output")
	}
	w.mu.Lock()
	dropped := w.dropped
	w.mu.Unlock()
	if dropped != 2 {
		t.Errorf("%d lines dropped, want 2", dropped)
	}
	out.mu.Lock()
	gate := out.gate
	out.gate = nil // the output takes lines again
	out.mu.Unlock()
	close(gate)
	deadline := time.Now().Add(10 * time.Second)
	for { // until the writer has written "first" and the full queue
		w.mu.Lock()
		n := w.written
		w.mu.Unlock()
		if n >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	fmt.Fprintf(w, "kept\n")
	w.Close()
	text := strings.Join(out.writes, "")
	if !strings.HasPrefix(text, "first\nz") || !strings.HasSuffix(text, "z\nkept\n") || strings.Contains(text, "dropped") {
		t.Errorf("written %q...%q: want first, the queued lines and kept, and no dropped line", text[:min(len(text), 10)], text[max(0, len(text)-10):])
	}
}
