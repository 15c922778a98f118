package tlsmode

import (
	"context"
	"net"
	"net/netip"
	"time"
)

// Conn is one routed client connection handed to a Handler.
type Conn struct {
	// Conn is the client connection, unwrapped (a *net.TCPConn in production)
	// so that passthrough can splice. Bytes already read from it are in Peeked.
	net.Conn
	// Peeked is every byte read from Conn before routing (the ClientHello and
	// anything after it), replayed verbatim to the server or to crypto/tls.
	Peeked []byte
	Hello  *Hello
	// Source is the client's address, taken from a trusted PROXY header when
	// there was one; Dest is the address the client connected to.
	Source, Dest netip.AddrPort
	// PeerTrusted is true when the TCP peer is one of the listener's
	// trusted_proxies and sent no PROXY header (an HTTP proxy in front):
	// only then are X-Forwarded-* headers kept.
	PeerTrusted bool
	// Route is the route the connection was routed to by its SNI, and Routes
	// the listener's table it came from. Terminating HTTP handlers check that
	// each request's Host selects this very route (else 421).
	Route  Route
	Routes RouteMatcher

	// ID names the connection in the connection directory and the admin
	// API; Start is when it was accepted. Set by the edge before Serve.
	ID    uint64
	Start time.Time
	// Events, when set, is told what happens to the connection while it
	// lives (see Events); nil = nobody listens.
	Events Events
	// HandshakeDone, when set, is called once by a terminating handler
	// when the client's TLS handshake has ended, either way (the edge
	// gives back the listener's handshake slot).
	HandshakeDone func()
	// WatchAfterReplay, when set, is called by passthrough once the hello
	// has been replayed to the server: it starts the handshake watch (the
	// client's next flight is due from then on, not while a server is
	// sought).
	WatchAfterReplay func()
	// Ended, when set, lets a handler return from Serve while the
	// connection goes on (see Detached): a passthrough stream in the
	// relay, an HTTP connection of terminate or reencrypt on a goroutine of
	// its own. It is called once, on another goroutine, when the
	// connection has ended and BytesUp, BytesDown, Reason and EndErr are
	// set. nil: Serve returns when it has ended.
	Ended    func()
	detached bool
	parkRun  func(body func() error) // serves a detached connection again after it parked (h1park.go)
	endErr   error                   // what Serve would have returned (EndErr)
	rec      *recConn                // the record reader under a terminated connection's crypto/tls
	live     live

	// Filled by the handler for the access log.
	Server    string // address of the server used, "" if none
	BytesUp   int64  // client -> server, including Peeked
	BytesDown int64  // server -> client
	Reason    string // why the connection ended
	// Client is the verified client certificate's subject, when terminated
	// with one; Requests counts HTTP requests served on the connection.
	Client   string
	Requests int64
}

// A Conn must not be copied once it is served: it holds live state that
// other goroutines read (see live.go).

// Route is the route a connection was routed to, which the edge defines
// (tlsmode only compares routes: the same route is the same value).
type Route interface {
	// RoutePattern is the route's first SNI pattern, as the logs name it.
	RoutePattern() string
}

// RouteMatcher finds the route for a server name or Host, by the same
// most-specific-first rules as SNI routing; nil when none matches.
type RouteMatcher interface {
	MatchRoute(name string) Route
}

// Handler serves one routed connection.
//
// Serve owns c: it closes c.Conn before it returns, and the caller never
// touches c.Conn afterwards. Serve fills c.Server, c.BytesUp, c.BytesDown and
// c.Reason for the access log; it returns a non-nil error only when the
// connection failed for a reason worth a warning (no server, dial failed).
// A handler may return before the connection has ended only when the
// caller set c.Ended: c.Detached() then says so, and the fields are filled
// when c.Ended is called.
type Handler interface {
	Serve(ctx context.Context, c *Conn) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, c *Conn) error

// Serve calls f(ctx, c).
func (f HandlerFunc) Serve(ctx context.Context, c *Conn) error { return f(ctx, c) }

// EndErr is, for a detached connection, the error Serve would have
// returned (a failure worth a warning; nil for most ends). Read it in
// c.Ended.
func (c *Conn) EndErr() error { return c.endErr }
