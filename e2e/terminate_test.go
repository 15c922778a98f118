package e2e

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"text/template"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
)

// Terminate and re-encrypt, end to end on the built binary: configs derived
// from examples/terminate-http.yaml, terminate-tcp.yaml and
// reencrypt-mtls.yaml, real clients (curl, openssl s_client, Go's
// crypto/tls, coder/websocket) and real servers (httpbackend_test.go).
// Expected identity header values are golden templates in
// testdata/terminate/ filled with values computed from the certificates
// independently of tlsedge: openssl prints the RFC 2253 names, the serial and
// the SHA-256 fingerprint; the PEM is URL-encoded here as Envoy does
// (everything but RFC 3986 unreserved characters).

// ---------------------------------------------------------------- PKI files

// termPaths are the PKI files of one test, in its own folder.
type termPaths struct {
	dir               string
	edgeCert, edgeKey string // the route certificate
	caA, caB, crlA    string
	serverCA          string // the harness's server CA (trusted by clients; backends[].tls.ca)
	upCert, upKey     string // tlsedge's client certificate towards reencrypt servers
	client            map[string][2]string
}

// writeTermFiles writes the files of thePKI.term into a new temp folder.
func writeTermFiles(t testing.TB) *termPaths {
	t.Helper()
	pk := thePKI.term
	dir := t.TempDir()
	p := &termPaths{dir: dir, serverCA: thePKI.serverCAFile, client: map[string][2]string{}}
	p.edgeCert, p.edgeKey = pkWritePair(t, dir, "edge", pk.edge)
	p.upCert, p.upKey = pkWritePair(t, dir, "edge-client", pk.upstream)
	p.caA = pkWriteFile(t, dir, "clients-ca-a.pem", pk.caA.PEM)
	p.caB = pkWriteFile(t, dir, "clients-ca-b.pem", pk.caB.PEM)
	p.crlA = pkWriteFile(t, dir, "clients-a.crl", pk.crlA)
	for name, is := range pk.clients {
		c, k := pkWritePair(t, dir, "client-"+name, is)
		p.client[name] = [2]string{c, k}
	}
	return p
}

// ---------------------------------------------------------------- configs

// useTermFiles points every tls block of cfg at the files of p: a route's
// cert/key at the route certificate, its client_ca at CA A, its crl at CA
// A's CRL; a backend's tls.ca at the server CA and its cert/key at
// tlsedge's client certificate. certs.storage goes into p's folder, and
// every backend without a health block gets `health: {type: none}`, so
// that "the backend was never contacted" counts only tlsedge's forwards.
func useTermFiles(t testing.TB, cfg cfgMap, p *termPaths) {
	t.Helper()
	cfg["certs"] = cfgMap{"storage": filepath.Join(p.dir, "data")}
	for i, l := range asList(t, cfg["listeners"], "listeners") {
		lm := asMap(t, l, fmt.Sprintf("listeners[%d]", i))
		for j, r := range asList(t, lm["routes"], "routes") {
			rm := asMap(t, r, fmt.Sprintf("routes[%d]", j))
			tm, ok := rm["tls"].(cfgMap)
			if !ok {
				continue
			}
			tm["cert"], tm["key"] = p.edgeCert, p.edgeKey
			if _, ok := tm["client_ca"]; ok {
				tm["client_ca"] = []any{p.caA}
			}
			if _, ok := tm["crl"]; ok {
				tm["crl"] = []any{p.crlA}
			}
		}
	}
	for i, b := range asList(t, cfg["backends"], "backends") {
		bm := asMap(t, b, fmt.Sprintf("backends[%d]", i))
		if _, ok := bm["health"]; !ok {
			bm["health"] = cfgMap{"type": "none"}
		}
		tm, ok := bm["tls"].(cfgMap)
		if !ok {
			continue
		}
		if _, ok := tm["ca"]; ok {
			tm["ca"] = p.serverCA
		}
		if _, ok := tm["cert"]; ok {
			tm["cert"], tm["key"] = p.upCert, p.upKey
		}
	}
}

// addRoute appends r to listeners[li].routes.
func addRoute(t testing.TB, cfg cfgMap, li int, r cfgMap) {
	t.Helper()
	l := listenerCfg(t, cfg, li)
	l["routes"] = append(asList(t, l["routes"], "routes"), r)
}

// addBackend appends b to backends.
func addBackend(t testing.TB, cfg cfgMap, b cfgMap) {
	t.Helper()
	cfg["backends"] = append(asList(t, cfg["backends"], "backends"), b)
}

