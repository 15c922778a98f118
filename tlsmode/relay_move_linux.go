package tlsmode

import (
	"io"
	"time"

	"golang.org/x/sys/unix"
)

// rlBulkAfter: a direction that has moved this much through the buffer in
// reads of at least rlBulkMin bytes splices from then on, even when no
// single read filled the buffer (a sender whose bytes arrive in pieces at
// first, as on a loaded machine), so user space copies at most this much
// of a bulk transfer.
const rlBulkAfter = 64 << 10

// rlBulkMin: reads smaller than this do not count toward rlBulkAfter, and
// a spliced burst (the bytes moved between two "nothing more now") smaller
// than this ends splicing until bulk shows again: a long-lived stream of
// small messages (a keep-alive API, a WebSocket) stays on the buffer path,
// where a message costs one read and one write, not three splices.
const rlBulkMin = 1 << 10

// How bytes move (HAProxy's splice-auto): a direction starts on the small
// path, read(2) into a 16 KiB buffer and write(2) straight on; a read that
// fills the buffer shows bulk, and the direction splices from then on:
// splice(2) from the socket into a pipe and from the pipe into the other
// socket, no copy through user space. Buffers and pipes come from the
// loop's free lists and go back as soon as their bytes are written, so an
// idle stream holds neither. When the destination would block, the bytes
// stay where they are (one buffer or one pipe per direction: the bound of
// what a stream holds) and the source is not read until the destination
// took them (EPOLLOUT).
//
// Splicing is an optimisation, never a cause of failure: when no pipe can
// be made (pipe2: EMFILE, ENFILE) the loop stays on the buffer path for
// rlNoPipes and then tries again; when splice refuses a socket (EINVAL,
// ENOSYS) its direction stays on the buffer path for good. Go's
// internal/poll falls back the same way.
const (
	rlBufSize   = 16 << 10  // small path buffer
	rlPipeSize  = 256 << 10 // pipe capacity wanted (rlNewPipe); smaller pipes are not pooled
	rlBudget    = 1 << 20   // bytes a direction moves per wake-up before others get their turn
	rlKeepBufs  = 64        // free buffers a loop keeps
	rlKeepPipes = 16        // free pipes a loop keeps (2 descriptors each)

	rlNoPipes   = int64(time.Second) // after pipe2 failed: buffers only for this long
	rlLogPipesN = int64(time.Minute) // at most one log line about it per loop this often
)

// rlPipe is a pipe for splicing.
type rlPipe struct {
	r, w int
	size int32 // its capacity
}

// pump moves what can move in both directions.
func (rc *rlConn) pump() {
	rc.move(rlUp)
	rc.move(rlDown)
}

// move moves bytes of direction d until the source has none, the
// destination takes no more, or the budget is used.
func (rc *rlConn) move(d int) {
	dir := &rc.dir[d]
	src, dst := d, 1-d
	budget := rlBudget
	for !rc.closed && !dir.done {
		if dir.pending() {
			if rc.ready[dst]&rlWritable == 0 || !rc.flush(d) {
				return // EPOLLOUT resumes it
			}
		}
		if dir.eof {
			rc.shut(d)
			return
		}
		if rc.ready[src]&rlReadable == 0 {
			return // EPOLLIN resumes it
		}
		if budget <= 0 {
			rc.requeue()
			return
		}
		budget -= rc.fill(d)
	}
}

