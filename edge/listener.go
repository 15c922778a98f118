package edge

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/rs/zerolog"

	"github.com/tlsedge/tlsedge/tlsmode"
)

// listenerState is the part of a listener a reload replaces whole.
type listenerState struct {
	name         string // may change on reload, so it lives here
	table        *Table
	proxy        string // off | optional | required
	trusted      []netip.Prefix
	helloTimeout time.Duration
	maxConns     int
	access       bool
	keepalive    time.Duration
	limits       connLimits
	streamsOnly  bool // every route is passthrough: accept may take raw sockets (accept_linux.go)
}

// connLimits are a listener's limits on what clients may hold
// (limits.go).
type connLimits struct {
	handshakeTimeout time.Duration // after routing: terminate's TLS handshake, passthrough's next client bytes
	perIP            int           // open connections of one client address; 0 = unlimited
	ratePerIP        float64       // new connections a second of one client address; 0 = unlimited
	burstPerIP       int
	handshakes       int // connections in their handshake at once; 0 = unlimited
	failureBurst     int // failure log lines of one kind per interval; 0 = all
	failureInterval  time.Duration
}

// listener accepts client connections on one address and routes each by SNI.
type listener struct {
	ln    *net.TCPListener
	lnDup *os.File        // a duplicate of ln's socket that raw accepts wait on (accept_linux.go); nil: none yet. Under mu
	rawLn syscall.RawConn // lnDup's; only serve's goroutine reads it
	// noDelay: whether a raw accept sets TCP_NODELAY (noDelaySet) or finds
	// it inherited from the listening socket (noDelayInherited); checked on
	// the first raw accept (noDelayUnknown). Only serve's goroutine uses it.
	noDelay int8
	raw     rawAccept    // the raw accept's state (accept_linux.go); only serve's goroutine uses it
	addr    *net.TCPAddr // ln's address
	state   atomic.Pointer[listenerState]
	log     zerolog.Logger
	e       *Edge // the registry, metrics and events of routed connections

	active atomic.Int64  // live client connections
	freed  chan struct{} // signalled when a connection ends (max_connections)
	done   chan struct{} // closed when the listener stops
	served chan struct{} // closed when serve has returned: no more track(add)

	// Kept across reloads (limits.go): per client address counts and
	// buckets, the max_handshakes semaphore, the failure line budget.
	ips   ipLimiter
	ka    lnKeepalive // tcp_keepalive on the listening socket (keepalive.go)
	hsSem atomic.Pointer[handshakeSlots]
	fails failureLog

	mu    sync.Mutex
	conns map[net.Conn]*tlsmode.Conn // for closing what is left at shutdown; nil until serveConn has one
	wg    sync.WaitGroup
}

func newListener(ln *net.TCPListener, e *Edge) *listener {
	tlsmode.SetRelayLogger(e.log) // the passthrough relay's failures and panics
	l := &listener{
		ln:     ln,
		log:    e.log,
		e:      e,
		freed:  make(chan struct{}, 1),
		done:   make(chan struct{}),
		served: make(chan struct{}),
		conns:  map[net.Conn]*tlsmode.Conn{},
	}
	l.addr, _ = ln.Addr().(*net.TCPAddr)
	l.fails.summary = func(listener, class, reason string, n int) {
		if ev := l.log.Warn(); ev.Enabled() {
			ev.Str("listener", listener).Str("kind", class).Int("count", n).Str("reason", reason).Msg(failureSummary(n))
		}
	}
	return l
}

