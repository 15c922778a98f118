package tlsmode

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"slices"
	"sync"
	"time"

	"github.com/tlsedge/tlsedge/affinity"
)

// transportKey names one keep-alive pool of server connections: the server,
// and the name its TLS was verified for (reencrypt without a fixed
// server_name; "" otherwise).
type transportKey struct{ sni, addr string }

// maxTransports bounds the pools kept (a wildcard reencrypt route may see
// many names); past it an arbitrary one is dropped.
const maxTransports = 1024

// transportFor returns the keep-alive transport for requests to server addr
// of a client connection whose SNI is sni. With reencrypt and no fixed
// server_name, the server is verified for the client's SNI, so connections
// are pooled per name: one opened (and verified) for a.example.com never
// carries a request of b.example.com. One transport per server lets a drain
// close exactly that server's idle connections (CloseIdleFor).
func (p *HTTPProxy) transportFor(sni, addr string) *http.Transport {
	key := transportKey{addr: addr}
	if p.opt.Upstream != nil && p.opt.Upstream.ServerName == "" {
		key.sni = sni
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if t := p.transports[key]; t != nil {
		return t
	}
	if len(p.transports) >= maxTransports {
		for k, t := range p.transports {
			t.CloseIdleConnections()
			delete(p.transports, k)
			break
		}
	}
	t := &http.Transport{
		DialContext:           p.dial,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: p.limits.ResponseHeaderTimeout,
		// A larger response head is refused (502), not held in memory.
		MaxResponseHeaderBytes: int64(p.limits.MaxResponseHeader),
		ExpectContinueTimeout:  time.Second,
		ForceAttemptHTTP2:      false, // HTTP/1.1 keep-alive pools to servers
		// No Accept-Encoding added, no answer decompressed: the client's
		// own encodings pass as they are (as the lean forward does).
		DisableCompression: true,
	}
	if p.opt.Upstream != nil {
		t.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			return p.dialUpstreamTLS(ctx, network, addr, key.sni, false)
		}
	}
	p.transports[key] = t
	return t
}

