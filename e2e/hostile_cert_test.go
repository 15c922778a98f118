package e2e

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptrace"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pires/go-proxyproto/tlvparse"
)

// Client certificates with hostile text in every field (CN, O, OU, L and
// the URI, DNS and email SANs: CR LF, quotes, commas, semicolons, + = \,
// NUL and other control bytes, UTF-8, Latin-1 bytes of a T61String, very
// long values), signed from raw templates (pkMinter.signRaw) by a CA made
// for the test, sent with Go's client to terminate routes with every
// identity format (xfcc, ssl, rfc9440, a map of every field) and to a
// terminate tcp route with PROXY v2. A raw server records the exact request
// heads tlsedge sent, another the PROXY v2 headers.

// hhAVA is one attribute of a subject: OID, ASN.1 string tag (12 UTF8String,
// 20 T61String) and the value's bytes.
type hhAVA struct {
	oid asn1.ObjectIdentifier
	tag int
	val string
}

var (
	hhCN = asn1.ObjectIdentifier{2, 5, 4, 3}
	hhL  = asn1.ObjectIdentifier{2, 5, 4, 7}
	hhO  = asn1.ObjectIdentifier{2, 5, 4, 10}
	hhOU = asn1.ObjectIdentifier{2, 5, 4, 11}
)

// hhSAN is one subjectAltName: tag 1 email, 2 DNS, 6 URI, value as is.
type hhSAN struct {
	tag int
	val string
}

// hhCertCase is a hostile client certificate and what tlsedge must make of
// it, written by hand from the escaping docs/config.md and identity.go
// state: RFC 2253 names as `openssl x509 -nameopt RFC2253` prints them
// (checked against openssl too), SAN lists with control bytes, space,
// non-ASCII and "," percent-encoded, XFCC values quoted when they hold
// , ; = " or \.
type hhCertCase struct {
	name    string
	subject []hhAVA // in DER order
	sans    []hhSAN
	dn      string // the subject in RFC 2253
	uri     string // the uri, dns and email lists ("" = none)
	dns     string
	email   string
	xfccSAN string // XFCC's URI= and DNS= parts
	ppCN    string // PP2_SUBTYPE_SSL_CN; "" = not checked
}

// hhLongUnit is repeated into very long values; hhLongDN is its RFC 2253
// escaped form.
const (
	hhLongUnit = "é\r\n\",;+\\<x>"
	hhLongDN   = `\C3\A9\0D\0A\"\,\;\+\\\<x\>`
)

