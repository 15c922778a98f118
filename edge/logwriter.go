package edge

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// LogWriter hands log lines to one goroutine that writes them to out, at
// most one write each logBatchEvery while lines come (sooner when
// logBufKeep bytes wait): a connection's goroutine never makes the write(2)
// of its access line itself, and under load many lines go in one write.
// While lines come at logBusyBytes a logBatchEvery or faster (hundreds a
// second, for logBusyAfter batches in a row, with no pause) a batch to a
// file or a terminal waits logBatchBusy instead: each such write wakes the
// runtime's monitor (below), which at one write each 10 ms cost 6 % of
// the CPU of a new passthrough connection (docs/operations.md, CPU).
// A write through os.File is a blocking system call, which, when it came
// after the process had been idle, woke Go's runtime monitor (sysmon), and
// while it lasted let the monitor hand the goroutine's P to another
// thread: a thread switch for about one request in three under keep-alive
// load, and the monitor awake polling every 20 µs (docs/operations.md,
// CPU). So a batch goes out in a raw write where the output cannot make it
// wait (logDirect: a pipe, a socket; not a file, which can wait for the
// disk). Lines keep their order and none is dropped
// while the output takes them: when logBufMax bytes wait, Write waits for
// room. An output that takes nothing for logStuckAfter while Write waits
// (a stuck pipe to a log collector) must not stall every connection and
// the exit: from then on lines are dropped (counted) until it takes a
// batch again. Close writes what is left, waiting at most logStuckAfter;
// lines after Close are written at once.
type LogWriter struct {
	out io.Writer
	// How long a batch waits for more lines: every, or busy while lines
	// come at busyBytes an every or faster, with no pause longer than
	// quiet (logBatchEvery, logBatchBusy, logBusyBytes; set once, before
	// run starts). busy is every for an output written raw (logDirect):
	// its writes do not wake the monitor.
	every, busy, quiet time.Duration
	busyBytes          int
	kick               chan struct{} // a batch is waiting (capacity 1)
	full               chan struct{} // logBufKeep bytes wait, or Close: write now (capacity 1)
	done               chan struct{} // closed when the writer has returned

	mu      sync.Mutex
	room    sync.Cond // a batch was written
	buf     []byte    // lines not yet taken by the writer
	closed  bool
	written uint64 // batches written
	stuck   bool   // the output took nothing for logStuckAfter: lines are dropped
	dropped uint64 // lines dropped while stuck
}

// logStuckAfter is how long the output may take nothing, while lines wait
// for room or for Close, before lines are dropped.
var logStuckAfter = 5 * time.Second

// logBufMax is how many bytes of lines may wait for the writer; from
// logBufKeep on the writer does not wait for the batch's time, and a batch
// buffer that grew past twice that is not kept for the next one.
const (
	logBufMax  = 1 << 20
	logBufKeep = 64 << 10
)

// A batch waits logBatchEvery for more lines, or logBatchBusy once
// logBusyAfter batches in a row came at logBusyBytes a logBatchEvery or
// faster (at 300-400 bytes a line, about 600 lines a second), with no
// pause longer than logBatchEvery between them: a sustained flow, not a
// burst (a start, a reload). A slower batch or a pause ends it.
const (
	logBatchEvery = 10 * time.Millisecond
	logBatchBusy  = 100 * time.Millisecond
	logBusyBytes  = 2 << 10
	logBusyAfter  = 3
)

// NewLogWriter starts the writer of out.
func NewLogWriter(out io.Writer) *LogWriter {
	return newLogWriter(out, logBatchEvery, logBatchBusy, logBatchEvery, logBusyBytes)
}

// newLogWriter is NewLogWriter with the batches' waits given (tests).
func newLogWriter(out io.Writer, every, busy, quiet time.Duration, busyBytes int) *LogWriter {
	w := &LogWriter{out: logDirect(out), every: every, busy: busy, quiet: quiet, busyBytes: busyBytes,
		kick: make(chan struct{}, 1), full: make(chan struct{}, 1), done: make(chan struct{})}
	if !logWakesMonitor(w.out) {
		w.busy = every // waiting longer would only delay the lines
	}
	w.room.L = &w.mu
	go w.run()
	return w
}