// dialUpstreamTLS connects to the server at addr and does the TLS
// handshake of the route's upstream (sni: the client's name when the
// backend sets no server_name), bounded by DefaultHandshakeTimeout. Each
// handshake's outcome goes to UpstreamTLS (passive ejection) unless ctx was
// given up. Used by the keep-alive transports and by WebSocket failover's
// dials (wsfailover_dial.go).
func (p *HTTPProxy) dialUpstreamTLS(ctx context.Context, network, addr, sni string, records bool) (net.Conn, error) {
	up := p.opt.Upstream
	raw, err := p.dial(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	under := rawTCPOf(raw)
	if records {
		under = &recConn{Conn: under}
	}
	tc := tls.Client(under, upstreamConfig(up, sni, addr))
	hctx, cancel := context.WithTimeout(ctx, DefaultHandshakeTimeout)
	defer cancel()
	err = tc.HandshakeContext(hctx)
	if f := p.opt.UpstreamTLS; f != nil && ctx.Err() == nil && (err == nil || serverTLSFault(err, up.ServerName == "" && sni != "" && clientChoseName(sni, p.opt.ExactNames))) {
		f(addr, err) // passive ejection (not when the request was given up, nor for the client's name)
	}
	if err != nil {
		raw.Close()
		return nil, &upstreamTLSError{addr: addr, err: err}
	}
	return tc, nil
}

// CloseIdleFor closes the idle keep-alive connections to the server at
// addr (a drain: requests in flight finish, nothing new goes there).
func (p *HTTPProxy) CloseIdleFor(addr string) {
	p.mu.Lock()
	for k, t := range p.transports {
		if k.addr == addr {
			t.CloseIdleConnections()
		}
	}
	p.mu.Unlock()
	p.up.closeIdle(addr, false)
}

// poolTransport picks a server of the pool for each request, dials it
// through the keep-alive transport and, when the connect fails (nothing was
// sent), tries other servers. The server's slot is held until the response
// body is closed, so a WebSocket counts for leastconn for as long as it
// lives, and the client connection is bound to it (drain, rebalance and
// the connection directory see it).
type poolTransport struct{ p *HTTPProxy }

// TryServers is tlsedge's one pick-and-retry loop (tcp streams, HTTP
// requests, failover WebSockets): pick takes a slot on a server (skip: the
// servers already tried, and those in tried), try uses it and gives the
// slot back when it fails; a try that fails with retry passes its server
// over and another is picked, attempts times in all. It returns nil once a
// try worked, else the last try's error, or the pick's when the first pick
// failed or it says more than that no other server was left (a queue
// timeout, a cancelled wait).
func TryServers(attempts int, tried []*affinity.Server, pick func(skip func(*affinity.Server) bool) (*affinity.Server, error),
	try func(s *affinity.Server) (retry bool, err error)) error {
	tried = slices.Clip(tried) // appended to: never into the caller's array
	skip := func(s *affinity.Server) bool { return slices.Contains(tried, s) }
	var lastErr error
	for attempt := 0; attempt < attempts; attempt++ {
		s, err := pick(skip)
		if err != nil {
			if lastErr == nil || errors.Is(err, ErrQueueTimeout) || !errors.Is(err, ErrNoServer) {
				lastErr = err
			}
			break
		}
		retry, err := try(s)
		if err == nil {
			return nil
		}
		lastErr = err
		if !retry {
			break
		}
		tried = append(tried, s)
	}
	if lastErr == nil {
		lastErr = ErrNoServer // no attempt
	}
	return lastErr
}

// tryServers is TryServers over the servers the backend picks for req
// (acquireServer: policy, affinity, cookie).
func (p *HTTPProxy) tryServers(req *http.Request, c *Conn, attempts int, tried []*affinity.Server,
	try func(s *affinity.Server) (retry bool, err error)) error {
	pick := func(skip func(*affinity.Server) bool) (*affinity.Server, error) { return p.acquireServer(req, c, skip) }
	return TryServers(attempts, tried, pick, try)
}

func (t *poolTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	cs := connStateOf(req.Context())
	rs := reqStateOf(req.Context())
	c := cs.c
	sni := ""
	if c.Hello != nil {
		sni = c.Hello.ServerName
	}
	upgrade := upgradeType(req.Header) != ""
	var resp *http.Response
	err := t.p.tryServers(req, c, t.p.opt.Retries+1, nil, func(s *affinity.Server) (bool, error) {
		out := *req
		u := *req.URL
		u.Host = s.Address
		out.URL = &u
		var serverConn net.Conn // the connection an upgrade runs on
		var fl *inflight        // a plain request, which a drain may cancel
		if upgrade {
			out = *out.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
				GotConn: func(i httptrace.GotConnInfo) { serverConn = i.Conn },
			}))
		} else {
			ctx, cancel := context.WithCancel(req.Context())
			out = *out.WithContext(ctx)
			fl = t.p.startRequest(s.Address, cancel, cancel)
		}
		c.live.last.Store(s)
		if rs != nil {
			rs.server = s
		}
		r, err := t.p.transportFor(sni, s.Address).RoundTrip(&out)
		if err == nil {
			if r.StatusCode == http.StatusSwitchingProtocols {
				if fl != nil { // a 101 to a request that asked for none: not in flight any more
					t.p.endRequest(fl)
				}
				r.Body = t.p.upgraded(cs, r, s, serverConn)
			} else {
				r.Body = releaseOnClose(r.Body, func() { s.Release(); t.p.endRequest(fl) })
			}
			resp = r
			return false, nil
		}
		if fl != nil && out.Context().Err() != nil && req.Context().Err() == nil {
			err = errDrainCancelled // CancelRequest: answered 503, not an empty 200
		}
		s.Release()
		t.p.endRequest(fl)
		// Retry only what was never sent: a connect failure, and no body
		// (the transport has closed it; it cannot be sent again).
		return isConnectError(err) && req.Context().Err() == nil && (req.Body == nil || req.Body == http.NoBody), err
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// inflight is a plain HTTP request on its way to a server, until its
// response body is closed.
type inflight struct {
	addr   string
	cancel func() // ends the request (CancelRequest)
	free   func() // called when it has ended (endRequest); nil: nothing
}

// startRequest records a request to the server at addr that cancel ends;
// endRequest calls free (its context's cancel, say).
func (p *HTTPProxy) startRequest(addr string, cancel, free func()) *inflight {
	fl := &inflight{addr: addr, cancel: cancel, free: free}
	p.reqMu.Lock()
	set := p.requests[addr]
	if set == nil {
		set = map[*inflight]struct{}{}
		p.requests[addr] = set
	}
	set[fl] = struct{}{}
	p.reqMu.Unlock()
	return fl
}

// endRequest forgets fl (nil: nothing) and calls its free.
func (p *HTTPProxy) endRequest(fl *inflight) {
	if fl == nil {
		return
	}
	p.reqMu.Lock()
	if set := p.requests[fl.addr]; set != nil {
		delete(set, fl)
		if len(set) == 0 {
			delete(p.requests, fl.addr)
		}
	}
	p.reqMu.Unlock()
	if fl.free != nil {
		fl.free()
	}
}

// CancelRequest ends one request in flight to the server at addr (a drain
// past its drain_timeout: long polls, server-sent events, gRPC streams):
// its server connection is closed and the client's request ends. It
// reports whether there was one.
func (p *HTTPProxy) CancelRequest(addr string) bool {
	p.reqMu.Lock()
	var fl *inflight
	for f := range p.requests[addr] {
		fl = f
		delete(p.requests[addr], f)
		break
	}
	if len(p.requests[addr]) == 0 {
		delete(p.requests, addr)
	}
	p.reqMu.Unlock()
	if fl == nil {
		return false
	}
	fl.cancel()
	return true
}

// upgraded binds the client connection to server s for as long as the
// upgraded stream (a 101 response's body) lives, and lets Shutdown end it
// gracefully: a WebSocket gets a close frame 1001 each way first.
//
// The stream counts as a request of the connection until its body is
// closed (ReverseProxy does that on a goroutine of its own, after the
// handler returned), so the connection's end, its access line and its
// server's slot come in that order.
func (p *HTTPProxy) upgraded(cs *connState, resp *http.Response, s *affinity.Server, serverConn net.Conn) io.ReadCloser {
	c := cs.c
	rwc, ok := resp.Body.(io.ReadWriteCloser)
	if !ok || serverConn == nil {
		return releaseOnClose(resp.Body, s.Release)
	}
	u := &upgradedConn{
		rwc:    rwc,
		server: serverConn,
		client: c.Conn,
		ws:     sameToken(upgradeType(resp.Header), "websocket"),
		// The transport's reader may hold the server's first bytes.
		wait:     upReadWaiter(serverConn),
		buffered: true,
	}
	if rs := reqStateOf(resp.Request.Context()); rs != nil {
		rs.up = u
	}
	u.attach(cs, s, upgradeType(resp.Header))
	return u
}

// isConnectError reports whether err happened while connecting, before any
// byte of the request was sent, so another server may be tried.
func isConnectError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// upstreamTLSError is a failed TLS handshake with a server (reencrypt).
type upstreamTLSError struct {
	addr string
	err  error
}

func (e *upstreamTLSError) Error() string { return "tls with server " + e.addr + ": " + e.err.Error() }
func (e *upstreamTLSError) Unwrap() error { return e.err }

// releaseOnClose calls release once when body is closed.
func releaseOnClose(body io.ReadCloser, release func()) io.ReadCloser {
	var once sync.Once
	r := func() { once.Do(release) }
	if rwc, ok := body.(io.ReadWriteCloser); ok {
		return &releaseRWC{ReadWriteCloser: rwc, release: r}
	}
	return &releaseBody{ReadCloser: body, release: r}
}

type releaseBody struct {
	io.ReadCloser
	release func()
}

func (b *releaseBody) Close() error { defer b.release(); return b.ReadCloser.Close() }

// releaseRWC keeps an upgraded (101) body an io.ReadWriteCloser, as
// ReverseProxy needs.
type releaseRWC struct {
	io.ReadWriteCloser
	release func()
}

func (b *releaseRWC) Close() error { defer b.release(); return b.ReadWriteCloser.Close() }
