package tlsmode

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tlsedge/tlsedge/affinity"
	"github.com/tlsedge/tlsedge/tlsmode/identity"
)

// One client connection of an HTTP proxy: its http.Server, its state shared
// by its requests, and how it ends.

type connKey struct{}
type reqKey struct{}

// connStateOf is the state of the client connection a request came on
// (set by ServeConn's ConnContext); nil outside the proxy.
func connStateOf(ctx context.Context) *connState {
	cs, _ := ctx.Value(connKey{}).(*connState)
	return cs
}

// reqStateOf is a request's own state (set by ServeHTTP before it
// forwards); nil before that.
func reqStateOf(ctx context.Context) *reqState {
	rs, _ := ctx.Value(reqKey{}).(*reqState)
	return rs
}

// connState is what every request of one client connection shares.
type connState struct {
	idOnce sync.Once
	id     identity.Values // the identity headers, formatted once per connection
	xff    string          // the client address
	c      *Conn
	// tls is the client's TLS: requests behind the HTTP/1 guard have no
	// r.TLS (http.Server sets it only for a *tls.Conn).
	tls     *tls.ConnectionState
	guard   *h1Guard               // HTTP/1.x connections; nil for HTTP/2
	relay   *upRelay               // an upgraded stream for ServeConn's goroutine to carry on (upgrade_lean.go)
	errLine atomic.Pointer[string] // net/http's first connection error line (connErrorLog)
	limKey  atomic.Pointer[string] // the client's key for client_limits, once computed
	why     atomic.Pointer[string] // why a request ended the connection (408)

	mu     sync.Mutex
	zero   *sync.Cond // signalled when active drops to 0
	active int        // requests being handled, including upgraded WebSockets
}

// forgetIdentity drops the formatted identity headers and client address
// (about 1 KB with a certificate header): the next request formats them
// again. Only between HTTP/1 requests (none in flight reads them): a
// connection that parks while idle (h1park.go) need not hold them.
func (cs *connState) forgetIdentity() {
	cs.idOnce = sync.Once{}
	cs.id, cs.xff = nil, ""
}

func (cs *connState) begin() {
	cs.mu.Lock()
	cs.active++
	cs.mu.Unlock()
}

func (cs *connState) end() {
	cs.mu.Lock()
	if cs.active--; cs.active == 0 {
		cs.zero.Broadcast()
	}
	cs.mu.Unlock()
}

// wait returns when no request is being handled.
func (cs *connState) wait() {
	cs.mu.Lock()
	for cs.active > 0 {
		cs.zero.Wait()
	}
	cs.mu.Unlock()
}

// endWith records why a request ended the connection, for its log line.
func (cs *connState) endWith(why string) { cs.why.CompareAndSwap(nil, &why) }

// clientKey is the connection's client key for l, computed once.
func (cs *connState) clientKey(l *ClientLimiter) string {
	if k := cs.limKey.Load(); k != nil {
		return *k
	}
	k := l.ClientKey(cs.tls.PeerCertificates[0])
	cs.limKey.Store(&k)
	return k
}

// reqState is filled while a request goes through, for its log line.
type reqState struct {
	up   *upgradedConn // the upgraded stream, once the server said 101
	body *timedBody    // the request body, nil = none
	// buffered is the request body read whole (readBody), nil when it
	// was not: a request with one or none can take the lean forward.
	buffered []byte
	// closeUnless101 is the response header holding "Connection: close"
	// for an HTTP/1 request the guard stopped checking after (Upgrade,
	// CONNECT): removed only when the server switches protocols.
	closeUnless101 http.Header
	host           string
	start          time.Time        // when the request came
	logAtEnd       bool             // the lean relay writes the access line when the stream ends
	server         *affinity.Server // the last server tried
	status         int              // the server's status, seen also for upgrades (101), which bypass the ResponseWriter
	err            error
	// ckChecked: the request's affinity cookie was read (and removed from
	// the forwarded request); ckNamed is the address of the server it
	// named, "" for none (cookie.go).
	ckChecked bool
	ckNamed   string
}

// ServeConn serves HTTP on tc until the client closes it or it idles out,
// and until every request on it (including upgraded WebSockets) is done.
// When ctx is done it drains: the connection closes once idle. It owns tc
// and closes it.
func (p *HTTPProxy) ServeConn(ctx context.Context, tc *tls.Conn, c *Conn) error {
	if ctx.Err() != nil {
		tc.Close() // draining already: no new HTTP connection
		c.Reason = "shutting down"
		return nil
	}
	cs, h1 := p.openConn(ctx, tc, c)
	if h1 != nil {
		return p.serveH1(h1, false)
	}
	p.serveH2(ctx, tc, c, cs)
	cs.wait()
	return p.connEnded(c, cs)
}

