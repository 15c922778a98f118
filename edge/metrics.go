package edge

import (
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tlsedge/tlsedge/certs"
	"github.com/tlsedge/tlsedge/tlsmode"
)

// metrics are the Prometheus metrics of one Edge, in a registry of its own
// (with the process and Go collectors). Every label is bounded by the
// config: listener, route (its first SNI pattern), mode, backend, server
// address, and fixed sets of reasons and results; never a client address or
// identity. All methods are safe on a nil *metrics (pools built alone in
// tests).
type metrics struct {
	reg *prometheus.Registry

	accepted     *prometheus.CounterVec   // listener
	refused      *prometheus.CounterVec   // listener, reason
	denied       *prometheus.CounterVec   // listener, route, stage
	saturated    *prometheus.GaugeVec     // listener
	active       *prometheus.GaugeVec     // listener, route, mode
	closed       *prometheus.CounterVec   // listener, route, mode, server, reason
	bytes        *prometheus.CounterVec   // listener, route, mode, direction
	helloErrors  *prometheus.CounterVec   // listener, kind
	handshakes   *prometheus.CounterVec   // listener, route, result
	handshakeDur *prometheus.HistogramVec // listener, route
	requests     *prometheus.CounterVec   // listener, route, code
	requestDur   *prometheus.HistogramVec // listener, route, code
	connectDur   *prometheus.HistogramVec // backend, server
	connectErrs  *prometheus.CounterVec   // backend, server, kind
	healthTrans  *prometheus.CounterVec   // backend, server, state
	reloads      *prometheus.CounterVec   // result
	configHash   prometheus.Gauge
	configInfo   *prometheus.GaugeVec // hash
	lastReload   prometheus.Gauge
	discLookups  *prometheus.CounterVec // backend, result
	agEjections  *prometheus.CounterVec // backend, server, reason
	agAgents     *prometheus.CounterVec // backend, server, result
	wsFailovers  *prometheus.CounterVec // listener, route, result

	// discEdge is the Edge these metrics belong to: the DNS discovery
	// loops of pools reach it through their pool's metrics (discovery.go).
	discEdge *Edge
}

