package tlsmode

// The HTTP proxy's own answers when a forward fails (502, 503, 504, 413),
// what a failure says about the server (passive ejection), and each
// request's access line.

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/rs/zerolog"
	"github.com/tlsedge/tlsedge/affinity"
)

// errorHandler answers a failed forward with a status that says why:
// 503 when no server is available, 504 when the server did not answer in
// time, 502 otherwise. The details go to the log, not to the client.
func (p *HTTPProxy) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	rs := reqStateOf(r.Context())
	if rs != nil {
		rs.err = err
		if rs.body != nil && p.bodyFailed(w, r, rs) {
			return
		}
	}
	status, msg := http.StatusBadGateway, "502 bad gateway: the server failed"
	var tlsErr *upstreamTLSError
	var maxErr *http.MaxBytesError
	switch {
	case errors.Is(err, ErrNoServer):
		status, msg = http.StatusServiceUnavailable, "503 service unavailable: no server available"
	case errors.Is(err, errDrainCancelled):
		status, msg = http.StatusServiceUnavailable, "503 service unavailable: the server was drained before it answered"
	case errors.As(err, &maxErr):
		status, msg = http.StatusRequestEntityTooLarge, "413 request body too large"
	case errors.As(err, &tlsErr):
		msg = "502 bad gateway: TLS with the server failed"
	case isConnectError(err): // also a connect timeout
		msg = "502 bad gateway: cannot connect to a server"
	case errors.Is(err, context.Canceled):
		return // the client went away: logged as 499
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded), isTimeout(err):
		status, msg = http.StatusGatewayTimeout, "504 gateway timeout: the server did not answer in time"
	}
	http.Error(w, msg, status)
}

// serverFailed reports whether tlsedge answered a request 502 or 504
// because its server failed it after the connection was made (a reset, a
// connection closed before the answer, no answer within
// response_header_timeout): for passive ejection, the server's own 5xx
// (Envoy's locally originated errors). Connect and TLS failures are counted
// when they happen (HTTPOptions.Dial, UpstreamTLS); a client that went
// away, a body too large or no server available are nobody's fault here.
func serverFailed(rs *reqState, status int) bool {
	if rs.server == nil || (status != http.StatusBadGateway && status != http.StatusGatewayTimeout) {
		return false
	}
	var tlsErr *upstreamTLSError
	var maxErr *http.MaxBytesError
	return !isConnectError(rs.err) && !errors.As(rs.err, &tlsErr) && !errors.As(rs.err, &maxErr) &&
		!errors.Is(rs.err, ErrNoServer) && !errors.Is(rs.err, context.Canceled)
}

// errDrainCancelled: a request in flight ended by a drain past its
// drain_timeout (CancelRequest) before its server answered.
var errDrainCancelled = errors.New("drained: drain_timeout passed before the server answered")

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (p *HTTPProxy) accessLog(c *Conn, r *http.Request, w *statusWriter, rs *reqState, start time.Time) {
	status := w.status
	if status == 0 {
		status = rs.status // a 101 written by ReverseProxy on the hijacked conn
	}
	if status == 0 && errors.Is(rs.err, context.Canceled) {
		status = 499 // nginx's "client closed request"
	}
	if status == 0 {
		status = http.StatusOK
	}
	if c.Events != nil {
		var answered *affinity.Server
		if rs.err == nil || rs.status != 0 || serverFailed(rs, status) {
			answered = rs.server
		}
		c.Events.Request(c, answered, status, time.Since(start))
	}
	var ev *zerolog.Event
	switch {
	case rs.err != nil && status >= 500:
		ev = p.opt.Log.Warn()
	case p.opt.Access:
		ev = p.opt.Log.Info()
	default:
		return
	}
	if !ev.Enabled() {
		return
	}
	// The path as sent (escaped): a decoded one could carry control bytes
	// into a console log. Method and host are tokens net/http checked.
	ev = ev.Str("listener", p.opt.Listener).Str("route", p.opt.Route).Str("client", c.Source.String()).
		Str("method", r.Method).Str("host", rs.host).Str("path", r.URL.EscapedPath()).Str("proto", r.Proto).
		Int("status", status).Str("server", serverAddress(rs.server)).Int64("bytes_down", w.n).
		Dur("duration_ms", time.Since(start))
	if c.Client != "" {
		ev = ev.Str("client_cert", c.Client)
	}
	if rs.err != nil {
		ev = ev.Str("reason", rs.err.Error())
	} else if w.timedOut {
		ev = ev.Str("reason", "client timeout: read nothing of this response for write_timeout "+p.limits.WriteTimeout.String())
	} else if why := c.ShutdownReason(); why != "" {
		ev = ev.Str("reason", why) // cut while answering (write_timeout, drain, the admin API)
	}
	ev.Msg("request")
}
