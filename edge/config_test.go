package edge

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeConfig(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const goodConfig = `
listeners:
  - name: public
    address: "127.0.0.1:0"
    routes:
      - sni: ["API.Example.com."]
        backend: api
backends:
  - name: api
    servers:
      - address: 127.0.0.1:9001
      - address: 127.0.0.1:9002
        weight: 0
    retries: 0
`

func TestLoadFileDefaults(t *testing.T) {
	cfg, err := LoadFile(writeConfig(t, "edge.yaml", goodConfig))
	if err != nil {
		t.Fatalf("LoadFile: %v", err)
	}
	l := cfg.Listeners[0]
	b := cfg.Backends[0]
	checks := []struct {
		name      string
		got, want any
	}{
		{"log.level", cfg.Log.Level, "info"},
		{"log.format", cfg.Log.Format, "json"},
		{"log.access", *cfg.Log.Access, true},
		{"proxy_protocol", l.ProxyProtocol, "off"},
		{"clienthello_timeout", l.ClientHelloTimeout, 5 * time.Second},
		{"mode", l.Routes[0].Mode, "passthrough"},
		{"balance", b.Balance, "roundrobin"},
		{"affinity", b.Affinity, "none"},
		{"connect_timeout", b.ConnectTimeout, 3 * time.Second},
		{"retries explicit 0 kept", *b.Retries, 0},
		{"weight default", *b.Servers[0].Weight, 1},
		{"weight explicit 0 kept", *b.Servers[1].Weight, 0},
		{"health.type", b.Health.Type, "tcp"},
		{"health.fall", b.Health.Fall, 3},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v; want %v", c.name, c.got, c.want)
		}
	}
}

func TestLoadFileFormats(t *testing.T) {
	json := `{"listeners":[{"name":"p","address":"127.0.0.1:0","routes":[{"sni":["*"],"backend":"b"}]}],
	"backends":[{"name":"b","servers":[{"address":"127.0.0.1:1"}],"connect_timeout":"250ms"}]}`
	toml := `
[[listeners]]
name = "p"
address = "127.0.0.1:0"
[[listeners.routes]]
sni = ["*"]
backend = "b"
[[backends]]
name = "b"
connect_timeout = "250ms"
[[backends.servers]]
address = "127.0.0.1:1"
`
	for name, body := range map[string]string{"edge.json": json, "edge.toml": toml} {
		t.Run(name, func(t *testing.T) {
			cfg, err := LoadFile(writeConfig(t, name, body))
			if err != nil {
				t.Fatalf("LoadFile: %v", err)
			}
			if got := cfg.Backends[0].ConnectTimeout; got != 250*time.Millisecond {
				t.Errorf("connect_timeout: got %v; want 250ms", got)
			}
		})
	}
}

