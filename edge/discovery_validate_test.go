package edge

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// discBase is a valid config; the cases replace its backend's servers line.
const discBase = `
listeners:
  - name: public
    address: "127.0.0.1:0"
    routes: [{sni: ["*"], backend: b}]
backends:
  - name: b
    servers: [{address: "127.0.0.1:9001"}]
`

// The discovery keys: accepted with their values, a pool may have no
// servers with discovery.dns, and each wrong value is refused with the key
// named and the fix said.
func TestDiscValidateKeys(t *testing.T) {
	t.Parallel()
	load := func(t *testing.T, servers string) (*Config, []string) {
		t.Helper()
		path := filepath.Join(t.TempDir(), "edge.yaml")
		writeFile(t, path, strings.Replace(discBase, `    servers: [{address: "127.0.0.1:9001"}]`, servers, 1))
		cfg, err := LoadFile(path)
		if err == nil {
			return cfg, nil
		}
		var got []string
		for _, line := range strings.Split(err.Error(), "\n") {
			got = append(got, strings.TrimPrefix(line, path+": "))
		}
		return nil, got
	}
	t.Run("accepted", func(t *testing.T) {
		cfg, problems := load(t, `    discovery: {dns: "_api._tcp.example.com", refresh: 2s, resolver: "127.0.0.1:5353"}`)
		if problems != nil {
			t.Fatalf("problems %q; want none", problems)
		}
		d := cfg.Backends[0].Discovery
		if d.DNS != "_api._tcp.example.com" || d.Refresh != 2*time.Second || d.Resolver != "127.0.0.1:5353" || len(cfg.Backends[0].Servers) != 0 {
			t.Errorf("discovery %+v, %d servers; want the values set and no servers", d, len(cfg.Backends[0].Servers))
		}
		cfg, problems = load(t, `    servers: [{address: "127.0.0.1:9001"}]
    discovery: {dns: "api.internal:8443"}`)
		if problems != nil || cfg.Backends[0].Discovery.Refresh != 0 {
			t.Fatalf("problems %q; want none (refresh 0 = the default %v)", problems, DiscDefaultRefresh)
		}
	})
	tests := []struct {
		name, servers string
		want          []string
	}{
		{"no servers and no discovery", `    servers: []`, []string{
			`backends[0].servers: missing: list at least one server address (host:port), or set discovery.dns`,
		}},
		{"refresh and resolver without dns", `    servers: [{address: "127.0.0.1:9001"}]
    discovery: {refresh: 5s, resolver: "127.0.0.1:53"}`, []string{
			`backends[0].discovery.refresh: refresh is for discovery.dns: set it or remove refresh`,
			`backends[0].discovery.resolver: resolver is for discovery.dns: set it or remove resolver`,
		}},
		{"bad values", `    discovery: {dns: "_api._udp.example.com", refresh: 500ms, resolver: "127.0.0.1"}`, []string{
			`backends[0].discovery.dns: "_api._udp.example.com" is not an SRV name: write _service._tcp.example.com`,
			`backends[0].discovery.refresh: 500ms: must be at least 1s, e.g. 10s (0 = 10s)`,
			`backends[0].discovery.resolver: "127.0.0.1" is not host:port: write it like 127.0.0.1:9001 or [::1]:9001`,
		}},
		{"a name without a port, a negative refresh", `    discovery: {dns: "api.internal", refresh: -1s, resolver: "127.0.0.1:0"}`, []string{
			`backends[0].discovery.dns: "api.internal" is neither an SRV name (_service._tcp.example.com) nor name:port (api.internal:8443)`,
			`backends[0].discovery.refresh: -1s: must be at least 1s, e.g. 10s (0 = 10s)`,
			`backends[0].discovery.resolver: "127.0.0.1:0": port must be a number from 1 to 65535`,
		}},
		{"an address is not a name", `    discovery: {dns: "127.0.0.1:9001"}`, []string{
			`backends[0].discovery.dns: "127.0.0.1:9001" is an address, not a name: list it under servers`,
		}},
		{"max_servers out of bounds, and without dns", `    discovery: {dns: "api.internal:1", max_servers: 10001}`, []string{
			`backends[0].discovery.max_servers: 10001: must be from 1 to 10000 (0 = 256)`,
		}},
		{"max_servers without dns", `    servers: [{address: "127.0.0.1:9001"}]
    discovery: {max_servers: 5}`, []string{
			`backends[0].discovery.max_servers: max_servers is for discovery.dns: set it or remove max_servers`,
		}},
		{"an unknown key", `    discovery: {dns: "api.internal:1", ttl: 5s}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, got := load(t, tt.servers)
			if tt.want == nil {
				if len(got) != 1 || !strings.Contains(got[0], "backends[0].discovery.ttl") {
					t.Errorf("problems %q; want one naming backends[0].discovery.ttl", got)
				}
				return
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("problems:\ngot:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}