var hhCases = []hhCertCase{
	{
		name: "names",
		subject: []hhAVA{
			{hhO, 12, "Evil, Inc.; \"Q\"\r\nX-Org: 1"},
			{hhOU, 12, "a+b=c\\d<e>#f\x00g\x1bh\x7fi\u0085j"},
			{hhCN, 12, "#dev\r\nX-SSL-Client-Verify: SUCCESS\x00\t, Zürich;+\"q\"\\"},
			{hhL, 20, "T61 \x00\r\n\x80\x9f\xfc\xff"},
		},
		dn: `L=T61 \00\0D\0A\C2\80\C2\9F\C3\BC\C3\BF,CN=\#dev\0D\0AX-SSL-Client-Verify: SUCCESS\00\09\, Z\C3\BCrich\;\+\"q\"\\,` +
			`OU=a\+b=c\\d\<e\>#f\00g\1Bh\7Fi\C2\85j,O=Evil\, Inc.\; \"Q\"\0D\0AX-Org: 1`,
		ppCN: "#dev%0D%0AX-SSL-Client-Verify: SUCCESS%00%09, Zürich;+\"q\"\\",
	},
	{
		name:    "sans",
		subject: []hhAVA{{hhCN, 12, "sans"}},
		sans: []hhSAN{
			{6, "urn:x:a,b;c=\"d\"\\e f%0D%0A"}, {6, "spiffe://example.org/p%22q,r"},
			{2, "a\r\nX-Injected: 1.example.com"}, {2, "b\"c,d;e=f\\g\x00.example.com"},
			{1, "e\r\nvil\"@ex,ample.com"}, {1, "x;y=z\\\x01@example.com"},
		},
		dn:    "CN=sans",
		uri:   `urn:x:a%2Cb;c="d"\e%20f%0D%0A,spiffe://example.org/p%22q%2Cr`,
		dns:   `a%0D%0AX-Injected:%201.example.com,b"c%2Cd;e=f\g%00.example.com`,
		email: `e%0D%0Avil"@ex%2Cample.com,x;y=z\%01@example.com`,
		xfccSAN: `;URI="urn:x:a,b;c=\"d\"\\e%20f%0D%0A";URI="spiffe://example.org/p%22q,r"` +
			`;DNS=a%0D%0AX-Injected:%201.example.com;DNS="b\"c,d;e=f\\g%00.example.com"`,
		ppCN: "sans",
	},
	{
		name:    "latin1",
		subject: []hhAVA{{hhO, 12, "Zürich"}, {hhCN, 20, "\x00\r\n\x80\x9f\xfc\xff%"}},
		dn:      `CN=\00\0D\0A\C2\80\C2\9F\C3\BC\C3\BF%,O=Z\C3\BCrich`,
		ppCN:    "%00%0D%0A%C2%80%C2%9Füÿ%25",
	},
	{
		name:    "long",
		subject: []hhAVA{{hhOU, 12, strings.Repeat("o\x01", 2000)}, {hhCN, 12, strings.Repeat(hhLongUnit, 900)}},
		sans:    []hhSAN{{2, strings.Repeat("a\r\n,", 1000) + ".example.com"}},
		dn:      "CN=" + strings.Repeat(hhLongDN, 900) + ",OU=" + strings.Repeat(`o\01`, 2000),
		dns:     strings.Repeat("a%0D%0A%2C", 1000) + ".example.com",
		xfccSAN: `;DNS="` + strings.Repeat("a%0D%0A,", 1000) + `.example.com"`,
	},
}

// hhIssuer is the subject of the test's CA (made by pkMint: O=tlsedge
// throwaway PKI).
const hhIssuer = "CN=hh hostile client CA,O=tlsedge throwaway PKI"

// hhClient is a minted client certificate.
type hhClient struct {
	hhCertCase
	tls      tls.Certificate
	der      []byte
	leaf     *x509.Certificate
	certFile string
}

// hhMust returns v; err (minting and encoding, which do not fail on these
// inputs) panics, which fails the test.
func hhMust[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// hhMint makes a CA (its PEM in dir/ca.pem, subject hhIssuer) and signs a
// client certificate for each case (PEM files in dir); a subject that x509
// cannot parse (invalid UTF-8 in a UTF8String) is returned unparsed in bad.
func hhMint(t *testing.T, dir string, cases []hhCertCase) (caFile string, clients []*hhClient, bad tls.Certificate) {
	t.Helper()
	m := pkMint(t)
	ca := m.ca("hh hostile client CA")
	now := time.Now()
	write := func(name string, der []byte) string {
		return pkWriteFile(t, dir, name, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	}
	caFile = write("ca.pem", ca.Cert.Raw)
	issue := func(i int, subject []hhAVA, sans []hhSAN) (tls.Certificate, []byte) {
		var rdns pkix.RDNSequence
		for _, a := range subject {
			rdns = append(rdns, pkix.RelativeDistinguishedNameSET{{Type: a.oid, Value: asn1.RawValue{Tag: a.tag, Bytes: []byte(a.val)}}})
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(100 + i)), RawSubject: hhMust(asn1.Marshal(rdns)),
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
		if len(sans) > 0 { // written as is: x509's own URIs field re-serializes
			var names []asn1.RawValue
			for _, s := range sans {
				names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: s.tag, Bytes: []byte(s.val)})
			}
			tmpl.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Value: hhMust(asn1.Marshal(names))}}
		}
		cert := m.signRaw(ca, tmpl)
		return cert, cert.Certificate[0]
	}
	for i, c := range cases {
		cert, der := issue(i, c.subject, c.sans)
		leaf := hhMust(x509.ParseCertificate(der))
		clients = append(clients, &hhClient{hhCertCase: c, tls: cert, der: der, leaf: leaf, certFile: write(c.name+".pem", der)})
	}
	bad, _ = issue(len(cases), []hhAVA{{hhCN, 12, "bad \xff\xfe utf-8"}}, nil)
	return caFile, clients, bad
}

