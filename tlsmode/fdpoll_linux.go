package tlsmode

import (
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// fdPoller tells FDConn reads that found nothing when their socket has
// bytes again: one epoll instance, known to Go's netpoller as the relay's
// loops are, and a goroutine that wakes the readers. A socket stays out
// of the netpoller, so the relay can still take it as it is (no dup, no
// close through entersyscall) once its hello is there: Take removes it
// from this epoll (one raw epoll_ctl), and the relay adds it to its own.
type fdPoller struct {
	epfd int
	file *os.File // epfd in the netpoller
	raw  syscall.RawConn

	mu      sync.Mutex
	waiters map[uint64]*fdWaiter // by token, the epoll data
	next    uint64
}

// fdWaiter is one socket's registration: wake has a value after each
// event (or a poke: a new deadline, Close).
type fdWaiter struct {
	p     *fdPoller
	token uint64
	wake  chan struct{} // buffered, 1
}

// fdPollerShared returns the process's fdPoller, starting it on first
// use; nil when it cannot start now (EMFILE...): tried again at most once
// a second (rlLazy), the first failure logged.
func fdPollerShared() *fdPoller { return fdPollerLazy.get() }

var fdPollerLazy = &rlLazy[fdPoller]{
	start: func() (*fdPoller, error) {
		p, err := newFDPoller()
		if err == nil {
			go p.run()
		}
		return p, err
	},
	now:     time.Now,
	level:   zerolog.WarnLevel,
	failMsg: "passthrough: no poller for the hellos of raw sockets now; reads that wait use the netpoller",
	okMsg:   "passthrough: the poller for the hellos of raw sockets started",
}

func newFDPoller() (*fdPoller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, rlSyscallErr("epoll_create1", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, rlSyscallErr("fcntl", err)
	}
	f := os.NewFile(uintptr(epfd), "fd-poller") // owns epfd from now on
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &fdPoller{epfd: epfd, file: f, raw: raw, waiters: map[uint64]*fdWaiter{}}, nil
}

// run wakes the waiters of the sockets epoll reports, for the life of the
// process.
func (p *fdPoller) run() {
	events := make([]unix.EpollEvent, 64)
	var n int
	poll := func(fd uintptr) bool {
		var err error
		n, err = rlPoll(int(fd), events)
		return n > 0 || (err != nil && err != unix.EINTR)
	}
	for {
		if err := p.raw.Read(poll); err != nil {
			time.Sleep(time.Millisecond) // cannot happen with a valid epfd; never spin
			continue
		}
		p.mu.Lock()
		for i := range max(n, 0) {
			if w := p.waiters[*(*uint64)(unsafe.Pointer(&events[i].Fd))]; w != nil {
				w.poke()
			}
		}
		p.mu.Unlock()
	}
}

// poke makes the waiter's next (or current) wait return.
func (w *fdWaiter) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// add registers socket fd, edge-triggered, for input and the peer's
// half-close (an event comes at once when bytes are there already).
func (p *fdPoller) add(fd int) (*fdWaiter, error) {
	p.mu.Lock()
	p.next++
	w := &fdWaiter{p: p, token: p.next, wake: make(chan struct{}, 1)}
	p.waiters[w.token] = w
	p.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET}
	*(*uint64)(unsafe.Pointer(&ev.Fd)) = w.token
	if err := rlEpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		p.forget(w)
		return nil, err
	}
	return w, nil
}

// remove unregisters socket fd (still open: the relay takes it).
func (p *fdPoller) remove(fd int, w *fdWaiter) {
	_ = rlEpollCtl(p.epfd, unix.EPOLL_CTL_DEL, fd, &unix.EpollEvent{})
	p.forget(w)
}

// forget drops w (its socket was closed, which left the epoll set).
func (p *fdPoller) forget(w *fdWaiter) {
	p.mu.Lock()
	delete(p.waiters, w.token)
	p.mu.Unlock()
}

// waitReadable waits for w's next event, at most until deadline (zero:
// no limit); false when the deadline passed first.
func (w *fdWaiter) waitReadable(deadline time.Time) bool {
	if deadline.IsZero() {
		<-w.wake
		return true
	}
	d := time.Until(deadline)
	if d <= 0 {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-w.wake:
		return true
	case <-t.C:
		return false
	}
}
