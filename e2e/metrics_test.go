package e2e

import (
	"bufio"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// metricsClientIP is the address the clients of the metrics test connect
// from: not 127.0.0.1, which the servers' addresses (legitimate labels)
// carry, so that any label holding the client's IP is caught.
const metricsClientIP = "127.0.0.2"

// dialFrom connects to addr from metricsClientIP and runs a TLS handshake
// with sni, presenting cert when not nil. It returns the connection (nil
// when the handshake failed), the client's address and the handshake
// error.
func dialFrom(t testing.TB, addr, sni string, cert *tls.Certificate) (*tls.Conn, string, error) {
	t.Helper()
	d := net.Dialer{Timeout: waitLong, LocalAddr: &net.TCPAddr{IP: net.ParseIP(metricsClientIP)}}
	raw, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("connecting to tlsedge from %s: %v", metricsClientIP, err)
	}
	t.Cleanup(func() { raw.Close() })
	_ = raw.SetDeadline(time.Now().Add(waitLong))
	conf := &tls.Config{ServerName: sni, RootCAs: thePKI.serverCA.Pool(), NextProtos: []string{"http/1.1"}}
	if cert != nil {
		conf.Certificates = []tls.Certificate{*cert}
	}
	tc := tls.Client(raw, conf)
	if err := tc.Handshake(); err != nil {
		raw.Close()
		return nil, raw.LocalAddr().String(), err
	}
	return tc, raw.LocalAddr().String(), nil
}

// metricDelta is one expected change between two scrapes.
type metricDelta struct {
	name   string
	labels map[string]string
	delta  float64
}