// termRoute is a terminate (or reencrypt) route with the route
// certificate; client_ca is CA A when clientAuth verifies. identity nil:
// none given.
func termRoute(p *termPaths, sni, mode, protocol, backend, clientAuth string, identity any) cfgMap {
	tm := cfgMap{"cert": p.edgeCert, "key": p.edgeKey}
	if clientAuth != "" {
		tm["client_auth"] = clientAuth
	}
	if clientAuth == "require" || clientAuth == "verify_if_given" {
		tm["client_ca"] = []any{p.caA}
	}
	r := cfgMap{"sni": []any{sni}, "mode": mode, "protocol": protocol, "backend": backend, "tls": tm}
	if identity != nil {
		r["identity"] = identity
	}
	return r
}

// servers is a backends[].servers list of addresses.
func servers(addrs ...string) []any {
	out := make([]any, len(addrs))
	for i, a := range addrs {
		out[i] = cfgMap{"address": a}
	}
	return out
}

// termHTTP is examples/terminate-http.yaml running against four HTTP
// servers: api-1, api-2 (backend api, roundrobin) and dev-1, dev-2 (backend
// devices, leastconn).
type termHTTP struct {
	*edgeProc
	p    *termPaths
	port string
	bs   map[string]*httpBackend
}

func (e *termHTTP) api() []*httpBackend { return []*httpBackend{e.bs["api-1"], e.bs["api-2"]} }
func (e *termHTTP) dev() []*httpBackend { return []*httpBackend{e.bs["dev-1"], e.bs["dev-2"]} }
func (e *termHTTP) all() []*httpBackend {
	return []*httpBackend{e.bs["api-1"], e.bs["api-2"], e.bs["dev-1"], e.bs["dev-2"]}
}

// startTermHTTP runs examples/terminate-http.yaml; mod may change the
// config (add routes) before it is written.
func startTermHTTP(t *testing.T, mod func(cfg cfgMap, p *termPaths)) *termHTTP {
	t.Helper()
	p := writeTermFiles(t)
	bs := map[string]*httpBackend{}
	for _, n := range []string{"api-1", "api-2", "dev-1", "dev-2"} {
		bs[n] = startHTTPBackend(t, n)
	}
	cfg := loadExample(t, "terminate-http.yaml")
	mapServers(t, cfg, map[string]string{
		"127.0.0.1:9001": bs["api-1"].Addr(), "127.0.0.1:9002": bs["api-2"].Addr(),
		"127.0.0.1:9011": bs["dev-1"].Addr(), "127.0.0.1:9012": bs["dev-2"].Addr(),
	})
	useTermFiles(t, cfg, p)
	if mod != nil {
		mod(cfg, p)
	}
	e := runEdge(t, cfg)
	_, port, _ := net.SplitHostPort(e.addr)
	return &termHTTP{edgeProc: e, p: p, port: port, bs: bs}
}

// ---------------------------------------------------------------- curl

// curlOpts is one curl request to tlsedge.
type curlOpts struct {
	Host    string   // URL host, sent as SNI ("127.0.0.1": no SNI); resolved to tlsedge
	Path    string   // unique per test, to find the request on the servers
	Client  string   // client certificate (termPKI name); "" = none
	Headers []string // -H values
	HTTP2   bool     // --http2; else --http1.1
}

// curlReply is what curl got.
type curlReply struct {
	Status  int
	Version string // %{http_version}: "1.1" or "2"
	Body    string
}

// curlArgs are the arguments of a curl to tlsedge at addr for o, without URL.
func curlArgs(p *termPaths, addr string, o curlOpts) []string {
	_, port, _ := net.SplitHostPort(addr)
	args := []string{"-sS", "--max-time", "20", "--cacert", p.serverCA}
	if o.Host != "127.0.0.1" {
		args = append(args, "--resolve", o.Host+":"+port+":127.0.0.1")
	}
	if o.Client != "" {
		args = append(args, "--cert", p.client[o.Client][0], "--key", p.client[o.Client][1])
	}
	for _, h := range o.Headers {
		args = append(args, "-H", h)
	}
	if o.HTTP2 {
		args = append(args, "--http2")
	} else {
		args = append(args, "--http1.1")
	}
	return args
}

func curlURL(addr, host, path string) string {
	_, port, _ := net.SplitHostPort(addr)
	return "https://" + net.JoinHostPort(host, port) + path
}

