package edge

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/tlsedge/tlsedge/tlsmode"
)

// Authorization keys: a bad value is refused with its key and the fix, and
// the keys are refused where they cannot apply.
func TestAuthzKeysValidate(t *testing.T) {
	const route = `routes: [{sni: ["*"], backend: b}]`
	const tlsReq = `tls: {cert: DIR/edge.pem, key: DIR/edge-key.pem, client_auth: require, client_ca: DIR/ca.pem}`
	tests := []struct {
		name string
		to   string
		want []string
	}{
		{"passthrough", `routes: [{sni: ["*"], backend: b, allow: [{cn: x}]}]`, []string{
			`listeners[0].routes[0]: allow, authorize and allow_unauthenticated_paths need the client's identity, which passthrough never sees (the servers verify it): use mode terminate or reencrypt, or remove them`,
		}},
		{"no client certificates", `routes: [{sni: ["*"], backend: b, mode: terminate, tls: {cert: DIR/edge.pem, key: DIR/edge-key.pem}, allow: [{cn: x}]}]`, []string{
			`listeners[0].routes[0].tls.client_auth: allow and authorize match verified client certificates: set client_auth: require (or verify_if_given) with client_ca`,
		}},
		{"bad patterns", `routes: [{sni: ["*"], backend: b, mode: terminate, ` + tlsReq + `, allow: [{}, {sha256: [abc]}, {dns: "**.x"}, {issuer: DIR/missing.pem}]}]`, []string{
			`listeners[0].routes[0].allow[0]: an empty entry admits no one: set uri, dns, cn, email, issuer or sha256`,
			`listeners[0].routes[0].allow[1].sha256[0]: "abc" is not a SHA-256 (64 hex digits, e.g. from openssl x509 -noout -fingerprint -sha256)`,
			`listeners[0].routes[0].allow[2]: ** (across /) is for uri patterns only`,
			`listeners[0].routes[0].allow[3].issuer: neither a DN (CN=...,O=...) nor a readable PEM file of CA certificates: `,
		}},
		{"issuer DN of no client_ca certificate", `routes: [{sni: ["*"], backend: b, mode: terminate, ` + tlsReq + `, allow: [{issuer: "CN=Ops CA,O=Example"}]}]`, []string{
			`listeners[0].routes[0].allow[0].issuer: "CN=Ops CA,O=Example" is the subject of no certificate in the route's client_ca: write the DN of one of them as openssl x509 -noout -subject -nameopt RFC2253 prints it, or give the CA's PEM file (for an intermediate, say)`,
		}},
		{"empty allow", `routes: [{sni: ["*"], backend: b, mode: terminate, ` + tlsReq + `, allow: []}]`, []string{
			`listeners[0].routes[0].allow: an empty list admits no one: list identity patterns, or remove allow to admit every verified certificate`,
		}},
		{"rules on tcp", `routes: [{sni: ["*"], backend: b, mode: terminate, ` + tlsReq + `, authorize: [{paths: [/x]}]}]`, []string{
			`listeners[0].routes[0]: authorize and allow_unauthenticated_paths apply to requests: use protocol http, or only allow`,
		}},
		{"reauthorize on passthrough", `routes: [{sni: ["*"], backend: b, reauthorize_on_reload: false}]`, []string{
			`listeners[0].routes[0].reauthorize_on_reload: passthrough never sees the client certificate, so there is nothing to check again: remove it`,
		}},
		{"client limits on passthrough", `routes: [{sni: ["*"], backend: b, client_limits: {connections: 3}}]`, []string{
			`listeners[0].routes[0].client_limits: passthrough never sees the client certificate that identifies a client: use mode terminate or reencrypt, or remove client_limits`,
		}},
		{"bad client limits", `routes: [{sni: ["*"], backend: b, mode: terminate, ` + tlsReq + `, client_limits: {connections: -1, requests_per_second: 5, burst: -2, key: serial}}]`, []string{
			`listeners[0].routes[0].client_limits.connections: must be 0 (no limit) or more`,
			`listeners[0].routes[0].client_limits.burst: must be 0 (the rate, at least 1) or more`,
			`listeners[0].routes[0].client_limits.requests_per_second: requests are counted on protocol http routes only; a tcp route has connections`,
			`listeners[0].routes[0].client_limits.key: "serial" is not valid: use sha256, uri, dns, email, cn, subject`,
		}},
		{"empty client limits", `routes: [{sni: ["*"], backend: b, mode: terminate, ` + tlsReq + `, client_limits: {key: uri}}]`, []string{
			`listeners[0].routes[0].client_limits: sets no limit: set connections and/or requests_per_second, or remove client_limits`,
		}},
		{"shadowed rule", `routes: [{sni: ["*"], backend: b, mode: terminate, protocol: http, ` + tlsReq + `, authorize: [{paths: ["/"]}, {paths: ["/admin/"], allow: [{cn: admin}]}]}]`, []string{
			`listeners[0].routes[0].authorize[1]: never decides: authorize[0] (paths [/], methods all) matches every request it would, and the first rule that matches decides; move it before, or remove it`,
		}},
		{"patterns that never match", `routes: [{sni: ["*"], backend: b, mode: terminate, ` + tlsReq + `, allow: [{uri: "partners.test/acme/*"}, {email: example.org}, {dns: "a.example/x"}]}]`, []string{
			`listeners[0].routes[0].allow[0].uri: "partners.test/acme/*" can never match: a URI SAN always has a scheme, e.g. spiffe://example.org/app/*`,
			`listeners[0].routes[0].allow[1].email: "example.org" can never match: an email SAN always has an @, e.g. *@example.org`,
			`listeners[0].routes[0].allow[2].dns: "a.example/x" can never match: a DNS SAN is a host name, e.g. *.devices.example.org`,
		}},
		{"bad rules", `routes: [{sni: ["*"], backend: b, mode: terminate, protocol: http, ` + tlsReq + `, authorize: [{methods: [get]}, {paths: ["/a/../b", "x"]}], allow_unauthenticated_paths: [/healthz]}]`, []string{
			`listeners[0].routes[0].authorize[0].paths: missing: list the path prefixes this rule decides, e.g. [/v1/telemetry]`,
			`listeners[0].routes[0].authorize[0].methods[0]: "get" is not a method: write it upper case, e.g. GET`,
			`listeners[0].routes[0].authorize[1].paths[0]: "/a/../b" is not a path prefix: write a plain absolute path such as /v1/telemetry (no query, encoding, globs or dot segments)`,
			`listeners[0].routes[0].authorize[1].paths[1]: "x" is not a path prefix: write a plain absolute path such as /v1/telemetry (no query, encoding, globs or dot segments)`,
			`listeners[0].routes[0].allow_unauthenticated_paths: only clients without a certificate use these paths, and client_auth "require" admits none: set client_auth: verify_if_given, or remove the key`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			ca, _ := edgeCert(t, dir, "edge.test")
			writeFile(t, filepath.Join(dir, "ca.pem"), string(ca.PEM))
			body := strings.Replace(opsBase, route, strings.ReplaceAll(tt.to, "DIR", dir), 1)
			path := filepath.Join(dir, "edge.yaml")
			writeFile(t, path, body)
			_, err := LoadFile(path)
			if err == nil {
				t.Fatal("LoadFile: nil error; want problems")
			}
			got := strings.Split(err.Error(), "\n")
			if len(got) != len(tt.want) {
				t.Fatalf("problems:\n%s\nwant %d lines:\n%s", err, len(tt.want), strings.Join(tt.want, "\n"))
			}
			for i, w := range tt.want {
				if line := strings.TrimPrefix(got[i], path+": "); !strings.HasPrefix(line, w) {
					t.Errorf("line %d:\ngot  %s\nwant %s", i, line, w)
				}
			}
		})
	}

	t.Run("valid", func(t *testing.T) {
		dir := t.TempDir()
		ca, _ := edgeCert(t, dir, "edge.test")
		writeFile(t, filepath.Join(dir, "ca.pem"), string(ca.PEM))
		to := `routes: [{sni: ["*"], backend: b, mode: terminate, protocol: http, tls: {cert: DIR/edge.pem, key: DIR/edge-key.pem, client_auth: verify_if_given, client_ca: DIR/ca.pem},
      allow: [{uri: "spiffe://p.example/acme/*", issuer: DIR/ca.pem}, {sha256: ["` + strings.Repeat("ab:", 31) + `ab"]}, {issuer: "` + tlsmode.SubjectDN(ca.Cert) + `"}],
      authorize: [{paths: [/v1/telemetry], methods: [GET], allow: [{cn: "device-*"}]}, {paths: [/public/]}],
      allow_unauthenticated_paths: [/healthz]}]`
		path := filepath.Join(dir, "edge.yaml")
		writeFile(t, path, strings.Replace(opsBase, route, strings.ReplaceAll(to, "DIR", dir), 1))
		cfg, err := LoadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		rc := &cfg.Listeners[0].Routes[0]
		allow, err := buildAllowList(cfg, rc, rc.Allow)
		if err != nil || len(allow) != 3 || len(allow[0].IssuerCAs) != 1 || allow[1].SHA256[0][0] != 0xab ||
			len(allow[2].IssuerCAs) != 1 || !allow[2].IssuerCAs[0].Equal(ca.Cert) { // a DN is pinned to that client_ca certificate
			t.Fatalf("allow list: %+v, %v", allow, err)
		}
		a, err := buildHTTPAuthz(cfg, rc)
		if err != nil || !a.Identified || len(a.Rules) != 2 || a.Rules[1].Allow != nil || a.Unauthenticated[0] != "/healthz" {
			t.Fatalf("authz: %+v, %v", a, err)
		}
	})
}
