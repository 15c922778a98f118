package e2e

import (
	"strings"
	"testing"
)

// Identity forwarding (spec, "Identity forwarding"): the exact headers a
// plaintext server behind a terminate route receives, for every preset and
// a header map, compared with golden templates in testdata/terminate filled
// with values computed from the certificates without tlsedge (certFacts);
// and a client that forges every one of them.

// identityMap sets every field of a header map.
var identityMap = cfgMap{
	"X-Cert-Subject": "subject", "X-Cert-Issuer": "issuer", "X-Cert-Serial": "serial", "X-Cert-Sha256": "sha256",
	"X-Cert-Pem": "cert", "X-Cert-Chain": "chain", "X-Cert-Uri": "uri", "X-Cert-Dns": "dns", "X-Cert-Email": "email",
	"X-Cert-Not-Before": "not_before", "X-Cert-Not-After": "not_after", "X-Cert-Verify": "verify",
}

// startIdentityEdge runs examples/terminate-http.yaml (api.example.com:
// require + CRL + xfcc; *.devices.example.com: require + a header map;
// www.example.com: client_auth none + ssl) plus one route per other
// preset and client_auth policy, all to backend api.
func startIdentityEdge(t *testing.T) *termHTTP {
	t.Helper()
	return startTermHTTP(t, func(cfg cfgMap, p *termPaths) {
		addRoute(t, cfg, 0, termRoute(p, "ssl.example.com", "terminate", "http", "api", "require", "ssl"))
		addRoute(t, cfg, 0, termRoute(p, "rfc.example.com", "terminate", "http", "api", "require", "rfc9440"))
		addRoute(t, cfg, 0, termRoute(p, "map.example.com", "terminate", "http", "api", "require", identityMap))
		addRoute(t, cfg, 0, termRoute(p, "opt.example.com", "terminate", "http", "api", "verify_if_given", "xfcc"))
		addRoute(t, cfg, 0, termRoute(p, "req.example.com", "terminate", "http", "api", "request", "ssl"))
	})
}

// identityCase is one request and the golden of the headers its server
// must see.
type identityCase struct {
	name, host, client, golden string
	http2                      bool
	headers                    []string // extra request headers (forgeries)
}

// oracleParts are lines of golden that must hold openssl's names for the
// certificate: the goldens spell names literally, and this checks them.
func oracleParts(golden string, f certFacts) []string {
	switch golden {
	case "xfcc.golden", "hostile-xfcc.golden", "trailing-xfcc.golden":
		return []string{`;Subject="` + f.Subject + `"`}
	case "ssl.golden", "hostile-ssl.golden":
		return []string{"X-Ssl-Client-S-Dn: " + f.Subject + "\n", "X-Ssl-Client-I-Dn: " + f.Issuer + "\n"}
	case "trailing-ssl.golden":
		// openssl prints `CN=device-43\ `, but an HTTP field value cannot
		// end in a space (it is trimmed on the wire, leaving a dangling
		// "\"); the golden wants the other RFC 2253 spelling, `\20`.
		return []string{"X-Ssl-Client-S-Dn: " + strings.TrimSuffix(f.Subject, `\ `) + `\20` + "\n", "X-Ssl-Client-I-Dn: " + f.Issuer + "\n"}
	case "map.golden":
		return []string{"X-Device-Subject: " + f.Subject + "\n"}
	case "mapall.golden":
		return []string{"X-Cert-Subject: " + f.Subject + "\n", "X-Cert-Issuer: " + f.Issuer + "\n"}
	}
	return nil
}

