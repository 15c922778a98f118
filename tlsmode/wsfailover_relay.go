package tlsmode

// The relay of a WebSocket with failover: whole messages both ways between
// the client's WebSocket and tlsedge's own to a server (a leg). The switch
// to another server and the ends are in wsfailover_switch.go.
//
// Goroutines: clientLoop reads the client's messages and writes each to
// the current leg (again to the next leg when that write fails: the old
// server cannot have taken it whole); one legLoop per leg reads the
// server's messages and writes them to the client; run (the handler's
// goroutine) decides: it switches legs, and ends the session.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

const (
	// wfMaxTries bounds the servers one switch tries (each once).
	wfMaxTries = 3
	// wfMaxSwitches bounds the switches of one WebSocket within
	// wfWindow: servers that accept and fail at once must not keep a
	// client bouncing between them.
	wfMaxSwitches = 5
	wfWindow      = time.Minute
	// wfKeptRetry is how often a WebSocket kept on a server marked down
	// (no other server could take it) tries to move again.
	wfKeptRetry = time.Second
)

// wfDown is a leg whose read ended (err).
type wfDown struct {
	leg *wfLeg
	err error
}

// wfMove asks to move off leg (a drain, a rebalance).
type wfMove struct {
	leg *wfLeg
	why string
}

// wfDeadline is the error of a client message not complete within the
// route's read_body_timeout from its first frame.
type wfDeadline struct{ d time.Duration }

func (e wfDeadline) Error() string {
	return fmt.Sprintf("client timeout: WebSocket message not complete within read_body_timeout %v", e.d)
}

// wfSession is one client's WebSocket with failover.
type wfSession struct {
	p      *HTTPProxy
	cs     *connState
	c      *Conn
	rs     *reqState
	req    *http.Request // the client's request on stopCtx: server picks and dials
	hs     *wfRequest
	proto  string // the subprotocol in force ("" = none): every server must choose it
	client *websocket.Conn

	runCtx    context.Context // reads and writes: cancelled at the very end
	runCancel context.CancelFunc
	stopCtx   context.Context // picks and dials: cancelled once the session is to end
	stop      context.CancelFunc

	cur     atomic.Pointer[wfLeg] // set under mu
	mu      sync.Mutex
	changed chan struct{}       // closed when cur changes, or when the session ends
	legs    map[*wfLeg]struct{} // legs not closed by teardown yet

	down chan wfDown
	// The move asked last (nil: none), and a signal that one was asked:
	// a newer move replaces an older one, so a move is never lost.
	moveMu    sync.Mutex
	move      *wfMove
	moved     chan struct{} // 1 slot
	clientErr chan error    // the client's read or write failed (1 slot)
	end       chan struct{} // closed by Shutdown's ender
	endOnce   sync.Once
	done      chan struct{} // closed when run is over
	wg        sync.WaitGroup
	switches  []time.Time // recent switches (wfMaxSwitches)
	kept      bool        // a health move found no server, the leg was kept (logged once)
}

func newWFSession(p *HTTPProxy, cs *connState, rs *reqState, r *http.Request, hs *wfRequest, client *websocket.Conn, leg *wfLeg) *wfSession {
	base := context.WithoutCancel(r.Context()) // keeps connKey and reqKey
	s := &wfSession{
		p: p, cs: cs, c: cs.c, rs: rs, hs: hs, client: client,
		proto:     leg.ws.Subprotocol(),
		changed:   make(chan struct{}),
		legs:      map[*wfLeg]struct{}{leg: {}},
		down:      make(chan wfDown),
		moved:     make(chan struct{}, 1),
		clientErr: make(chan error, 1),
		end:       make(chan struct{}),
		done:      make(chan struct{}),
	}
	s.runCtx, s.runCancel = context.WithCancel(base)
	s.stopCtx, s.stop = context.WithCancel(base)
	s.req = r.WithContext(s.stopCtx)
	s.cur.Store(leg)
	return s
}

// run binds the connection to its server (drain, rebalance, the
// connection directory and leastconn see it), relays, and handles what
// ends or moves the WebSocket, until it is over.
func (s *wfSession) run() {
	c := s.c
	first := s.cur.Load()
	c.setUpgrade("websocket")
	c.Bind(first.s)
	c.SetEnder(s.requestEnd)
	c.setDivert(s.divert)
	defer s.teardown()
	s.wg.Add(2)
	go s.clientLoop()
	go s.legLoop(first)
	retry := time.NewTimer(wfKeptRetry)
	defer retry.Stop()
	for {
		// The current server's health: its channel first, then its verdict
		// (a change in between closes the channel), no polling.
		l := s.cur.Load()
		health := l.s.HealthChanged()
		if !l.s.Healthy() && !s.kept {
			if !s.failover(l, "health check failed", true, true) {
				return
			}
			continue
		}
		var retryC <-chan time.Time
		if s.kept { // marked down, no other server: try again now and then
			retry.Reset(wfKeptRetry)
			retryC = retry.C
		}
		select {
		case err := <-s.clientErr:
			s.endByClient(err)
			return
		case <-s.end:
			s.endByShutdown()
			return
		case d := <-s.down:
			if d.leg != s.cur.Load() {
				continue // a leg already left
			}
			if websocket.CloseStatus(d.err) != -1 {
				s.endByServer(d.leg, d.err) // the server's own close frame: no failover
				return
			}
			if errors.Is(d.err, websocket.ErrMessageTooBig) {
				s.endServerTooBig(d.leg)
				return
			}
			if !s.failover(d.leg, wfDownReason(d), false, false) {
				return
			}
		case <-s.moved:
			m := s.takeMove()
			if m == nil || m.leg != s.cur.Load() {
				continue // the WebSocket left that server meanwhile
			}
			if m.why == ReasonDrained && !m.leg.s.Draining() {
				continue // the drain ended meanwhile
			}
			if !s.failover(m.leg, m.why, true, false) {
				return
			}
		case <-health:
			if l.s.Healthy() {
				s.kept = false
			}
		case <-retryC:
			if !l.s.Healthy() && !s.failover(l, "health check failed", true, true) {
				return
			}
		}
	}
}

