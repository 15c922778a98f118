package edge

import (
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// logDirect returns what LogWriter writes its batches to. When out is a
// pipe or a socket, a batch goes out first in a raw call that never waits
// (RawSyscall: the scheduler is not told), and the writer keeps its P:
//   - a pipe or FIFO (a container's log collector): write(2) through a
//     non-blocking open of the same pipe (/proc/self/fd), so out's own
//     flags, shared with whoever else holds it, are left alone;
//   - a socket (journald's stream): send(2) with MSG_DONTWAIT.
//
// What the raw call does not take at once (a full pipe or socket buffer,
// an error) goes through out's ordinary Write, which waits, and reports
// out's error (EPIPE on stdout or stderr still ends the process, as Go's
// Write does). Anything else is out itself: a regular file too, whose
// write can wait for the disk (a throttled or hung one, NFS) with no way
// to ask it not to, and a raw call that waits holds its P and with it
// every garbage collection, so the whole process.
//
// Why: an ordinary write(2) is a blocking system call (entersyscall).
// When it comes after the process was idle, as the writer's batch does
// 10 ms after a connection's line, it wakes Go's runtime monitor (sysmon),
// which then polls every 20 µs while the process is busy: at one write
// each 10 ms, about 6 % of the CPU of new passthrough connections under
// load (docs/operations.md, CPU). LogWriter writes less often under load.
func logDirect(out io.Writer) io.Writer {
	f, ok := out.(*os.File)
	if !ok {
		return out
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return out
	}
	var st unix.Stat_t
	var fd int
	var serr error
	if err := rc.Control(func(s uintptr) { fd, serr = int(s), unix.Fstat(int(s), &st) }); err != nil || serr != nil {
		return out
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFSOCK:
		return &logRaw{out: f, rc: rc, nb: -1, send: logSend}
	case unix.S_IFIFO:
		// Not through os.NewFile: a non-blocking file would join Go's
		// netpoller, and a reader draining a full pipe would wake it.
		nb, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", fd), unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil { // no /proc, no permission, or a FIFO with no reader (ENXIO)
			return out
		}
		return &logRaw{out: f, nb: nb, send: logWrite}
	}
	return out
}

// logWakesMonitor reports whether out's writes are blocking system calls
// (a file, a terminal): not for a pipe or socket logDirect writes raw.
func logWakesMonitor(out io.Writer) bool {
	_, raw := out.(*logRaw)
	return !raw
}

// logRaw writes a batch with one raw call, the rest through out.
type logRaw struct {
	mu   sync.Mutex // a batch's two parts stay together (Writes after the LogWriter's Close come from any goroutine)
	out  *os.File
	rc   syscall.RawConn // out's, for a socket; nil when nb is set
	nb   int             // a non-blocking open of out's pipe (kept for the process's life); -1: none
	send func(fd int, p []byte) (int, syscall.Errno)
}

// Write writes p: as much as one raw call takes, then the rest through
// out.Write (which waits, and reports out's error).
func (w *logRaw) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	try := func(fd uintptr) {
		for {
			k, e := w.send(int(fd), p)
			if e == unix.EINTR {
				continue
			}
			if k > 0 {
				n = k
			}
			return
		}
	}
	if w.nb >= 0 {
		try(uintptr(w.nb))
	} else {
		_ = w.rc.Control(try)
	}
	if n == len(p) {
		return n, nil
	}
	k, err := w.out.Write(p[n:])
	return n + k, err
}

// logWrite is write(2) made raw.
func logWrite(fd int, p []byte) (int, syscall.Errno) {
	if len(p) == 0 {
		return 0, 0
	}
	n, _, e := syscall.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(n), e
}

// logSend is send(2) with MSG_DONTWAIT made raw: it never waits for room.
func logSend(fd int, p []byte) (int, syscall.Errno) {
	if len(p) == 0 {
		return 0, 0
	}
	n, _, e := syscall.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)),
		unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, 0, 0)
	return int(n), e
}
