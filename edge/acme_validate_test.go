package edge

import (
	"path/filepath"
	"strings"
	"testing"
)

// acmeBase is a config with one terminate route whose tls and the certs
// block the cases fill in.
const acmeBase = `
certs:
  storage: DIR/store
CERTS
listeners:
  - name: public
    address: "127.0.0.1:0"
    routes: [{sni: SNI, mode: terminate, backend: b, tls: TLS}]
backends:
  - name: b
    servers: [{address: "127.0.0.1:9001"}]
`

func acmeLoad(t *testing.T, certsBlock, sni, tls string) (*Config, string, error) {
	t.Helper()
	dir := t.TempDir()
	edgeCert(t, dir, "edge.test")
	body := strings.NewReplacer("CERTS", certsBlock, "SNI", sni, "TLS", tls).Replace(acmeBase)
	body = strings.ReplaceAll(body, "DIR", dir)
	path := filepath.Join(dir, "edge.yaml")
	writeFile(t, path, body)
	cfg, err := LoadFile(path)
	return cfg, path, err
}

// tls.acme decodes from true, false and on_demand (YAML booleans and
// strings alike) and nothing else.
func TestAcmeModeDecoding(t *testing.T) {
	const certsOK = "  acme: {email: ops@example.com, on_demand: true, ask: \"http://127.0.0.1:9/ok\"}"
	for _, tt := range []struct {
		sni, value, mode string
	}{
		{`["a.example.com"]`, `true`, "on"},
		{`["a.example.com"]`, `"true"`, "on"},
		{`["*.example.com"]`, `on_demand`, "on_demand"},
		{`["*.example.com"]`, `"on_demand"`, "on_demand"},
	} {
		t.Run(tt.value, func(t *testing.T) {
			cfg, _, err := acmeLoad(t, certsOK, tt.sni, "{acme: "+tt.value+"}")
			if err != nil {
				t.Fatalf("LoadFile: %v", err)
			}
			if got := cfg.Listeners[0].Routes[0].TLS.ACME.Mode(); got != tt.mode {
				t.Errorf("acme: %s decoded as mode %q; want %q", tt.value, got, tt.mode)
			}
		})
	}
	// false keeps the route on its files.
	cfg, _, err := acmeLoad(t, certsOK, `["a.example.com"]`, "{acme: false, cert: DIR/edge.pem, key: DIR/edge-key.pem}")
	if err != nil {
		t.Fatalf("acme: false: %v", err)
	}
	if r := cfg.Listeners[0].Routes[0].TLS.ACME; r.Enabled() || r.Mode() != "off" {
		t.Errorf("acme: false decoded as %q (enabled %v); want off", string(r), r.Enabled())
	}
}