// run makes the request with curl and compares the server's identity
// headers with the golden.
func (tc identityCase) run(t *testing.T, e *termHTTP, path string) {
	t.Helper()
	r := e.curl(t, curlOpts{Host: tc.host, Path: path, Client: tc.client, HTTP2: tc.http2, Headers: tc.headers})
	if r.Status != 200 {
		t.Fatalf("%s: status %d, body %q; want 200", tc.host, r.Status, r.Body)
	}
	got, _ := findRequest(t, path, e.all()...)
	var facts certFacts
	if tc.client != "" {
		facts = factsOf(t, tc.client)
	}
	want := golden(t, tc.golden, goldenVars{Host: tc.host, Port: e.port, C: facts})
	for _, part := range oracleParts(tc.golden, facts) {
		if !strings.Contains(want, part) {
			t.Errorf("golden %s does not hold openssl's name %q", tc.golden, part)
		}
	}
	if d := identityDump(got.Header); d != want {
		t.Errorf("identity headers the server got (%s, client %q):\n%s\nwant (testdata/terminate/%s):\n%s", tc.host, tc.client, d, tc.golden, want)
	}
}

// Spec, Identity forwarding: xfcc "in Envoy's format", ssl, rfc9440 and a
// header map, exactly; X-Forwarded-For/-Proto/-Host; "Set only when a
// client certificate was presented and verified" (verify_if_given without
// a certificate: nothing; request with an unverified one: FAILED only).
// The hostile subject shows that no byte of a certificate can end a
// header or hide a separator: the DN is RFC 2253, as `openssl x509
// -nameopt RFC2253` prints it.
func TestIdentityHeaders(t *testing.T) {
	t.Parallel()
	needTools(t, "curl", "openssl")
	e := startIdentityEdge(t)
	cases := []identityCase{
		{name: "xfcc", host: "api.example.com", client: cliValid, golden: "xfcc.golden"},
		{name: "xfcc over HTTP/2", host: "api.example.com", client: cliValid, golden: "xfcc.golden", http2: true},
		{name: "ssl", host: "ssl.example.com", client: cliValid, golden: "ssl.golden"},
		{name: "rfc9440 with an intermediate", host: "rfc.example.com", client: cliChained, golden: "rfc9440.golden"},
		{name: "example header map", host: "d1.devices.example.com", client: cliValid, golden: "map.golden"},
		{name: "every map field", host: "map.example.com", client: cliChained, golden: "mapall.golden"},
		{name: "hostile subject in xfcc", host: "api.example.com", client: cliHostile, golden: "hostile-xfcc.golden"},
		{name: "hostile subject in ssl", host: "ssl.example.com", client: cliHostile, golden: "hostile-ssl.golden"},
		{name: "subject ending in a space in xfcc", host: "api.example.com", client: cliTrailing, golden: "trailing-xfcc.golden"},
		// An HTTP header value cannot end in a space: the DN's escaped
		// trailing space must be sent as \20 to reach the server.
		{name: "subject ending in a space in ssl", host: "ssl.example.com", client: cliTrailing, golden: "trailing-ssl.golden"},
		{name: "verify_if_given with a certificate", host: "opt.example.com", client: cliValid, golden: "xfcc.golden"},
		{name: "verify_if_given without", host: "opt.example.com", golden: "noidentity.golden"},
		{name: "request, unverified certificate", host: "req.example.com", client: cliFromB, golden: "failed.golden"},
		{name: "client_auth none", host: "www.example.com", golden: "none.golden"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, e, "/identity/"+string(rune('a'+i)))
		})
	}
}

// forgedHeaders is every identity and forwarding header a client could
// forge, in the canonical spelling, lowercase and with "_" for "-"; the
// Connection header lists ours so that hop-by-hop removal would take them
// away if tlsedge set them before it (HTTP/1.1 only).
var forgedHeaders = []string{
	`X-Forwarded-Client-Cert: Hash=00;Subject="CN=admin";URI=spiffe://example.org/admin`,
	`x-forwarded-client-cert: By=spiffe://evil`,
	`X_Forwarded_Client_Cert: Subject="CN=admin"`,
	"X-SSL-Client-Verify: SUCCESS",
	"x-ssl-client-verify: SUCCESS",
	"X_SSL_Client_Verify: SUCCESS",
	"X-SSL-Client-S-DN: CN=admin",
	"X_SSL_Client_S_DN: CN=admin",
	"X-SSL-Client-SHA256: 00",
	"Client-Cert: :ZXZpbA==:",
	"client_cert: :ZXZpbA==:",
	"Client-Cert-Chain: :ZXZpbA==:",
	"X-Forwarded-For: 6.6.6.6",
	"x-forwarded-for: 6.6.6.7",
	"X-Forwarded-Proto: http",
	"x-forwarded-proto: http",
	"X-Forwarded-Host: evil.example",
	"Forwarded: for=6.6.6.6;proto=http",
}

