package e2e

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// dashMetric finds the metric names in a PromQL expression.
var dashMetric = regexp.MustCompile(`\btlsedge_[a-z0-9_]+`)

// dashQueries returns every PromQL expression of the Grafana dashboard
// (panel targets and template variable queries).
func dashQueries(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(moduleRoot, "docs", "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Query any `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("docs/grafana-dashboard.json: %v", err)
	}
	var out []string
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			out = append(out, tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if q, ok := v.Query.(string); ok {
			out = append(out, q)
		}
	}
	return out
}

// Every metric the Grafana dashboard queries exists on a live /metrics of
// an edge that served a little of everything (a terminate http route with
// requests, a server that refuses, one that goes down, a reload, a
// certificate), and the dashboard
// covers connections, handshakes, requests, servers, reloads and
// certificates.
func TestGrafanaDashboardMetricsExist(t *testing.T) {
	t.Parallel()
	queries := dashQueries(t)
	want := map[string]bool{}
	for _, q := range queries {
		for _, m := range dashMetric.FindAllString(q, -1) {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if base, ok := strings.CutSuffix(m, suffix); ok && strings.HasSuffix(base, "_seconds") {
					m = base
				}
			}
			want[m] = true
		}
	}
	for _, must := range []string{"tlsedge_connections_active", "tlsedge_tls_handshakes_total", "tlsedge_http_requests_total",
		"tlsedge_server_up", "tlsedge_config_reloads_total", "tlsedge_certificate_expiry_timestamp_seconds"} {
		if !want[must] {
			t.Errorf("the dashboard does not query %s", must)
		}
	}

	web := startHTTPBackend(t, "dash")
	srv, err := thePKI.serverCert("dash")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := srv.WriteFiles(t.TempDir(), "dash")
	if err != nil {
		t.Fatal(err)
	}
	cfg := cfgMap{
		"listeners": []any{cfgMap{"name": "public", "address": "127.0.0.1:0", "routes": []any{
			cfgMap{"sni": []any{"api.example.com"}, "mode": "terminate", "protocol": "http",
				"tls": cfgMap{"cert": certFile, "key": keyFile}, "backend": "web"},
			cfgMap{"sni": []any{"hc.example.com"}, "mode": "passthrough", "backend": "checked"},
		}}},
		"backends": []any{
			// Unchecked: the second server refuses, and roundrobin sends
			// every other request its way first (a connect error, a retry).
			cfgMap{"name": "web", "health": cfgMap{"type": "none"}, "servers": []any{
				cfgMap{"address": web.Addr()}, cfgMap{"address": "127.0.0.1:1"},
			}},
			// Checked: its server refuses, so it goes down (a transition).
			cfgMap{"name": "checked", "health": cfgMap{"type": "tcp", "interval": "200ms"}, "servers": []any{
				cfgMap{"address": "127.0.0.1:1"},
			}},
		},
	}
	adminAddr := withAdmin(t, cfg)
	e := runEdge(t, cfg)
	admin := newAdmin(t, adminAddr)
	client := &http.Client{Timeout: waitLong, Transport: &http.Transport{TLSClientConfig: &tls.Config{ServerName: "api.example.com", RootCAs: thePKI.serverCA.Pool()}}}
	for range 6 { // roundrobin: some reach the dead server first (a connect error, then a retry)
		req, _ := http.NewRequest("GET", "https://"+e.addr+"/dash", nil)
		req.Host = "api.example.com"
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET /dash: %s", resp.Status)
		}
	}
	if code := admin.do("POST", "/api/v1/reload", nil, nil); code != 200 {
		t.Fatalf("reload: %d", code)
	}
	var missing []string
	if !poll(waitLong, func() bool {
		fams := admin.metrics()
		missing = missing[:0]
		for m := range want {
			if fams[m] == nil {
				missing = append(missing, m)
			}
		}
		return len(missing) == 0
	}) {
		sort.Strings(missing)
		t.Errorf("the dashboard queries metrics that /metrics does not have: %v", missing)
	}
}
