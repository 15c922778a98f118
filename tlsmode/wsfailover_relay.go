package tlsmode

// The relay of a WebSocket with failover: whole messages both ways between
// the client's WebSocket and tlsedge's own to a server (a leg), and the
// switch to another server when the leg's server goes away.
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
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/tlsedge/tlsedge/affinity"
)

const (
	// wfMaxTries bounds the servers one switch tries (each once).
	wfMaxTries = 3
	// wfMaxSwitches bounds the switches of one WebSocket within
	// wfWindow: servers that accept and fail at once must not keep a
	// client bouncing between them.
	wfMaxSwitches = 5
	wfWindow      = time.Minute
	// wfHealthPoll is how often the current server's health verdict is
	// read (a server marked down by its health check is left).
	wfHealthPoll = 500 * time.Millisecond
)

// wfDown is a leg whose read ended (err).
type wfDown struct {
	leg *wfLeg
	err error
}

// wfMove asks to move off leg (a drain, a rebalance, the admin API).
type wfMove struct {
	leg *wfLeg
	why string
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

	down      chan wfDown
	moves     chan wfMove
	clientErr chan error    // the client's read or write failed (1 slot)
	end       chan struct{} // closed by Shutdown's ender
	endOnce   sync.Once
	done      chan struct{} // closed when run is over
	wg        sync.WaitGroup
	switches  []time.Time // recent switches (wfMaxSwitches)
}

func newWFSession(p *HTTPProxy, cs *connState, rs *reqState, r *http.Request, hs *wfRequest, client *websocket.Conn, leg *wfLeg) *wfSession {
	base := context.WithoutCancel(r.Context()) // keeps connKey and reqKey
	s := &wfSession{
		p: p, cs: cs, c: cs.c, rs: rs, hs: hs, client: client,
		proto:     leg.ws.Subprotocol(),
		changed:   make(chan struct{}),
		legs:      map[*wfLeg]struct{}{leg: {}},
		down:      make(chan wfDown),
		moves:     make(chan wfMove, 4),
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
	tick := time.NewTicker(wfHealthPoll)
	defer tick.Stop()
	for {
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
			if !s.failover(d.leg, wfDownReason(d), false) {
				return
			}
		case m := <-s.moves:
			if m.leg != s.cur.Load() {
				continue
			}
			if !s.failover(m.leg, m.why, true) {
				return
			}
		case <-tick.C:
			if l := s.cur.Load(); !l.s.Healthy() {
				if !s.failover(l, "health check failed", true) {
					return
				}
			}
		}
	}
}

// requestEnd is the connection's ender: Shutdown for a reason that ends it
// (shutdown, reload, idle timeout, access denied after reload, ...).
func (s *wfSession) requestEnd() {
	s.endOnce.Do(func() {
		close(s.end)
		s.stop()
	})
}

