package tlsmode

import (
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// rlLoop is one event loop: a goroutine serving the streams given to it.
// It waits in Go's netpoller for its epoll descriptor to become readable
// (the runtime's own epoll watches it), so a waiting loop holds no thread
// and wakes as any goroutine doing network I/O does; then epoll_wait with
// timeout 0 says what is ready. Every socket is registered once,
// edge-triggered, for input and the peer's half-close, by the goroutine
// that starts the stream (attach: the loop is not woken for it). A socket
// counts as writable until a write says EAGAIN; only then is output added
// to its registration (wantOut). Readiness is remembered per side
// (rlConn.ready) until a read or write says EAGAIN.
type rlLoop struct {
	epfd int
	evfd int                   // eventfd: wakes the loop for commands
	file *os.File              // epfd, known to the netpoller; nil: block in epoll_wait
	raw  syscall.RawConn       // file's
	poll func(fd uintptr) bool // epoll_wait(0) for raw.Read: false (nothing ready) parks the loop

	events []unix.EpollEvent // poll's results
	n      int
	err    error

	mu    sync.Mutex
	queue []rlCmd // commands from other goroutines
	dead  bool    // stopped: post and attach do nothing (the eventfd is closed)
	table rlTable // the streams by slot: taken by attach, cleared by close (under mu); read by the loop

	stopped chan struct{} // closed when run has returned (stop)
	// betweenAdds, when set (tests only), runs in register between the
	// two sockets' EPOLL_CTL_ADD: the window in which the loop may serve
	// the first.
	betweenAdds func()
	sys         rlSys // the system calls tests replace

	// Owned by the loop goroutine.
	again []*rlConn // streams that used their budget with bytes still to move
	spare []*rlConn // the other half of again's double buffer
	bufs  [][]byte  // free small buffers
	pipes []*rlPipe // free pipes
	now   int64     // Unix nanoseconds, read once per wake-up

	// Pipes could not be made (EMFILE, ENFILE: pipe2 failed): until then
	// (Unix nanoseconds) directions stay on the buffer path. logPipes is
	// when the next such failure may be logged.
	noPipes, logPipes int64

	// Read by tests and benchmarks.
	streams   atomic.Int64 // streams registered
	held      atomic.Int64 // bytes read and not yet written, over all streams
	pipesIn   atomic.Int64 // pipes held by streams
	pipesFree atomic.Int64 // free pipes kept (len(pipes))
	noBulk    atomic.Int64 // directions that fell back to buffers (no pipe, splice refused)
}

// rlSys is the loop's system calls that tests replace to inject faults
// (EMFILE from pipe2, EINVAL from splice, a panic).
type rlSys struct {
	newPipe func() (*rlPipe, error)
	splice  func(rfd, wfd, n int) (int, error) // non-blocking, SPLICE_F_MOVE
}

var rlSysDefault = rlSys{newPipe: rlNewPipe, splice: rlSplice}

type rlCmd struct {
	op  uint8
	rc  *rlConn
	err error // rlCmdFail's
}

const (
	rlCmdFail = iota // the stream could not be registered: close it with err
	rlCmdEnd
	rlCmdAbort
	rlCmdStop
)

const rlWake = -1 // event data of the eventfd

func rlNewLoop() (*rlLoop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, rlSyscallErr("epoll_create1", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, rlSyscallErr("eventfd", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: rlWake}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(evfd)
		return nil, rlSyscallErr("epoll_ctl", err)
	}
	l := &rlLoop{epfd: epfd, evfd: evfd, stopped: make(chan struct{}), sys: rlSysDefault}
	if rlNetpoll && unix.SetNonblock(epfd, true) == nil {
		l.file = os.NewFile(uintptr(epfd), "relay-epoll") // owns epfd from now on
		if raw, err := l.file.SyscallConn(); err == nil {
			l.raw = raw
			l.poll = func(fd uintptr) bool {
				l.n, l.err = rlPoll(int(fd), l.events)
				return l.n > 0 || l.err != nil
			}
		}
	}
	return l, nil
}

// rlNetpoll: loops wait in Go's netpoller (true) or in a blocking
// epoll_wait (false, a thread each). A variable so benchmarks compare.
var rlNetpoll = true

// closeFDs closes a loop's epoll and event descriptors: a loop that was
// never run (rlNewRelay's failure path) or one that stopped.
func (l *rlLoop) closeFDs() {
	if l.file != nil {
		l.file.Close()
	} else {
		unix.Close(l.epfd)
	}
	unix.Close(l.evfd)
}

// post queues a command for the loop and wakes it. It never blocks.
func (l *rlLoop) post(op uint8, rc *rlConn) { l.post1(rlCmd{op: op, rc: rc}) }

// post1 is post of a whole command; false when the loop has stopped.
func (l *rlLoop) post1(cmd rlCmd) bool {
	l.mu.Lock()
	if l.dead {
		l.mu.Unlock()
		return false
	}
	l.queue = append(l.queue, cmd)
	if len(l.queue) == 1 { // else a wake-up is already on its way
		// Under the lock: shutdown marks the loop dead under it before it
		// closes the eventfd, whose number could then be another file's.
		// The eventfd is non-blocking: the write never waits.
		var one = [8]byte{1}
		_, _ = rlWrite(l.evfd, one[:])
	}
	l.mu.Unlock()
	return true
}

// run serves the loop's streams until stop. A panic while serving one
// stream ends that stream ("internal error") and is logged; the loop
// and its other streams go on.
func (l *rlLoop) run() {
	defer close(l.stopped)
	events := make([]unix.EpollEvent, 256)
	for {
		var n int
		var err error
		switch {
		case len(l.again) > 0: // streams with bytes still to move: only look
			n, err = rlPoll(l.epfd, events)
		case l.raw != nil:
			l.events = events
			if werr := l.raw.Read(l.poll); werr != nil && l.err == nil {
				l.err = werr
			}
			n, err = l.n, l.err
		default:
			n, err = unix.EpollWait(l.epfd, events, -1)
		}
		if err != nil {
			if err != unix.EINTR {
				time.Sleep(time.Millisecond) // cannot happen with a valid epfd; never spin
			}
			continue
		}
		l.now = time.Now().UnixNano()
		stop := false
		for i := range n {
			ev := &events[i]
			if ev.Fd == rlWake {
				stop = l.commands() || stop
				continue
			}
			if rc := l.table.get(ev.Fd >> 1); rc != nil { // nil: closed earlier in this batch
				l.event(rc, ev)
			}
		}
		if len(l.again) > 0 {
			list := l.again
			l.again, l.spare = l.spare[:0], list
			for _, rc := range list {
				rc.queued = false
				l.pump(rc)
			}
			clear(list)
		}
		if len(l.table.later) > 0 { // only the loop adds to it (close)
			l.mu.Lock()
			l.table.release()
			l.mu.Unlock()
		}
		if stop {
			l.shutdown()
			return
		}
	}
}

// event records what epoll said of one side of rc and moves its bytes.
func (l *rlLoop) event(rc *rlConn, ev *unix.EpollEvent) {
	defer l.recover(rc)
	// A registration can outlive its stream when another descriptor still
	// holds the socket's file (Go's close of a duplicated conn waiting for
	// an operation to end): its events then reach the slot's next stream
	// and only make a read or write try and find EAGAIN.
	var bits uint8
	if ev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		bits |= rlReadable
	}
	if ev.Events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		bits |= rlHup
	}
	if ev.Events&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		bits |= rlWritable
	}
	rc.ready[ev.Fd&1] |= bits
	rc.pump()
}