// fill reads from direction d's source into a buffer or a pipe and returns
// the bytes read (0: none now, the source ended, or it failed).
func (rc *rlConn) fill(d int) int {
	dir := &rc.dir[d]
	l := rc.loop
	fd := int(rc.fd[d])
	if dir.bulk && dir.pipe == nil {
		p, err := l.getPipe()
		if err != nil {
			// No pipe now (the descriptor limit): copy through the buffer;
			// the loop tries pipes again after rlNoPipes.
			dir.bulk = false
			l.noBulk.Add(1)
			l.noPipes = l.now + rlNoPipes
			if l.now >= l.logPipes {
				l.logPipes = l.now + rlLogPipesN
				rlLogger().Warn().Err(rlSyscallErr("pipe2", err)).Msg("passthrough relay: no pipe for splice, copying through buffers for now")
			}
		} else {
			dir.pipe = p
			l.pipesIn.Add(1)
		}
	}
	for dir.bulk {
		n, err := l.sys.splice(fd, dir.pipe.w, int(dir.pipe.size))
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			rc.ready[d] &^= rlReadable
			rc.releasePipe(dir)
			if dir.burst < rlBulkMin { // small messages, not bulk: back to the buffer
				dir.bulk, dir.copied = false, 0
			}
			dir.burst = 0
			return 0
		case err == unix.EINVAL || err == unix.ENOSYS:
			// This socket cannot splice (nothing moved: the pipe is
			// empty): copy through the buffer from now on.
			rc.releasePipe(dir)
			dir.bulk, dir.noSplice = false, true
			l.noBulk.Add(1)
			continue
		case err != nil:
			rc.fail(d, rlSyscallErr("splice", err))
			return 0
		case n == 0:
			dir.eof = true
			rc.releasePipe(dir)
			return 0
		}
		dir.inPipe = int32(n)
		dir.burst = int32(min(int(dir.burst)+n, rlBulkMin))
		l.held.Add(int64(n))
		return n
	}
	buf := l.getBuf()
	for {
		n, err := rlRead(fd, buf)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			rc.ready[d] &^= rlReadable
			l.putBuf(buf)
			return 0
		case err != nil:
			l.putBuf(buf)
			rc.fail(d, rlSyscallErr("read", err))
			return 0
		case n == 0:
			l.putBuf(buf)
			dir.eof = true
			return 0
		}
		if n >= rlBulkMin {
			dir.copied += int64(n)
		}
		if n == len(buf) || dir.copied >= rlBulkAfter {
			dir.bulk = !dir.noSplice && l.now >= l.noPipes
			// This read starts the burst: a record whose last bytes the
			// splice finds is bulk still (one record a wake-up, from a
			// sender the relay keeps pace with), not a small message.
			dir.burst = int32(min(n, rlBulkMin))
		}
		if n != len(buf) && rc.ready[d]&rlHup == 0 {
			// A short read emptied the socket: the next bytes come with
			// an event of their own (edge-triggered), so a read that would
			// only say EAGAIN is saved. Not after EPOLLRDHUP: the FIN is
			// there already and no event will announce it again (nginx
			// does the same).
			rc.ready[d] &^= rlReadable
		}
		dir.buf, dir.off, dir.end = buf, 0, int32(n)
		l.held.Add(int64(n))
		return n
	}
}

// flush writes direction d's pending bytes; false: not all of them (the
// destination would block, or it failed).
func (rc *rlConn) flush(d int) bool {
	dir := &rc.dir[d]
	l := rc.loop
	fd := int(rc.fd[1-d])
	for dir.pending() {
		var n int
		var err error
		call := "write"
		if dir.inPipe > 0 {
			n, err = l.sys.splice(dir.pipe.r, fd, int(dir.inPipe))
			call = "splice"
		} else {
			n, err = rlWrite(fd, dir.buf[dir.off:dir.end])
		}
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			rc.ready[1-d] &^= rlWritable
			rc.wantOut(1 - d) // EPOLLOUT resumes it
			return false
		case err != nil:
			rc.fail(d, rlSyscallErr(call, err))
			return false
		case n <= 0:
			// Nothing written and no error: trying again would spin.
			rc.fail(d, rlSyscallErr(call, io.ErrShortWrite))
			return false
		}
		if dir.inPipe > 0 {
			dir.inPipe -= int32(n)
		} else {
			dir.off += int32(n)
		}
		l.held.Add(int64(-n))
		rc.lastIO.Store(l.now)
		if d == rlUp {
			rc.c.live.up.Add(int64(n))
		} else {
			rc.c.live.down.Add(int64(n))
		}
	}
	rc.release(dir)
	return true
}

