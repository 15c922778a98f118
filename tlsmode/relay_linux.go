package tlsmode

// The passthrough relay: the two sockets of a passthrough stream leave Go's
// netpoller (or never entered it: FDConn) and are served by a few event
// loops over epoll (one per core).
// An idle stream holds its two file descriptors and one rlConn: no
// goroutine, no pipe, no buffer. See relay_loop_linux.go for the loops and
// relay_move_linux.go for how bytes move.

import (
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// rlRelay is a set of event loops; a stream is served by one of them, for
// its whole life.
type rlRelay struct {
	loops []*rlLoop
	next  atomic.Uint32 // round robin over loops

	// beforeStore, when set (tests only), runs in start between the
	// descriptors' dup and the hand-over to the Conn: the window a
	// concurrent CloseNow must not slip through.
	beforeStore func(c *Conn)
}

// rlDefault is the process's relay, started on first use.
var rlDefault = &rlLazy[rlRelay]{
	start:   func() (*rlRelay, error) { return rlNewRelay(runtime.GOMAXPROCS(0)) },
	now:     time.Now,
	level:   zerolog.ErrorLevel,
	failMsg: "passthrough relay could not start: streams are copied by goroutines until it can (tried again every second)",
	okMsg:   "passthrough relay started",
}

// rlRetry is how long after a failed start (EMFILE, ENOMEM from
// epoll_create1 or eventfd) the relay (or fdPoller) is not tried again.
const rlRetry = time.Second

// rlLazy starts a T (the relay, fdPoller) on first use. A start that
// fails is tried again on a later call, at most once per rlRetry; the
// first failure is logged at level with failMsg (and the start that
// follows, at info with okMsg), the others are not.
type rlLazy[T any] struct {
	v              atomic.Pointer[T]
	start          func() (*T, error)
	now            func() time.Time
	level          zerolog.Level
	failMsg, okMsg string

	mu     sync.Mutex
	next   time.Time // no attempt before
	failed bool      // a failure was logged
}

// get returns the T, starting it when none runs yet; nil when it cannot
// start now (the caller does without).
func (z *rlLazy[T]) get() *T {
	if v := z.v.Load(); v != nil {
		return v
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	if v := z.v.Load(); v != nil {
		return v
	}
	now := z.now()
	if now.Before(z.next) {
		return nil
	}
	v, err := z.start()
	if err != nil {
		z.next = now.Add(rlRetry)
		if !z.failed {
			z.failed = true
			rlLogger().WithLevel(z.level).Err(err).Msg(z.failMsg)
		}
		return nil
	}
	if z.failed {
		rlLogger().Info().Msg(z.okMsg)
	}
	z.v.Store(v)
	return v
}

// rlShared returns the process's relay; nil when it cannot start (the
// caller falls back to Pipe).
func rlShared() *rlRelay { return rlDefault.get() }

// RelayReady reports whether the passthrough relay runs (it starts on the
// first call): only then may a listener accept its streams as FDConns.
func RelayReady() bool { return rlShared() != nil }

// rlNewRelay starts n loops. They run for the life of the process (tests
// stop theirs).
func rlNewRelay(n int) (*rlRelay, error) {
	r := &rlRelay{}
	for range max(n, 1) {
		l, err := rlNewLoop()
		if err != nil {
			for _, l := range r.loops { // none runs yet
				l.closeFDs()
			}
			return nil, err
		}
		r.loops = append(r.loops, l)
	}
	for _, l := range r.loops { // only once every loop could be made
		go l.run()
	}
	return r, nil
}

// Sides of a stream (index into rlConn.fd and rlConn.ready) and directions
// (index into rlConn.dir). Direction d reads side d and writes side 1-d.
const (
	rlClient = 0
	rlServer = 1
	rlUp     = 0 // client -> server
	rlDown   = 1 // server -> client
)

// Readiness bits of a side, as epoll last said (edge-triggered: set by
// events, cleared when a read or write says EAGAIN, or by a short read
// before the peer's FIN was seen).
const (
	rlReadable = 1 << iota
	rlWritable
	rlHup // the peer half-closed or the socket failed: read until EOF or error
)

// rlConn is one relayed stream. Everything but the atomics and the fields
// set before it reaches its loop is owned by the loop: only the loop reads
// or writes it, so no lock is needed.
type rlConn struct {
	c    *Conn // counters (c.live.up, c.live.down) are updated as bytes move
	loop *rlLoop
	fd   [2]int32 // client, server: the relay's own (dup'd) descriptors
	slot int32    // index in loop.table; -1 before attach

	// base is the bytes of the client hello replayed (c.live.up starts at
	// the bytes read before routing): WatchHandshake's "the client went
	// on" is c.live.up > base.
	base int64
	// lastIO is when bytes last moved (Unix nanoseconds, the loop's clock):
	// WatchIdle reads it.
	lastIO atomic.Int64

	dir      [2]rlDir
	ready    [2]uint8    // per side: rlReadable | rlWritable (rlWritable from the start)
	out      uint8       // bit per side: EPOLLOUT asked for (wantOut)
	closed   bool        // both descriptors closed; onEnd called
	ended    atomic.Bool // closed, for other goroutines (the idle and handshake watches)
	reason   string      // overrides the reason derived from first and err ("internal error")
	reported bool        // onEnd was started
	ending   bool        // end() ran: FIN sent both ways, CloseGrace timer set
	queued   bool        // in loop.again
	first    int8        // the direction that finished first; -1 none yet
	err      error       // its error (nil: it ended cleanly)

	onEnd func(up, down int64, reason string) // called once, on its own goroutine
}

// rlDir is one direction's pending bytes: at most one buffer or one pipe,
// held only while bytes wait for the destination to take them.
type rlDir struct {
	buf      []byte // small path: buf[off:end] still to write
	off, end int32
	pipe     *rlPipe // bulk path: inPipe bytes still to splice out
	inPipe   int32
	bulk     bool  // a read filled the buffer, or rlBulkAfter bytes went through it: splice until a small burst
	copied   int64 // bytes read through the buffer in reads of at least rlBulkMin, since the last small burst
	burst    int32 // bytes spliced in since the source last had nothing (counted up to rlBulkMin)
	noSplice bool  // splice refused this source (EINVAL, ENOSYS): buffers only
	eof      bool  // the source ended: half-close the destination once drained
	done     bool
}

func (d *rlDir) pending() bool { return d.end > d.off || d.inPipe > 0 }

// rlStart hands the client conn of c and the server conn to the relay:
// an FDConn's descriptor is taken as it is, a Go conn's duplicated and
// the Go conn closed (rlDup), and the loop takes over. A CloseNow or Shutdown that comes meanwhile ends the
// relay's stream too. onEnd gets the bytes moved each way (up includes what
// c.live.up held before: the bytes read before routing) and the close
// reason, once both sockets are closed, on a goroutine of its own. It
// returns nil and leaves both conns as they were when they are not TCP
// sockets or their descriptors cannot be had: copy with Pipe then.
func rlStart(c *Conn, server net.Conn, base int64, onEnd func(up, down int64, reason string)) *rlConn {
	r := rlShared()
	if r == nil {
		return nil
	}
	return r.start(c, server, base, onEnd)
}

// start is rlStart on relay r.
func (r *rlRelay) start(c *Conn, server net.Conn, base int64, onEnd func(up, down int64, reason string)) *rlConn {
	cfd, giveBack, ok := rlDup(c.Conn)
	if !ok {
		return nil
	}
	sfd, _, ok := rlDup(server)
	if !ok {
		giveBack()
		return nil
	}
	l := r.loops[int(r.next.Add(1))%len(r.loops)]
	rc := &rlConn{c: c, loop: l, fd: [2]int32{int32(cfd), int32(sfd)}, slot: -1, base: base, first: -1, onEnd: onEnd,
		ready: [2]uint8{rlWritable, rlWritable}}
	rc.lastIO.Store(time.Now().UnixNano())
	if r.beforeStore != nil {
		r.beforeStore(c)
	}
	c.live.counting.Store(true) // LiveBytes: the relay counts from c.live.up on
	c.live.relay.Store(rc)
	// The relay's descriptors are the only ones left: Go's netpoller
	// forgets the sockets (its epoll registration is removed on Close).
	c.Conn.Close()
	server.Close()
	l.attach(rc)
	// A CloseNow or Shutdown that came before the relay was set has ended
	// the Go conns only: end the relay's too. CloseNow sets closeNow
	// before it loads relay, and relay was stored above: one of the two
	// sees the other, so the stream cannot be missed.
	if c.live.closeNow.Load() {
		rc.abort()
	} else if c.ShutdownReason() != "" {
		rc.end()
	}
	return rc
}

// rlDup returns the descriptor the relay serves a conn's socket with: an
// FDConn's own (Take: nothing to undo then, but for giveBack), else a
// close-on-exec duplicate of a TCP conn's (non-blocking as Go's own is:
// O_NONBLOCK belongs to the open file, which the two descriptors share).
// giveBack undoes it when the stream cannot start after all.
func rlDup(nc net.Conn) (fd int, giveBack func(), ok bool) {
	if fc, isFD := nc.(*FDConn); isFD {
		if fd, ok := fc.Take(); ok {
			return fd, func() { fc.untake(fd) }, true
		}
	}
	var raw syscall.RawConn
	var err error
	switch c := nc.(type) {
	case *FDConn: // in Go's netpoller since a write or connect had to wait
		raw, err = c.SyscallConn()
	case *net.TCPConn:
		raw, err = c.SyscallConn()
	default:
		return -1, nil, false
	}
	if err != nil {
		return -1, nil, false
	}
	fd = -1
	var derr error
	if err := raw.Control(func(s uintptr) {
		fd, derr = rlDupCloexec(int(s))
	}); err != nil || derr != nil {
		return -1, nil, false
	}
	return fd, func() { unix.Close(fd) }, true
}

// end ends the stream gracefully (Conn.Shutdown): a FIN both ways, then
// the sockets are closed when both peers have closed, or after CloseGrace.
// It does not block.
func (rc *rlConn) end() { rc.loop.post(rlCmdEnd, rc) }

// abort closes both sockets at once.
func (rc *rlConn) abort() { rc.loop.post(rlCmdAbort, rc) }

// quiet is how long no byte has moved either way; false once the stream
// has ended (it is not idle: it is over, and its own reason stands).
func (rc *rlConn) quiet() (time.Duration, bool) {
	if rc.ended.Load() {
		return 0, false
	}
	return time.Duration(time.Now().UnixNano() - rc.lastIO.Load()), true
}

// wentOn reports whether the client sent anything after its hello; true
// once the stream has ended (no handshake left to time out).
func (rc *rlConn) wentOn() bool { return rc.ended.Load() || rc.c.live.up.Load() > rc.base }

// rlSyscallErr names the call that failed ("write: broken pipe");
// errors.Is still finds the errno.
func rlSyscallErr(call string, err error) error { return os.NewSyscallError(call, err) }

// stats sums the loops' counters: streams registered, bytes held (read and
// not yet written) and pipes held by streams.
func (r *rlRelay) stats() (streams, held, pipes int64) {
	for _, l := range r.loops {
		streams += l.streams.Load()
		held += l.held.Load()
		pipes += l.pipesIn.Load()
	}
	return
}

// pooled is the number of free pipes the loops keep.
func (r *rlRelay) pooled() (pipes int64) {
	for _, l := range r.loops {
		pipes += l.pipesFree.Load()
	}
	return
}

// stop ends every stream (reason "closed"), closes the loops' descriptors
// and pooled pipes, and returns when every loop has returned. Tests stop
// the relays they start; the process's relay is never stopped.
func (r *rlRelay) stop() {
	for _, l := range r.loops {
		l.post(rlCmdStop, nil)
	}
	for _, l := range r.loops {
		<-l.stopped
	}
}
