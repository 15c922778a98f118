package tlsmode

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/tlsedge/tlsedge/tlsmode/identity"
)

// DefaultHandshakeTimeout bounds a TLS handshake with a client or a server.
const DefaultHandshakeTimeout = 10 * time.Second

// Terminate opens the client's TLS with the route's certificate and client
// certificate policy, then forwards plaintext to a server (terminate) or
// opens a new, verified TLS connection to it (reencrypt, when Upstream is
// set). With HTTP set it serves HTTP/1.1 and HTTP/2 through a reverse proxy;
// otherwise it copies bytes (protocol tcp).
type Terminate struct {
	// TLS is the route's server config, built at load and kept across
	// reloads while the route's TLS policy is unchanged. Its session ticket
	// keys are shared only by routes with the same TLS policy and rotate
	// (tls.session_ticket_rotation); a ticket is tied to the server name it
	// was issued for, so a session never resumes on another route.
	TLS *tls.Config
	// HandshakeTimeout bounds each handshake; 0 = DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	Backend          Backend
	// Upstream is the TLS client config towards servers (reencrypt); nil =
	// plaintext. An empty ServerName means: send the client's SNI.
	Upstream *tls.Config
	// ExactNames are the route's exact server names (not its wildcards):
	// a client asking for one of them did not choose the name the server
	// is verified against (see serverTLSFault).
	ExactNames []string
	// HTTP, when set, serves protocol http; nil = protocol tcp.
	HTTP *HTTPProxy
	// Allow, when not nil, admits only the verified client certificates
	// one of its entries matches; any other verified certificate fails the
	// handshake with alert 49 (access_denied). A client without a
	// certificate (client_auth verify_if_given) passes the handshake: an
	// http route then serves it only its unauthenticated paths, a tcp
	// route closes it.
	Allow AllowList
	// ClientLimits, when not nil, counts each verified client's open
	// connections (refused beyond the limit with alert 49) and, for
	// protocol http, its requests (429 beyond the rate).
	ClientLimits *ClientLimiter
	// Recheck, when set, is asked once the handshake is done: a reload may
	// have replaced the route meanwhile, and the route now in force may
	// refuse the client (the reason; "" admits it).
	Recheck func(c *Conn, cs *tls.ConnectionState) string
}

// Serve implements Handler.
func (t *Terminate) Serve(ctx context.Context, c *Conn) error {
	// up is the server serveTCP connected to. It is closed last, after the
	// reason is set: its Release may judge the server by c.Reason (edge's
	// passive ejection counts "server tls handshake" failures).
	var up *Upstream
	defer func() {
		if up != nil {
			up.Close()
		}
	}()
	err := t.serve(ctx, c, &up)
	if r := reasonOf(err); r != "" { // a failure; a stream's or HTTP's end set c.Reason itself
		c.Reason = r
	}
	return err
}

