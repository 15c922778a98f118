package tlsmode

// Why a connection ended, as its access line says it (Conn.Reason). The
// handlers do not write reason strings: they return a *Failure (what
// failed, with whom, the error underneath) and reasonOf turns it into the
// reason, here and nowhere else. The strings are an interface: the e2e
// tests, docs/config.md and docs/troubleshooting.md quote them, edge's
// metrics classify them by prefix (edge/events.go), and passive ejection
// counts the reasons starting "server tls handshake" (it reads c.Reason in
// the Upstream's Release: a handler sets the reason before it closes its
// Upstream).

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
)

// ReasonHandshakeTimeout is the reason of a connection WatchHandshake ends.
const ReasonHandshakeTimeout = "handshake timeout"

// ReasonAccessDenied starts the reason of a connection ended because its
// client is not (or no longer) allowed on its route; a WebSocket ended so
// gets close code 1008 (policy violation) instead of 1001.
const ReasonAccessDenied = "access denied"

// ReasonQueueTimeout is the close reason of a stream that got no server
// slot within the queue timeout.
const ReasonQueueTimeout = "server queue timeout"

// reasonNoServer is the close reason of a stream whose pool had no
// available server.
const reasonNoServer = "no server available"

// Kind is what failed, or how a stream ended.
type Kind uint8

const (
	// KindHandshake: a TLS handshake failed; Side says with whom. A client
	// handshake past its deadline reads ReasonHandshakeTimeout.
	KindHandshake Kind = iota + 1
	// KindNameNotCovered: the server's certificate does not cover the
	// name the client chose (not the server's fault; see serverTLSFault).
	KindNameNotCovered
	// KindAccessDenied: the client is not allowed on the route (Err says
	// why: ErrAccessDenied, errNoClientCert, *clientLimitError,
	// *reloadDenial).
	KindAccessDenied
	// KindConnect: no server could be had or dialed (Backend.Connect).
	KindConnect
	// KindServerError: writing to a connected server failed.
	KindServerError
	// KindInternal: tlsedge itself could not go on (a PROXY header that
	// cannot be built).
	KindInternal
	// KindEnded: a stream ended; Side says which side ended it first, Err
	// how (nil: it closed cleanly).
	KindEnded
)

// Side is the peer a Failure is about.
type Side uint8

const (
	SideClient Side = iota + 1
	SideServer
)

func (s Side) String() string {
	if s == SideClient {
		return "client"
	}
	return "server"
}

// Failure is a connection's failure (or a stream's end), typed, so that
// one function (reasonOf) says it. Error returns the reason; Unwrap gives
// Err, so errors.Is(f, ErrAccessDenied) and the like hold.
type Failure struct {
	Kind Kind
	Side Side
	Err  error
}

func (f *Failure) Error() string { return f.reason() }
func (f *Failure) Unwrap() error { return f.Err }

// fail returns a *Failure of kind k about side s.
func fail(k Kind, s Side, err error) *Failure { return &Failure{Kind: k, Side: s, Err: err} }

// errNoClientCert refuses a client without a certificate on a tcp route
// with an allow list.
var errNoClientCert = fmt.Errorf("%w: no client certificate", ErrAccessDenied)

// clientLimitError refuses a verified client that already has its
// client_limits.connections open; Limit is that setting.
type clientLimitError struct {
	Limit int
	Err   error // ErrClientConnections, or a handshake error wrapping it
}

func (e *clientLimitError) Error() string {
	return fmt.Sprintf("client has client_limits.connections (%d) open", e.Limit)
}
func (e *clientLimitError) Unwrap() error { return e.Err }

// reloadDenial refuses a client the route in force after a reload does
// not admit; Why is the route's reason.
type reloadDenial struct{ Why string }

func (e *reloadDenial) Error() string { return e.Why }
func (e *reloadDenial) Unwrap() error { return ErrAccessDenied }

// reasonOf is the close reason for err: the reason of the *Failure in its
// chain, "" when there is none (nil, or an error nobody classified: the
// caller keeps the reason it has).
func reasonOf(err error) string {
	var f *Failure
	if !errors.As(err, &f) {
		return ""
	}
	return f.reason()
}

// reason is the one place a reason string is written.
func (f *Failure) reason() string {
	switch f.Kind {
	case KindHandshake:
		if f.Side == SideClient && errors.Is(f.Err, context.DeadlineExceeded) {
			return ReasonHandshakeTimeout // as for passthrough's handshake watch
		}
		return f.Side.String() + " tls handshake: " + f.Err.Error()
	case KindNameNotCovered:
		return "server certificate does not cover the client's name: " + f.Err.Error()
	case KindAccessDenied:
		return ReasonAccessDenied + deniedDetail(f.Err)
	case KindConnect:
		switch {
		case errors.Is(f.Err, ErrQueueTimeout):
			return ReasonQueueTimeout
		case errors.Is(f.Err, ErrNoServer):
			return reasonNoServer
		default:
			return "connect failed: " + describeDialError(f.Err)
		}
	case KindServerError:
		return "server error: " + f.Err.Error()
	case KindInternal:
		return "internal error: " + f.Err.Error()
	case KindEnded:
		return endedReason(f.Side, f.Err)
	}
	if f.Err == nil {
		return "internal error"
	}
	return "internal error: " + f.Err.Error()
}

// deniedDetail is what follows "access denied" in the reason.
func deniedDetail(err error) string {
	var reload *reloadDenial
	var limit *clientLimitError
	switch {
	case errors.As(err, &reload):
		return " after reload: " + reload.Why
	case errors.As(err, &limit):
		return ": " + limit.Error()
	case errors.Is(err, errNoClientCert):
		return ": no client certificate"
	default:
		return ": " + ErrAccessDenied.Error()
	}
}

// endedReason says how a stream ended: side is the side whose direction
// ended first, err how it ended (nil: cleanly).
func endedReason(side Side, err error) string {
	switch {
	case err == nil:
		return side.String() + " closed"
	case errors.Is(err, net.ErrClosed):
		return "closed" // closed from outside (Shutdown, the other direction)
	case errors.Is(err, syscall.ECONNRESET):
		return side.String() + " reset"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return side.String() + " timeout"
	default:
		return side.String() + " error: " + err.Error()
	}
}

// closeReason is the reason of a stream whose first direction to end was
// the client's (upFirst) or the server's, ending with err.
func closeReason(upFirst bool, err error) string {
	f := Failure{Kind: KindEnded, Side: SideServer, Err: err}
	if upFirst {
		f.Side = SideClient
	}
	return f.reason()
}

// describeDialError turns a dial error into a short reason for logs: the
// cause without the "dial tcp a:p: " prefix.
func describeDialError(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && strings.HasPrefix(s, "dial ") {
		return s[i+2:]
	}
	return s
}