// hhOpensslDN is the subject of the certificate in file as `openssl x509
// -nameopt RFC2253` prints it: the oracle for hhCertCase.dn.
func hhOpensslDN(t *testing.T, file string) string {
	t.Helper()
	c := startCommand(t, 20*time.Second, "openssl", "x509", "-in", file, "-noout", "-subject", "-nameopt", "RFC2253")
	if err := c.wait(t, 15*time.Second); err != nil {
		t.Fatalf("openssl x509: %v\n%s", err, c.out.String())
	}
	return strings.TrimSuffix(strings.TrimPrefix(c.out.String(), "subject="), "\n")
}

// hhRawBackend is an HTTP/1.1 server that records every request head
// byte for byte and answers each with 200 "ok".
type hhRawBackend struct {
	ln    net.Listener
	group *connGroup
	mu    sync.Mutex
	heads []string
}

func hhStartRawBackend(t *testing.T) *hhRawBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &hhRawBackend{ln: ln, group: newConnGroup(t, "raw HTTP backend")}
	b.group.serve(ln, b.handle)
	t.Cleanup(b.group.stop)
	return b
}

// handle reads request heads (GET, no body) until the connection ends.
func (b *hhRawBackend) handle(c net.Conn) {
	br := bufio.NewReader(c)
	for {
		var head strings.Builder
		for {
			line, err := br.ReadString('\n')
			head.WriteString(line)
			if err != nil || head.Len() > 4<<20 {
				return
			}
			if line == "\r\n" || line == "\n" {
				break
			}
		}
		b.mu.Lock()
		b.heads = append(b.heads, head.String())
		b.mu.Unlock()
		if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"); err != nil {
			return
		}
	}
}

// headsFor returns the recorded heads whose request line asks for path.
func (b *hhRawBackend) headsFor(path string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, h := range b.heads {
		if strings.HasPrefix(h, "GET "+path+" HTTP/1.1\r\n") {
			out = append(out, h)
		}
	}
	return out
}

// hhBadByte returns the first byte of s that is not printable ASCII, and
// whether there is one.
func hhBadByte(s string) (byte, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f {
			return s[i], true
		}
	}
	return 0, false
}

// hhParseHead checks that every line of a raw request head is printable
// ASCII ending in CRLF and none a header line hidden in a certificate
// (X-Injected, X-Org), and returns its fields.
func hhParseHead(t *testing.T, head string) http.Header {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(head, "\r\n\r\n"), "\r\n")
	h := http.Header{}
	for i, l := range lines {
		if b, bad := hhBadByte(l); bad {
			t.Errorf("request head line %d holds byte 0x%02x: %.200q", i, b, l)
		}
		if name, val, ok := strings.Cut(l, ": "); ok && i > 0 {
			h.Add(name, val)
		}
		if k := strings.ToLower(l); strings.HasPrefix(k, "x-injected") || strings.HasPrefix(k, "x-org") {
			t.Errorf("request head line %d is a header from inside a certificate: %.200q", i, l)
		}
	}
	return h
}

// hhForged are identity headers a client sends to pass as someone else:
// the presets' (removed on every route) and, for the map route, its own
// names (X-Cert-* are application headers elsewhere).
func hhForged(format string) map[string]string {
	f := map[string]string{"X-Forwarded-Client-Cert": `Hash=00;Subject="CN=admin"`, "X-SSL-Client-S-DN": "CN=admin",
		"X_SSL_Client_Verify": "SUCCESS", "Client-Cert": ":YWRtaW4=:", "client-cert-chain": ":YWRtaW4=:"}
	if format == "map" {
		f["X-Cert-Subject"], f["X_Cert_Verify"], f["x-cert-dns"] = "CN=admin", "SUCCESS", "admin.example.com"
	}
	return f
}

