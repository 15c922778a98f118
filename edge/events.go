package edge

import (
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tlsedge/tlsedge/affinity"
	"github.com/tlsedge/tlsedge/tlsmode"
)

// routeObs are a route's metric handles, resolved once when the route is
// built so that the per-connection path does no label lookups.
type routeObs struct {
	active       prometheus.Gauge
	handshakeOK  prometheus.Counter
	handshakeDur prometheus.Observer
	bytesIn      prometheus.Counter
	bytesOut     prometheus.Counter
	requests     [6]prometheus.Counter         // by status class 1xx..5xx, [0] other
	requestDur   [6]prometheus.Observer        // idem
	denied       map[string]prometheus.Counter // by stage (terminate, reencrypt)
}

// deniedStages are the stage label values of tlsedge_access_denied_total.
var deniedStages = []string{"handshake", "no_certificate", "client_limit", "request", "reload"}

func newRouteObs(m *metrics, r *Route) *routeObs {
	if m == nil {
		return nil
	}
	o := &routeObs{
		active:       m.active.WithLabelValues(r.Listener, r.Pattern, r.Mode),
		handshakeOK:  m.handshakes.WithLabelValues(r.Listener, r.Pattern, "ok"),
		handshakeDur: m.handshakeDur.WithLabelValues(r.Listener, r.Pattern),
		bytesIn:      m.bytes.WithLabelValues(r.Listener, r.Pattern, r.Mode, "in"),
		bytesOut:     m.bytes.WithLabelValues(r.Listener, r.Pattern, r.Mode, "out"),
	}
	if r.authz != nil {
		o.denied = map[string]prometheus.Counter{}
		for _, st := range deniedStages {
			o.denied[st] = m.denied.WithLabelValues(r.Listener, r.Pattern, st)
		}
	}
	for i := range o.requests {
		code := "other"
		if i > 0 {
			code = codeClass(i * 100)
		}
		o.requests[i] = m.requests.WithLabelValues(r.Listener, r.Pattern, code)
		o.requestDur[i] = m.requestDur.WithLabelValues(r.Listener, r.Pattern, code)
	}
	return o
}

// connEvents is the edge's side of tlsmode.Events: it keeps the registry's
// indexes, starts idle watches, and counts handshakes and requests.
type connEvents struct{ e *Edge }

// WSFailover counts a failover WebSocket moved off its server (to nil: no
// server could take it).
func (ev connEvents) WSFailover(c *tlsmode.Conn, _, to *affinity.Server, _ string) {
	r := routeOf(c)
	if r == nil || ev.e.m == nil {
		return
	}
	res := "moved"
	if to == nil {
		res = "no_server"
	}
	ev.e.m.wsFailovers.WithLabelValues(r.Listener, r.Pattern, res).Inc()
}

func routeOf(c *tlsmode.Conn) *Route {
	r, _ := c.Route.(*Route)
	return r
}

func (ev connEvents) Bound(c *tlsmode.Conn, old, new *affinity.Server) {
	ev.e.reg.bound(c, old, new)
	if new == nil {
		c.StopWatching()
		return
	}
	if r := routeOf(c); r != nil && r.pool != nil && r.pool.idleTimeout > 0 {
		c.WatchIdle(r.pool.idleTimeout)
	}
}

func (ev connEvents) Identified(c *tlsmode.Conn) { ev.e.reg.identified(c) }

func (ev connEvents) Handshake(c *tlsmode.Conn, d time.Duration, err error) {
	r := routeOf(c)
	if r == nil || r.obs == nil {
		return
	}
	if err == nil {
		r.obs.handshakeOK.Inc()
		r.obs.handshakeDur.Observe(d.Seconds())
		return
	}
	ev.e.m.handshakes.WithLabelValues(r.Listener, r.Pattern, handshakeResult(err)).Inc()
}

func (ev connEvents) Request(c *tlsmode.Conn, s *affinity.Server, status int, d time.Duration) {
	agOutlierRequest(c, s, status) // consecutive 5xx answers eject (outlier.consecutive_5xx)
	r := routeOf(c)
	if r == nil || r.obs == nil {
		return
	}
	i := 0
	if status >= 100 && status < 600 {
		i = status / 100
	}
	r.obs.requests[i].Inc()
	if status == 403 && s == nil && r.obs.denied != nil {
		r.obs.denied["request"].Inc() // tlsedge's own 403: no server was asked
	}
	if status != 101 {
		r.obs.requestDur[i].Observe(d.Seconds())
	}
}