func newMetrics(e *Edge) *metrics {
	m := &metrics{reg: prometheus.NewRegistry(), discEdge: e}
	f := func(c prometheus.Collector) { m.reg.MustRegister(c) }
	m.accepted = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tlsedge_connections_accepted_total",
		Help: "Client connections accepted, by listener."}, []string{"listener"})
	m.refused = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tlsedge_connections_refused_total",
		Help: "Connections (and HTTP requests, for server_queue) refused by a limit, by reason: per_ip (max_connections_per_ip), rate (connection_rate_per_ip), handshakes (max_handshakes: no slot within clienthello_timeout), server_queue (max_connections_per_server: no slot within queue_timeout)."},
		[]string{"listener", "reason"})
	m.denied = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tlsedge_access_denied_total",
		Help: "Clients refused by a route's authorization, by stage: handshake (a certificate not on allow: alert 49), no_certificate (a tcp route with allow, a client without one), client_limit (client_limits.connections reached), request (403 by authorize or for a request without a certificate), reload (an open connection ended by reauthorize_on_reload)."},
		[]string{"listener", "route", "stage"})
	m.saturated = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tlsedge_listener_at_max_connections",
		Help: "1 while the listener holds max_connections and leaves new connections in the kernel's accept queue, else 0."},
		[]string{"listener"})
	m.active = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tlsedge_connections_active",
		Help: "Routed client connections open now."}, []string{"listener", "route", "mode"})
	m.closed = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tlsedge_connections_closed_total",
		Help: "Client connections ended, by why (reason) and the server they used (\"\" = none)."},
		[]string{"listener", "route", "mode", "server", "reason"})
	m.bytes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tlsedge_bytes_total",
		Help: "Bytes on client connections (TLS records included; direction in = from clients), counted when each connection ends."},
		[]string{"listener", "route", "mode", "direction"})
	m.helloErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tlsedge_clienthello_errors_total",
		Help: "Connections refused before routing, by kind: not_tls, malformed, too_large, timeout, incomplete, proxy_header, read_error (port probes that send nothing are not counted here)."},
		[]string{"listener", "kind"})
	m.handshakes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tlsedge_tls_handshakes_total",
		Help: "Client TLS handshakes by result: ok, or why they failed (no_client_cert, unknown_ca, expired, revoked, bad_certificate, timeout, client_aborted, protocol_error); no_route and bad_hello count hellos refused before any route (route \"\")."},
		[]string{"listener", "route", "result"})
	m.handshakeDur = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "tlsedge_tls_handshake_duration_seconds",
		Help: "Client TLS handshake duration (terminate and reencrypt).", Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}},
		[]string{"listener", "route"})
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tlsedge_http_requests_total",
		Help: "HTTP requests answered, by status class (1xx-5xx)."}, []string{"listener", "route", "code"})
	m.requestDur = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "tlsedge_http_request_duration_seconds",
		Help: "HTTP request duration, by status class (upgrades, whose duration is the WebSocket's life, are not observed).", Buckets: prometheus.DefBuckets},
		[]string{"listener", "route", "code"})
	m.connectDur = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "tlsedge_upstream_connect_duration_seconds",
		Help: "TCP connect duration to servers (successful connects).", Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 3}},
		[]string{"backend", "server"})
	m.connectErrs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tlsedge_upstream_connect_errors_total",
		Help: "Failed connects to servers, by kind: refused, timeout, unreachable, error."}, []string{"backend", "server", "kind"})
	m.healthTrans = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tlsedge_server_health_transitions_total",
		Help: "Health state changes of servers, by the state entered (up, down)."}, []string{"backend", "server", "state"})
	m.discLookups = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tlsedge_discovery_lookups_total",
		Help: "DNS discovery lookups of backends (discovery.dns), by result: ok (servers found), empty (an answer without records: the servers are kept), nxdomain (the name does not exist: the servers are kept until it has not for refresh x 3), error (timeout, SERVFAIL, network: the servers are kept)."},
		[]string{"backend", "result"})
	f(m.discLookups)
	m.agEjections = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tlsedge_server_ejections_total",
		Help: "Passive ejections of servers (outlier), by what tripped them: connect (consecutive connect failures), tls (consecutive TLS handshake failures to the server, reencrypt), 5xx (consecutive 5xx answers, http routes)."},
		[]string{"backend", "server", "reason"})
	m.agAgents = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tlsedge_agent_checks_total",
		Help: "Agent checks (health.agent) of servers, by result: ok (a line read and applied), failed (no connect, timeout, or a line without a word tlsedge knows: nothing changed)."},
		[]string{"backend", "server", "result"})
	m.wsFailovers = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tlsedge_websocket_failovers_total",
		Help: "WebSockets of routes with websocket.failover moved off their server, by result: moved (to another server, on the same client connection), no_server (none could take it: the client was closed with 1013)."},
		[]string{"listener", "route", "result"})
	f(m.agEjections)
	f(m.agAgents)
	f(m.wsFailovers)
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tlsedge_config_reloads_total",
		Help: "Config reloads by result (success, refused)."}, []string{"result"})
	m.configHash = prometheus.NewGauge(prometheus.GaugeOpts{Name: "tlsedge_config_hash",
		Help: "The first 48 bits of the SHA-256 of the config file in force, as a number (compare instances)."})
	m.configInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tlsedge_config_info",
		Help: "Always 1; the label hash is the SHA-256 of the config file in force."}, []string{"hash"})
	m.lastReload = prometheus.NewGauge(prometheus.GaugeOpts{Name: "tlsedge_config_last_reload_success_timestamp_seconds",
		Help: "When the config in force was loaded (Unix time)."})
	for _, c := range []prometheus.Collector{m.accepted, m.refused, m.denied, m.saturated, m.active, m.closed, m.bytes, m.helloErrors, m.handshakes,
		m.handshakeDur, m.requests, m.requestDur, m.connectDur, m.connectErrs, m.healthTrans, m.reloads,
		m.configHash, m.configInfo, m.lastReload} {
		f(c)
	}
	m.reloads.WithLabelValues("success")
	m.reloads.WithLabelValues("refused")
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f(&serverCollector{e: e})
	f(&certCollector{e: e})
	return m
}

// helloErrorKinds are the kind label values of tlsedge_clienthello_errors_total.
var helloErrorKinds = []string{"not_tls", "malformed", "too_large", "timeout", "incomplete", "proxy_header", "read_error"}

// listenerSeen makes the series of a listener exist at 0, so that a rate
// over them works before the first event (Prometheus' advice).
func (m *metrics) listenerSeen(name string) {
	if m == nil {
		return
	}
	m.accepted.WithLabelValues(name)
	m.saturated.WithLabelValues(name)
	for _, k := range refusedKinds {
		m.refused.WithLabelValues(name, k)
	}
	for _, k := range helloErrorKinds {
		m.helloErrors.WithLabelValues(name, k)
	}
	m.handshakes.WithLabelValues(name, "", "no_route")
	m.handshakes.WithLabelValues(name, "", "bad_hello")
}