// serve accepts until the listener is closed. Accept errors such as EMFILE
// back off (5ms doubling to 1s) instead of spinning; max_connections leaves
// excess connections waiting in the kernel's accept queue.
func (l *listener) serve(ctx context.Context) {
	defer close(l.served)
	var delay time.Duration
	for {
		for full := false; ; full = true {
			st := l.state.Load()
			if st.maxConns <= 0 || l.active.Load() < int64(st.maxConns) {
				if full {
					l.e.m.saturatedAt(st.name, false)
					l.log.Info().Str("listener", st.name).Msg("listener below max_connections again: accepting")
				}
				break
			}
			if !full { // once per episode: a full listener is silent to clients
				l.e.m.saturatedAt(st.name, true)
				l.log.Warn().Str("listener", st.name).Int("max_connections", st.maxConns).
					Msg("listener at max_connections: new connections wait in the kernel's accept queue (raise listeners[].max_connections if this is normal load)")
			}
			select {
			case <-l.freed:
			case <-l.done:
				return
			case <-time.After(time.Second): // pick up a raised limit after reload
			}
		}
		c, err := l.accept(l.state.Load())
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else if delay *= 2; delay > time.Second {
				delay = time.Second
			}
			l.log.Error().Err(err).Str("listener", l.state.Load().name).Dur("retry_in", delay).Msg("accept failed")
			select {
			case <-time.After(delay):
			case <-l.done:
				return
			}
			continue
		}
		delay = 0
		st := l.state.Load()
		l.ka.on(c, st.keepalive)
		if l.e.m != nil {
			l.e.m.accepted.WithLabelValues(st.name).Inc()
		}
		l.track(c, true)
		tlsmode.Go(func() { l.serveConn(ctx, c) }) // a worker whose stack has grown already
	}
}

func (l *listener) track(c net.Conn, add bool) {
	l.mu.Lock()
	if add {
		l.conns[c] = nil
		l.wg.Add(1)
		l.active.Add(1)
	} else {
		delete(l.conns, c)
		l.wg.Done()
		l.active.Add(-1)
	}
	l.mu.Unlock()
	if !add {
		select {
		case l.freed <- struct{}{}:
		default:
		}
	}
}

// close stops accepting. Connections in flight go on.
func (l *listener) close() {
	select {
	case <-l.done:
	default:
		close(l.done)
	}
	l.mu.Lock()
	if l.lnDup != nil {
		l.lnDup.Close() // wakes a raw accept; the socket closes with its last descriptor
	}
	l.mu.Unlock()
	l.ln.Close()
}

// stopped returns a channel closed once every connection of the listener
// has ended. Call it after close (no connection may be added meanwhile).
func (l *listener) stopped() <-chan struct{} {
	<-l.served // no Add may race with the Wait below
	ended := make(chan struct{})
	go func() { l.wg.Wait(); close(ended) }()
	return ended
}

// attach records the tlsmode.Conn serving c, so closeConns can end it
// whether its sockets are still Go's or the relay's.
func (l *listener) attach(c net.Conn, tc *tlsmode.Conn) {
	l.mu.Lock()
	if _, ok := l.conns[c]; ok {
		l.conns[c] = tc
	}
	l.mu.Unlock()
}

// closeConns closes the client sockets still open (the last resort of a
// shutdown: connections still reading their hello, and stragglers), and
// both sockets of passthrough streams in the relay.
func (l *listener) closeConns() {
	l.mu.Lock()
	for c, tc := range l.conns {
		if tc != nil {
			tc.CloseNow()
		} else {
			c.Close()
		}
	}
	l.mu.Unlock()
}