// serveH1 serves HTTP/1.x on h through the smuggling guard (h1guard.go,
// h1server.go) until the connection ends, from its start or resumed after
// it parked; errH1Parked: it parked (again), and a resume goes on.
func (p *HTTPProxy) serveH1(h *h1Conn, resumed bool) error {
	if h.run(resumed) {
		return errH1Parked
	}
	cs := h.cs
	if r := cs.relay; r != nil {
		// Upgraded: this goroutine, its HTTP frames gone, relays what the
		// client sends.
		cs.relay = nil
		r.run()
	}
	cs.wait()
	return p.connEnded(cs.c, cs)
}

// openConn makes the connection's state and, for HTTP/1.x, sets up its
// loop (nil for HTTP/2). Apart from ServeConn so that ServeConn's frame
// stays small: it lies under every idle HTTP/1 connection's wait.
func (p *HTTPProxy) openConn(ctx context.Context, tc *tls.Conn, c *Conn) (*connState, *h1Conn) {
	// The state Terminate recorded after the handshake (one copy per
	// connection), or tc's.
	st := c.TLSState()
	if st == nil {
		s := tc.ConnectionState()
		st = &s
	}
	cs := &connState{c: c, tls: st}
	cs.zero = sync.NewCond(&cs.mu)
	if st.NegotiatedProtocol != "h2" {
		return cs, p.startH1(ctx, tc, c, cs)
	}
	return cs, nil
}

// startH1 sets up HTTP/1.x on tc through the guard; run then serves it
// until the client closes, the connection idles out, or a drain closes it.
// Two steps so that the goroutine's stack under run holds little while
// the connection waits for its next request (h1idle.go).
func (p *HTTPProxy) startH1(ctx context.Context, tc *tls.Conn, c *Conn, cs *connState) *h1Conn {
	cs.guard = newH1Guard(tc, p.limits.MaxHeaderBytes, p.limits.ReadHeaderTimeout)
	h := &h1Conn{p: p, handler: p, cs: cs, g: cs.guard, start: time.Now(), remain: h1NoLimit, parent: ctx}
	if ra := tc.RemoteAddr(); ra != nil {
		h.remote = ra.String()
	}
	if c.rec != nil {
		h.rec, h.idleWait = c.rec, upReadWaiter(c.Conn)
		h.h1ParkSetup(c)
	}
	open := p.trackH1(h, true)
	c.setHTTPEnd(func(why string) {
		cs.endWith(why)
		h.shutdownNow()
		// Requests in flight get EndGrace, then the connection closes.
		time.AfterFunc(EndGrace, h.forceClose)
	})
	if !open {
		h.shutdownNow()
	}
	stop := context.AfterFunc(ctx, h.shutdownNow) // draining: close when idle
	h.end = func() {
		stop()
		c.setHTTPEnd(nil)
		p.trackH1(h, false)
		h.unpark()
	}
	return h
}

// newBase makes the parent of the connection's requests: not cancelled by
// a drain, with cs under connKey and ServerContextKey set (ReverseProxy
// aborts, with http.ErrAbortHandler, a response it cannot copy whole only
// when it sees a server there).
func (h *h1Conn) newBase() context.Context {
	return context.WithValue(context.WithValue(context.WithoutCancel(h.parent), http.ServerContextKey, h1Server), connKey{}, h.cs)
}

// run serves the connection startH1 set up, then undoes what it set;
// parked: it parked, and nothing is undone.
func (h *h1Conn) run(resumed bool) (parked bool) {
	defer func() {
		if !parked {
			h.end()
		}
	}()
	return h.serve(resumed)
}