// configLoaded records the config now in force.
func (m *metrics) configLoaded(hash string) {
	if m == nil {
		return
	}
	m.lastReload.SetToCurrentTime()
	m.configInfo.Reset()
	if hash != "" {
		m.configInfo.WithLabelValues(hash).Set(1)
		if n, err := strconv.ParseUint(hash[:12], 16, 64); err == nil {
			m.configHash.Set(float64(n))
		}
	}
}

// reloaded counts a reload.
func (m *metrics) reloaded(ok bool) {
	if m == nil {
		return
	}
	if ok {
		m.reloads.WithLabelValues("success").Inc()
	} else {
		m.reloads.WithLabelValues("refused").Inc()
	}
}

// refusedBy counts a connection or request refused by a limit (reason is
// one of refusedKinds).
func (m *metrics) refusedBy(listener, reason string) {
	if m == nil {
		return
	}
	m.refused.WithLabelValues(listener, reason).Inc()
}

// discLookup counts a DNS discovery lookup of a backend.
func (m *metrics) discLookup(backend, result string) {
	if m == nil {
		return
	}
	m.discLookups.WithLabelValues(backend, result).Inc()
}

// connected counts a connect to a server.
func (m *metrics) connected(backend, server string, d time.Duration, err error) {
	if m == nil {
		return
	}
	if err == nil {
		m.connectDur.WithLabelValues(backend, server).Observe(d.Seconds())
		return
	}
	m.connectErrs.WithLabelValues(backend, server, connectErrorKind(err)).Inc()
}

// serverGone deletes the series of a server that left the config and has
// drained: label sets must not grow with every address ever used.
// stillUsed: another backend in force has a server at that address, whose
// connections share the server label of tlsedge_connections_closed_total.
func (m *metrics) serverGone(backend, server string, stillUsed bool) {
	if m == nil {
		return
	}
	l := prometheus.Labels{"backend": backend, "server": server}
	m.connectDur.DeletePartialMatch(l)
	m.connectErrs.DeletePartialMatch(l)
	m.healthTrans.DeletePartialMatch(l)
	m.agEjections.DeletePartialMatch(l)
	m.agAgents.DeletePartialMatch(l)
	if !stillUsed {
		m.closed.DeletePartialMatch(prometheus.Labels{"server": server})
	}
}

// healthChanged counts a server's health transition.
func (m *metrics) healthChanged(backend, server string, up bool) {
	if m == nil {
		return
	}
	state := "down"
	if up {
		state = "up"
	}
	m.healthTrans.WithLabelValues(backend, server, state).Inc()
}

func connectErrorKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "unreachable"
	}
	return "error"
}

// handshakeResult classifies a client TLS handshake's outcome for
// tlsedge_tls_handshakes_total.
func handshakeResult(err error) string {
	if err == nil {
		return "ok"
	}
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var op *net.OpError
	var ne net.Error
	msg := err.Error()
	switch {
	case errors.Is(err, certs.ErrRevoked):
		return "revoked"
	case errors.Is(err, tlsmode.ErrClientConnections):
		return "client_limit"
	case errors.Is(err, tlsmode.ErrAccessDenied):
		return "access_denied"
	case errors.As(err, &unknown):
		return "unknown_ca"
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return "expired"
	case errors.As(err, &invalid), errors.Is(err, certs.ErrNoClientAuthEKU), errors.Is(err, certs.ErrOCSP),
		errors.Is(err, certs.ErrCRLExpired):
		return "bad_certificate"
	case strings.Contains(msg, "didn't provide a certificate"):
		return "no_client_cert"
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.As(err, &op) && op.Op == "remote error", errors.Is(err, io.EOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, net.ErrClosed):
		return "client_aborted" // the client sent an alert (e.g. it did not trust our certificate) or went away
	}
	return "protocol_error"
}

// codeClass is "1xx" .. "5xx" for a status code.
func codeClass(status int) string {
	switch {
	case status >= 100 && status < 600:
		return string(rune('0'+status/100)) + "xx"
	}
	return "other"
}

// saturatedAt sets whether the listener is at its max_connections.
func (m *metrics) saturatedAt(listener string, full bool) {
	if m == nil {
		return
	}
	v := 0.0
	if full {
		v = 1
	}
	m.saturated.WithLabelValues(listener).Set(v)
}

// agEjected counts a passive ejection.
func (m *metrics) agEjected(backend, server, reason string) {
	if m == nil {
		return
	}
	m.agEjections.WithLabelValues(backend, server, reason).Inc()
}

// agAgentCheck counts an agent check.
func (m *metrics) agAgentCheck(backend, server string, ok bool) {
	if m == nil {
		return
	}
	result := "failed"
	if ok {
		result = "ok"
	}
	m.agAgents.WithLabelValues(backend, server, result).Inc()
}
