package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The admin endpoint as an operator uses it: plain HTTP on loopback (the
// TLS case builds its own client), JSON in and out, /metrics parsed with
// Prometheus' own text parser.

// withAdmin sets admin.address of cfg to a free loopback port and returns
// that address.
func withAdmin(t testing.TB, cfg cfgMap) string {
	t.Helper()
	addr := freeAddr(t)
	cfg["admin"] = cfgMap{"address": addr}
	return addr
}

// adminClient calls one tlsedge's admin endpoint.
type adminClient struct {
	t    testing.TB
	base string // http://127.0.0.1:port
	c    *http.Client
}

func newAdmin(t testing.TB, addr string) *adminClient {
	return &adminClient{t: t, base: "http://" + addr, c: &http.Client{Timeout: waitLong}}
}

// do sends method path with body (nil, or a value sent as JSON), decodes a
// JSON answer into out (when not nil) and returns the status. A transport
// error or an answer that is not JSON fails the test.
func (a *adminClient) do(method, path string, body, out any) int {
	a.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			a.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	if err != nil {
		a.t.Fatal(err)
	}
	resp, err := a.c.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatalf("%s %s: reading the answer: %v", method, path, err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		a.t.Fatalf("%s %s: Content-Type %q, want JSON; body:\n%s", method, path, ct, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			a.t.Fatalf("%s %s: %v; body:\n%s", method, path, err, raw)
		}
	}
	return resp.StatusCode
}

func (a *adminClient) get(path string, out any) int {
	a.t.Helper()
	return a.do(http.MethodGet, path, nil, out)
}

// apiError is the body of an admin API error.
type apiError struct {
	Error    string   `json:"error"`
	Problems []string `json:"problems"`
}

// apiServer is the part of a server in GET /api/v1/backends the tests read.
type apiServer struct {
	Address          string   `json:"address"`
	Weight           int      `json:"weight"`
	ConfiguredWeight int      `json:"configured_weight"`
	Overrides        []string `json:"overrides"`
	Removed          bool     `json:"removed"`
	Active           int64    `json:"active"`
	Streams          int      `json:"streams"`
	Total            int64    `json:"total_connections"`
	Health           struct {
		State     string `json:"state"`
		Check     string `json:"check"`
		LastError string `json:"last_error"`
	} `json:"health"`
	Draining *struct {
		By   string `json:"by"`
		Left int64  `json:"connections_left"`
	} `json:"draining"`
}

type apiBackend struct {
	Name    string      `json:"name"`
	Servers []apiServer `json:"servers"`
}

// backends returns GET /api/v1/backends by pool name.
func (a *adminClient) backends() map[string]apiBackend {
	a.t.Helper()
	var body struct {
		Backends []apiBackend `json:"backends"`
	}
	if st := a.get("/api/v1/backends", &body); st != http.StatusOK {
		a.t.Fatalf("GET /api/v1/backends: status %d", st)
	}
	out := map[string]apiBackend{}
	for _, b := range body.Backends {
		out[b.Name] = b
	}
	return out
}

// server returns server addr of pool, failing the test when it is missing.
func (a *adminClient) server(pool, addr string) apiServer {
	a.t.Helper()
	for _, s := range a.backends()[pool].Servers {
		if s.Address == addr {
			return s
		}
	}
	a.t.Fatalf("GET /api/v1/backends: pool %s has no server %s", pool, addr)
	return apiServer{}
}

// apiConn is one entry of the connection directory.
type apiConn struct {
	ID       uint64 `json:"id"`
	Listener string `json:"listener"`
	Route    string `json:"route"`
	Mode     string `json:"mode"`
	Protocol string `json:"protocol"`
	SNI      string `json:"sni"`
	Source   string `json:"source"`
	Server   string `json:"server"`
	Client   *struct {
		CN     string   `json:"cn"`
		URIs   []string `json:"uri"`
		SHA256 string   `json:"sha256"`
	} `json:"client"`
	BytesUp   int64  `json:"bytes_up"`
	BytesDown int64  `json:"bytes_down"`
	Requests  int64  `json:"requests"`
	Closing   string `json:"closing"`
}

// connections returns GET /api/v1/connections?query.
func (a *adminClient) connections(query string) []apiConn {
	a.t.Helper()
	var body struct {
		Connections []apiConn `json:"connections"`
		Matched     int       `json:"matched"`
	}
	if st := a.get("/api/v1/connections?"+query, &body); st != http.StatusOK {
		a.t.Fatalf("GET /api/v1/connections?%s: status %d", query, st)
	}
	return body.Connections
}

// metrics scrapes /metrics and parses it with Prometheus' text parser.
func (a *adminClient) metrics() promFamilies {
	a.t.Helper()
	resp, err := a.c.Get(a.base + "/metrics")
	if err != nil {
		a.t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		a.t.Fatalf("GET /metrics: status %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		a.t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

// promFamilies are parsed metrics by name.
type promFamilies map[string]*dto.MetricFamily

// value is the sum of the samples of metric name whose labels include
// labels (a counter, gauge or untyped value; a histogram's count).
func (f promFamilies) value(name string, labels map[string]string) float64 {
	fam := f[name]
	if fam == nil {
		return 0
	}
	var sum float64
	for _, m := range fam.Metric {
		if !hasLabels(m, labels) {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		case m.Untyped != nil:
			sum += m.Untyped.GetValue()
		}
	}
	return sum
}

// series lists the label sets of metric name, for failure messages.
func (f promFamilies) series(name string) string {
	fam := f[name]
	if fam == nil {
		return name + ": no such metric"
	}
	var out []string
	for _, m := range fam.Metric {
		var ls []string
		for _, l := range m.Label {
			ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
		}
		out = append(out, "{"+strings.Join(ls, ",")+"}")
	}
	sort.Strings(out)
	return name + " " + strings.Join(out, " ")
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	for k, v := range want {
		found := false
		for _, l := range m.Label {
			if l.GetName() == k && l.GetValue() == v {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// waitServer polls GET /api/v1/backends until cond holds for server addr
// of pool (bounded by d) and returns the last state seen.
func (a *adminClient) waitServer(pool, addr string, d time.Duration, what string, cond func(apiServer) bool) apiServer {
	a.t.Helper()
	var s apiServer
	if !poll(d, func() bool { s = a.server(pool, addr); return cond(s) }) {
		a.t.Fatalf("waited %v for %s: server %s of %s is %+v", d, what, addr, pool, s)
	}
	return s
}
