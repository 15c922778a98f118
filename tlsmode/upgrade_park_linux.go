package tlsmode

import (
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// The server side of an idle lean upgraded stream (upgrade_lean.go) waits
// for its socket without a goroutine: the socket is armed, one-shot, in one
// epoll set shared by every stream (upParker), and the goroutine that
// relayed it returns. When the server sends (or closes), the parker starts
// a goroutine that goes on relaying; so does a kick (shutdown, a close). An
// idle WebSocket then keeps one goroutine, the client side's, whose socket
// anything may close (the client side of a connection is closed from many
// places, and a closed socket leaves an epoll set without an event).
//
// The set is level-triggered and one-shot: arming a socket that already
// has bytes reports it at once, so bytes that came between the last wait
// and the arming are not missed, and an event disarms it until the next
// park. Each waiter (upPark) is running or parked; whoever moves it from
// parked to running (the event, a kick, a failed arming) alone goes on.

const (
	upRunning int32 = iota
	upParked
)

// upPark is one stream's waiter: its server socket and what resumes it.
type upPark struct {
	pk     *upParker
	id     int32
	rc     syscall.RawConn
	resume func() // called on a goroutine of its own
	state  atomic.Int32
}

// upParker is the shared epoll set and the goroutine that waits on it (in
// Go's netpoller, as the passthrough relay's loops do).
type upParker struct {
	epfd   int
	file   *os.File
	raw    syscall.RawConn
	events []unix.EpollEvent
	n      int
	err    error

	dead atomic.Bool // its epoll_wait failed: nothing parks any more

	mu    sync.Mutex
	slots []*upPark // by id; nil: free (the table keeps its peak size: 8 bytes a stream)
	free  []int32
}

var (
	upParkerOnce sync.Once
	upParkerG    *upParker
)

// upTheParker is the process's parker, started on first use; nil when it
// cannot be made or has failed (the streams then wait on their goroutine).
func upTheParker() *upParker {
	upParkerOnce.Do(func() {
		epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			return
		}
		if err := unix.SetNonblock(epfd, true); err != nil {
			unix.Close(epfd)
			return
		}
		f := os.NewFile(uintptr(epfd), "upgrade-park-epoll")
		raw, err := f.SyscallConn()
		if err != nil {
			f.Close()
			return
		}
		pk := &upParker{epfd: epfd, file: f, raw: raw, events: make([]unix.EpollEvent, 64)}
		go pk.run()
		upParkerG = pk
	})
	if pk := upParkerG; pk != nil && !pk.dead.Load() {
		return pk
	}
	return nil
}

// run resumes the waiters whose sockets are ready, for ever; should the
// set fail, it resumes every parked waiter and nothing parks from then on.
func (pk *upParker) run() {
	poll := func(fd uintptr) bool {
		pk.n, pk.err = rlPoll(int(fd), pk.events)
		return pk.n > 0 || pk.err != nil && pk.err != unix.EINTR
	}
	for {
		err := pk.raw.Read(poll)
		if err == nil && pk.err != nil && pk.err != unix.EINTR {
			err = rlSyscallErr("epoll_wait", pk.err)
		}
		if err != nil {
			pk.dead.Store(true)
			rlLogger().Error().Err(err).Msg("upgraded streams: the parking set failed; streams wait on goroutines from now on")
			pk.mu.Lock()
			slots := append([]*upPark(nil), pk.slots...)
			pk.mu.Unlock()
			for _, w := range slots {
				w.kick()
			}
			return
		}
		for i := range pk.n {
			id := pk.events[i].Fd
			pk.mu.Lock()
			var w *upPark
			if int(id) < len(pk.slots) {
				w = pk.slots[id]
			}
			pk.mu.Unlock()
			if w != nil && w.state.CompareAndSwap(upParked, upRunning) {
				go w.resume()
			}
		}
		pk.n = 0
	}
}

// waiter registers a stream whose server socket is c's (its RawConn);
// nil when c has none.
func (pk *upParker) waiter(c syscall.Conn, resume func()) *upPark {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	w := &upPark{pk: pk, rc: rc, resume: resume}
	pk.mu.Lock()
	if n := len(pk.free); n > 0 {
		w.id = pk.free[n-1]
		pk.free = pk.free[:n-1]
		pk.slots[w.id] = w
	} else {
		w.id = int32(len(pk.slots))
		pk.slots = append(pk.slots, w)
	}
	pk.mu.Unlock()
	return w
}

// done forgets w (its stream is over, or its connection parks no more)
// and takes its socket out of the set when it is still open; a late event
// of its id finds nothing, or another stream, which it resumes for
// nothing: that one waits its quiet period and parks again.
func (w *upPark) done() {
	pk := w.pk
	// Control fails on a closed socket (the set forgot it with its close);
	// while it runs the descriptor cannot be closed and reused.
	_ = w.rc.Control(func(fd uintptr) { _ = unix.EpollCtl(pk.epfd, unix.EPOLL_CTL_DEL, int(fd), nil) })
	pk.mu.Lock()
	if pk.slots[w.id] == w {
		pk.slots[w.id] = nil
		pk.free = append(pk.free, w.id)
	}
	pk.mu.Unlock()
}

// park arms w's socket; true: the caller's goroutine must return (w is
// parked, or another goroutine already runs it), false: the socket could
// not be armed (closed) or again says stop, and the caller goes on itself.
func (w *upPark) park(again func() bool) bool {
	w.state.Store(upParked)
	var cerr error
	err := w.rc.Control(func(fd uintptr) {
		// Re-armed once it is in the set (the first park adds it).
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: w.id}
		if cerr = unix.EpollCtl(w.pk.epfd, unix.EPOLL_CTL_MOD, int(fd), &ev); cerr == unix.ENOENT {
			cerr = unix.EpollCtl(w.pk.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
		}
	})
	if err == nil && cerr == nil && !again() && !w.pk.dead.Load() {
		return true
	}
	// Not parked after all: go on here, unless an event or a kick has
	// resumed it meanwhile.
	return !w.state.CompareAndSwap(upParked, upRunning)
}

// kick resumes w if it is parked (shutdown, or its socket was closed: a
// closed socket leaves the set without an event).
func (w *upPark) kick() {
	if w != nil && w.state.CompareAndSwap(upParked, upRunning) {
		go w.resume()
	}
}