// serve is Serve but for the reason: a failure is returned as a *Failure.
// serveTCP sets *up to the server it connects to.
func (t *Terminate) serve(ctx context.Context, c *Conn, up **Upstream) error {
	var writeTimeout time.Duration
	if t.HTTP != nil {
		writeTimeout = t.HTTP.limits.WriteTimeout
	}
	rec := &recConn{Conn: c.counted(writeTimeout), buf: c.Peeked}
	c.rec = rec
	var under net.Conn = rec
	cfg := t.TLS
	var denied *denyConn
	if t.Allow != nil || t.ClientLimits != nil {
		denied = &denyConn{Conn: under}
		under, cfg = denied, allowTLS(t.TLS, t.Allow, t.ClientLimits, denied)
		defer func() {
			if !c.detached { // else the detached goroutine gives it back
				denied.releaseSlot()
			}
		}()
	}
	tc := tls.Server(under, cfg)
	// The log, metrics and directory count bytes on the client's socket,
	// TLS records included, as for passthrough.
	defer func() {
		if !c.detached { // else the detached goroutine counts them at the end
			c.BytesUp, c.BytesDown = c.live.up.Load(), c.live.down.Load()
		}
	}()
	start := time.Now()
	err := handshake(ctx, tc, t.timeout())
	if c.HandshakeDone != nil {
		c.HandshakeDone()
	}
	if c.Events != nil {
		c.Events.Handshake(c, time.Since(start), err)
	}
	if err != nil {
		if clientGone(err) {
			tc.Close()
		} else {
			lingerClose(under) // the alert Go just sent must reach the client
		}
		if denied != nil && errors.Is(err, ErrAccessDenied) {
			denied.mu.Lock()
			c.Client = denied.client
			denied.mu.Unlock()
			if errors.Is(err, ErrClientConnections) {
				err = &clientLimitError{Limit: t.ClientLimits.Settings().Connections, Err: err}
			}
			return fail(KindAccessDenied, SideClient, err)
		}
		return fail(KindHandshake, SideClient, err)
	}
	c.forgetHello()
	cs := tc.ConnectionState()
	if denied != nil {
		if !denied.takeSlot(t.ClientLimits, &cs) {
			_ = tc.SetWriteDeadline(time.Now().Add(time.Second))
			_ = tc.CloseWrite()
			lingerClose(under)
			c.Client = identity.DN(cs.PeerCertificates[0].RawSubject)
			return fail(KindAccessDenied, SideClient, &clientLimitError{Limit: t.ClientLimits.Settings().Connections, Err: ErrClientConnections})
		}
		denied.mu.Lock()
		denied.secret = nil // only needed to rewrite a refusal alert
		denied.mu.Unlock()
	}
	c.SetTLSState(&cs)
	if t.Recheck != nil {
		if why := t.Recheck(c, &cs); why != "" { // refused, also when a reload's pass marked it first
			c.MarkEnding()
			_ = tc.SetWriteDeadline(time.Now().Add(time.Second))
			_ = tc.CloseWrite()
			lingerClose(under)
			if len(cs.PeerCertificates) > 0 {
				c.Client = identity.DN(cs.PeerCertificates[0].RawSubject)
			}
			return fail(KindAccessDenied, SideClient, &reloadDenial{Why: why})
		}
	}
	if len(cs.VerifiedChains) > 0 {
		leaf := cs.PeerCertificates[0]
		c.Client = identity.DN(leaf.RawSubject)
		c.SetIdentity(NewClientIdentity(leaf))
	}
	if t.HTTP != nil {
		if c.Ended != nil {
			detachHTTP(ctx, t.HTTP, tc, c, denied)
			return nil
		}
		return t.HTTP.ServeConn(ctx, tc, c)
	}
	if t.Allow != nil && len(cs.VerifiedChains) == 0 {
		_ = tc.SetWriteDeadline(time.Now().Add(time.Second))
		_ = tc.CloseWrite() // close_notify
		lingerClose(under)
		return fail(KindAccessDenied, SideClient, errNoClientCert)
	}
	return t.serveTCP(ctx, tc, &cs, c, up)
}

// detachHTTP serves HTTP on tc with p on a goroutine of its own and marks c
// detached: Serve returns, and with it the edge's goroutine, whose deep
// stack (routing, the handshake) would otherwise stay with every idle
// keep-alive connection. c.Ended is called when the connection has ended,
// after c.Reason and c.EndErr are set; denied's client slot is held until
// then.
//
// An idle HTTP/1 connection may park (h1park.go): its goroutine returns
// and a later one goes on through c.parkRun, which ends the connection in
// the same way.
func detachHTTP(ctx context.Context, p *HTTPProxy, tc *tls.Conn, c *Conn, denied *denyConn) {
	c.detached = true
	c.parkRun = func(body func() error) { runDetached(tc, c, denied, body) }
	go runDetached(tc, c, denied, func() error { return p.ServeConn(ctx, tc, c) })
}

// runDetached runs body, which serves a detached connection; unless body
// parked it (errH1Parked), the connection has ended: c's fields are set,
// denied's slot is given back and c.Ended is called.
func runDetached(tc *tls.Conn, c *Conn, denied *denyConn, body func() error) {
	parked := false
	defer func() {
		if !parked {
			c.Ended()
		}
	}()
	defer func() {
		if r := recover(); r != nil {
			tc.NetConn().Close()
			c.Reason, c.endErr = "internal error", fmt.Errorf("panic: %v", r)
			c.BytesUp, c.BytesDown = c.live.up.Load(), c.live.down.Load()
			rlLogPanic("connection handler crashed", r)
		}
	}()
	if denied != nil {
		defer func() {
			if !parked {
				denied.releaseSlot()
			}
		}()
	}
	err := body()
	if err == errH1Parked {
		parked = true
		return
	}
	if r := reasonOf(err); r != "" {
		c.Reason = r
	}
	c.endErr = err
	c.BytesUp, c.BytesDown = c.live.up.Load(), c.live.down.Load()
}

// lingerBytes and lingerTime bound what lingerClose reads and how long it
// waits.
const (
	lingerBytes = 64 << 10
	lingerTime  = time.Second
)

// lingerClose closes a connection whose handshake tlsedge refused with an
// alert: FIN first, then what the client still sends (a TLS 1.3 client has
// finished its side and may already send data, such as HTTP/2's preface) is
// read and dropped, for at most lingerTime and lingerBytes, then the socket
// is closed. Closing with unread data would make the kernel send a reset,
// and the client could lose the alert that says why.
func lingerClose(c net.Conn) {
	_ = closeWrite(c)
	_ = c.SetReadDeadline(time.Now().Add(lingerTime))
	_, _ = io.CopyN(io.Discard, c, lingerBytes)
	c.Close()
}

