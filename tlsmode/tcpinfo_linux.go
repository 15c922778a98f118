package tlsmode

import (
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// tcpInfo reads the kernel's TCP_INFO of a socket.
func tcpInfo(c syscall.Conn) (*unix.TCPInfo, bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, false
	}
	var info *unix.TCPInfo
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil || ierr != nil {
		return nil, false
	}
	return info, true
}

// socketBytes returns the bytes received on a socket and the bytes it sent
// that the peer acknowledged.
func socketBytes(c syscall.Conn) (in, out int64, ok bool) {
	info, ok := tcpInfo(c)
	if !ok {
		return 0, 0, false
	}
	return int64(info.Bytes_received), int64(info.Bytes_acked), true
}

// socketQuiet returns how long a socket has neither received nor sent data
// (pure ACKs and keepalive probes do not count).
func socketQuiet(c syscall.Conn) (time.Duration, bool) {
	info, ok := tcpInfo(c)
	if !ok {
		return 0, false
	}
	ms := min(info.Last_data_recv, info.Last_data_sent)
	return time.Duration(ms) * time.Millisecond, true
}

// handedOver reports whether c is an FDConn whose descriptor the relay has
// taken (before the relay is stored in the Conn, a window of
// microseconds): its socket is not c's to ask about.
func handedOver(c syscall.Conn) bool {
	fc, ok := c.(*FDConn)
	return ok && fc.takenAway()
}
