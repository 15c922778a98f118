package edge

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// logDirect writes a pipe and a socket with a raw call first, and what
// that call cannot take (a full pipe or socket buffer) through the file's
// own Write: every byte arrives, in order. Other outputs (a regular file,
// a character device, a non-file) are left as they are.
func TestLogDirect(t *testing.T) {
	batch := bytes.Repeat([]byte("0123456789abcdef"), 40<<10/16*10) // 400 KiB: more than a pipe or socket buffer takes

	for _, kind := range []string{"pipe", "socket"} {
		t.Run(kind, func(t *testing.T) {
			var r, wf *os.File
			if kind == "pipe" {
				var err error
				if r, wf, err = os.Pipe(); err != nil {
					t.Fatal(err)
				}
			} else {
				fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					t.Fatal(err)
				}
				r, wf = os.NewFile(uintptr(fds[0]), "r"), os.NewFile(uintptr(fds[1]), "w")
			}
			defer r.Close()
			w := logRawOf(t, wf)
			if logWakesMonitor(w) {
				t.Error("a raw output counted as waking the monitor: its batches would wait longer under load for nothing")
			}
			lw := newLogWriter(wf, time.Millisecond, time.Hour, time.Hour, 100)
			if lw.busy != lw.every {
				t.Errorf("a LogWriter on a %s waits %v under load, want %v: its raw writes wake nothing", kind, lw.busy, lw.every)
			}
			lw.Close()
			if raw, ok := lw.out.(*logRaw); ok && raw.nb >= 0 {
				unix.Close(raw.nb)
			}
			if kind == "pipe" && w.nb < 0 {
				t.Error("pipe written without a non-blocking open of its own")
			}
			calls := countSends(w)
			got := make(chan []byte)
			go func() {
				time.Sleep(50 * time.Millisecond) // the raw call finds the buffer full
				b, _ := io.ReadAll(r)
				got <- b
			}()
			logWriteAll(t, w, [][]byte{[]byte("first\n"), batch, []byte("last\n")})
			wf.Close()
			if w.nb >= 0 {
				unix.Close(w.nb)
			}
			want := append(append([]byte("first\n"), batch...), "last\n"...)
			if b := <-got; !bytes.Equal(b, want) {
				t.Errorf("read %d bytes; want the %d written, in order", len(b), len(want))
			}
			if *calls != 3 {
				t.Errorf("raw calls %d; want 3 (one a batch)", *calls)
			}
		})
	}

	t.Run("as they are", func(t *testing.T) {
		null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer null.Close()
		// A regular file: its write may wait for the disk, which a raw
		// call must not (it would hold every garbage collection).
		file, err := os.OpenFile(filepath.Join(t.TempDir(), "log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer file.Close()
		var buf bytes.Buffer
		for _, out := range []io.Writer{null, file, &buf} {
			if w := logDirect(out); w != out {
				t.Errorf("logDirect(%T) = %T; want it as it is", out, w)
			}
			if !logWakesMonitor(out) {
				t.Errorf("%T counted as written raw", out)
			}
		}
	})
}

// logRawOf returns logDirect(f), failing unless it is a *logRaw.
func logRawOf(t *testing.T, f *os.File) *logRaw {
	t.Helper()
	w, ok := logDirect(f).(*logRaw)
	if !ok {
		t.Fatalf("logDirect(%s) is not written raw", f.Name())
	}
	return w
}

// countSends counts w's raw calls.
func countSends(w *logRaw) *int {
	n := new(int)
	send := w.send
	w.send = func(fd int, p []byte) (int, syscall.Errno) {
		*n++
		return send(fd, p)
	}
	return n
}

// logWriteAll writes each batch to w, failing on a short write.
func logWriteAll(t *testing.T, w io.Writer, batches [][]byte) {
	t.Helper()
	for _, b := range batches {
		if n, err := w.Write(b); n != len(b) || err != nil {
			t.Fatalf("Write of %d bytes = %d, %v", len(b), n, err)
		}
	}
}
