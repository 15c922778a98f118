package tlsmode

import (
	"io"
	"net"
	"os"
	"sync"
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

// rawOp is one read or write in flight: RawConn.Read and Write take a
// func, and a closure over the call's variables would be allocated at each
// call; rawOps keeps ops with their funcs bound once.
type rawOp struct {
	p           []byte
	n           int
	errno       error
	read, write func(fd uintptr) bool
	peek        func(fd uintptr) // for Control: upIdleClosed
	try         func(fd uintptr) // for Control: writeNow
}

var rawOps = sync.Pool{New: func() any {
	o := &rawOp{}
	o.read, o.write, o.peek = o.readFD, o.writeFD, o.peekFD
	o.try = func(fd uintptr) { o.writeFD(fd) }
	return o
}}

// peekFD peeks at one byte without waiting: errno EAGAIN when none is there.
func (o *rawOp) peekFD(fd uintptr) { o.n, o.errno = rlPeek(int(fd)) }

// readFD reads once into o.p; false (wait for the netpoller) on EAGAIN.
func (o *rawOp) readFD(fd uintptr) bool {
	for {
		o.n, o.errno = rlRead(int(fd), o.p)
		if o.errno != unix.EINTR {
			return o.errno != unix.EAGAIN
		}
	}
}

// writeFD writes what is left of o.p; false (wait for the netpoller) on
// EAGAIN.
func (o *rawOp) writeFD(fd uintptr) bool {
	for o.n < len(o.p) {
		k, e := rlWrite(int(fd), o.p[o.n:])
		if k > 0 {
			o.n += k
		}
		switch {
		case e == unix.EAGAIN:
			return false
		case e == unix.EINTR:
		case e != nil:
			o.errno = e
			return true
		case k == 0: // never for a socket; net says the same
			o.errno = io.ErrUnexpectedEOF
			return true
		}
	}
	return true
}

func getRawOp(p []byte) *rawOp {
	o := rawOps.Get().(*rawOp)
	o.p, o.n, o.errno = p, 0, nil
	return o
}

func (o *rawOp) done() (int, error) {
	n, errno := o.n, o.errno
	o.p, o.errno = nil, nil
	rawOps.Put(o)
	return n, errno
}

// read is net.Conn's Read: io.EOF at the end, errors as *net.OpError.
func (r rawIO) read(p []byte) (int, error) {
	if len(p) == 0 { // net does not read either, but says when the conn is closed
		if err := r.rc.Control(func(uintptr) {}); err != nil {
			return 0, r.opError("read", rawPollErr(err))
		}
		return 0, nil
	}
	o := getRawOp(p)
	err := r.rc.Read(o.read)
	n, errno := o.done()
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
	o := getRawOp(p)
	err := r.rc.Write(o.write)
	n, errno := o.done()
	switch {
	case errno == io.ErrUnexpectedEOF:
		return n, r.opError("write", errno)
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
// there, or use the rawTCP's RawConn). ReadFrom and WriteTo are the conn's
// too (promoted): an io.Copy to or from a rawTCP goes through net (splice,
// sendfile), not rawIO. A zero-length Write makes no system call (net
// makes one, which can report a reset); nothing writes empty slices.
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

// ReadNow reads what c's socket holds into p with one raw read that never
// waits (the socket is non-blocking, and the read is made through
// Control: no netpoller wait): the first read of a ClientHello. 0 when
// nothing is there yet, at EOF, on an error (the reads that follow meet
// it again), or when c is no socket.
func ReadNow(c net.Conn, p []byte) int {
	sc, ok := c.(syscall.Conn)
	if !ok || len(p) == 0 {
		return 0
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	_ = rc.Control(func(fd uintptr) {
		for {
			k, e := rlRead(int(fd), p)
			if e == unix.EINTR {
				continue
			}
			if e == nil && k > 0 {
				n = k
			}
			return
		}
	})
	return n
}

func (r rawReader) Read(p []byte) (int, error) { return r.r.read(p) }

// rawWriteAll writes p to c through rawIO when c is a TCP conn, else with
// c.Write.
func rawWriteAll(c net.Conn, p []byte) (int, error) {
	if r := rawIOOf(c); r.set() {
		return r.write(p)
	}
	return c.Write(p)
}

// writeNow writes what c's socket takes of p now, with raw writes that
// never wait (Control: no netpoller wait, so no deadline is looked at);
// ok false when c has no rawIO (nothing written). n < len(p) with a nil
// error: the socket's buffer is full.
func writeNow(c net.Conn, p []byte) (n int, ok bool, err error) {
	rt, isRaw := c.(*rawTCP)
	if !isRaw {
		return 0, false, nil
	}
	o := getRawOp(p)
	cerr := rt.io.rc.Control(o.try)
	n, errno := o.done()
	switch {
	case cerr != nil: // closed
		return n, true, rt.io.opError("write", rawPollErr(cerr))
	case errno == io.ErrUnexpectedEOF:
		return n, true, rt.io.opError("write", errno)
	case errno != nil:
		return n, true, rt.io.opError("write", os.NewSyscallError("write", errno))
	}
	return n, true, nil
}
