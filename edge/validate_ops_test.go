package edge

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// opsBase is a valid config that the cases below extend with their keys.
const opsBase = `
listeners:
  - name: public
    address: "127.0.0.1:0"
    routes: [{sni: ["*"], backend: b}]
backends:
  - name: b
    servers: [{address: "127.0.0.1:9001"}]
`

// The operations keys: each has its default, and a wrong value is refused
// with the key named and the fix said.
func TestOpsKeys(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		cfg, err := LoadFile(writeConfig(t, "edge.yaml", opsBase))
		if err != nil {
			t.Fatal(err)
		}
		b, l := cfg.Backends[0], cfg.Listeners[0]
		for _, c := range []struct {
			name      string
			got, want any
		}{
			{"drain_rate", b.DrainRate, 100.0},
			{"drain_timeout", b.DrainTimeout, 30 * time.Second},
			{"idle_timeout", b.IdleTimeout, time.Duration(0)},
			{"backend tcp_keepalive", b.TCPKeepalive, 15 * time.Second},
			{"listener tcp_keepalive", l.TCPKeepalive, 15 * time.Second},
			{"rebalance", b.Rebalance == nil, true},
			{"shutdown.grace", cfg.Shutdown.Grace, 10 * time.Second},
			{"shutdown.delay", cfg.Shutdown.Delay, time.Duration(0)},
			{"hash", len(cfg.Hash), 64},
		} {
			if c.got != c.want {
				t.Errorf("%s: got %v; want %v", c.name, c.got, c.want)
			}
		}
	})
	t.Run("set", func(t *testing.T) {
		cfg, err := LoadFile(writeConfig(t, "edge.yaml", strings.Replace(opsBase, "    servers:", `    drain_rate: 7
    rebalance: {interval: "off"}
    idle_timeout: 10m
    tcp_keepalive: "off"
    health: {type: http, expect_status: [200, "3xx"]}
    tls: {insecure_skip_verify: true}
    servers:`, 1)))
		if err != nil {
			t.Fatal(err)
		}
		b := cfg.Backends[0]
		if b.DrainRate != 7 || b.IdleTimeout != 10*time.Minute || b.TCPKeepalive != -1 {
			t.Errorf("drain_rate %v idle_timeout %v tcp_keepalive %v; want 7, 10m, -1 (off)", b.DrainRate, b.IdleTimeout, b.TCPKeepalive)
		}
		if r := b.Rebalance; r == nil || r.Above != 1.25 || r.Rate != 10 || r.Interval != -1 {
			t.Errorf("rebalance: {interval: off} = %+v; want the defaults above 1.25, rate 10, and interval off (-1)", r)
		}
		if h := b.Health; h.Path != "/" || strings.Join(h.ExpectStatus, ",") != "200,3xx" {
			t.Errorf("health: path %q expect_status %v; want / and [200 3xx]", h.Path, h.ExpectStatus)
		}
	})

	tests := []struct {
		name, from, to string
		want           []string
	}{
		{"bad drain and rebalance values", "    servers:", `    drain_rate: -1
    rebalance: {above: 0.5, rate: -2}
    idle_timeout: -3s
    tcp_keepalive: -5s
    servers:`, []string{
			`backends[0].drain_rate: -1: must be from 0.01 to 1e+06: connections closed a second once drain_timeout has passed, e.g. 100`,
			`backends[0].rebalance.above: 0.5 must be from 1 to 100, e.g. 1.25 (a server above 125% of its share gives connections back)`,
			`backends[0].rebalance.rate: -2: must be from 0.01 to 1e+06: connections closed a second, e.g. 10`,
			`backends[0].idle_timeout: must be 0 (off) or positive, e.g. 10m`,
			`backends[0].tcp_keepalive: must be a positive duration such as 15s, or off`,
		}},
		{"rates that are not numbers, rebalance with affinity", "    servers:", `    drain_rate: .inf
    affinity: source_ip
    rebalance: {above: .nan, rate: 1e-300}
    servers:`, []string{
			`backends[0].drain_rate: +Inf: must be from 0.01 to 1e+06: connections closed a second once drain_timeout has passed, e.g. 100`,
			`backends[0].rebalance.above: NaN must be from 1 to 100, e.g. 1.25 (a server above 125% of its share gives connections back)`,
			`backends[0].rebalance.rate: 1e-300: must be from 0.01 to 1e+06: connections closed a second, e.g. 10`,
			`backends[0].rebalance: a rebalance closes connections so that clients come back elsewhere, but with affinity source_ip they hash to the same server again: use affinity none (leastconn), or remove rebalance`,
		}},
		{"check settings with type none", "    servers:", `    health: {type: none, interval: 5s, fall: 2}
    servers:`, []string{
			`backends[0].health: interval, timeout, rise and fall do nothing with type none: remove them, or choose tcp, tls or http`,
		}},
		{"admin client_ca without client_auth", "listeners:", `admin: {address: "127.0.0.1:9900", tls: {cert: DIR/edge.pem, key: DIR/edge-key.pem, client_auth: none, client_ca: DIR/ca.pem}}
listeners:`, []string{
			`admin.tls.client_ca: client_auth none asks for no client certificate, so client_ca is never used: set client_auth: require, or remove client_ca`,
		}},
		{"http check keys on a tcp check", "    servers:", `    health: {type: tcp, path: /healthz, host: a.example, expect_status: [200]}
    servers:`, []string{
			`backends[0].health.path: path is for health type http (now tcp): set type: http or remove path`,
			`backends[0].health.host: host is for health type http (now tcp): set type: http or remove host`,
			`backends[0].health.expect_status: expect_status is for health type http (now tcp): set type: http or remove it`,
		}},
		{"bad http check values", "    servers:", `    health: {type: http, path: healthz, expect_status: ["2xy", "300-200", 700]}
    servers:`, []string{
			`backends[0].health.path: "healthz" must start with /, e.g. /healthz`,
			`backends[0].health.expect_status[0]: "2xy" is not a status: write 200, a range 200-299, or 2xx`,
			`backends[0].health.expect_status[1]: "300-200" is not a status: write 200, a range 200-299, or 2xx`,
			`backends[0].health.expect_status[2]: "700" is not a status: write 200, a range 200-299, or 2xx`,
			`backends[0].health.type: the servers of passthrough routes speak TLS: give this backend tls.ca (and cert/key) so the http check runs over verified TLS`,
		}},
		{"tls check without tls", "    servers:", `    health: {type: tls}
    servers:`, []string{
			`backends[0].health.type: a tls check verifies the servers' certificates: give backends' tls.ca (and cert/key if they require a client certificate)`,
		}},
		{"http check of passthrough servers without tls", "    servers:", `    health: {type: http}
    servers:`, []string{
			`backends[0].health.type: the servers of passthrough routes speak TLS: give this backend tls.ca (and cert/key) so the http check runs over verified TLS`,
		}},
		{"admin off loopback without tls", "listeners:", `admin: {address: "0.0.0.0:9900"}
listeners:`, []string{
			`admin.address: 0.0.0.0:9900 is not a loopback address: the admin API can drain servers and close connections, so off loopback it needs admin.tls with cert, key, client_auth: require and client_ca (or listen on 127.0.0.1)`,
		}},
		{"admin off loopback with tls but no client certificates", "listeners:", `admin: {address: ":9900", tls: {cert: DIR/edge.pem, key: DIR/edge-key.pem, client_auth: none}}
listeners:`, []string{
			`admin.address: :9900 is not a loopback address: the admin API can drain servers and close connections, so off loopback it needs admin.tls with cert, key, client_auth: require and client_ca (or listen on 127.0.0.1)`,
		}},
		{"admin client_auth require without a CA", "listeners:", `admin: {address: "127.0.0.1:9900", tls: {cert: DIR/edge.pem, key: DIR/edge-key.pem, client_auth: require}}
listeners:`, []string{
			`admin.tls.client_ca: missing: client_auth require verifies operators' certificates against these CA files`,
		}},
		{"admin tls without an address", "listeners:", `admin: {tls: {cert: DIR/edge.pem, key: DIR/edge-key.pem}}
listeners:`, []string{
			`admin.tls: admin.tls without admin.address does nothing: set admin.address (e.g. 127.0.0.1:9900) or remove admin.tls`,
		}},
		{"shutdown", "listeners:", `shutdown: {delay: -1s, grace: -2s}
listeners:`, []string{
			`shutdown.delay: must be 0 (none) or positive, e.g. 5s`,
			`shutdown.grace: must be positive, e.g. 10s`,
		}},
		{"write_timeout", `routes: [{sni: ["*"], backend: b}]`, `routes: [{sni: ["*"], backend: b, mode: terminate, protocol: http, tls: {cert: DIR/edge.pem, key: DIR/edge-key.pem}, http: {write_timeout: -1s}}]`, []string{
			`listeners[0].routes[0].http.write_timeout: must be positive, e.g. 30s (0 = the default)`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			ca, _ := edgeCert(t, dir, "edge.test")
			writeFile(t, filepath.Join(dir, "ca.pem"), string(ca.PEM))
			body := strings.Replace(opsBase, tt.from, strings.ReplaceAll(tt.to, "DIR", dir), 1)
			path := filepath.Join(dir, "edge.yaml")
			writeFile(t, path, body)
			_, err := LoadFile(path)
			if err == nil {
				t.Fatal("LoadFile: nil error; want problems")
			}
			var got []string
			for _, line := range strings.Split(err.Error(), "\n") {
				got = append(got, strings.TrimPrefix(line, path+": "))
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("problems:\ngot:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}