// pump is rc.pump, a panic ending rc only.
func (l *rlLoop) pump(rc *rlConn) {
	defer l.recover(rc)
	rc.pump()
}

// recover, deferred around the work on one stream, turns a panic into
// the end of that stream with reason "internal error", logged with its
// stack.
func (l *rlLoop) recover(rc *rlConn) {
	if r := recover(); r != nil {
		rlLogPanic("passthrough relay crashed serving a stream: closing it", r)
		rc.crashed()
	}
}

// crashed closes a stream whose handling panicked; a second panic while
// closing it still reports its end, so the connection is accounted for.
func (rc *rlConn) crashed() {
	if rc == nil || rc.reported {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			rlLogPanic("passthrough relay crashed closing a stream", r)
		}
		if !rc.reported {
			rc.reported = true
			rc.ended.Store(true)
			go rc.report(rc.c.live.up.Load(), rc.c.live.down.Load(), "internal error")
		}
	}()
	rc.reason = "internal error"
	rc.close()
}

// commands runs the queued commands; true: stop the loop.
func (l *rlLoop) commands() (stop bool) {
	var cnt [8]byte
	_, _ = rlRead(l.evfd, cnt[:])
	l.mu.Lock()
	q := l.queue
	l.queue = nil
	l.mu.Unlock()
	for _, cmd := range q {
		if cmd.op == rlCmdStop {
			stop = true
			continue
		}
		l.command(cmd)
	}
	return stop
}