// ended accounts for a routed connection once its handler has returned:
// out of the registry, the gauges, counters and its server's bytes.
func (e *Edge) ended(c *tlsmode.Conn, r *Route) {
	e.reg.remove(c)
	c.StopWatching()
	srv := c.LastServer()
	if st := r.pool.state(srv); st != nil {
		st.bytesIn.Add(c.BytesUp)
		st.bytesOut.Add(c.BytesDown)
	}
	if r.obs == nil {
		return
	}
	r.obs.active.Dec()
	r.obs.bytesIn.Add(float64(c.BytesUp))
	r.obs.bytesOut.Add(float64(c.BytesDown))
	addr := ""
	if srv != nil {
		addr = srv.Address
	}
	e.m.closed.WithLabelValues(r.Listener, r.Pattern, r.Mode, addr, reasonClass(c.Reason)).Inc()
	if r.obs.denied != nil && strings.HasPrefix(c.Reason, tlsmode.ReasonAccessDenied) {
		stage := "handshake"
		switch {
		case strings.HasPrefix(c.Reason, tlsmode.ReasonAccessDenied+" after reload"):
			stage = "reload"
		case strings.Contains(c.Reason, "no client certificate"):
			stage = "no_certificate"
		case strings.Contains(c.Reason, "client_limits"):
			stage = "client_limit"
		}
		r.obs.denied[stage].Inc()
	}
}

// rejected accounts for a connection that never reached a route.
func (e *Edge) rejected(listener string, kind, reason string) {
	if e.m == nil {
		return
	}
	switch kind {
	case "", "empty": // a port probe (an L4 balancer's health check) is no error
	case refusedPerIP, refusedRate, refusedHandshakes:
		e.m.refused.WithLabelValues(listener, kind).Inc()
	case "no_route":
		e.m.handshakes.WithLabelValues(listener, "", "no_route").Inc()
	default:
		e.m.helloErrors.WithLabelValues(listener, kind).Inc()
		if kind == "not_tls" || kind == "malformed" || kind == "too_large" {
			e.m.handshakes.WithLabelValues(listener, "", "bad_hello").Inc()
		}
	}
	e.m.closed.WithLabelValues(listener, "", "", "", reasonClass(reason)).Inc()
}

// Reasons the edge itself ends connections for.
const (
	reasonAdmin     = tlsmode.ReasonAdminClose
	reasonDrained   = tlsmode.ReasonDrained
	reasonRebalance = tlsmode.ReasonRebalanced
	reasonShutdown  = "shutting down"
)

// reasonClasses map a connection's reason (its first words) to the bounded
// reason label of tlsedge_connections_closed_total.
var reasonClasses = []struct{ prefix, class string }{
	{tlsmode.ReasonAccessDenied + " after reload", "access_denied_reload"},
	{tlsmode.ReasonAccessDenied + ": client has client_limits", "client_limit"},
	{tlsmode.ReasonAccessDenied, "access_denied"},
	{"client closed without sending anything", "empty"},
	{"client closed before its hello", "hello_incomplete"},
	{"client closed", "client_closed"},
	{"server closed", "server_closed"},
	{"client reset", "client_reset"},
	{"server reset", "server_reset"},
	{"client timeout", "timeout"},
	{"server timeout", "timeout"},
	{"client error", "client_error"},
	{"server error", "server_error"},
	{"idle timeout", "idle_timeout"},
	{reasonAdmin, "admin"},
	{"drained", "drained"},
	{reasonRebalance, "rebalanced"},
	{reasonShutdown, "shutdown"},
	{"no server available", "no_server"},
	{tlsmode.ReasonQueueTimeout, refusedQueue},
	{reasonPerIP, refusedPerIP},
	{reasonRate, refusedRate},
	{reasonHandshakes, refusedHandshakes},
	{tlsmode.ReasonHandshakeTimeout, "handshake_timeout"},
	{"connect failed", "connect_failed"},
	{"client tls handshake", "tls_handshake_failed"},
	{"server tls handshake", "server_tls_failed"},
	{"no route", "no_route"},
	{"not TLS", "bad_hello"},
	{"malformed client hello", "bad_hello"},
	{"client hello too large", "bad_hello"},
	{"clienthello timeout", "hello_timeout"},
	{"PROXY header", "proxy_refused"},
	{"bad PROXY header", "proxy_refused"},
	{"internal error", "internal_error"},
	{"closed", "closed"},
}

func reasonClass(reason string) string {
	for _, rc := range reasonClasses {
		if strings.HasPrefix(reason, rc.prefix) {
			return rc.class
		}
	}
	return "other"
}