// forgedUnderscore are client copies of X-Forwarded-* spelled with "_",
// which CGI, PHP, WSGI and nginx (underscores_in_headers) read as the
// real ones (HTTP_X_FORWARDED_FOR).
var forgedUnderscore = []string{
	"X_Forwarded_For: 6.6.6.8",
	"X_Forwarded_Proto: http",
	"X_Forwarded_Host: evil.example",
}

// forgedDevice and forgedCert forge the mapped names of the devices and
// map routes.
var (
	forgedDevice = []string{"X-Device-Subject: CN=admin", "x_device_verify: SUCCESS", "X-DEVICE-SERIAL: 01"}
	forgedCert   = []string{"X-Cert-Subject: CN=admin", "X_Cert_Verify: SUCCESS", "x-cert-chain: :ZXZpbA==:"}
)

const forgedConnection = "Connection: keep-alive, X-Forwarded-Client-Cert, X-SSL-Client-Verify, X-SSL-Client-S-DN, " +
	"Client-Cert, X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, X-Device-Verify, X-Cert-Verify"

// Spec: "Every header the balancer can set is REMOVED from the incoming
// request first, whatever the config, so a client can never forge an
// identity. Also set: X-Forwarded-For, X-Forwarded-Proto,
// X-Forwarded-Host (and strip client copies unless the peer is a trusted
// proxy)"; README: "any case, `_` for `-`", "set again after hop-by-hop
// removal, so `Connection: X-SSL-Client-Verify` cannot take ours away".
// With forgeries the server must see exactly what it sees without them.
func TestIdentityForgery(t *testing.T) {
	t.Parallel()
	needTools(t, "curl", "openssl")
	e := startIdentityEdge(t)
	cases := []identityCase{
		{name: "xfcc", host: "api.example.com", client: cliValid, golden: "xfcc.golden"},
		{name: "xfcc over HTTP/2", host: "api.example.com", client: cliValid, golden: "xfcc.golden", http2: true},
		{name: "ssl", host: "ssl.example.com", client: cliValid, golden: "ssl.golden"},
		{name: "rfc9440", host: "rfc.example.com", client: cliChained, golden: "rfc9440.golden"},
		{name: "example header map", host: "d1.devices.example.com", client: cliValid, golden: "map.golden", headers: forgedDevice},
		{name: "every map field", host: "map.example.com", client: cliChained, golden: "mapall.golden", headers: forgedCert},
		{name: "every map field over HTTP/2", host: "map.example.com", client: cliChained, golden: "mapall.golden", headers: forgedCert, http2: true},
		{name: "client_auth none (ssl: NONE only)", host: "www.example.com", golden: "none.golden"},
		{name: "client_auth none over HTTP/2", host: "www.example.com", golden: "none.golden", http2: true},
		{name: "verify_if_given without a certificate (nothing)", host: "opt.example.com", golden: "noidentity.golden"},
		{name: "request with an unverified certificate (FAILED only)", host: "req.example.com", client: cliFromB, golden: "failed.golden"},
		{name: "X-Forwarded-* spelled with underscores", host: "api.example.com", client: cliValid, golden: "xfcc.golden", headers: forgedUnderscore},
		{name: "X-Forwarded-* spelled with underscores over HTTP/2", host: "www.example.com", golden: "none.golden", headers: forgedUnderscore, http2: true},
	}
	for i, tc := range cases {
		tc.headers = append(append([]string(nil), tc.headers...), forgedHeaders...)
		if !tc.http2 {
			tc.headers = append(tc.headers, forgedConnection)
		}
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, e, "/forged/"+string(rune('a'+i)))
		})
	}
}