// divert is offered every Shutdown reason: those about the server (drain,
// rebalance, the admin API) move the WebSocket instead of ending it. It
// runs under the connection's lock: it only queues the move.
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
	select {
	case s.moves <- wfMove{leg: s.cur.Load(), why: reason}:
	default: // moves are queued already
	}
	return true
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
		typ, msg, err := s.client.Read(s.runCtx)
		if err != nil {
			s.clientGone(err)
			return
		}
		if !s.toServer(typ, msg) {
			return
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

// failover moves the WebSocket off leg old to another server (never old's
// again in this switch), with the original handshake. planned: old still
// works (drain, health check, rebalance, the admin API) and gets a close
// frame 1001; otherwise it is closed at once. false: no server could take
// it, the client was closed with 1013 and the session is over.
func (s *wfSession) failover(old *wfLeg, why string, planned bool) bool {
	now := time.Now()
	kept := s.switches[:0]
	for _, t := range s.switches {
		if now.Sub(t) < wfWindow {
			kept = append(kept, t)
		}
	}
	s.switches = kept
	if len(s.switches) >= wfMaxSwitches {
		s.giveUp(old, why, fmt.Errorf("%d switches within %v already", len(s.switches), wfWindow), planned)
		return false
	}
	tried := []*affinity.Server{old.s}
	skip := func(x *affinity.Server) bool {
		for _, t := range tried {
			if t == x {
				return true
			}
		}
		return false
	}
	var protos []string
	if s.proto != "" {
		protos = []string{s.proto}
	}
	var lastErr error = ErrNoServer
	for i := 0; i < wfMaxTries; i++ {
		if s.stopCtx.Err() != nil {
			return true // ending: run takes the end or the client's close next
		}
		srv, err := s.p.acquireServer(s.req, s.c, skip)
		if err != nil {
			if i == 0 || !errors.Is(err, ErrNoServer) {
				lastErr = err
			}
			break
		}
		leg, resp, err := s.p.wfDial(s.stopCtx, s.c, srv, s.hs, protos)
		switch {
		case err != nil:
			srv.Release()
			if resp != nil {
				resp.Body.Close()
			}
		case leg.ws.Subprotocol() != s.proto:
			err = fmt.Errorf("server %s chose subprotocol %q, the client's is %q", srv.Address, leg.ws.Subprotocol(), s.proto)
			_ = leg.ws.CloseNow()
			leg.release()
		}
		if err != nil {
			lastErr = err
			tried = append(tried, srv)
			continue
		}
		s.switchTo(old, leg, why, planned)
		s.switches = append(s.switches, now)
		return true
	}
	if s.stopCtx.Err() != nil {
		return true
	}
	s.giveUp(old, why, lastErr, planned)
	return false
}

// switchTo makes leg the current one: the client's next messages go to
// it, the connection is bound to its server, and old is closed.
func (s *wfSession) switchTo(old, leg *wfLeg, why string, planned bool) {
	s.mu.Lock()
	s.cur.Store(leg)
	close(s.changed)
	s.changed = make(chan struct{})
	s.legs[leg] = struct{}{}
	s.mu.Unlock()
	s.rs.server = leg.s
	s.c.Bind(leg.s)
	old.release()
	s.wg.Add(2)
	go s.legLoop(leg)
	go func() {
		defer s.wg.Done()
		s.closeLeg(old, planned, wfCut("going away: "+why))
	}()
	c := s.c
	ev := s.p.opt.Log.Info().Str("listener", s.p.opt.Listener).Str("route", s.p.opt.Route).
		Str("client", c.Source.String()).Str("from", old.s.Address).Str("to", leg.s.Address).Str("reason", why)
	if c.Client != "" {
		ev = ev.Str("client_cert", c.Client)
	}
	ev.Msg("websocket moved to another server")
	if e, ok := c.Events.(WSFailoverEvents); ok {
		e.WSFailover(c, old.s, leg.s, why)
	}
}

// closeLeg closes a leg: with a close frame 1001 when its server still
// works (planned), else at once.
func (s *wfSession) closeLeg(l *wfLeg, planned bool, reason string) {
	code := websocket.StatusCode(0)
	if planned {
		code = websocket.StatusGoingAway
	}
	s.closeLegWith(l, code, reason)
}

// closeLegWith closes a leg with a close frame (code, reason); code 0:
// at once, without one.
func (s *wfSession) closeLegWith(l *wfLeg, code websocket.StatusCode, reason string) {
	if code != 0 {
		_ = l.ws.Close(code, reason)
	} else {
		_ = l.ws.CloseNow()
	}
	s.mu.Lock()
	delete(s.legs, l)
	s.mu.Unlock()
}

// giveUp ends the session when no server could take the WebSocket: the
// client gets 1013 (try again later).
func (s *wfSession) giveUp(old *wfLeg, why string, err error, planned bool) {
	msg := "no server available: websocket failover (" + why + "): " + err.Error()
	s.cs.endWith(msg)
	s.rs.err = errors.New(msg)
	c := s.c
	ev := s.p.opt.Log.Warn().Str("listener", s.p.opt.Listener).Str("route", s.p.opt.Route).
		Str("client", c.Source.String()).Str("from", old.s.Address).Str("reason", why).Str("error", err.Error())
	if c.Client != "" {
		ev = ev.Str("client_cert", c.Client)
	}
	ev.Msg("websocket failover: no server left, client closed with 1013")
	if e, ok := c.Events.(WSFailoverEvents); ok {
		e.WSFailover(c, old.s, nil, why)
	}
	s.closeBoth(websocket.StatusTryAgainLater, "no server available", old, planned, "going away: "+why)
}

// closeBoth sends the client a close frame (code, reason) and closes leg
// l (see closeLeg), at the same time; each close handshake is bounded by
// the WebSocket library (5 s).
func (s *wfSession) closeBoth(code websocket.StatusCode, reason string, l *wfLeg, planned bool, serverReason string) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_ = s.client.Close(code, wfCut(reason))
	}()
	go func() {
		defer wg.Done()
		s.closeLeg(l, planned, wfCut(serverReason))
	}()
	wg.Wait()
}