// hhDiff lists the lines of dump got that want lacks and the other way
// round (each cut to 300 bytes), "" when they are equal.
func hhDiff(got, want string) (d string) {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for _, l := range g {
		if !slices.Contains(w, l) {
			d += fmt.Sprintf("got  %.300q\n", l)
		}
	}
	for _, l := range w {
		if !slices.Contains(g, l) {
			d += fmt.Sprintf("want %.300q\n", l)
		}
	}
	return d
}

// want is the identity dump (see identityDump) a server must get from
// route format for c.
func (c *hhClient) want(format, host string) string {
	sum := sha256.Sum256(c.der)
	pemURL := urlEncodeUnreserved(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.der})))
	h := http.Header{}
	set := func(name, v string) {
		if v != "" {
			h.Set(name, v)
		}
	}
	h.Set("X-Forwarded-For", "127.0.0.1")
	h.Set("X-Forwarded-Proto", "https")
	h.Set("X-Forwarded-Host", host)
	nb, na := c.leaf.NotBefore.UTC().Format(time.RFC3339), c.leaf.NotAfter.UTC().Format(time.RFC3339)
	switch format {
	case "xfcc":
		h.Set("X-Forwarded-Client-Cert", "Hash="+hex.EncodeToString(sum[:])+`;Cert="`+pemURL+`";Subject="`+c.dn+`"`+c.xfccSAN)
	case "ssl":
		for k, v := range map[string]string{"Verify": "SUCCESS", "S-DN": c.dn, "I-DN": hhIssuer, "Serial": c.leaf.SerialNumber.Text(16),
			"SHA256": hex.EncodeToString(sum[:]), "Not-Before": nb, "Not-After": na, "Cert": pemURL, "SAN-URI": c.uri, "SAN-DNS": c.dns} {
			set("X-SSL-Client-"+k, v)
		}
	case "rfc9440":
		h.Set("Client-Cert", ":"+base64.StdEncoding.EncodeToString(c.der)+":")
	case "map":
		for k, v := range map[string]string{"Subject": c.dn, "Issuer": hhIssuer, "Serial": c.leaf.SerialNumber.Text(16), "Sha256": hex.EncodeToString(sum[:]),
			"Pem": pemURL, "Uri": c.uri, "Dns": c.dns, "Email": c.email, "Not-Before": nb, "Not-After": na, "Verify": "SUCCESS"} {
			set("X-Cert-"+k, v)
		}
	}
	return identityDump(h)
}