func TestLoadFileProblems(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []string // every line, in order, without the "file: " prefix
	}{
		{
			name: "unknown keys and bad values",
			body: `
listeners:
  - name: public
    address: "127.0.0.1:8443"
    clienthello_timeout: 5
    bogus: 1
    routes:
      - sni: ["a.example.com"]
        backend: api
backends:
  - name: api
    servers: [{address: "127.0.0.1:1", weight: many}]
`,
			want: []string{
				`backends[0].servers[0].weight: want a whole number, got the string "many"`,
				`listeners[0].bogus: unknown key; known keys here: name, address, proxy_protocol, trusted_proxies, clienthello_timeout, handshake_timeout, max_connections, max_connections_per_ip, connection_rate_per_ip, connection_burst_per_ip, max_handshakes, tcp_keepalive, routes`,
				`listeners[0].clienthello_timeout: want a duration with a unit such as "5s" or "250ms", got 5`,
			},
		},
		{
			name: "weight beyond the largest",
			body: `
listeners:
  - name: public
    address: "127.0.0.1:8443"
    routes:
      - sni: ["a.example.com"]
        backend: api
backends:
  - name: api
    servers: [{address: "127.0.0.1:1", weight: 21474837}, {address: "127.0.0.1:2", weight: 21474836}]
`,
			want: []string{
				`backends[0].servers[0].weight: must be from 0 (no new connections) to 21474836`,
			},
		},
		{
			name: "references and duplicates",
			body: `
listeners:
  - name: public
    address: ":8443"
    proxy_protocol: required
    routes:
      - sni: ["A.example.com", "a.example.com."]
        backend: nope
      - sni: ["*.*.example.com", "192.0.2.1"]
        mode: bridge
        backend: api
  - name: public
    address: ":8443"
    routes: []
backends:
  - name: api
    affinity: sticky
    hash_balance_factor: 0.5
    servers: [{address: "localhost"}]
`,
			want: []string{
				`backends[0].affinity: "sticky" is not an affinity: use none, source_ip, class_c, five_tuple or cookie`,
				`backends[0].hash_balance_factor: 0.5 must be 0 (off) or above 1, e.g. 1.25 (a server takes at most 125% of the average load)`,
				`backends[0].servers[0].address: "localhost" is not host:port: write it like 127.0.0.1:9001 or [::1]:9001`,
				`listeners[0].trusted_proxies: missing: proxy_protocol required needs the CIDRs of the balancers allowed to send PROXY headers`,
				`listeners[0].routes[0].sni[1]: duplicate server name pattern "a.example.com" on this listener (also listeners[0].routes[0].sni[0]): each name must route one way`,
				`listeners[0].routes[0].backend: no backend named "nope": known backends are api`,
				`listeners[0].routes[1].sni[0]: "*.*.example.com": a wildcard may only be the whole left-most label, like *.example.com, or "*" alone for the default route`,
				`listeners[0].routes[1].sni[1]: "192.0.2.1": an IP address is never sent as SNI (RFC 6066); clients connecting by IP reach the "*" default route`,
				`listeners[0].routes[1].mode: "bridge" is not valid: use passthrough, terminate, reencrypt`,
				`listeners[1].name: duplicate listener name "public" (also listeners[0])`,
				`listeners[1].address: address :8443 is already used by listeners[0]`,
				`listeners[1].routes: missing: add at least one route (sni, mode, backend)`,
			},
		},
		{
			name: "keys that do not fit the mode",
			body: `
listeners:
  - name: public
    address: "127.0.0.1:8443"
    routes:
      - sni: ["a.example.com"]
        backend: tlsapp
        tls: {min_version: "1.3"}
        http: {idle_timeout: 1m}
        identity: xfcc
      - sni: ["b.example.com"]
        mode: reencrypt
        backend: plain
        tls: {cert: missing.pem, key: missing-key.pem, client_auth: sometimes}
backends:
  - name: tlsapp
    servers: [{address: "127.0.0.1:1"}]
    tls: {ca: ca.pem}
  - name: plain
    servers: [{address: "127.0.0.1:2"}]
`,
			want: []string{
				`backends[0].tls: tls is used by reencrypt routes and by tls or http health checks, and this backend has neither: remove tls, or set health.type tls or http`,
				`listeners[0].routes[0].tls: passthrough never decrypts, so it has no tls: remove it, or use mode terminate or reencrypt`,
				`listeners[0].routes[0].http: passthrough never decrypts, so http limits cannot apply: remove them, or use mode terminate`,
				`listeners[0].routes[0].identity: passthrough never sees the client certificate: the servers verify it themselves; remove identity`,
				`listeners[0].routes[1].tls.cert: cannot load missing.pem with key missing-key.pem: open ` + "DIR" + `/missing.pem: no such file or directory`,
				`listeners[0].routes[1].tls.client_auth: "sometimes" is not valid: use none, request, verify_if_given or require`,
				`backends[1].tls.ca: missing: reencrypt verifies the servers' certificates; give the CA file that signed them (or, not recommended, insecure_skip_verify: true)`,
			},
		},
		{
			name: "empty file",
			body: "",
			want: []string{`listeners: missing: add at least one listener with an address and routes`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, "edge.yaml", tt.body)
			_, err := LoadFile(path)
			if err == nil {
				t.Fatal("LoadFile: got nil error; want problems")
			}
			got := strings.Split(strings.ReplaceAll(err.Error(), filepath.Dir(path), "DIR"), "\n")
			path = strings.ReplaceAll(path, filepath.Dir(path), "DIR")
			for i := range got {
				if !strings.HasPrefix(got[i], path+": ") {
					t.Errorf("line %d %q does not start with the file name", i, got[i])
				}
				got[i] = strings.TrimPrefix(got[i], path+": ")
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("problems:\ngot:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestLoadFileUnreadable(t *testing.T) {
	_, err := LoadFile(filepath.Join(t.TempDir(), "missing.yaml"))
	if err == nil || !strings.Contains(err.Error(), "missing.yaml: cannot read the config file: no such file or directory") {
		t.Errorf("got %v; want a cannot-read problem naming the file", err)
	}
	_, err = LoadFile(writeConfig(t, "edge.yaml", "listeners: [\n"))
	if err == nil || !strings.Contains(err.Error(), "edge.yaml: cannot parse the config file") {
		t.Errorf("got %v; want a cannot-parse problem naming the file", err)
	}
}

func TestLoadFileEnvOverride(t *testing.T) {
	t.Setenv("TLSEDGE_LOG_LEVEL", "debug")
	cfg, err := LoadFile(writeConfig(t, "edge.yaml", goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Log.Level != "debug" {
		t.Errorf("log.level: got %q; want %q from TLSEDGE_LOG_LEVEL", cfg.Log.Level, "debug")
	}
}
