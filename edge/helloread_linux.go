package edge

import (
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// helloTryRead reads what c's socket holds into p with one raw read(2)
// that never waits (the socket is non-blocking, and the call is made
// through Control: no netpoller wait); 0 when nothing is there yet, at
// EOF, on an error (the exact reads that follow meet it again), or when
// c is no socket.
func helloTryRead(c net.Conn, p []byte) int {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	_ = rc.Control(func(fd uintptr) {
		for {
			k, _, e := syscall.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
			if e == unix.EINTR {
				continue
			}
			if e == 0 && int(k) > 0 {
				n = int(k)
			}
			return
		}
	})
	return n
}