// runCurl runs curl (bounded) and returns its output; a failed curl fails
// the test.
func runCurl(t testing.TB, args ...string) string {
	t.Helper()
	c := startCommand(t, 30*time.Second, "curl", args...)
	err := c.wait(t, 25*time.Second)
	out := c.out.String()
	if err != nil {
		t.Fatalf("curl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// curlWrite is the -w format that ends every response in curl's output.
const curlWrite = "\n@@ %{http_code} %{http_version}\n"

var curlTrailer = regexp.MustCompile(`\n@@ (\d{3}) (\S+)\n`)

// parseCurl splits curl output made with -w curlWrite into replies.
func parseCurl(t testing.TB, out string) []curlReply {
	t.Helper()
	var rs []curlReply
	rest := out
	for {
		m := curlTrailer.FindStringSubmatchIndex(rest)
		if m == nil {
			break
		}
		code, _ := strconv.Atoi(rest[m[2]:m[3]])
		rs = append(rs, curlReply{Status: code, Version: rest[m[4]:m[5]], Body: rest[:m[0]]})
		rest = rest[m[1]:]
	}
	if len(rs) == 0 || strings.TrimSpace(rest) != "" {
		t.Fatalf("cannot parse curl output (%d replies, rest %q):\n%s", len(rs), rest, out)
	}
	return rs
}

// curl makes one request to tlsedge at addr and returns the reply.
func curl(t testing.TB, p *termPaths, addr string, o curlOpts) curlReply {
	t.Helper()
	needTools(t, "curl")
	args := append(curlArgs(p, addr, o), "-w", curlWrite, curlURL(addr, o.Host, o.Path))
	rs := parseCurl(t, runCurl(t, args...))
	if len(rs) != 1 {
		t.Fatalf("curl %s: %d replies; want 1", o.Path, len(rs))
	}
	return rs[0]
}

func (e *termHTTP) curl(t testing.TB, o curlOpts) curlReply {
	t.Helper()
	return curl(t, e.p, e.addr, o)
}

// ---------------------------------------------------------------- logs

// requestLine waits for tlsedge's "request" line of path and returns it.
func (p *edgeProc) requestLine(t testing.TB, path string) logLine {
	t.Helper()
	return p.waitLog(t, "request line of "+path, func(l logLine) bool {
		return l.msg() == "request" && l.str("path") == path
	})
}

// num is a numeric log field (0 when absent).
func (l logLine) num(key string) float64 { f, _ := l[key].(float64); return f }

// ---------------------------------------------------------------- expected values

// certFacts are a certificate's fields as identity headers carry them,
// computed without tlsedge: the names, serial and fingerprint by openssl.
type certFacts struct {
	Subject, Issuer     string // RFC 2253, `openssl x509 -nameopt RFC2253`
	Serial              string // lowercase hex
	SHA256              string // lowercase hex of the DER's SHA-256
	NotBefore, NotAfter string // RFC 3339, UTC
	CertURL             string // the leaf's PEM, URL-encoded as Envoy does
	DER                 string // base64 of the leaf's DER
	Chain               string // the intermediates as an RFC 8941 list of byte sequences
}

var opensslLine = regexp.MustCompile(`(?m)^(subject|issuer|serial|sha256 Fingerprint|SHA256 Fingerprint)=(.*)$`)

// factsOf computes the certFacts of client name of termPKI.
func factsOf(t testing.TB, name string) certFacts {
	t.Helper()
	needTools(t, "openssl")
	pk := thePKI.term
	is := pk.clients[name]
	leafPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: is.TLS.Certificate[0]})
	f := filepath.Join(t.TempDir(), "leaf.pem")
	if err := os.WriteFile(f, leafPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	c := startCommand(t, 20*time.Second, "openssl", "x509", "-in", f, "-noout",
		"-subject", "-issuer", "-serial", "-fingerprint", "-sha256", "-nameopt", "RFC2253")
	if err := c.wait(t, 15*time.Second); err != nil {
		t.Fatalf("openssl x509: %v\n%s", err, c.out.String())
	}
	got := map[string]string{}
	for _, m := range opensslLine.FindAllStringSubmatch(c.out.String(), -1) {
		got[strings.ToLower(m[1])] = m[2]
	}
	if len(got) != 4 {
		t.Fatalf("cannot parse openssl x509 output:\n%s", c.out.String())
	}
	leaf := pk.leaf(name)
	fc := certFacts{
		Subject:   got["subject"],
		Issuer:    got["issuer"],
		Serial:    strings.ToLower(got["serial"]),
		SHA256:    strings.ToLower(strings.ReplaceAll(got["sha256 fingerprint"], ":", "")),
		NotBefore: leaf.NotBefore.UTC().Format(time.RFC3339),
		NotAfter:  leaf.NotAfter.UTC().Format(time.RFC3339),
		CertURL:   urlEncodeUnreserved(string(leafPEM)),
		DER:       base64.StdEncoding.EncodeToString(is.TLS.Certificate[0]),
	}
	// Cross-check the fingerprint against Go, so a misparsed line cannot pass.
	if sum := sha256.Sum256(is.TLS.Certificate[0]); hex.EncodeToString(sum[:]) != fc.SHA256 {
		t.Fatalf("openssl's SHA-256 fingerprint %s differs from Go's %x", fc.SHA256, sum)
	}
	var chain []string
	for _, der := range is.TLS.Certificate[1:] {
		chain = append(chain, ":"+base64.StdEncoding.EncodeToString(der)+":")
	}
	fc.Chain = strings.Join(chain, ", ")
	return fc
}

// urlEncodeUnreserved percent-encodes every byte but RFC 3986's unreserved
// characters (Envoy's XFCC Cert encoding).
func urlEncodeUnreserved(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', strings.IndexByte("-._~", c) >= 0:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// goldenVars fill the golden templates of testdata/terminate.
type goldenVars struct {
	Host string    // the request's host (in X-Forwarded-Host)
	Port string    // tlsedge's port (in X-Forwarded-Host)
	C    certFacts // the client certificate
}

// golden renders testdata/terminate/<name>.
func golden(t testing.TB, name string, v goldenVars) string {
	t.Helper()
	path := filepath.Join("testdata", "terminate", name)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := template.New(name).Option("missingkey=error").Parse(string(b))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out bytes.Buffer
	if err := tmpl.Execute(&out, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return out.String()
}

// identityDump lists, one "Name: value" a line sorted by name, every header
// of h that carries an identity or forwarding information: X-Forwarded-*,
// Forwarded, X-Real-IP, X-SSL-*, Client-Cert*, and the mapped X-Device-* and
// X-Cert-* of these tests, in any case and with "_" for "-".
func identityDump(h http.Header) string {
	type kv struct{ k, v string }
	var lines []kv
	for name, vs := range h {
		k := strings.ReplaceAll(strings.ToLower(name), "_", "-")
		if k == "forwarded" || k == "x-real-ip" || strings.HasPrefix(k, "x-forwarded-") || strings.HasPrefix(k, "x-ssl-") ||
			strings.HasPrefix(k, "client-cert") || strings.HasPrefix(k, "x-device-") || strings.HasPrefix(k, "x-cert-") {
			for _, v := range vs {
				lines = append(lines, kv{name, v})
			}
		}
	}
	sort.Slice(lines, func(i, j int) bool {
		if lines[i].k != lines[j].k {
			return lines[i].k < lines[j].k
		}
		return lines[i].v < lines[j].v
	})
	var b strings.Builder
	for _, l := range lines {
		fmt.Fprintf(&b, "%s: %s\n", l.k, l.v)
	}
	return b.String()
}

// ---------------------------------------------------------------- 2. rejections

// opensslAlert runs openssl s_client towards addr with sni, TLS version
// ("1.2" or "1.3") and the client certificate client ("" = none), and
// returns every "SSL alert number N" it printed.
func opensslAlert(t testing.TB, p *termPaths, addr, sni, version, client string) ([]int, string) {
	t.Helper()
	args := []string{"s_client", "-connect", addr, "-servername", sni, "-CAfile", p.serverCA, "-verify_return_error",
		"-tls" + strings.ReplaceAll(version, ".", "_")}
	if client != "" {
		args = append(args, "-cert", p.client[client][0], "-key", p.client[client][1])
	}
	c := startCommand(t, 30*time.Second, "openssl", args...)
	// TLS 1.3: the client's handshake is over before the server checks its
	// certificate; the alert comes on the first read.
	_, _ = io.WriteString(c.stdin, "GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
	c.waitOutput("SSL alert number", waitLong)
	_ = c.wait(t, waitLong)
	out := c.out.String()
	var alerts []int
	for _, m := range regexp.MustCompile(`SSL alert number (\d+)`).FindAllStringSubmatch(out, -1) {
		n, _ := strconv.Atoi(m[1])
		alerts = append(alerts, n)
	}
	return alerts, out
}

// Spec: `client_auth: require` ("a client cert is required AND verified"),
// `client_ca`, `crl`; README: "Alerts: no certificate 116 (TLS 1.3) / 40
// (TLS 1.2), unknown CA 48, expired 45, revoked or wrong key usage 42 (Go
// cannot send 44)". Each refusal is asserted exactly with openssl s_client,
// in TLS 1.3 and 1.2; the servers are never contacted; the access line
// gives the reason.
func TestTerminateRejectsBadClientCerts(t *testing.T) {
	t.Parallel()
	needTools(t, "openssl")
	e := startTermHTTP(t, func(cfg cfgMap, p *termPaths) {
		// One SNI per case (same route), to find each case's access line.
		routeCfg(t, cfg, 0, "api.example.com")["sni"] = []any{"api.example.com", "*.api.example.com"}
	})
	cases := []struct {
		name, client string
		alert13      int
		alert12      int
		reason       string
	}{
		{"no-cert", "", 116, 40, "tls: client didn't provide a certificate"},
		{"unknown-ca", cliFromB, 48, 48, "tls: failed to verify certificate: x509: certificate signed by unknown authority"},
		{"expired", cliExpired, 45, 45, "tls: failed to verify certificate: x509: certificate has expired or is not yet valid"},
		{"revoked", cliRevoked, 42, 42, "certs: certificate revoked"},
		{"server-auth-only", cliServerOnly, 42, 42, "tls: failed to verify certificate: x509: certificate specifies an incompatible key usage"},
	}
	t.Run("cases", func(t *testing.T) {
		for _, tc := range cases {
			for _, v := range []string{"1.3", "1.2"} {
				want := tc.alert13
				if v == "1.2" {
					want = tc.alert12
				}
				t.Run(tc.name+"/TLS"+v, func(t *testing.T) {
					t.Parallel()
					sni := tc.name + "-" + strings.ReplaceAll(v, ".", "") + ".api.example.com"
					alerts, out := opensslAlert(t, e.p, e.addr, sni, v, tc.client)
					if len(alerts) != 1 || alerts[0] != want {
						t.Errorf("openssl -tls%s with %q: alerts %v; want exactly [%d]\n%s", v, tc.client, alerts, want, out)
					}
					l := e.waitLog(t, "access line of sni "+sni, func(l logLine) bool {
						return l.msg() == "connection" && l.str("sni") == sni
					})
					if r := l.str("reason"); !strings.HasPrefix(r, "client tls handshake: ") || !strings.Contains(r, tc.reason) {
						t.Errorf("access line reason %q; want \"client tls handshake: ...%s...\" (line %v)", r, tc.reason, l)
					}
					if l.str("level") != "warn" || l.str("route") != "api.example.com" || l.str("server") != "" {
						t.Errorf("access line %v: want level warn, route api.example.com, no server", l)
					}
				})
			}
		}
	})
	if conns, reqs := contacts(e.all()...); conns != 0 || reqs != 0 {
		t.Errorf("the servers received %d connections and %d requests from refused clients; want none", conns, reqs)
	}
}

// ---------------------------------------------------------------- 4. SNI/Host binding

// Spec, Identity forwarding: "The route that the request's Host (or
// :authority; port and a trailing dot dropped, case ignored) selects ...
// must be the very route the connection handshook on; otherwise the answer
// is 421 Misdirected Request and no backend is contacted. This holds for
// the default route too".
func TestTerminateHostMustMatchSNI(t *testing.T) {
	t.Parallel()
	needTools(t, "curl")
	e := startTermHTTP(t, func(cfg cfgMap, p *termPaths) {
		addRoute(t, cfg, 0, termRoute(p, "*", "terminate", "http", "api", "none", "ssl"))
	})
	misdirected := func(host string) string {
		return "421 misdirected request: this connection's TLS name does not serve host " + host + "\n"
	}
	cases := []struct {
		name         string
		o            curlOpts
		status       int
		version      string
		normHost     string // the host in tlsedge's request line
		backendsSeen []*httpBackend
	}{
		{"lax SNI, strict Host", curlOpts{Host: "www.example.com", Headers: []string{"Host: api.example.com"}}, 421, "1.1", "api.example.com", nil},
		{"lax SNI, strict :authority, HTTP/2", curlOpts{Host: "www.example.com", Headers: []string{"Host: api.example.com"}, HTTP2: true}, 421, "2", "api.example.com", nil},
		{"strict SNI, lax Host", curlOpts{Host: "api.example.com", Client: cliValid, Headers: []string{"Host: www.example.com"}}, 421, "1.1", "www.example.com", nil},
		{"no SNI, named Host", curlOpts{Host: "127.0.0.1", Client: cliValid, Headers: []string{"Host: api.example.com"}}, 421, "1.1", "api.example.com", nil},
		{"no SNI, named :authority, HTTP/2", curlOpts{Host: "127.0.0.1", Client: cliValid, Headers: []string{"Host: api.example.com"}, HTTP2: true}, 421, "2", "api.example.com", nil},
		{"same route, Host in capitals with port and trailing dot", curlOpts{Host: "api.example.com", Client: cliValid, Headers: []string{"Host: API.Example.COM.:" + e.port}}, 200, "1.1", "api.example.com", e.api()},
		{"same route, HTTP/2", curlOpts{Host: "api.example.com", Client: cliValid, Headers: []string{"Host: Api.Example.Com.:" + e.port}, HTTP2: true}, 200, "2", "api.example.com", e.api()},
		{"same wildcard route, other name", curlOpts{Host: "d1.devices.example.com", Client: cliValid, Headers: []string{"Host: d2.devices.example.com"}}, 200, "1.1", "d2.devices.example.com", e.dev()},
		{"no SNI, IP Host: the default route itself", curlOpts{Host: "127.0.0.1"}, 200, "1.1", "127.0.0.1", e.api()},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Path = fmt.Sprintf("/bind/%d", i)
			conns, reqs := contacts(e.all()...)
			r := e.curl(t, tc.o)
			if r.Status != tc.status || r.Version != tc.version {
				t.Errorf("got %d over HTTP/%s; want %d over HTTP/%s (body %q)", r.Status, r.Version, tc.status, tc.version, r.Body)
			}
			l := e.requestLine(t, tc.o.Path)
			if int(l.num("status")) != tc.status || l.str("host") != tc.normHost {
				t.Errorf("request line %v: want status %d, host %q", l, tc.status, tc.normHost)
			}
			if tc.status == 421 {
				if r.Body != misdirected(tc.normHost) {
					t.Errorf("421 body %q; want %q", r.Body, misdirected(tc.normHost))
				}
				if l.str("server") != "" || l.str("reason") != "host does not belong to the connection's route" {
					t.Errorf("421 request line %v: want no server and reason \"host does not belong to the connection's route\"", l)
				}
				if c2, r2 := contacts(e.all()...); c2 != conns || r2 != reqs {
					t.Errorf("a misdirected request reached the servers: connections %d -> %d, requests %d -> %d", conns, c2, reqs, r2)
				}
				return
			}
			got, b := findRequest(t, tc.o.Path, tc.backendsSeen...)
			if want := fmt.Sprintf("%s GET %s\n", b.name, tc.o.Path); r.Body != want {
				t.Errorf("body %q; want %q", r.Body, want)
			}
			if got.Proto != "HTTP/1.1" {
				t.Errorf("the server got %s; want HTTP/1.1 (keep-alive pools to servers)", got.Proto)
			}
		})
	}
}

// ---------------------------------------------------------------- 5. HTTP/2 and keep-alive

// Spec: `alpn: [h2, http/1.1]` for protocol http; README: "HTTP/1.1,
// HTTP/2 and WebSocket from clients; keep-alive HTTP/1.1 pools to servers";
// `log.access`: "one line per ... request (http)".
func TestTerminateHTTP2AndKeepAlive(t *testing.T) {
	t.Parallel()
	needTools(t, "curl")
	e := startTermHTTP(t, nil)

	r := e.curl(t, curlOpts{Host: "api.example.com", Path: "/h2", Client: cliValid, HTTP2: true})
	if r.Status != 200 || r.Version != "2" {
		t.Errorf("curl --http2: %d over HTTP/%s; want 200 over HTTP/2", r.Status, r.Version)
	}
	if l := e.requestLine(t, "/h2"); l.str("proto") != "HTTP/2.0" || int(l.num("status")) != 200 {
		t.Errorf("request line %v: want proto HTTP/2.0, status 200", l)
	}
	if got, _ := findRequest(t, "/h2", e.api()...); got.Proto != "HTTP/1.1" {
		t.Errorf("the server got %s; want HTTP/1.1", got.Proto)
	}

	// Three requests on one HTTP/1.1 connection: curl reuses it for
	// several URLs of the same host.
	paths := []string{"/ka/1", "/ka/2", "/ka/3"}
	// -w applies to every URL.
	args := append(curlArgs(e.p, e.addr, curlOpts{Host: "api.example.com", Client: cliValid}), "-w", curlWrite)
	for _, p := range paths {
		args = append(args, curlURL(e.addr, "api.example.com", p))
	}
	rs := parseCurl(t, runCurl(t, args...))
	if len(rs) != 3 {
		t.Fatalf("curl with 3 URLs: %d replies; want 3", len(rs))
	}
	client := ""
	for i, p := range paths {
		if rs[i].Status != 200 || rs[i].Version != "1.1" {
			t.Errorf("%s: %d over HTTP/%s; want 200 over HTTP/1.1", p, rs[i].Status, rs[i].Version)
		}
		findRequest(t, p, e.api()...)
		l := e.requestLine(t, p)
		if i == 0 {
			client = l.str("client")
		} else if l.str("client") != client {
			t.Errorf("request %s came from %s, request %s from %s: want one keep-alive connection", p, l.str("client"), paths[0], client)
		}
	}
	c := e.waitLog(t, "connection line of the keep-alive client", func(l logLine) bool {
		return l.msg() == "connection" && l.str("client") == client
	})
	if int(c.num("requests")) != 3 || c.str("route") != "api.example.com" || c.str("reason") != "client closed" {
		t.Errorf("connection line %v: want requests 3, route api.example.com, reason \"client closed\"", c)
	}
	if n := len(e.findLogs(func(l logLine) bool { return l.msg() == "request" && l.str("client") == client })); n != 3 {
		t.Errorf("%d request lines for client %s; want 3", n, client)
	}
}

// ---------------------------------------------------------------- 8. terminate tcp + PROXY v2

// Spec: backend `proxy_protocol: v2` "(v2 carries TLS TLVs in terminate)";
// examples/terminate-tcp.yaml: "PP2_TYPE_SSL TLV carries the verify result,
// TLS version, cipher, the client's CN and its certificate (DER), plus the
// SNI (AUTHORITY) and ALPN". Read with go-proxyproto's tlvparse.
func TestTerminateTCPProxyV2(t *testing.T) {
	t.Parallel()
	p := writeTermFiles(t)
	pk := thePKI.term
	bs := []*ppBackend{startPPBackend(t, "broker-1"), startPPBackend(t, "broker-2")}
	cfg := loadExample(t, "terminate-tcp.yaml")
	mapServers(t, cfg, map[string]string{"127.0.0.1:1883": bs[0].Addr(), "127.0.0.1:1884": bs[1].Addr()})
	useTermFiles(t, cfg, p)
	e := runEdge(t, cfg)
	validDER := pk.clients[cliValid].TLS.Certificate[0]

	for _, tc := range []struct {
		version       uint16
		name, cipher  string
		cipherSuiteID uint16
	}{
		{tls.VersionTLS13, "TLSv1.3", "TLS_AES_128_GCM_SHA256", tls.TLS_AES_128_GCM_SHA256},
		{tls.VersionTLS12, "TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256", tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			conf := &tls.Config{
				ServerName:   "mqtt.example.com",
				RootCAs:      thePKI.serverCA.Pool(),
				Certificates: []tls.Certificate{pk.clients[cliValid].TLS},
				NextProtos:   []string{"mqtt"},
				MinVersion:   tc.version,
				MaxVersion:   tc.version,
			}
			if tc.version == tls.VersionTLS12 {
				conf.CipherSuites = []uint16{tc.cipherSuiteID}
			}
			d := &net.Dialer{Timeout: waitLong}
			c, err := tls.DialWithDialer(d, "tcp", e.addr, conf)
			if err != nil {
				t.Fatalf("TLS to mqtt.example.com: %v", err)
			}
			defer c.Close()
			st := c.ConnectionState()
			if st.NegotiatedProtocol != "mqtt" || st.CipherSuite != tc.cipherSuiteID {
				t.Fatalf("negotiated ALPN %q cipher %s; want mqtt, %s", st.NegotiatedProtocol, tls.CipherSuiteName(st.CipherSuite), tls.CipherSuiteName(tc.cipherSuiteID))
			}
			_ = c.SetDeadline(time.Now().Add(waitLong))
			msg := "CONNECT device-42 over " + tc.name + "\n"
			if _, err := io.WriteString(c, msg); err != nil {
				t.Fatal(err)
			}
			echo := make([]byte, len(msg))
			if _, err := io.ReadFull(c, echo); err != nil || string(echo) != msg {
				t.Fatalf("echo through terminate tcp: %q, %v; want %q", echo, err, msg)
			}

			var got *ppSeen
			for _, b := range bs {
				for _, s := range b.Seen() {
					if s.Header != nil && s.Header.SourceAddr != nil && s.Header.SourceAddr.String() == c.LocalAddr().String() {
						got = &s
					}
				}
			}
			if got == nil {
				t.Fatalf("no broker got a PROXY header with source %s", c.LocalAddr())
			}
			if got.Err != "" {
				t.Fatalf("reading the PROXY header: %s", got.Err)
			}
			h := got.Header
			if h.Version != 2 || h.Command != proxyproto.PROXY || h.DestinationAddr.String() != e.addr {
				t.Errorf("PROXY header version %d command %v destination %v; want 2, PROXY, %s", h.Version, h.Command, h.DestinationAddr, e.addr)
			}
			tlv := map[proxyproto.PP2Type]string{}
			for _, x := range got.TLVs {
				tlv[x.Type] = string(x.Value)
			}
			if tlv[proxyproto.PP2_TYPE_AUTHORITY] != "mqtt.example.com" || tlv[proxyproto.PP2_TYPE_ALPN] != "mqtt" {
				t.Errorf("AUTHORITY %q ALPN %q; want the SNI mqtt.example.com and mqtt", tlv[proxyproto.PP2_TYPE_AUTHORITY], tlv[proxyproto.PP2_TYPE_ALPN])
			}
			ssl, ok := tlvparse.FindSSL(got.TLVs)
			if !ok {
				t.Fatalf("no PP2_TYPE_SSL TLV among %v", got.TLVs)
			}
			if !ssl.ClientSSL() || !ssl.ClientCertConn() || !ssl.ClientCertSess() || !ssl.Verified() {
				t.Errorf("PP2_TYPE_SSL client 0x%02x verify %d: want SSL, CERT_CONN, CERT_SESS and verified (0)", ssl.Client, ssl.Verify)
			}
			if cn, ok := ssl.ClientCN(); !ok || cn != "device-42" {
				t.Errorf("SSL CN %q (%v); want device-42", cn, ok)
			}
			if v, ok := ssl.SSLVersion(); !ok || v != tc.name {
				t.Errorf("SSL version %q (%v); want %s", v, ok, tc.name)
			}
			if ci, ok := ssl.SSLCipher(); !ok || ci != tc.cipher {
				t.Errorf("SSL cipher %q (%v); want OpenSSL's name %s", ci, ok, tc.cipher)
			}
			if der, ok := ssl.ClientCert(); !ok || !bytes.Equal(der, validDER) {
				t.Errorf("SSL client certificate sub-TLV 0x28: %d bytes (%v); want the client's %d-byte DER", len(der), ok, len(validDER))
			}
			l := e.closeAndLog(t, c)
			if l.str("route") != "mqtt.example.com" || l.str("client_cert") != "CN=device-42" || l.str("reason") == "" {
				t.Errorf("access line %v: want route mqtt.example.com, client_cert CN=device-42, a reason", l)
			}
		})
	}
}

// ---------------------------------------------------------------- 9. 502 / 503 / 504

// README: "Answers with a reason: 503 no server available, 502 cannot
// connect / TLS with the server failed, 504 no response head in time";
// route key http.response_header_timeout (default 60s; 300ms here).
func TestTerminateHTTPErrorAnswers(t *testing.T) {
	t.Parallel()
	needTools(t, "curl")
	p := writeTermFiles(t)
	silent := startSilentBackend(t)
	drained := startHTTPBackend(t, "drained-1")
	deadAddr, downAddr := closedAddr(t), closedAddr(t)
	slow := termRoute(p, "slow.example.com", "terminate", "http", "silent", "none", nil)
	slow["http"] = cfgMap{"response_header_timeout": "300ms"}
	cfg := cfgMap{
		"listeners": []any{cfgMap{"name": "public", "address": "127.0.0.1:0", "routes": []any{
			termRoute(p, "dead.example.com", "terminate", "http", "dead", "none", nil),
			termRoute(p, "down.example.com", "terminate", "http", "down", "none", nil),
			termRoute(p, "drained.example.com", "terminate", "http", "drained", "none", nil),
			slow,
		}}},
		"backends": []any{
			cfgMap{"name": "dead", "retries": 0, "servers": servers(deadAddr)},
			cfgMap{"name": "down", "servers": servers(downAddr),
				"health": cfgMap{"type": "tcp", "interval": "100ms", "timeout": "100ms", "rise": 1, "fall": 1}},
			cfgMap{"name": "drained", "servers": []any{cfgMap{"address": drained.Addr(), "weight": 0}}},
			cfgMap{"name": "silent", "servers": servers(silent.Addr())},
		},
	}
	useTermFiles(t, cfg, p)
	e := runEdge(t, cfg)
	e.waitLog(t, "server down for "+downAddr, func(l logLine) bool {
		return l.msg() == "server down" && l.str("server") == downAddr
	})

	cases := []struct {
		host   string
		status int
		body   string
		reason string
	}{
		{"dead.example.com", 502, "502 bad gateway: cannot connect to a server\n", "connection refused"},
		{"down.example.com", 503, "503 service unavailable: no server available\n", "no server available"},
		{"drained.example.com", 503, "503 service unavailable: no server available\n", "no server available"},
		{"slow.example.com", 504, "504 gateway timeout: the server did not answer in time\n", "timeout awaiting response headers"},
	}
	for _, tc := range cases {
		t.Run(tc.host, func(t *testing.T) {
			t.Parallel()
			path := "/err/" + tc.host
			start := time.Now()
			r := curl(t, p, e.addr, curlOpts{Host: tc.host, Path: path})
			took := time.Since(start)
			if r.Status != tc.status || r.Body != tc.body {
				t.Errorf("got %d %q; want %d %q", r.Status, r.Body, tc.status, tc.body)
			}
			l := e.requestLine(t, path)
			if int(l.num("status")) != tc.status || !strings.Contains(l.str("reason"), tc.reason) || l.str("level") != "warn" {
				t.Errorf("request line %v: want level warn, status %d, a reason with %q", l, tc.status, tc.reason)
			}
			if tc.status == 504 && (took < 300*time.Millisecond || took > 5*time.Second) {
				t.Errorf("504 came after %v; want response_header_timeout 300ms (well under 5s)", took)
			}
		})
	}
	t.Cleanup(func() {
		if n := silent.Accepted(); n == 0 {
			t.Errorf("the silent server was never contacted; the 504 must come from waiting on it")
		}
		if c, r := contacts(drained); c != 0 || r != 0 {
			t.Errorf("the weight-0 server received %d connections, %d requests; want none", c, r)
		}
	})
}
