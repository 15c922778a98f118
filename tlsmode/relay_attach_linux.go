package tlsmode

import (
	"errors"
	"net"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// rlTable maps a loop's slots (an event's data is slot<<1 | side) to its
// streams. The loop looks a stream up at every event with two atomic loads
// and no lock; the goroutine that starts a stream takes a slot and stores
// the stream in it (attach), and the loop clears the slot when the stream
// closes, both under the loop's mu. A slot cleared in a batch of events is
// given out again only after that batch (release): an event of the batch
// for the closed stream finds no stream, never a new one.
type rlTable struct {
	chunks [rlMaxChunks]atomic.Pointer[rlChunk]
	made   int32   // slots made so far (under mu)
	free   []int32 // slots to give out (under mu)
	later  []int32 // slots cleared in this batch (under mu), free after it
}

type rlChunk [1 << rlChunkBits]atomic.Pointer[rlConn]

const (
	rlChunkBits = 10
	rlMaxChunks = 1 << 11 // 2M streams a loop: more than any descriptor limit allows
)

// get returns the stream in slot, nil when none.
func (t *rlTable) get(slot int32) *rlConn {
	if slot < 0 {
		return nil
	}
	ch := t.chunks[slot>>rlChunkBits].Load()
	if ch == nil {
		return nil
	}
	return ch[slot&(1<<rlChunkBits-1)].Load()
}

// take gives out a free slot holding rc and sets rc.slot (under mu);
// false when every slot is used.
func (t *rlTable) take(rc *rlConn) bool {
	var slot int32
	if k := len(t.free); k > 0 {
		slot = t.free[k-1]
		t.free = t.free[:k-1]
	} else {
		if int(t.made) >= rlMaxChunks<<rlChunkBits {
			return false
		}
		slot = t.made
		t.made++
		if slot&(1<<rlChunkBits-1) == 0 {
			t.chunks[slot>>rlChunkBits].Store(new(rlChunk))
		}
	}
	rc.slot = slot // before the store that publishes rc to the loop
	t.chunks[slot>>rlChunkBits].Load()[slot&(1<<rlChunkBits-1)].Store(rc)
	return true
}

// clear empties slot (under mu); it is given out again after the batch.
func (t *rlTable) clear(slot int32) {
	t.chunks[slot>>rlChunkBits].Load()[slot&(1<<rlChunkBits-1)].Store(nil)
	t.later = append(t.later, slot)
}

// release makes the slots cleared in the batch free (under mu).
func (t *rlTable) release() {
	t.free = append(t.free, t.later...)
	t.later = t.later[:0]
}

// each calls f for every stream in the table (the loop's shutdown).
func (t *rlTable) each(f func(*rlConn)) {
	for slot := int32(0); slot < t.made; slot++ {
		if rc := t.get(slot); rc != nil {
			f(rc)
		}
	}
}

// attach registers a stream's two sockets, on the goroutine that starts
// it: the loop is not woken (an edge-triggered registration reports the
// bytes that wait already, and the sockets are counted as writable). Under
// mu, as the loop's close marks a stream ended: a stream closed before (an
// abort) is not registered, and its descriptor numbers, maybe another
// socket's now, are left alone; one closed after was registered whole. An
// error is the stream's to end with (the loop closes it: rlCmdFail).
func (l *rlLoop) attach(rc *rlConn) {
	err := l.register(rc)
	switch {
	case err == errRelayStopped: // the loop is gone (tests)
		rc.closeStopped()
	case err != nil:
		if !l.post1(rlCmd{op: rlCmdFail, rc: rc, err: err}) {
			rc.closeStopped() // stopped meanwhile (tests)
		}
	}
}

var (
	errRelayStopped = errors.New("passthrough relay stopped") // attach after the loop stopped (tests)
	errRelayFull    = errors.New("passthrough relay: no free slot")
)

// register takes a slot for rc and adds its sockets to the epoll set.
func (l *rlLoop) register(rc *rlConn) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dead {
		return errRelayStopped
	}
	if rc.ended.Load() { // closed by an abort already
		return nil
	}
	if !l.table.take(rc) {
		return errRelayFull
	}
	l.streams.Add(1)
	for side := range 2 {
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET, Fd: rc.slot<<1 | int32(side)}
		if err := rlEpollCtl(l.epfd, unix.EPOLL_CTL_ADD, int(rc.fd[side]), &ev); err != nil {
			return rlSyscallErr("epoll_ctl", err)
		}
		if side == 0 && l.betweenAdds != nil {
			l.betweenAdds()
		}
	}
	return nil
}

// wantOut asks epoll for side's EPOLLOUT, once a write to it said EAGAIN:
// until then the socket was counted as writable. The modified
// registration reports at once a socket that has become writable
// meanwhile. It stays: edge-triggered, it costs nothing while the socket
// keeps its room. Under mu: attach, which holds it, may not have added the
// socket yet (the loop can serve the side it added first).
func (rc *rlConn) wantOut(side int) {
	if rc.out&(1<<side) != 0 {
		return
	}
	rc.out |= 1 << side
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: rc.slot<<1 | int32(side)}
	l := rc.loop
	l.mu.Lock()
	err := rlEpollCtl(l.epfd, unix.EPOLL_CTL_MOD, int(rc.fd[side]), &ev)
	l.mu.Unlock()
	if err != nil {
		rc.fail(1-side, rlSyscallErr("epoll_ctl", err))
	}
}

// closeFDs marks the stream ended and clears its slot, under mu (attach
// then registers nothing), then closes both sockets (which also removes
// them from the epoll set); once: false when done already.
func (rc *rlConn) closeFDs() bool {
	if !rc.end1() {
		return false
	}
	for side := range 2 {
		_ = rlClose(int(rc.fd[side]))
	}
	return true
}

// end1 is closeFDs' part under mu; false when the stream had ended.
func (rc *rlConn) end1() bool {
	l := rc.loop
	l.mu.Lock()
	defer l.mu.Unlock()
	if !rc.ended.CompareAndSwap(false, true) {
		return false
	}
	if rc.slot >= 0 {
		l.table.clear(rc.slot)
		l.streams.Add(-1)
	}
	return true
}

// closeStopped closes a stream attach could not hand to its loop, which
// has stopped (tests): the loop never served it, so none of the loop's
// state but its slot is touched. The loop's shutdown may be closing it too
// (an abort queued before it stopped, or its slot): closeFDs lets one of
// them only.
func (rc *rlConn) closeStopped() {
	if rc.closeFDs() {
		up, down := rc.c.live.up.Load(), rc.c.live.down.Load()
		Go(func() { rc.report(up, down, closeReason(false, net.ErrClosed)) })
	}
}