// serveConn reads the optional PROXY header and the ClientHello under
// clienthello_timeout, routes by SNI and hands the connection to the route's
// handler. It writes the connection's one access line.
//
// Limits, in order: a client address over max_connections_per_ip or its
// connection rate is closed at once (before any read when the TCP peer is
// the client; after the PROXY header when a trusted balancer names it);
// then the connection waits, at most clienthello_timeout, for one of the
// listener's max_handshakes slots, held until routed (passthrough, whose
// client must then send its next bytes within handshake_timeout) or until
// the TLS handshake ended (terminate, reencrypt: Conn.HandshakeDone).
//
// A passthrough stream is handed to the relay, and a terminated HTTP
// connection to a goroutine of its own, and serveConn returns: what follows
// the end of a connection (slots given back, the registry, the access
// line, track) then runs from tc.Ended.
func (l *listener) serveConn(ctx context.Context, c net.Conn) {
	start := time.Now()
	st := l.state.Load()
	tc := &tlsmode.Conn{Conn: c, Source: addrPort(c.RemoteAddr()), Dest: addrPort(c.LocalAddr())}
	tc.PeerTrusted = trustedPeer(st.trusted, tc.Source)
	key := c // the conn as accepted (l.conns), even when c is replaced below
	l.attach(key, tc)
	var route *Route
	var failed bool       // the handler returned an error
	var kind string       // why an unrouted connection was refused, for metrics
	var ipHeld netip.Addr // the client address whose open count this connection holds
	var held bool         // ipHeld is set
	var hs *slot          // the handshake slot held, nil = none
	var validation bool   // an ACME TLS-ALPN-01 validation, answered here
	// finish accounts for the connection once it has ended: on this
	// goroutine, or on the relay's (tc.Ended) for a detached stream.
	finish := func() {
		defer l.track(key, false)
		hs.release()
		if held {
			l.ips.release(ipHeld)
		}
		if route != nil {
			if r := tc.ShutdownReason(); r != "" {
				tc.Reason = r
			}
			if tc.Reason == tlsmode.ReasonHandshakeTimeout {
				failed = true // a stalled handshake is worth a warning
			}
			l.e.ended(tc, route)
		} else if !validation {
			l.e.rejected(st.name, kind, tc.Reason)
		}
		// Failures are always logged; successes when log.access is on;
		// ACME validations always (at info, at warn when they failed).
		if st.access || failed || route == nil {
			l.accessLog(st, tc, route, start, failed || route == nil && !validation)
		}
	}
	defer func() {
		if r := recover(); r != nil {
			c.Close()
			tc.Reason, failed = "internal error", true
			l.log.Error().Interface("panic", r).Bytes("stack", debug.Stack()).Msg("connection handler crashed")
		} else if tc.Detached() {
			return // the relay or the handler's goroutine calls tc.Ended
		}
		finish()
	}()
	tc.Ended = func() {
		defer func() {
			if r := recover(); r != nil {
				l.log.Error().Interface("panic", r).Bytes("stack", debug.Stack()).Msg("connection end crashed")
			}
		}()
		if err := tc.EndErr(); err != nil {
			failed = true
			if l.log.Debug().Enabled() {
				l.log.Debug().Err(err).Str("listener", st.name).Msg("handler error")
			}
		}
		finish()
	}
	// admit applies the per-address limits to tc.Source; false: refused
	// and closed.
	admit := func() bool {
		k, reason, ok := l.ips.admit(tc.Source.Addr(), ipLimits{
			perIP: st.limits.perIP, rate: st.limits.ratePerIP, burst: st.limits.burstPerIP,
		}, time.Now())
		if k != "" {
			kind = k
			l.reject(c, tc, reason, 0)
			return false
		}
		ipHeld, held = tc.Source.Addr(), ok
		return true
	}

	// The TCP peer is the client unless it is a trusted proxy: an L4
	// balancer names the client in its PROXY header (checked below), an
	// HTTP proxy speaks for many clients and is not limited per address.
	if !tc.PeerTrusted && !admit() {
		return
	}
	var ok bool
	if hs, ok = l.handshakeSlot(st.limits.handshakes, start.Add(st.helloTimeout)); !ok {
		kind = refusedHandshakes
		reason := reasonHandshakes
		if l.stopping() {
			kind, reason = "", reasonShutdown
		}
		l.reject(c, tc, reason, 0)
		return
	}

	// Set BEFORE the first read: a client that never sends its hello must
	// not hold a goroutine and a socket forever. The time waited for a
	// handshake slot is not the client's: the hello gets the whole timeout.
	_ = c.SetReadDeadline(time.Now().Add(st.helloTimeout))

	cr := &countingReader{r: tlsmode.RawReader(c)} // what was read before routing (passthrough's handshake_timeout)
	var r io.Reader = cr
	var rest *bytes.Reader
	if st.proxy != "off" {
		if tc.PeerTrusted {
			h, buffered, err := readProxyHeader(cr)
			switch {
			case errors.Is(err, proxyproto.ErrNoProxyProtocol):
				if st.proxy == "required" {
					kind = "proxy_header"
					l.reject(c, tc, "PROXY header required but missing", 0)
					return
				}
			case err != nil:
				kind = "proxy_header"
				l.reject(c, tc, "bad PROXY header: "+readErrReason(err), 0)
				return
			default:
				if h.Command.IsProxy() {
					if s, d, ok := h.TCPAddrs(); ok {
						tc.Source, tc.Dest = unmap(s.AddrPort()), unmap(d.AddrPort())
					}
					// The peer is an L4 balancer: it never writes HTTP headers,
					// so X-Forwarded-* on this connection are the client's own.
					tc.PeerTrusted = false
					if !admit() {
						return
					}
				}
			}
			rest = buffered
			r = io.MultiReader(rest, cr)
		} else if st.proxy == "required" {
			kind = "proxy_header"
			l.reject(c, tc, "PROXY header from untrusted address", 0)
			return
		}
	}

	h, tailBytes, err := readHello(c, cr, r, rest) // tailBytes: read past the hello
	if h != nil {
		tc.Hello = h
	}
	switch {
	case err == nil, errors.Is(err, tlsmode.ErrNoSNI):
	case errors.Is(err, tlsmode.ErrNotTLS):
		kind = "not_tls"
		l.reject(c, tc, "not TLS", 0)
		return
	case errors.Is(err, tlsmode.ErrHelloTooLarge):
		kind = "too_large"
		l.reject(c, tc, "client hello too large", tlsmode.AlertDecodeError)
		return
	case errors.Is(err, tlsmode.ErrMalformedHello):
		kind = "malformed"
		l.reject(c, tc, "malformed client hello: "+strings.TrimPrefix(err.Error(), tlsmode.ErrMalformedHello.Error()+": "), tlsmode.AlertDecodeError)
		return
	default:
		kind = readErrKind(err)
		l.reject(c, tc, readErrReason(err), 0)
		return
	}
	// An ACME TLS-ALPN-01 validation for a name tlsedge manages is
	// answered here, before routing (also on listeners of passthrough
	// routes); it never reaches a route, and is no refusal.
	if reason, answered, ok := l.answerChallenge(c, h, tailBytes); ok {
		validation, tc.Reason, failed = true, reason, !answered
		return
	}
	rt := st.table.Match(h.ServerName)
	if rt == nil {
		kind = "no_route"
		l.reject(c, tc, "no route for server name", tlsmode.AlertUnrecognizedName)
		return
	}
	// Clear the deadline, or long-lived streams would die at it.
	_ = c.SetReadDeadline(time.Time{})
	if rt.Mode != "passthrough" {
		// Accepted raw for a listener of passthrough routes only (a
		// reload added this route meanwhile): the terminating handlers
		// want net's conn.
		nc, err := netConn(c)
		if err != nil {
			l.reject(c, tc, "internal error: "+err.Error(), tlsmode.AlertInternalError)
			return
		}
		l.mu.Lock() // closeConns reads tc.Conn under it (a Close that came first closed nc: FDConn.Close)
		c, tc.Conn = nc, nc
		l.mu.Unlock()
	}
	tc.Peeked = append(h.Raw, tailBytes...)
	tail := len(tailBytes)
	tc.Route, tc.Routes = rt, st.table
	tc.Start, tc.Events = start, connEvents{l.e}
	if rt.Mode == "passthrough" {
		// Routed: the handshake slot is free again. The client's next
		// flight must come within handshake_timeout of the hello reaching
		// a server (the queue and connect times are not the client's).
		hs.release()
		timeout, consumed := st.limits.handshakeTimeout, cr.n-int64(tail)
		tc.WatchAfterReplay = func() { tc.WatchHandshake(timeout, consumed) }
	} else if hs != nil {
		tc.HandshakeDone = hs.release
	}
	l.e.reg.add(tc) // published: set nothing the directory reads after this
	if rt.obs != nil {
		rt.obs.active.Inc()
	}
	route = rt // from here on, ended accounts for it
	if err := route.Handler.Serve(ctx, tc); err != nil {
		failed = true
		if l.log.Debug().Enabled() {
			l.log.Debug().Err(err).Str("listener", st.name).Msg("handler error")
		}
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// stopping reports whether the listener has been closed.
func (l *listener) stopping() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// reject ends a connection that could not be routed, with a TLS alert when
// alert is not 0.
func (l *listener) reject(c net.Conn, tc *tlsmode.Conn, reason string, alert uint8) {
	if alert != 0 {
		_ = tlsmode.WriteAlert(c, alert)
	}
	tc.Reason = reason
	c.Close()
}