// Every hostile certificate, through every identity format, over HTTP/1.1
// and HTTP/2, with forged identity headers in the request: the server gets
// exactly one request, every line of its head printable ASCII, and exactly
// the identity headers the format documents for the certificate (none of
// the forged ones). tlsedge's own JSON log lines of the request and the
// connection are one line each, with the subject in RFC 2253.
// A subject that is not valid UTF-8 (UTF8String) is refused by crypto/x509
// at the handshake: nothing is forwarded. And the PROXY v2 TLVs (hhProxyV2).
func TestHostileCertIdentity(t *testing.T) {
	t.Parallel()
	needTools(t, "openssl")
	p := writeTermFiles(t)
	caFile, clients, bad := hhMint(t, t.TempDir(), hhCases)
	raw := hhStartRawBackend(t)
	formats := map[string]any{"xfcc": "xfcc", "ssl": "ssl", "rfc9440": "rfc9440", "map": identityMap}
	pp := startPPBackend(t, "pp")
	routes := []any{termRoute(p, "pp.example.com", "terminate", "tcp", "pp", "require", nil)}
	for name, id := range formats {
		routes = append(routes, termRoute(p, name+".example.com", "terminate", "http", "raw", "require", id))
	}
	cfg := cfgMap{
		"log":       cfgMap{"level": "info", "format": "json", "access": true, "failure_burst": 0},
		"listeners": []any{cfgMap{"name": "public", "address": "", "routes": routes}},
		"backends": []any{cfgMap{"name": "raw", "servers": servers(raw.ln.Addr().String())},
			cfgMap{"name": "pp", "proxy_protocol": "v2", "servers": servers(pp.Addr())}},
	}
	useTermFiles(t, cfg, p)
	for _, r := range routes {
		r.(cfgMap)["tls"].(cfgMap)["client_ca"] = []any{caFile}
	}
	e := runEdge(t, cfg)

	for _, c := range clients {
		if got := hhOpensslDN(t, c.certFile); got != c.dn {
			t.Errorf("certificate %s: openssl prints the subject %.300q; the test wants %.300q", c.name, got, c.dn)
		}
	}
	n := 0
	t.Run("requests", func(t *testing.T) {
		for _, c := range clients {
			for format := range formats {
				for _, h2 := range []bool{false, true} {
					n++
					path := fmt.Sprintf("/%s/%s/h2=%v", c.name, format, h2)
					t.Run(path[1:], func(t *testing.T) {
						t.Parallel()
						hhIdentityRequest(t, e, raw, c, format, path, h2)
						got := identityDump(hhParseHead(t, raw.headsFor(path)[0]))
						if d := hhDiff(got, c.want(format, format+".example.com")); d != "" {
							t.Errorf("identity headers the server got differ:\n%s", d)
						}
					})
				}
			}
		}
	})
	t.Run("subject not valid UTF-8", func(t *testing.T) {
		// Sent whatever the server's CertificateRequest says (Go's client
		// would not send a certificate it cannot parse).
		client := httpsClient(e.addr, &tls.Config{ServerName: "ssl.example.com", RootCAs: thePKI.serverCA.Pool(),
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &bad, nil }}, false)
		if resp, err := client.Get("https://ssl.example.com/bad-utf8"); err == nil {
			resp.Body.Close()
			t.Errorf("a certificate with invalid UTF-8 in its CN: %s; want the handshake refused", resp.Status)
		}
		l := e.waitLog(t, "the refused handshake", func(l logLine) bool { return l.msg() == "connection" && l.str("level") == "warn" })
		const want = "client tls handshake: tls: failed to parse client certificate: x509: invalid RDNSequence: invalid attribute value: invalid UTF-8 string"
		if l.str("reason") != want || l.str("route") != "ssl.example.com" || l.str("client_cert") != "" {
			t.Errorf("access line %v: want route ssl.example.com, reason %q and no client_cert", l, want)
		}
		if h := raw.headsFor("/bad-utf8"); len(h) != 0 {
			t.Errorf("the server got %d requests; want none", len(h))
		}
	})
	hhProxyV2(t, e, pp, clients)
	raw.mu.Lock()
	defer raw.mu.Unlock()
	if len(raw.heads) != n {
		t.Errorf("the server got %d request heads for the %d requests sent; want one each (no split, no injected request)", len(raw.heads), n)
	}
}