// endByClient: the client closed (its close frame goes to the server with
// its code and reason), sent a message over the limit, or went away.
func (s *wfSession) endByClient(err error) {
	l := s.cur.Load()
	var ce websocket.CloseError
	switch {
	case errors.As(err, &ce):
		s.closeLegWith(l, ce.Code, ce.Reason) // the client's code and reason
		return
	case errors.Is(err, websocket.ErrMessageTooBig):
		s.cs.endWith(fmt.Sprintf("client error: a WebSocket message over %d bytes (closed with 1009)", WSFailoverMaxMessage))
	}
	s.closeLegWith(l, websocket.StatusGoingAway, "going away: the client left")
}

// endByServer: the server sent a close frame; it goes to the client as
// it is (the library answered the server already).
func (s *wfSession) endByServer(l *wfLeg, err error) {
	var ce websocket.CloseError
	errors.As(err, &ce)
	s.cs.endWith(fmt.Sprintf("server closed: close frame %d", int(ce.Code)))
	_ = s.client.Close(ce.Code, ce.Reason)
	s.closeLeg(l, false, "")
}

// endServerTooBig: the server sent a message over the limit (the library
// closed its WebSocket with 1009); the client gets 1011.
func (s *wfSession) endServerTooBig(l *wfLeg) {
	msg := fmt.Sprintf("server error: a WebSocket message over %d bytes", WSFailoverMaxMessage)
	s.cs.endWith(msg)
	s.rs.err = errors.New(msg)
	_ = s.client.Close(websocket.StatusInternalError, "server message too big")
	s.closeLeg(l, false, "")
}

// endByShutdown ends the WebSocket as the transparent relay does for
// Shutdown (reload, shutdown, idle timeout, access denied after a reload):
// a close frame 1001 (1008 for access denied) with the reason to the
// client, and 1001 to the server.
func (s *wfSession) endByShutdown() {
	reason := s.c.ShutdownReason()
	s.closeBoth(websocket.StatusCode(wsCloseCode(reason)), reason, s.cur.Load(), true, reason)
}

// teardown ends every goroutine and gives everything back: the slots, the
// connection's binding, its ender.
func (s *wfSession) teardown() {
	s.c.setDivert(nil)
	s.c.SetEnder(nil)
	s.stop()
	close(s.done)
	s.mu.Lock()
	close(s.changed)
	legs := make([]*wfLeg, 0, len(s.legs))
	for l := range s.legs {
		legs = append(legs, l)
	}
	s.mu.Unlock()
	_ = s.client.CloseNow()
	for _, l := range legs {
		_ = l.ws.CloseNow()
	}
	s.runCancel()
	s.wg.Wait()
	s.cur.Load().release()
	s.c.Bind(nil)
}

// wfCut cuts a close reason to what a close frame holds (123 bytes),
// between two UTF-8 characters.
func wfCut(reason string) string {
	if len(reason) <= 123 {
		return reason
	}
	n := 123
	for n > 0 && !utf8.RuneStart(reason[n]) {
		n--
	}
	return reason[:n]
}