// command runs one command on its stream, a panic ending that stream only.
func (l *rlLoop) command(cmd rlCmd) {
	defer l.recover(cmd.rc)
	switch cmd.op {
	case rlCmdFail:
		cmd.rc.fail(rlUp, cmd.err)
	case rlCmdEnd:
		cmd.rc.endNow()
	case rlCmdAbort:
		cmd.rc.close() // also before attach: attach then registers nothing
	}
}

// shutdown (stop) closes every stream ("closed"), the pooled pipes and
// the loop's descriptors; posts after it do nothing.
func (l *rlLoop) shutdown() {
	l.mu.Lock()
	l.dead = true
	q := l.queue
	l.queue = nil
	l.mu.Unlock()
	for _, cmd := range q { // streams with a command still queued (attached or not)
		if cmd.rc != nil {
			l.command(rlCmd{op: rlCmdAbort, rc: cmd.rc})
		}
	}
	// No attach comes after dead: the table holds every stream left.
	l.table.each(func(rc *rlConn) { l.command(rlCmd{op: rlCmdAbort, rc: rc}) })
	for _, p := range l.pipes {
		unix.Close(p.r)
		unix.Close(p.w)
	}
	l.pipes, l.bufs = nil, nil
	l.pipesFree.Store(0)
	l.closeFDs()
}

// endNow sends a FIN both ways (the peers see an orderly end and close);
// whatever is still open after CloseGrace is closed.
func (rc *rlConn) endNow() {
	if rc.closed || rc.ending {
		return
	}
	rc.ending = true
	for side := range 2 {
		if err := rlShutdown(int(rc.fd[side]), unix.SHUT_WR); err != nil && err != unix.ENOTCONN {
			rc.close()
			return
		}
	}
	time.AfterFunc(CloseGrace, rc.abort)
}

// requeue puts a stream that used its budget at the end of the line.
func (rc *rlConn) requeue() {
	if !rc.queued {
		rc.queued = true
		rc.loop.again = append(rc.loop.again, rc)
	}
}

// fail ends the stream because direction d broke: both sockets are closed
// at once, as Pipe does.
func (rc *rlConn) fail(d int, err error) {
	if rc.first < 0 {
		rc.first, rc.err = int8(d), err
	}
	rc.close()
}

// finished records that direction d is done (its source ended and its
// destination was half-closed); when both are, the stream ends.
func (rc *rlConn) finished(d int, err error) {
	rc.dir[d].done = true
	if rc.first < 0 {
		rc.first, rc.err = int8(d), err
	}
	if err != nil || rc.dir[1-d].done {
		rc.close()
	}
}

// close closes both sockets, gives back what the stream held and calls
// onEnd on a goroutine of its own (a worker: Go).
func (rc *rlConn) close() {
	if rc.closed {
		return
	}
	rc.closed = true
	if !rc.closeFDs() { // closeStopped did (a stopped loop: tests)
		rc.reported = true
		return
	}
	for d := range rc.dir {
		rc.release(&rc.dir[d])
	}
	reason := closeReason(false, net.ErrClosed) // closed from outside
	switch {
	case rc.reason != "":
		reason = rc.reason
	case rc.first >= 0:
		reason = closeReason(rc.first == rlUp, rc.err)
	}
	rc.reported = true
	up, down := rc.c.live.up.Load(), rc.c.live.down.Load()
	Go(func() { rc.report(up, down, reason) })
}

// report calls onEnd; a panic in it is logged, not the end of the process.
func (rc *rlConn) report(up, down int64, reason string) {
	defer func() {
		if r := recover(); r != nil {
			rlLogPanic("passthrough stream end crashed", r)
		}
	}()
	rc.onEnd(up, down, reason)
}
