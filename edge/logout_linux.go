package edge

import (
	"fmt"
	"io"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// logDirect returns what LogWriter writes its batches to. When out is a
// file whose write need not wait for a reader, a batch goes out in a raw
// write(2) (RawSyscall: the scheduler is not told), and its writer keeps
// its P:
//   - a regular file: written as it is (a write may wait for the disk, as
//     nginx's access log does; it never waits for a reader);
//   - a pipe or FIFO (a container's log collector): written through a
//     non-blocking open of the same pipe (/proc/self/fd), so out's own
//     flags, shared with whoever else holds it, are left alone;
//   - a socket (journald's stream): sent with MSG_DONTWAIT.
//
// What a raw write cannot take at once (a full pipe or socket buffer, an
// error) goes through out's ordinary Write, which waits. Anything else (a
// terminal, another writer) is out itself.
//
// Why: an ordinary write(2) is a blocking system call (entersyscall).
// When it comes after the process was idle, as the writer's batch does 10
// ms after a connection's line, it wakes Go's runtime monitor (sysmon),
// which then polls every 20 µs while the process is busy: about 7 % of the
// CPU of new passthrough connections under load (docs/operations.md, CPU).
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
	case unix.S_IFREG:
		return &logRaw{out: f, rc: rc, send: logWrite}
	case unix.S_IFSOCK:
		return &logRaw{out: f, rc: rc, send: logSend}
	case unix.S_IFIFO:
		nb, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", fd), unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil { // no /proc, or a FIFO with no reader (ENXIO)
			return out
		}
		nf := os.NewFile(uintptr(nb), "log-nonblock")
		nrc, err := nf.SyscallConn()
		if err != nil {
			nf.Close()
			return out
		}
		return &logRaw{out: f, rc: nrc, nb: nf, send: logWrite}
	}
	return out
}

// logRaw writes a batch with one raw call, the rest through out.
type logRaw struct {
	out  *os.File
	rc   syscall.RawConn // what the raw call writes to: out, or nb
	nb   *os.File        // a non-blocking open of out's pipe (kept open for rc); nil: out itself
	send func(fd int, p []byte) (int, syscall.Errno)
}

// Write writes p: as much as one raw call takes, then the rest through
// out.Write (which waits, and reports out's error).
func (w *logRaw) Write(p []byte) (int, error) {
	n := 0
	_ = w.rc.Control(func(fd uintptr) {
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
	})
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