// serveH2 serves HTTP/2 (ALPN h2) on tc with a net/http.Server of its own,
// which checks HTTP/2's framing, until the connection ends.
func (p *HTTPProxy) serveH2(ctx context.Context, tc *tls.Conn, c *Conn, cs *connState) {
	done := make(chan struct{})
	var once sync.Once
	finish := func() { once.Do(func() { close(done) }) }
	h2 := p.limits.H2
	ping := h2.PingInterval
	if ping < 0 {
		ping = 0 // HTTP2Config: no pings
	}
	ln := newOneConnListener(tc)
	srv := &http.Server{
		Handler:           p,
		ReadHeaderTimeout: p.limits.ReadHeaderTimeout,
		IdleTimeout:       p.limits.IdleTimeout,
		MaxHeaderBytes:    p.limits.MaxHeaderBytes,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams:          h2.MaxConcurrentStreams,
			MaxReceiveBufferPerStream:     h2.ReceiveWindow,
			MaxReceiveBufferPerConnection: h2.ConnectionReceiveWindow,
			SendPingTimeout:               ping,
			PingTimeout:                   h2.PingTimeout,
			// No WriteByteTimeout: the client's socket (countingConn)
			// bounds every write by write_timeout itself and says so in
			// the log; Go's own deadline would hide that reason.
		},
		ErrorLog: stdlog.New(connErrorLog{zerologWriter{p.opt.Log}, cs}, "", 0),
		// Requests outlive a drain: they are bounded by the caller's grace.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		ConnContext: func(ctx context.Context, _ net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, cs)
		},
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateClosed || st == http.StateHijacked {
				finish()
			}
		},
	}
	open := p.track(srv, true)
	defer p.track(srv, false)
	c.setHTTPEnd(func(why string) {
		cs.endWith(why)
		go func() {
			// Requests in flight get EndGrace (a long poll or a stream
			// would hold a refused client for ever), then it is closed.
			ctx, cancel := context.WithTimeout(context.Background(), EndGrace)
			defer cancel()
			if srv.Shutdown(ctx) != nil {
				_ = srv.Close()
			}
		}()
	})
	defer c.setHTTPEnd(nil)
	go func() {
		_ = srv.Serve(ln)
		if !ln.handedOut() {
			// Shut down before it took the connection (a drain raced
			// with this connection's start): close it here.
			tc.Close()
			finish()
		}
	}()
	if !open {
		go func() { _ = srv.Shutdown(context.Background()) }()
	}
	select {
	case <-done:
	case <-ctx.Done():
		// Draining: close when idle; HTTP/2 clients get a GOAWAY. The
		// caller bounds how long active requests may go on.
		go func() { _ = srv.Shutdown(context.Background()) }()
		<-done
	}
	ln.Close()
}

// connEnded names why the connection ended, for its log line, and returns
// the error its client earned (a refused request, a timeout, a protocol
// error), nil for none.
func (p *HTTPProxy) connEnded(c *Conn, cs *connState) error {
	c.Requests = c.RequestCount()
	if why := cs.why.Load(); why != nil {
		c.Reason = *why
	} else if cs.guard != nil && cs.guard.Reason() != "" {
		c.Reason = cs.guard.Reason()
	}
	p.mu.Lock()
	replaced := p.closed
	p.mu.Unlock()
	if c.Reason == "" && replaced && cs.errLine.Load() == nil {
		// Shut down when idle by Close: the route was changed or removed.
		c.Reason = "closed: the route changed in a reload (closed when idle)"
	}
	if c.Reason == "" {
		if l := cs.errLine.Load(); l != nil {
			c.Reason = "client error: " + strings.TrimPrefix(*l, "http2: ")
		} else {
			c.Reason = "client closed"
		}
	}
	if cs.guard != nil && cs.guard.Violation() != "" {
		// A refused request is worth a warning (rate-limited by the edge).
		return fmt.Errorf("%w: %s", ErrBadRequest, cs.guard.Violation())
	}
	if strings.HasPrefix(c.Reason, "client timeout") || strings.HasPrefix(c.Reason, "client error") {
		// A slowloris or a protocol attack is a warning too.
		return fmt.Errorf("%w: %s", ErrClientMisbehaved, c.Reason)
	}
	return nil
}

// ErrClientMisbehaved is returned by ServeConn for a connection ended
// because its client timed out (a slow head, body or reader) or broke
// HTTP/2's rules.
var ErrClientMisbehaved = errors.New("tlsmode: client timeout or protocol error")

// EndGrace bounds how long the requests in flight of an HTTP connection
// ended by EndGracefully (a client no longer authorized after a reload) may
// go on before the connection is closed.
const EndGrace = 30 * time.Second

// ErrBadRequest is returned by ServeConn when the HTTP/1 guard refused a
// request (request smuggling, malformed framing) and closed the connection.
var ErrBadRequest = errors.New("tlsmode: bad request")