// Write queues p (a whole line: zerolog writes one a call) for the writer.
func (w *LogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	if !w.closed && !w.stuck && len(w.buf) > 0 && len(w.buf)+len(p) > logBufMax {
		w.waitRoom(len(p))
	}
	if w.stuck {
		w.dropped++
		w.mu.Unlock()
		return len(p), nil
	}
	if w.closed {
		w.mu.Unlock()
		t := time.NewTimer(logStuckAfter)
		defer t.Stop()
		select {
		case <-w.done: // what was queued is written first
		case <-t.C:
			return len(p), nil // the output is stuck: dropped
		}
		return w.out.Write(p)
	}
	first := len(w.buf) == 0
	w.buf = append(w.buf, p...)
	full := len(w.buf) >= logBufKeep && len(w.buf)-len(p) < logBufKeep
	w.mu.Unlock()
	if first {
		logSignal(w.kick)
	}
	if full {
		logSignal(w.full)
	}
	return len(p), nil
}

// waitRoom waits, under w.mu, until n bytes fit, Close, or the output has
// taken nothing for logStuckAfter (then w.stuck is set).
func (w *LogWriter) waitRoom(n int) {
	waiting, seen := true, w.written
	var t *time.Timer
	t = time.AfterFunc(logStuckAfter, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		switch {
		case !waiting:
		case w.written == seen:
			w.stuck = true
			w.room.Broadcast()
		default: // a batch went out meanwhile: look again later
			seen = w.written
			t.Reset(logStuckAfter)
		}
	})
	for !w.closed && !w.stuck && len(w.buf) > 0 && len(w.buf)+n > logBufMax {
		w.room.Wait()
	}
	waiting = false
	t.Stop()
}

// logSignal sends on a channel of capacity 1 unless a signal is pending
// already (it stands for this one too).
func logSignal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// run writes each batch; a write's error has nowhere to go (this is the
// log) and does not stop the next.
func (w *LogWriter) run() {
	defer close(w.done)
	var batch []byte
	big := 0            // batches in a row that came at busyBytes an every or faster
	var wrote time.Time // the last batch's write
	wait := time.NewTimer(w.every)
	for range w.kick {
		if time.Since(wrote) > w.quiet { // the lines had stopped: not a flow
			big = 0
		}
		d := w.every
		if big >= logBusyAfter {
			d = w.busy
		}
		wait.Reset(d)
		select { // the lines that come meanwhile join this batch
		case <-wait.C:
		case <-w.full:
		}
		w.mu.Lock()
		batch, w.buf = w.buf, batch[:0]
		closed := w.closed
		select { // a "full" for the lines just taken is spent
		case <-w.full:
		default:
		}
		w.mu.Unlock()
		if len(batch) > 0 {
			_, _ = w.out.Write(batch)
		}
		wrote = time.Now()
		if int64(len(batch))*int64(w.every) >= int64(w.busyBytes)*int64(d) {
			big++
		} else {
			big = 0
		}
		if cap(batch) > 2*logBufKeep {
			batch = nil
		}
		w.mu.Lock()
		w.written++
		w.stuck = false // it takes lines again
		w.room.Broadcast()
		w.mu.Unlock()
		if closed {
			return
		}
	}
}

// Close writes the lines still queued and returns once they are written,
// or with an error after logStuckAfter in all (lines still queued then,
// and those written after, are dropped). It may be called more than once.
func (w *LogWriter) Close() error {
	w.mu.Lock()
	first := !w.closed
	w.closed = true
	w.room.Broadcast()
	w.mu.Unlock()
	if first {
		logSignal(w.kick)
		logSignal(w.full)
	}
	t := time.NewTimer(logStuckAfter)
	defer t.Stop()
	select {
	case <-w.done:
		return nil
	case <-t.C:
		w.mu.Lock()
		w.stuck = true
		w.mu.Unlock()
		return fmt.Errorf("log output did not take the last lines within %v: they are lost", logStuckAfter)
	}
}