// shut half-closes direction d's destination (its source ended and all
// its bytes are written): a FIN, as Pipe's CloseWrite. When the other
// direction is done too, both sockets are closed at once instead: neither
// has unread bytes (both sources said EOF), so close sends the FIN.
func (rc *rlConn) shut(d int) {
	if rc.dir[1-d].done {
		rc.finished(d, nil)
		return
	}
	var err error
	if e := rlShutdown(int(rc.fd[1-d]), unix.SHUT_WR); e != nil && e != unix.ENOTCONN {
		err = rlSyscallErr("shutdown", e)
	}
	rc.finished(d, err)
}

// release gives back a direction's buffer and pipe. A pipe that still
// holds bytes (the stream is closing) is closed, not reused.
func (rc *rlConn) release(dir *rlDir) {
	l := rc.loop
	if dir.buf != nil {
		if n := dir.end - dir.off; n > 0 {
			l.held.Add(int64(-n))
		}
		l.putBuf(dir.buf)
		dir.buf, dir.off, dir.end = nil, 0, 0
	}
	if dir.inPipe > 0 {
		l.held.Add(int64(-dir.inPipe))
		unix.Close(dir.pipe.r)
		unix.Close(dir.pipe.w)
		dir.pipe, dir.inPipe = nil, 0
		l.pipesIn.Add(-1)
	}
	rc.releasePipe(dir)
}

// releasePipe gives back an empty pipe.
func (rc *rlConn) releasePipe(dir *rlDir) {
	if dir.pipe != nil && dir.inPipe == 0 {
		rc.loop.putPipe(dir.pipe)
		dir.pipe = nil
		rc.loop.pipesIn.Add(-1)
	}
}

func (l *rlLoop) getBuf() []byte {
	if k := len(l.bufs); k > 0 {
		b := l.bufs[k-1]
		l.bufs[k-1] = nil
		l.bufs = l.bufs[:k-1]
		return b
	}
	return make([]byte, rlBufSize)
}

func (l *rlLoop) putBuf(b []byte) {
	if len(l.bufs) < rlKeepBufs {
		l.bufs = append(l.bufs, b)
	}
}

func (l *rlLoop) getPipe() (*rlPipe, error) {
	if k := len(l.pipes); k > 0 {
		p := l.pipes[k-1]
		l.pipes[k-1] = nil
		l.pipes = l.pipes[:k-1]
		l.pipesFree.Add(-1)
		return p, nil
	}
	return l.sys.newPipe()
}

// putPipe keeps an empty pipe for the next transfer, unless the loop
// keeps enough or it is smaller than rlPipeSize (past
// fs.pipe-user-pages-soft the kernel makes 2-page pipes): those are
// closed.
func (l *rlLoop) putPipe(p *rlPipe) {
	if len(l.pipes) < rlKeepPipes && p.size >= rlPipeSize {
		l.pipes = append(l.pipes, p)
		l.pipesFree.Add(1)
		return
	}
	unix.Close(p.r)
	unix.Close(p.w)
}

// rlNewPipe makes a non-blocking pipe of rlPipeSize if it can; its size
// is what the kernel gave. 256 KiB, not Linux's default 64 KiB (Go's
// splice): each splice then moves up to four times as much, and the bytes
// reach the other socket in larger pieces. A keep-alive bulk transfer on
// this project's machine took 0.51 s of CPU a GiB against 0.90 with 64 KiB
// (1 MiB: 0.43). Larger pipes count more against fs.pipe-user-pages-soft
// (16,384 pages a user): 256 KiB is 64 pages, so 256 pipes in flight at
// once before the kernel makes small ones (which work, unpooled); 1 MiB
// would leave 64. The default fs.pipe-max-size (1 MiB) allows it without
// privileges.
func rlNewPipe() (*rlPipe, error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, err
	}
	p := &rlPipe{r: fds[0], w: fds[1], size: rlPipeSize}
	if n, err := unix.FcntlInt(uintptr(fds[1]), unix.F_GETPIPE_SZ, 0); err == nil {
		p.size = int32(n)
	}
	if p.size < rlPipeSize {
		if n, err := unix.FcntlInt(uintptr(fds[1]), unix.F_SETPIPE_SZ, rlPipeSize); err == nil {
			p.size = int32(n)
		}
	}
	return p, nil
}