// clientGone reports whether a handshake failed because the client went
// away or went silent: then there is no alert to deliver.
func clientGone(err error) bool {
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

func (t *Terminate) timeout() time.Duration {
	if t.HandshakeTimeout > 0 {
		return t.HandshakeTimeout
	}
	return DefaultHandshakeTimeout
}

// handshake runs a TLS handshake under a deadline, then clears it. The
// handshake runs on a goroutine of its own: its key exchange and
// certificate verification grow a stack to 8 KiB, which the connection's
// long-lived goroutine would otherwise keep for as long as it lives.
func handshake(ctx context.Context, tc *tls.Conn, timeout time.Duration) error {
	// Not cancelled by a drain: a connection already accepted is served.
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	// A panic in a callback of the handshake (certificate selection,
	// client certificate checks) is raised again on the caller's goroutine,
	// whose recover ends this connection alone, not the process.
	errc := make(chan error, 1)
	panicked := make(chan any, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				panicked <- r
			}
		}()
		errc <- tc.HandshakeContext(hctx)
	}()
	select {
	case r := <-panicked:
		panic(r)
	case err := <-errc:
		if err != nil {
			return err
		}
	}
	return tc.NetConn().SetDeadline(time.Time{})
}

// serveTCP connects to a server, sets *upp to it (the caller closes it)
// and copies bytes both ways.
func (t *Terminate) serveTCP(ctx context.Context, tc *tls.Conn, cs *tls.ConnectionState, c *Conn, upp **Upstream) error {
	up, err := t.Backend.Connect(ctx, c)
	if err != nil {
		tc.Close()
		return fail(KindConnect, SideServer, err)
	}
	*upp = up
	c.Server = up.Server.Address
	c.Bind(up.Server)
	defer c.Bind(nil)
	if up.Proxy != 0 {
		var tlvs []proxyproto.TLV
		if up.Proxy == 2 {
			if tlvs, err = SSLTLVs(cs); err != nil {
				tc.Close()
				return fail(KindInternal, SideServer, err)
			}
		}
		h, err := proxyHeaderTLVs(up.Proxy, c, tlvs)
		if err == nil {
			_, err = up.Conn.Write(h)
		}
		if err != nil {
			tc.Close()
			return fail(KindServerError, SideServer, err)
		}
	}
	var server net.Conn = up.Conn
	if t.Upstream != nil {
		uc := tls.Client(up.Conn, upstreamConfig(t.Upstream, cs.ServerName, up.Server.Address))
		if err := handshake(ctx, uc, t.timeout()); err != nil {
			tc.Close()
			if !serverTLSFault(err, t.Upstream.ServerName == "" && cs.ServerName != "" && clientChoseName(cs.ServerName, t.ExactNames)) {
				// The client's name, not the server, failed the check: not a
				// failure of the server's (passive ejection counts the
				// reasons starting "server tls handshake").
				return fail(KindNameNotCovered, SideServer, err)
			}
			return fail(KindHandshake, SideServer, err)
		}
		server = uc
	}
	c.SetEnder(func() { endStream(tc, server) }) // close_notify and FIN both ways
	defer c.SetEnder(nil)
	c.BytesUp, c.BytesDown, c.Reason = Pipe(tc, server)
	return nil
}

// serverTLSFault reports whether a failed TLS handshake with a server
// counts against it (passive ejection). When the name the server was asked
// for was the client's choice (clientChose: no server_name, and the client's
// SNI matched the route by a wildcard or the default, not one of its exact
// names), what the server says of that name is not its failure: a
// certificate that does not cover it, or a TLS alert (a server that
// refuses names it does not serve answers with one). Else any client could
// get healthy servers ejected by asking for such a name. Resets, timeouts
// and broken records still count; with an exact name everything does.
func serverTLSFault(err error, clientChose bool) bool {
	if !clientChose {
		return true
	}
	var host x509.HostnameError
	var hostp *x509.HostnameError
	var alert tls.AlertError
	var op *net.OpError // crypto/tls reports a peer's alert as a "remote error"
	remoteAlert := errors.As(err, &op) && op.Op == "remote error"
	return !(errors.As(err, &host) || errors.As(err, &hostp) || errors.As(err, &alert) || remoteAlert)
}

// clientChoseName reports whether the client's server name sni was its own
// choice: true unless it is one of the route's exact names.
func clientChoseName(sni string, exact []string) bool {
	for _, n := range exact {
		if strings.EqualFold(strings.TrimSuffix(sni, "."), n) {
			return false
		}
	}
	return true
}

// upstreamConfig returns cfg with ServerName set, when the backend names
// none, to the client's SNI (the server is verified against the name the
// client asked for) or, without SNI, to the host of the server's address.
func upstreamConfig(cfg *tls.Config, sni, addr string) *tls.Config {
	if cfg.ServerName != "" {
		return cfg
	}
	if sni == "" {
		sni, _, _ = net.SplitHostPort(addr)
	}
	c := cfg.Clone()
	c.ServerName = sni
	return c
}
