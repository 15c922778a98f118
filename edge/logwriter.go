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
// of its access line itself, and under load many lines go in one write. Each such write is a blocking system
// call, which, when it came after the process had been idle, woke Go's
// runtime monitor (sysmon), and while it lasted let the monitor hand the
// goroutine's P to another thread: a thread switch for about one request
// in three under keep-alive load, and the monitor awake polling every 20
// µs (docs/operations.md, CPU). Lines keep their order and none is dropped: when
// logBufMax bytes wait, Write waits for room. Close writes what is left;
// lines after Close are written at once.
type LogWriter struct {
	out  io.Writer
	kick chan struct{} // a batch is waiting (capacity 1)
	full chan struct{} // logBufKeep bytes wait, or Close: write now (capacity 1)
	done chan struct{} // closed when the writer has returned

	mu     sync.Mutex
	room   sync.Cond // a batch was written
	buf    []byte    // lines not yet taken by the writer
	closed bool
}

// logBufMax is how many bytes of lines may wait for the writer; from
// logBufKeep on the writer does not wait for logBatchEvery, and a batch
// buffer that grew past it is not kept for the next one.
const (
	logBufMax     = 1 << 20
	logBufKeep    = 64 << 10
	logBatchEvery = 10 * time.Millisecond
)

// NewLogWriter starts the writer of out.
func NewLogWriter(out io.Writer) *LogWriter {
	w := &LogWriter{out: out, kick: make(chan struct{}, 1), full: make(chan struct{}, 1), done: make(chan struct{})}
	w.room.L = &w.mu
	go w.run()
	return w
}

// Write queues p (a whole line: zerolog writes one a call) for the writer.
func (w *LogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	for !w.closed && len(w.buf) > 0 && len(w.buf)+len(p) > logBufMax {
		w.room.Wait()
	}
	if w.closed {
		w.mu.Unlock()
		<-w.done // what was queued is written first
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
	wait := time.NewTimer(logBatchEvery)
	for range w.kick {
		wait.Reset(logBatchEvery)
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
		if cap(batch) > logBufKeep {
			batch = nil
		}
		w.mu.Lock()
		w.room.Broadcast()
		w.mu.Unlock()
		if closed {
			return
		}
	}
}

// logCloseWait bounds Close: an output that takes nothing (a stuck pipe
// to a log collector) must not keep the process from exiting.
var logCloseWait = 5 * time.Second

// Close writes the lines still queued and returns once they are written,
// or with an error after logCloseWait when the output takes none. It may
// be called more than once.
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
	t := time.NewTimer(logCloseWait)
	defer t.Stop()
	select {
	case <-w.done:
		return nil
	case <-t.C:
		return fmt.Errorf("log output took nothing for %v: the last lines are lost", logCloseWait)
	}
}
