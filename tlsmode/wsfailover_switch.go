package tlsmode

// WebSocket failover's switches and ends: the move of a session
// (wsfailover_relay.go) to another server, and how each side is closed
// when it is over.

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/rs/zerolog"

	"github.com/tlsedge/tlsedge/affinity"
)

// failover moves the WebSocket off leg old to another server (never old's
// again in this switch), with the original handshake. planned: old still
// works (drain, health check, rebalance) and gets a close frame 1001;
// otherwise it is closed at once. When no server can take it: with keep
// (a failed health check, which ends no plain WebSocket either) the
// WebSocket stays on old, logged once until old is healthy again or a
// move succeeds; without, the client is closed with 1013. false: the
// session is over.
func (s *wfSession) failover(old *wfLeg, why string, planned, keep bool) bool {
	now := time.Now()
	kept := s.switches[:0]
	for _, t := range s.switches {
		if now.Sub(t) < wfWindow {
			kept = append(kept, t)
		}
	}
	s.switches = kept
	if len(s.switches) >= wfMaxSwitches {
		return s.noServer(old, why, fmt.Errorf("%d switches within %v already", len(s.switches), wfWindow), planned, keep)
	}
	var protos []string
	if s.proto != "" {
		protos = []string{s.proto}
	}
	if s.stopCtx.Err() != nil {
		return true // ending: run takes the end or the client's close next
	}
	var leg *wfLeg
	err := s.p.tryServers(s.req, s.c, wfMaxTries, []*affinity.Server{old.s}, func(srv *affinity.Server) (bool, error) {
		if s.stopCtx.Err() != nil {
			srv.Release()
			return false, s.stopCtx.Err() // ending: run takes the end or the client's close next
		}
		l, resp, err := s.p.wfDial(s.stopCtx, s.c, srv, s.hs, protos)
		switch {
		case err != nil:
			srv.Release()
			if resp != nil {
				resp.Body.Close()
			}
		case l.ws.Subprotocol() != s.proto:
			err = fmt.Errorf("server %s chose subprotocol %q, the client's is %q", srv.Address, l.ws.Subprotocol(), s.proto)
			_ = l.ws.CloseNow()
			l.release()
		}
		if err != nil {
			return true, err // any failure: the next server
		}
		leg = l
		return false, nil
	})
	if err != nil {
		if s.stopCtx.Err() != nil {
			return true
		}
		return s.noServer(old, why, err, planned, keep)
	}
	s.switchTo(old, leg, why, planned)
	s.switches = append(s.switches, now)
	s.kept = false
	return true
}

// noServer: no server could take the WebSocket off old. With keep it
// stays there (true); else the session ends with 1013 (false).
func (s *wfSession) noServer(old *wfLeg, why string, err error, planned, keep bool) bool {
	if !keep {
		s.giveUp(old, why, err, planned)
		return false
	}
	if !s.kept {
		s.kept = true
		s.logWarn(old, why, err).Msg("websocket failover: no other server, the websocket stays on its server")
	}
	return true
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
		s.closeLeg(old, planned, cutCloseReason("going away: "+why))
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
// client gets 1013 (try again later), old gets 1001 when it still works
// (planned), else is closed at once.
func (s *wfSession) giveUp(old *wfLeg, why string, err error, planned bool) {
	msg := "no server available: websocket failover (" + why + "): " + err.Error()
	s.cs.endWith(msg)
	s.rs.err = errors.New(msg)
	s.logWarn(old, why, err).Msg("websocket failover: no server left, client closed with 1013")
	if e, ok := s.c.Events.(WSFailoverEvents); ok {
		e.WSFailover(s.c, old.s, nil, why)
	}
	s.closeBoth(websocket.StatusTryAgainLater, "no server available", old, planned, "going away: "+why)
}

// logWarn starts a warning about a failover off old that found no server.
func (s *wfSession) logWarn(old *wfLeg, why string, err error) *zerolog.Event {
	c := s.c
	ev := s.p.opt.Log.Warn().Str("listener", s.p.opt.Listener).Str("route", s.p.opt.Route).
		Str("client", c.Source.String()).Str("from", old.s.Address).Str("reason", why).Str("error", err.Error())
	if c.Client != "" {
		ev = ev.Str("client_cert", c.Client)
	}
	return ev
}

// closeBoth sends the client a close frame (code, reason) and closes leg
// l (see closeLeg), at the same time; each close handshake is bounded by
// the WebSocket library (5 s).
func (s *wfSession) closeBoth(code websocket.StatusCode, reason string, l *wfLeg, planned bool, serverReason string) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_ = s.client.Close(code, cutCloseReason(reason))
	}()
	go func() {
		defer wg.Done()
		s.closeLeg(l, planned, cutCloseReason(serverReason))
	}()
	wg.Wait()
}

// endByClient: the client closed (its close frame goes to the server with
// its code and reason), sent a message over the limit, did not complete a
// message within read_body_timeout (1008 to the client, 1001 to the
// server), or went away.
func (s *wfSession) endByClient(err error) {
	l := s.cur.Load()
	var ce websocket.CloseError
	var late wfDeadline
	switch {
	case errors.As(err, &ce):
		s.closeLegWith(l, ce.Code, ce.Reason) // the client's code and reason
		return
	case errors.As(err, &late):
		s.cs.endWith(late.Error())
		s.closeBoth(websocket.StatusPolicyViolation, late.Error(), l, true, "going away: the client timed out")
		return
	case errors.Is(err, websocket.ErrMessageTooBig):
		// The library sent the client 1009; its close handshake reads
		// the rest of the message, so the client gets that frame rather
		// than a reset.
		s.cs.endWith(fmt.Sprintf("client error: a WebSocket message over %d bytes (closed with 1009)", WSFailoverMaxMessage))
		s.closeBoth(websocket.StatusMessageTooBig, "message too big", l, true, "going away: the client's message was too big")
		return
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
// Shutdown (reload, shutdown, idle timeout, access denied after a reload,
// the admin API): a close frame 1001 (1008 for access denied) with the
// reason to the client, and 1001 to the server.
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