// hhIdentityRequest sends GET path with c's certificate and the forged
// headers to host, checks the answer, that exactly one request reached the
// server, and tlsedge's log lines of the request and of the connection.
func hhIdentityRequest(t *testing.T, e *edgeProc, raw *hhRawBackend, c *hhClient, format, path string, h2 bool) {
	t.Helper()
	host := format + ".example.com"
	client := httpsClient(e.addr, &tls.Config{ServerName: host, RootCAs: thePKI.serverCA.Pool(), Certificates: []tls.Certificate{c.tls}}, h2)
	var local string
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { local = i.Conn.LocalAddr().String() }}
	req, err := http.NewRequest("GET", "https://"+host+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
	for k, v := range hhForged(format) {
		req.Header[k] = []string{v}
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok\n" || (resp.ProtoMajor == 2) != h2 {
		t.Fatalf("GET %s: %s %d %q; want 200 ok (HTTP/2: %v)", path, resp.Proto, resp.StatusCode, body, h2)
	}
	if heads := raw.headsFor(path); len(heads) != 1 {
		t.Fatalf("the server got %d requests for %s; want exactly 1", len(heads), path)
	}
	n := e.accessCount(local)
	client.CloseIdleConnections()
	for what, line := range map[string]logLine{"request": e.requestLine(t, path), "connection": e.nextAccessLine(t, local, n)} {
		if line.str("client_cert") != c.dn {
			t.Errorf("tlsedge's %s line: client_cert %.300q; want %.300q", what, line.str("client_cert"), c.dn)
		}
	}
	// The request's line as written: one line of JSON, printable ASCII.
	var lines []string
	for _, l := range strings.Split(e.stderr.String(), "\n") {
		if strings.Contains(l, `"path":"`+path+`"`) {
			lines = append(lines, l)
		}
	}
	var v map[string]any
	if len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &v) != nil {
		t.Errorf("tlsedge's log holds %d lines for %s; want one JSON line: %.500q", len(lines), path, lines)
	} else if b, bad := hhBadByte(lines[0]); bad {
		t.Errorf("tlsedge's log line for %s holds byte 0x%02x: %.500q", path, b, lines[0])
	}
}

// hhProxyV2 checks, for a terminate tcp route with proxy_protocol v2, that
// the PP2_TYPE_SSL TLV's CN sub-TLV of each hostile certificate is its
// first CN with every control character (C0, DEL, C1) and "%"
// percent-encoded, other text (UTF-8, " , ; + \) kept, that the
// client-certificate sub-TLV is the exact DER, and that the connection's
// log line names the subject in RFC 2253.
func hhProxyV2(t *testing.T, e *edgeProc, pp *ppBackend, clients []*hhClient) {
	for _, c := range clients {
		if c.ppCN == "" {
			continue // the long one does not fit go-proxyproto's 4 KiB header limit
		}
		t.Run("PROXY v2/"+c.name, func(t *testing.T) {
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: waitLong}, "tcp", e.addr,
				&tls.Config{ServerName: "pp.example.com", RootCAs: thePKI.serverCA.Pool(), Certificates: []tls.Certificate{c.tls}})
			if err != nil {
				t.Fatalf("TLS to pp.example.com: %v", err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(waitLong))
			echo := make([]byte, 6)
			if _, err := io.WriteString(conn, "hello\n"); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(conn, echo); err != nil || string(echo) != "hello\n" {
				t.Fatalf("echo: %q, %v", echo, err)
			}
			var seen []ppSeen
			for _, s := range pp.Seen() {
				if s.Header != nil && s.Header.SourceAddr != nil && s.Header.SourceAddr.String() == conn.LocalAddr().String() {
					seen = append(seen, s)
				}
			}
			if len(seen) != 1 || seen[0].Err != "" {
				t.Fatalf("PROXY headers from %s: %+v; want one, read whole", conn.LocalAddr(), seen)
			}
			ssl, ok := tlvparse.FindSSL(seen[0].TLVs)
			if !ok || !ssl.Verified() {
				t.Fatalf("PP2_TYPE_SSL %+v (found %v); want one, verified", ssl, ok)
			}
			cn, _ := ssl.ClientCN()
			for _, r := range cn {
				if r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) {
					t.Errorf("SSL CN holds control character %U: %q", r, cn)
					break
				}
			}
			if cn != c.ppCN {
				t.Errorf("SSL CN %q; want %q", cn, c.ppCN)
			}
			if der, ok := ssl.ClientCert(); !ok || !bytes.Equal(der, c.der) {
				t.Errorf("SSL client certificate: %d bytes (%v); want the exact %d-byte DER", len(der), ok, len(c.der))
			}
			if l := e.closeAndLog(t, conn); l.str("client_cert") != c.dn {
				t.Errorf("access line %v: client_cert %q; want %q", l, l.str("client_cert"), c.dn)
			}
		})
	}
}