// Issue, metrics: "/metrics parsed with prometheus' expfmt; counters
// asserted to move by exactly the expected deltas for a scripted set of
// connections" on a terminate route with client_auth require: a hello
// whose SNI no route matches, a handshake without a client certificate,
// and 5 good requests on one keep-alive connection. Also: no label
// carries a client address or identity; tlsedge_ names follow Prometheus'
// conventions; the process_ and go_ collectors are there.
func TestMetricsExactDeltas(t *testing.T) {
	t.Parallel()
	p := writeTermFiles(t)
	app := startHTTPBackend(t, "metrics-app")
	const route = "metrics.example.com"
	cfg := cfgMap{
		"certs": cfgMap{"storage": filepath.Join(p.dir, "data")},
		"log":   cfgMap{"level": "info", "format": "json", "access": true},
		"listeners": []any{cfgMap{"name": "public", "address": "", "routes": []any{
			termRoute(p, route, "terminate", "http", "app", "require", "xfcc")}}},
		"backends": []any{cfgMap{"name": "app", "servers": servers(app.Addr()), "health": cfgMap{"type": "none"}}},
	}
	adminAddr := withAdmin(t, cfg)
	e := runEdge(t, cfg)
	admin := newAdmin(t, adminAddr)

	// settled: every accepted connection has been counted closed (the
	// harness's readiness probe included) and none is active.
	settled := func(f promFamilies) bool {
		return f.value("tlsedge_connections_accepted_total", nil) == f.value("tlsedge_connections_closed_total", nil) &&
			f.value("tlsedge_connections_active", nil) == 0
	}
	var before promFamilies
	if !poll(waitLong, func() bool { before = admin.metrics(); return settled(before) }) {
		t.Fatalf("before the script: accepted %v, closed %v, active %v; want accepted = closed and none active\n%s\n%s",
			before.value("tlsedge_connections_accepted_total", nil), before.value("tlsedge_connections_closed_total", nil),
			before.value("tlsedge_connections_active", nil), before.series("tlsedge_connections_closed_total"), before.series("tlsedge_connections_active"))
	}

	var clients []string // every client address of the script

	// 1. A hello with an SNI that no route matches: alert unrecognized_name.
	_, local, err := dialFrom(t, e.addr, "nowhere.example.org", nil)
	clients = append(clients, local)
	if err == nil || !strings.Contains(err.Error(), "unrecognized name") {
		t.Errorf("handshake with SNI nowhere.example.org: %v; want alert unrecognized_name", err)
	}

	// 2. No client certificate on a route with client_auth require: in TLS
	// 1.3 the client's handshake completes, the alert comes on the read.
	tc, local, err := dialFrom(t, e.addr, route, nil)
	clients = append(clients, local)
	if err == nil {
		_, err = tc.Read(make([]byte, 1))
	}
	if err == nil || !strings.Contains(err.Error(), "certificate required") {
		t.Errorf("no client certificate: %v; want alert certificate_required", err)
	}

	// 3. Five requests on one keep-alive connection, with device-42.
	cert := thePKI.term.clients[cliValid].TLS
	tc, local, err = dialFrom(t, e.addr, route, &cert)
	clients = append(clients, local)
	if err != nil {
		t.Fatalf("handshake with a client certificate: %v", err)
	}
	br := bufio.NewReader(tc)
	for i := 1; i <= 5; i++ {
		path := fmt.Sprintf("/metrics-test/%d", i)
		if _, err := fmt.Fprintf(tc, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, route); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := "metrics-app GET " + path + "\n"; err != nil || resp.StatusCode != http.StatusOK || string(body) != want || resp.Close {
			t.Fatalf("response %d: status %d, body %q, close %v, error %v; want 200 %q on a kept-alive connection",
				i, resp.StatusCode, body, resp.Close, err, want)
		}
	}
	// The requests are counted when answered; the connection while it lives.
	var mid promFamilies
	if !poll(waitLong, func() bool {
		mid = admin.metrics()
		return mid.value("tlsedge_connections_active", map[string]string{"route": route}) == 1
	}) {
		t.Errorf("while the keep-alive connection is open: %s; want 1 active on route %s", mid.series("tlsedge_connections_active"), route)
	}
	tc.Close()

	// Wait (bounded) for the three closes to be counted.
	var after promFamilies
	if !poll(waitLong, func() bool {
		after = admin.metrics()
		return after.value("tlsedge_connections_closed_total", nil)-before.value("tlsedge_connections_closed_total", nil) >= 3 && settled(after)
	}) {
		t.Errorf("after the script: closed %v -> %v, active %v; want 3 more closed and none active",
			before.value("tlsedge_connections_closed_total", nil), after.value("tlsedge_connections_closed_total", nil),
			after.value("tlsedge_connections_active", nil))
	}

	pub := map[string]string{"listener": "public"}
	onRoute := map[string]string{"listener": "public", "route": route}
	with := func(base map[string]string, kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	want := []metricDelta{
		{"tlsedge_connections_accepted_total", pub, 3},
		{"tlsedge_connections_accepted_total", nil, 3},
		{"tlsedge_tls_handshakes_total", with(pub, "route", "", "result", "no_route"), 1},
		{"tlsedge_tls_handshakes_total", with(onRoute, "result", "no_client_cert"), 1},
		{"tlsedge_tls_handshakes_total", with(onRoute, "result", "ok"), 1},
		{"tlsedge_tls_handshakes_total", nil, 3},
		{"tlsedge_tls_handshake_duration_seconds", onRoute, 1}, // successful handshakes only
		{"tlsedge_clienthello_errors_total", nil, 0},
		{"tlsedge_http_requests_total", with(onRoute, "code", "2xx"), 5},
		{"tlsedge_http_requests_total", nil, 5},
		{"tlsedge_http_request_duration_seconds", with(onRoute, "code", "2xx"), 5},
		{"tlsedge_connections_closed_total", with(pub, "route", "", "server", "", "reason", "no_route"), 1},
		{"tlsedge_connections_closed_total", with(onRoute, "mode", "terminate", "server", "", "reason", "tls_handshake_failed"), 1},
		{"tlsedge_connections_closed_total", with(onRoute, "mode", "terminate", "server", app.Addr(), "reason", "client_closed"), 1},
		{"tlsedge_connections_closed_total", nil, 3},
		{"tlsedge_connections_active", nil, 0},
	}
	for _, w := range want {
		if got := after.value(w.name, w.labels) - before.value(w.name, w.labels); got != w.delta {
			t.Errorf("%s%s: got delta %v; want exactly %v\nbefore: %s\nafter:  %s",
				w.name, fmtLabels(w.labels), got, w.delta, before.series(w.name), after.series(w.name))
		}
	}
	if got := after.value("tlsedge_connections_active", nil); got != 0 {
		t.Errorf("tlsedge_connections_active after every connection closed: %v; want 0\n%s", got, after.series("tlsedge_connections_active"))
	}
	for _, dir := range []string{"in", "out"} {
		if got := after.value("tlsedge_bytes_total", with(onRoute, "direction", dir)) - before.value("tlsedge_bytes_total", with(onRoute, "direction", dir)); got <= 0 {
			t.Errorf("tlsedge_bytes_total{direction=%q} on %s: got delta %v; want more than 0", dir, route, got)
		}
	}
	// One keep-alive client connection needs one server connection, two
	// when a request races the first one's return to the idle pool.
	if got := after.value("tlsedge_server_connections_total", map[string]string{"server": app.Addr()}) -
		before.value("tlsedge_server_connections_total", map[string]string{"server": app.Addr()}); got < 1 || got > 5 {
		t.Errorf("tlsedge_server_connections_total{server=%q}: got delta %v; want 1 to 5 for 5 requests", app.Addr(), got)
	}
	if reqs := app.Requests(); len(reqs) != 5 {
		t.Errorf("the server got %d requests; want 5", len(reqs))
	}

	// No label value carries a client's address or identity.
	leaf := thePKI.term.leaf(cliValid)
	sum := sha256.Sum256(leaf.Raw)
	secrets := append([]string{metricsClientIP, leaf.Subject.CommonName, hex.EncodeToString(sum[:]), leaf.SerialNumber.Text(16)}, clients...)
	for _, u := range leaf.URIs {
		secrets = append(secrets, u.String())
	}
	secrets = append(append(secrets, leaf.DNSNames...), leaf.EmailAddresses...)
	for _, f := range []promFamilies{mid, after} {
		for name, fam := range f {
			for _, m := range fam.Metric {
				for _, l := range m.Label {
					ln := strings.ToLower(l.GetName())
					for _, bad := range []string{"client", "source", "peer", "remote", "cn", "subject", "ip"} {
						if ln == bad || strings.HasPrefix(ln, bad+"_") {
							t.Errorf("%s has a label named %q: client details must not be labels", name, l.GetName())
						}
					}
					for _, s := range secrets {
						if strings.Contains(l.GetValue(), s) {
							t.Errorf("%s{%s=%q} carries the client's %q", name, l.GetName(), l.GetValue(), s)
						}
					}
				}
			}
		}
	}

	checkMetricNames(t, after)
}

// fmtLabels writes labels as a selector, {a="x",b="y"}.
func fmtLabels(labels map[string]string) string {
	var ls []string
	for k, v := range labels {
		ls = append(ls, fmt.Sprintf("%s=%q", k, v))
	}
	sort.Strings(ls)
	return "{" + strings.Join(ls, ",") + "}"
}

// promName is Prometheus' metric name syntax, lowercase (snake_case).
var promName = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// checkMetricNames checks Prometheus' naming conventions on every tlsedge_
// family (https://prometheus.io/docs/practices/naming/): snake_case, a
// help text, counters end in _total and nothing else does, durations and
// timestamps in base units (_seconds), sizes in _bytes; and that the
// process and Go collectors are registered.
func checkMetricNames(t *testing.T, f promFamilies) {
	t.Helper()
	var names []string
	for name := range f {
		names = append(names, name)
	}
	sort.Strings(names)
	ours := 0
	for _, name := range names {
		fam := f[name]
		if !strings.HasPrefix(name, "tlsedge_") {
			continue
		}
		ours++
		typ := fam.GetType()
		if !promName.MatchString(name) {
			t.Errorf("%s: not snake_case", name)
		}
		if strings.TrimSpace(fam.GetHelp()) == "" {
			t.Errorf("%s: no help text", name)
		}
		if isCounter := typ == dto.MetricType_COUNTER; isCounter != strings.HasSuffix(name, "_total") {
			t.Errorf("%s is a %v: counters, and only counters, end in _total", name, typ)
		}
		timed := strings.Contains(name, "duration") || strings.Contains(name, "latency") || strings.Contains(name, "timestamp") ||
			strings.Contains(name, "_time") || strings.Contains(name, "seconds")
		if timed && !strings.HasSuffix(strings.TrimSuffix(name, "_total"), "_seconds") {
			t.Errorf("%s: a duration or time must be in seconds, named ..._seconds", name)
		}
		if typ == dto.MetricType_HISTOGRAM && strings.Contains(name, "duration") && !strings.HasSuffix(name, "_duration_seconds") {
			t.Errorf("%s: a duration histogram must be named ..._duration_seconds", name)
		}
		for _, bad := range []string{"_ms", "_millis", "milliseconds", "microseconds", "_kb", "kilobytes", "megabytes", "_count", "_sum", "_bucket"} {
			if strings.HasSuffix(strings.TrimSuffix(name, "_total"), bad) || strings.Contains(name, bad+"_") {
				t.Errorf("%s: %q is not a base unit or is a reserved suffix", name, bad)
			}
		}
		if strings.Contains(name, "byte") && !strings.HasSuffix(strings.TrimSuffix(name, "_total"), "_bytes") {
			t.Errorf("%s: sizes are named ..._bytes", name)
		}
	}
	if ours < 10 {
		t.Errorf("%d tlsedge_ metrics; want the connection, handshake, request and server families", ours)
	}
	for _, name := range []string{"tlsedge_connections_accepted_total", "tlsedge_connections_active", "tlsedge_connections_closed_total",
		"tlsedge_tls_handshakes_total", "tlsedge_clienthello_errors_total", "tlsedge_http_requests_total",
		"tlsedge_tls_handshake_duration_seconds", "tlsedge_http_request_duration_seconds", "tlsedge_server_up",
		"tlsedge_config_reloads_total",
		"process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds", "process_start_time_seconds",
		"go_goroutines", "go_threads", "go_info", "go_gc_duration_seconds"} {
		if f[name] == nil {
			t.Errorf("/metrics has no %s", name)
		}
	}
}