// Every wrong use of ACME is refused with the key named and the fix said.
func TestAcmeValidateErrors(t *testing.T) {
	const ok = "  acme: {email: ops@example.com}"
	for _, tt := range []struct {
		name, certs, sni, tls string
		want                  []string
	}{
		{"bad value", ok, `["a.example.com"]`, `{acme: maybe}`, []string{
			`listeners[0].routes[0].tls.acme: "maybe" is not valid: use true, false or on_demand`,
		}},
		{"acme with cert", ok, `["a.example.com"]`, `{acme: true, cert: DIR/edge.pem, key: DIR/edge-key.pem}`, []string{
			`listeners[0].routes[0].tls.acme: acme and cert/key both give the route's certificate: keep one`,
		}},
		{"no email", "", `["a.example.com"]`, `{acme: true}`, []string{
			`certs.acme.email: missing: routes with tls.acme (listeners[0].routes[0]) need the ACME account's contact email`,
		}},
		{"acme true on a wildcard", ok, `["*.example.com"]`, `{acme: true}`, []string{
			`listeners[0].routes[0].tls.acme: acme: true obtains certificates for the route's exact names at start; a wildcard or "*" sni needs acme: on_demand (with certs.acme.on_demand) or a certificate file`,
		}},
		{"on_demand without wildcard", "  acme: {email: ops@example.com, on_demand: true, ask: \"http://127.0.0.1:9/ok\"}", `["a.example.com"]`, `{acme: on_demand}`, []string{
			`listeners[0].routes[0].tls.acme: on_demand is for routes whose sni has a wildcard (*.example.com); for exact names use acme: true`,
		}},
		{"on_demand on the default route", "  acme: {email: ops@example.com, on_demand: true, ask: \"http://127.0.0.1:9/ok\"}", `["*"]`, `{acme: on_demand}`, []string{
			`listeners[0].routes[0].tls.acme: on_demand for the "*" route would order a certificate for any name a client sends: list wildcard patterns like *.example.com instead`,
		}},
		{"on_demand without ask", "  acme: {email: ops@example.com, on_demand: true}", `["*.example.com"]`, `{acme: on_demand}`, []string{
			`certs.acme.ask: missing: on-demand issuance needs an ask URL that answers 2xx only for the names you serve; without it anyone pointing DNS names under your wildcard at tlsedge spends the CA's per-domain limits (Let's Encrypt: 50 certificates a week), blocking the renewals of your acme: true names (Caddy refuses on-demand without ask too)`,
		}},
		{"on_demand without the switch", ok, `["*.example.com"]`, `{acme: on_demand}`, []string{
			`listeners[0].routes[0].tls.acme: on_demand needs certs.acme.on_demand: true (the switch that allows on-demand issuance at all)`,
		}},
		{"bad challenge", "  acme: {email: ops@example.com, challenges: [tls-alpn-01, dns-01, tls-alpn-01]}", `["a.example.com"]`, `{acme: true}`, []string{
			`certs.acme.challenges[1]: "dns-01" is not valid: use tls-alpn-01 or http-01`,
			`certs.acme.challenges[2]: tls-alpn-01 is listed twice`,
		}},
		{"http-01 without address", "  acme: {email: ops@example.com, challenges: [http-01]}", `["a.example.com"]`, `{acme: true}`, []string{
			`certs.acme.http_address: missing: http-01 needs the plain HTTP listener's address, e.g. ":80"`,
		}},
		{"http_address without http-01", "  acme: {email: ops@example.com, http_address: \":80\"}", `["a.example.com"]`, `{acme: true}`, []string{
			`certs.acme.http_address: only used by the http-01 challenge: add http-01 to challenges, or remove it`,
		}},
		{"on-demand keys without on_demand", "  acme: {email: ops@example.com, ask: \"http://127.0.0.1:9/ok\", on_demand_orders: 5}", `["a.example.com"]`, `{acme: true}`, []string{
			`certs.acme.ask: only used by on-demand issuance: set certs.acme.on_demand: true, or remove it`,
			`certs.acme.on_demand_orders: only used by on-demand issuance: set certs.acme.on_demand: true, or remove it`,
		}},
		{"bad urls and numbers", "  acme: {email: ops@example.com, on_demand: true, directory: \"acme.example.com\", ask: \"ftp://x\", renewal_window_ratio: 1.5, on_demand_orders: -1, ca_root: DIR/none.pem}", `["a.example.com"]`, `{acme: true}`, []string{
			`certs.acme.directory: "acme.example.com" is not an ACME directory URL: write it like https://acme.example.com/directory`,
			`certs.acme.ca_root: cannot read DIR/none.pem: open DIR/none.pem: no such file or directory`,
			`certs.acme.renewal_window_ratio: must be between 0 and 1, e.g. 0.33 (renew with a third of the lifetime left); 0 = 1/3`,
			`certs.acme.on_demand_orders: must be 0 (10) or more`,
			`certs.acme.ask: "ftp://x" is not an http(s) URL: write it like http://127.0.0.1:9123/allowed`,
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, path, err := acmeLoad(t, tt.certs, tt.sni, tt.tls)
			if err == nil {
				t.Fatal("LoadFile: nil error; want problems")
			}
			dir := filepath.Dir(path)
			got := strings.ReplaceAll(strings.ReplaceAll(err.Error(), path+": ", ""), dir, "DIR")
			if want := strings.Join(tt.want, "\n"); got != want {
				t.Errorf("problems:\ngot:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// A passthrough route with acme is refused like any other tls key.
func TestAcmePassthroughRefused(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "edge.yaml")
	writeFile(t, path, strings.Replace(opsBase, `routes: [{sni: ["*"], backend: b}]`, `routes: [{sni: ["a.example.com"], backend: b, tls: {acme: true}}]`, 1))
	_, err := LoadFile(path)
	if err == nil || !strings.Contains(err.Error(), "listeners[0].routes[0].tls: passthrough never decrypts, so it has no tls") {
		t.Fatalf("LoadFile: %v; want the passthrough tls problem", err)
	}
}
