package tlsmode

import "sync/atomic"

// Go runs f on a goroutine that has run such work before when one waits
// for work, else on a new goroutine. A new goroutine starts on a small
// stack that grows, by copying it whole, as the calls of a connection's
// start (or of a stream's end: the access line) go deeper: twice or more
// for each connection. A worker keeps its grown stack for the next one
// (until a garbage collection finds it waiting with a small part in use
// and halves it).
// At most goIdleMax workers wait (their stacks are the memory this
// keeps); a worker that would be one more ends. f must recover its own
// panics, as on any goroutine.
func Go(f func()) {
	select {
	case goWork <- f:
	default:
		go goWorker(f)
	}
}

// goIdleMax is how many workers may wait for work: enough for the
// connections a few cores start at once; a burst beyond it makes new
// goroutines, which end once it is over.
const goIdleMax = 32

var (
	goWork = make(chan func()) // unbuffered: a send is taken by a waiting worker or not at all
	goIdle atomic.Int32        // workers waiting on goWork (or about to)
)

// goWorker runs f, then work from Go until goIdleMax others wait.
func goWorker(f func()) {
	for {
		f()
		if goIdle.Add(1) > goIdleMax {
			goIdle.Add(-1)
			return
		}
		f = <-goWork
		goIdle.Add(-1)
	}
}
