package tlsmode

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The relay's calls on its non-blocking descriptors do not wait for
// readiness (they may still take a page fault or memory reclaim, as any
// code may), so they are made without telling the scheduler (RawSyscall,
// no entersyscall): the loop keeps its P. Through unix.Read and
// unix.Write the runtime's monitor saw the P "in a system call" during
// the longer writes (a write to a loopback socket runs the receiver's TCP
// input too) and handed it to another thread, a futex wake-up and a
// thread switch each time, some thousands a second under load. Only calls
// that never wait go here (the eventfd is non-blocking too; no socket has
// SO_LINGER, so close does not wait): the loop's wait in epoll (timeout
// -1) stays ordinary. rawio_linux.go does the same for the sockets of
// terminated connections, their HTTP/1 server connections, the
// ClientHello's reads and the passthrough hello's write. The race detector does not see these reads into buffers
// (unix.Read marks them for it).

// rlErrno turns a raw call's errno into the error unix's wrappers return
// (nil for 0); errno values box without allocating.
func rlErrno(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// rlRead is read(2) on a non-blocking descriptor.
func rlRead(fd int, p []byte) (int, error) {
	var ptr unsafe.Pointer
	if len(p) > 0 {
		ptr = unsafe.Pointer(&p[0])
	}
	n, _, e := syscall.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(ptr), uintptr(len(p)))
	return int(n), rlErrno(e)
}

// rlWrite is write(2) on a non-blocking descriptor.
func rlWrite(fd int, p []byte) (int, error) {
	var ptr unsafe.Pointer
	if len(p) > 0 {
		ptr = unsafe.Pointer(&p[0])
	}
	n, _, e := syscall.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(ptr), uintptr(len(p)))
	return int(n), rlErrno(e)
}

// rlSplice moves up to n bytes from rfd to wfd without blocking
// (SPLICE_F_NONBLOCK, both descriptors non-blocking).
func rlSplice(rfd, wfd, n int) (int, error) {
	k, _, e := syscall.RawSyscall6(unix.SYS_SPLICE, uintptr(rfd), 0, uintptr(wfd), 0, uintptr(n),
		unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
	return int(k), rlErrno(e)
}

// rlPoll is epoll_wait(2) with timeout 0: what is ready now, no wait.
func rlPoll(epfd int, events []unix.EpollEvent) (int, error) {
	n, _, e := syscall.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])),
		uintptr(len(events)), 0, 0, 0)
	return int(n), rlErrno(e)
}

// rlClose is close(2) of a socket (no SO_LINGER: it does not wait).
func rlClose(fd int) error {
	_, _, e := syscall.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0)
	return rlErrno(e)
}

// rlShutdown is shutdown(2): it queues a FIN, never waits.
func rlShutdown(fd, how int) error {
	_, _, e := syscall.RawSyscall(unix.SYS_SHUTDOWN, uintptr(fd), uintptr(how), 0)
	return rlErrno(e)
}

// rlEpollCtl is epoll_ctl(2).
func rlEpollCtl(epfd, op, fd int, ev *unix.EpollEvent) error {
	_, _, e := syscall.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	return rlErrno(e)
}

// rlDupCloexec is fcntl(fd, F_DUPFD_CLOEXEC, 0).
func rlDupCloexec(fd int) (int, error) {
	n, _, e := syscall.RawSyscall(unix.SYS_FCNTL, uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	return int(n), rlErrno(e)
}

// rlPeek is recv(2) of one byte with MSG_PEEK|MSG_DONTWAIT: EAGAIN when
// nothing waits; (1, nil) for a byte, (0, nil) at the peer's FIN, another
// error for a reset.
func rlPeek(fd int) (int, error) {
	var b [1]byte
	n, _, e := syscall.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), 1,
		unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	return int(n), rlErrno(e)
}
