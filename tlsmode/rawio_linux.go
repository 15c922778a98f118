package tlsmode

import (
	"io"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// rawIO reads and writes a TCP socket with raw system calls made through
// its RawConn: the socket is non-blocking, so a read or write never waits
// in the kernel (EAGAIN sends the goroutine to the netpoller, deadlines
// included, as net's own Read and Write do), and the goroutine keeps its P
// while the call runs. Through net's Read and Write (entersyscall) the
// runtime's monitor sees the P "in a system call" during a loopback write
// (which runs the receiver's TCP input too) and hands it to another
// thread: a futex wake-up and a thread switch, about one request in three
// under load, and the monitor itself kept awake (see relay_sys_linux.go).
// The zero rawIO is unset: the conn's own Read and Write are used.
type rawIO struct {
	rc   syscall.RawConn
	conn *net.TCPConn // for the errors' addresses
}

// rawIOOf returns the rawIO of c when it is a TCP conn; unset otherwise.
func rawIOOf(c net.Conn) rawIO {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return rawIO{}
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return rawIO{}
	}
	return rawIO{rc: rc, conn: tc}
}

func (r rawIO) set() bool { return r.rc != nil }

// read is net.Conn's Read: io.EOF at the end, errors as *net.OpError.
func (r rawIO) read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n := 0
	var errno error
	err := r.rc.Read(func(fd uintptr) bool {
		for {
			n, errno = rlRead(int(fd), p)
			if errno != unix.EINTR {
				return errno != unix.EAGAIN
			}
		}
	})
	switch {
	case err != nil: // closed, or the deadline passed
		return 0, r.opError("read", rawPollErr(err))
	case errno != nil:
		return 0, r.opError("read", os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// write is net.Conn's Write: all of p, or an error.
func (r rawIO) write(p []byte) (int, error) {
	n := 0
	var errno error
	err := r.rc.Write(func(fd uintptr) bool {
		for n < len(p) {
			k, e := rlWrite(int(fd), p[n:])
			if k > 0 {
				n += k
			}
			switch e {
			case nil, unix.EINTR:
			case unix.EAGAIN:
				return false
			default:
				errno = e
				return true
			}
		}
		return true
	})
	switch {
	case errno != nil:
		return n, r.opError("write", os.NewSyscallError("write", errno))
	case err != nil:
		return n, r.opError("write", rawPollErr(err))
	}
	return n, nil
}

// rawPollErr is the error under RawConn's own *net.OpError (net.ErrClosed,
// os.ErrDeadlineExceeded), which read and write wrap again as net's Read
// and Write do.
func rawPollErr(err error) error {
	if oe, ok := err.(*net.OpError); ok {
		return oe.Err
	}
	return err
}

func (r rawIO) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: r.conn.LocalAddr(), Addr: r.conn.RemoteAddr(), Err: err}
}

// rawTCP is a TCP conn read and written through rawIO; everything else is
// the conn's. NetConn returns the conn (upIdleClosed and upReadWaiter look
// there).
type rawTCP struct {
	*net.TCPConn
	io rawIO
}

// rawTCPOf wraps c when it is a TCP conn; other conns are returned as they are.
func rawTCPOf(c net.Conn) net.Conn {
	r := rawIOOf(c)
	if !r.set() {
		return c
	}
	return &rawTCP{TCPConn: r.conn, io: r}
}

func (c *rawTCP) Read(p []byte) (int, error)  { return c.io.read(p) }
func (c *rawTCP) Write(p []byte) (int, error) { return c.io.write(p) }
func (c *rawTCP) NetConn() net.Conn           { return c.TCPConn }

// RawReader returns a reader of c through rawIO when c is a TCP conn (the
// ClientHello's reads before routing), else c itself.
func RawReader(c net.Conn) io.Reader {
	if r := rawIOOf(c); r.set() {
		return rawReader{r}
	}
	return c
}

type rawReader struct{ r rawIO }

func (r rawReader) Read(p []byte) (int, error) { return r.r.read(p) }

// rawWriteAll writes p to c through rawIO when c is a TCP conn, else with
// c.Write.
func rawWriteAll(c net.Conn, p []byte) (int, error) {
	if r := rawIOOf(c); r.set() {
		return r.write(p)
	}
	return c.Write(p)
}