// requestEnd is the connection's ender: Shutdown for a reason that ends it
// (shutdown, reload, idle timeout, access denied after reload, the admin
// API, ...).
func (s *wfSession) requestEnd() {
	s.endOnce.Do(func() {
		close(s.end)
		s.stop()
	})
}

// divert is offered every Shutdown reason: those about the server (drain,
// rebalance) move the WebSocket off its current server instead of ending
// it. It runs under the connection's lock: it only records the move (the
// edge checked that the connection is still on the server concerned).
func (s *wfSession) divert(reason string) bool {
	if !wfMoves(reason) {
		return false
	}
	select {
	case <-s.end:
		return false
	case <-s.done:
		return false
	default:
	}
	s.moveMu.Lock()
	s.move = &wfMove{leg: s.cur.Load(), why: reason}
	s.moveMu.Unlock()
	select {
	case s.moved <- struct{}{}:
	default: // signalled already: run takes the latest move
	}
	return true
}

// takeMove returns (and forgets) the move asked last, nil for none.
func (s *wfSession) takeMove() *wfMove {
	s.moveMu.Lock()
	defer s.moveMu.Unlock()
	m := s.move
	s.move = nil
	return m
}

// clientGone reports that the client's side failed or closed.
func (s *wfSession) clientGone(err error) {
	select {
	case s.clientErr <- err:
	default:
	}
	s.stop()
}

// clientLoop relays the client's messages to the current server.
func (s *wfSession) clientLoop() {
	defer s.wg.Done()
	for {
		typ, msg, err := s.readClient()
		if err != nil {
			s.clientGone(err)
			return
		}
		if !s.toServer(typ, msg) {
			return
		}
	}
}

// readClient reads the client's next message. From its first frame the
// message has read_body_timeout to be complete: when it is not, the
// session ends (wfDeadline; the read itself ends when the client's
// WebSocket is closed). The message is read into a buffer grown with it,
// never beyond the read limit.
func (s *wfSession) readClient() (websocket.MessageType, []byte, error) {
	typ, r, err := s.client.Reader(s.runCtx)
	if err != nil {
		return 0, nil, err
	}
	d := s.p.limits.ReadBodyTimeout
	t := time.AfterFunc(d, func() { s.clientGone(wfDeadline{d}) })
	msg, err := wfReadMessage(r, WSFailoverMaxMessage)
	if !t.Stop() && err == nil {
		err = wfDeadline{d} // complete, but too late: the session is ending
	}
	return typ, msg, err
}

// wfReadMessage reads r to its end into a buffer that starts at 4 KiB and
// doubles as needed, up to limit+1 bytes (the reader itself refuses a
// message over the limit).
func wfReadMessage(r io.Reader, limit int) ([]byte, error) {
	buf := make([]byte, 0, min(4096, limit+1))
	for {
		if len(buf) == cap(buf) {
			if cap(buf) > limit {
				// Over the limit: one more read lets the WebSocket
				// reader say so itself (ErrMessageTooBig, 1009 sent).
				var one [1]byte
				if _, err := r.Read(one[:]); err != nil && !errors.Is(err, io.EOF) {
					return buf, err
				}
				return buf, fmt.Errorf("websocket message over %d bytes", limit)
			}
			next := make([]byte, len(buf), min(2*cap(buf), limit+1))
			copy(next, buf)
			buf = next
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// toServer writes one message to the current leg; when that fails (the
// old server cannot have taken it whole), to the next leg once the switch
// is done. false: the session is over.
func (s *wfSession) toServer(typ websocket.MessageType, msg []byte) bool {
	for {
		s.mu.Lock()
		leg, changed := s.cur.Load(), s.changed
		s.mu.Unlock()
		err := leg.ws.Write(s.runCtx, typ, msg)
		if err == nil {
			return true
		}
		// Closing the leg makes its reader report it, and run decides
		// (a close frame the server sent meanwhile still ends the
		// session as the server asked).
		leg.fail("write to the server failed: " + err.Error())
		_ = leg.ws.CloseNow()
		select {
		case <-changed:
		case <-s.done:
			return false
		}
	}
}

// legLoop relays one server's messages to the client, until its read
// fails or it sends a close frame.
func (s *wfSession) legLoop(l *wfLeg) {
	defer s.wg.Done()
	for {
		typ, msg, err := l.ws.Read(s.runCtx)
		if err != nil {
			select {
			case s.down <- wfDown{leg: l, err: err}:
			case <-s.done:
			}
			return
		}
		if err := s.client.Write(s.runCtx, typ, msg); err != nil {
			s.clientGone(err)
			return
		}
	}
}

// wfDownReason says why a leg's read ended, for the log.
func wfDownReason(d wfDown) string {
	if w := d.leg.why.Load(); w != nil {
		return *w
	}
	switch {
	case errors.Is(d.err, io.EOF), errors.Is(d.err, io.ErrUnexpectedEOF):
		return "server closed without a close frame"
	case errors.Is(d.err, syscall.ECONNRESET):
		return "server reset"
	}
	return "server read failed: " + d.err.Error()
}
