package identity

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
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tlsedge/tlsedge/internal/idtest"
)

func idParse(tb testing.TB, preset string) *Headers {
	tb.Helper()
	var id *Headers
	var err error
	if preset == "map" {
		id, err = Parse("", idtest.AllFields)
	} else {
		id, err = Parse(preset, nil)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return id
}

// idDump lists h one "Name: value" line per value, sorted, values verbatim
// (http.Header.Write would hide a newline).
func idDump(h http.Header) string {
	var b strings.Builder
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range h {
			if !yield(k) {
				return
			}
		}
	}) {
		for _, v := range h[k] {
			fmt.Fprintf(&b, "%s: %s\n", k, v)
		}
	}
	return b.String()
}

func TestIdentityCertsDeterministic(t *testing.T) {
	a, b := idtest.MakePKI(t), idtest.MakePKI(t)
	for i, pair := range [][2]*x509.Certificate{{a.Root, b.Root}, {a.Inter, b.Inter}, {a.Leaf, b.Leaf}, {a.Tricky, b.Tricky}} {
		if !bytes.Equal(pair[0].Raw, pair[1].Raw) {
			t.Errorf("cert %d differs between two builds: golden files would not be stable", i)
		}
	}
}

// Golden files: every preset and the all-fields map, for a verified
// certificate, a verified one with hostile fields, an unverified one and
// none.
func TestIdentityGolden(t *testing.T) {
	p := idtest.MakePKI(t)
	for _, preset := range []string{"xfcc", "ssl", "rfc9440", "map"} {
		for _, state := range idtest.States {
			name := preset + "-" + state
			t.Run(name, func(t *testing.T) {
				h := http.Header{}
				idParse(t, preset).Set(h, idtest.State(p, state))
				idtest.Golden(t, name, idDump(h), true)
			})
		}
	}
}

func TestIdentityMapFields(t *testing.T) {
	p := idtest.MakePKI(t)
	sum := sha256.Sum256(p.Leaf.Raw)
	tests := []struct{ field, want string }{
		{"subject", `CN=client-1,OU=payments,O=Example\, Inc.,C=US`},
		{"issuer", "CN=tlsedge test intermediate,O=tlsedge"},
		{"serial", "0123456789abcdef"},
		{"sha256", hex.EncodeToString(sum[:])},
		{"chain", ":" + base64.StdEncoding.EncodeToString(p.Inter.Raw) + ":"},
		{"uri", "spiffe://example.org/ns/default/sa/client"},
		{"dns", "client.example.com,alt.example.com"},
		{"email", "client@example.com"},
		{"not_before", "2025-01-01T00:00:00Z"},
		{"not_after", "2099-12-31T23:59:59Z"},
		{"verify", "SUCCESS"},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			id, err := Parse("", map[string]string{"X-Test": tt.field})
			if err != nil {
				t.Fatal(err)
			}
			for _, state := range idtest.States[1:] {
				h := http.Header{}
				id.Set(h, idtest.State(p, state))
				got, ok := h["X-Test"]
				switch {
				case tt.field == "verify":
					want := map[string]string{"tricky": "SUCCESS", "unverified": "FAILED", "nocert": "NONE"}[state]
					if !ok || got[0] != want {
						t.Errorf("%s: got %q; want %q", state, got, want)
					}
				case state != "tricky" && ok:
					t.Errorf("%s: got %q; want no header (only verify is set without a verified certificate)", state, got)
				}
			}
			h := http.Header{}
			id.Set(h, idtest.State(p, "verified"))
			if got := h.Get("X-Test"); got != tt.want {
				t.Errorf("got %q; want %q", got, tt.want)
			}
		})
	}
	// cert: Envoy's URL-encoded PEM decodes back to the leaf.
	id, _ := Parse("", map[string]string{"X-Test": "cert"})
	h := http.Header{}
	id.Set(h, idtest.State(p, "verified"))
	v := h.Get("X-Test")
	if strings.ContainsAny(v, "\n +/=") || !strings.HasPrefix(v, "-----BEGIN%20CERTIFICATE-----%0A") {
		t.Errorf("cert is not URL-encoded PEM: %q", v)
	}
	dec, err := url.PathUnescape(v)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode([]byte(dec))
	if blk == nil || !bytes.Equal(blk.Bytes, p.Leaf.Raw) {
		t.Errorf("cert does not decode to the leaf: %q", v)
	}
}

func TestIdentityPresetsUnverified(t *testing.T) {
	p := idtest.MakePKI(t)
	for _, state := range []string{"unverified", "nocert"} {
		for _, preset := range []string{"xfcc", "rfc9440", "none"} {
			h := http.Header{}
			idParse(t, preset).Set(h, idtest.State(p, state))
			if len(h) != 0 {
				t.Errorf("%s/%s: got %v; want no header", preset, state, h)
			}
		}
		h := http.Header{}
		idParse(t, "ssl").Set(h, idtest.State(p, state))
		want := map[string]string{"unverified": "FAILED", "nocert": "NONE"}[state]
		if len(h) != 1 || h.Get("X-SSL-Client-Verify") != want {
			t.Errorf("ssl/%s: got %v; want only X-SSL-Client-Verify: %s", state, h, want)
		}
	}
	h := http.Header{}
	idParse(t, "ssl").Set(h, nil)
	if len(h) != 1 || h.Get("X-SSL-Client-Verify") != "NONE" {
		t.Errorf("nil state: got %v; want only X-SSL-Client-Verify: NONE", h)
	}
	var nilID *Headers
	h = http.Header{"X-Ssl-Client-S-Dn": {"CN=admin"}}
	nilID.Set(h, idtest.State(p, "verified"))
	if len(h) != 0 {
		t.Errorf("nil Headers: got %v; want the forged header stripped and nothing set", h)
	}
}

func TestIdentityRFC9440(t *testing.T) {
	p := idtest.MakePKI(t)
	h := http.Header{}
	idParse(t, "rfc9440").Set(h, idtest.State(p, "verified"))
	if got, want := h.Get("Client-Cert"), ":"+base64.StdEncoding.EncodeToString(p.Leaf.Raw)+":"; got != want {
		t.Errorf("Client-Cert: got %q; want %q", got, want)
	}
	if got, want := h.Get("Client-Cert-Chain"), ":"+base64.StdEncoding.EncodeToString(p.Inter.Raw)+":"; got != want {
		t.Errorf("Client-Cert-Chain: got %q; want %q", got, want)
	}
	cs := idtest.State(p, "verified")
	cs.PeerCertificates = cs.PeerCertificates[:1]
	h = http.Header{}
	idParse(t, "rfc9440").Set(h, cs)
	if _, ok := h["Client-Cert-Chain"]; ok {
		t.Errorf("Client-Cert-Chain set with no intermediates: %q", h["Client-Cert-Chain"])
	}
	cs.PeerCertificates = []*x509.Certificate{p.Leaf, p.Inter, p.Root}
	h = http.Header{}
	idParse(t, "rfc9440").Set(h, cs)
	want := ":" + base64.StdEncoding.EncodeToString(p.Inter.Raw) + ":, :" + base64.StdEncoding.EncodeToString(p.Root.Raw) + ":"
	if got := h.Get("Client-Cert-Chain"); got != want {
		t.Errorf("Client-Cert-Chain: got %q; want %q (RFC 8941 list)", got, want)
	}
}

// idXFCCParse splits one XFCC element into key/value pairs. A quoted value
// is returned verbatim (escapes included) with quoted set; the closing quote
// is the first one not escaped by a backslash.
func idXFCCParse(t *testing.T, s string) (pairs [][2]string, quoted []bool) {
	t.Helper()
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			t.Fatalf("no '=' in %q", s)
		}
		key := s[:eq]
		s = s[eq+1:]
		var val string
		q := strings.HasPrefix(s, `"`)
		if q {
			i := 1
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' {
					i++
				}
			}
			if i >= len(s) {
				t.Fatalf("unterminated quoted value in %q", s)
			}
			val, s = s[1:i], s[i+1:]
		} else {
			end := strings.IndexAny(s, ";,")
			if end < 0 {
				end = len(s)
			}
			val, s = s[:end], s[end:]
		}
		pairs = append(pairs, [2]string{key, val})
		quoted = append(quoted, q)
		if s != "" {
			if s[0] != ';' {
				t.Fatalf("XFCC element does not continue with ';': %q", s)
			}
			s = s[1:]
		}
	}
	return pairs, quoted
}

func TestIdentityXFCC(t *testing.T) {
	p := idtest.MakePKI(t)
	unquote := strings.NewReplacer(`\\`, `\`, `\"`, `"`)
	for _, tt := range []struct {
		state string
		leaf  *x509.Certificate
		uri   []string
		dns   []string
	}{
		{"verified", p.Leaf, []string{"spiffe://example.org/ns/default/sa/client"}, []string{"client.example.com", "alt.example.com"}},
		{"tricky", p.Tricky, []string{"https://x.example/p;a=b,c"}, []string{"evil.example%0D%0AX-Injected:%201", "a.example,b.example"}},
	} {
		t.Run(tt.state, func(t *testing.T) {
			h := http.Header{}
			idParse(t, "xfcc").Set(h, idtest.State(p, tt.state))
			v := h.Get("X-Forwarded-Client-Cert")
			pairs, quoted := idXFCCParse(t, v)
			for i := range pairs {
				if quoted[i] && pairs[i][0] != "Subject" {
					pairs[i][1] = unquote.Replace(pairs[i][1])
				}
			}
			sum := sha256.Sum256(tt.leaf.Raw)
			want := [][2]string{
				{"Hash", hex.EncodeToString(sum[:])},
				{"Cert", identityURLPEM(tt.leaf.Raw)},
				{"Subject", DN(tt.leaf.RawSubject)}, // verbatim, as Envoy sends it
			}
			for _, u := range tt.uri {
				want = append(want, [2]string{"URI", u})
			}
			for _, d := range tt.dns {
				want = append(want, [2]string{"DNS", d})
			}
			if !slices.Equal(pairs, want) {
				t.Errorf("got %q;\nwant %q\n(header %q)", pairs, want, v)
			}
		})
	}
	if got, want := identityXFCCValue(`a\b"c`), `"a\\b\"c"`; got != want {
		t.Errorf("got %q; want %q", got, want)
	}
	if got := identityXFCCValue("plain.example"); got != "plain.example" {
		t.Errorf("got %q; want it unquoted", got)
	}
}

func TestIdentityInjection(t *testing.T) {
	p := idtest.MakePKI(t)
	presets := []string{"xfcc", "ssl", "rfc9440", "map"}
	for _, preset := range presets {
		t.Run(preset, func(t *testing.T) {
			req, err := http.NewRequest("GET", "http://backend.test/", nil)
			if err != nil {
				t.Fatal(err)
			}
			idParse(t, preset).Set(req.Header, idtest.State(p, "tricky"))
			if len(req.Header) == 0 {
				t.Fatal("nothing set")
			}
			for k, vs := range req.Header {
				for _, v := range vs {
					for i := 0; i < len(v); i++ {
						if v[i] < ' ' || v[i] >= 0x7f {
							t.Errorf("%s: byte 0x%02x at %d in %q", k, v[i], i, v)
						}
					}
				}
			}
			// What the server reads back is exactly what was set.
			var wire bytes.Buffer
			if err := req.Write(&wire); err != nil {
				t.Fatal(err)
			}
			back, err := http.ReadRequest(bufio.NewReader(&wire))
			if err != nil {
				t.Fatal(err)
			}
			if back.Header.Get("X-Injected") != "" {
				t.Errorf("a certificate field injected a header: %q", wire.String())
			}
			for k, vs := range req.Header {
				if !slices.Equal(back.Header[k], vs) {
					t.Errorf("%s: server read %q; want %q", k, back.Header[k], vs)
				}
			}
		})
	}
}

func TestIdentityDNValue(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"Example, Inc.", `Example\, Inc.`},
		{`a+b"c\d<e>f;g`, `a\+b\"c\\d\<e\>f\;g`},
		{"#x#", `\#x#`},
		{" x y ", `\ x y\ `},
		{" ", `\ `},
		{"a=b", "a=b"},
		{"a\r\nX-Injected: 1", `a\0D\0AX-Injected: 1`},
		{"nul\x00tab\tdel\x7f", `nul\00tab\09del\7F`},
		{"é€", `\C3\A9\E2\82\AC`},
		{"", ""},
	}
	for _, tt := range tests {
		if got := identityDNValue(tt.in); got != tt.want {
			t.Errorf("identityDNValue(%q): got %q; want %q", tt.in, got, tt.want)
		}
	}
}

func TestIdentityDN(t *testing.T) {
	raw := func(v any) asn1.RawValue {
		b, err := asn1.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return asn1.RawValue{FullBytes: b}
	}
	str := func(tag int, b []byte) asn1.RawValue { return asn1.RawValue{Tag: tag, Bytes: b} }
	name := func(rdns ...pkix.RelativeDistinguishedNameSET) []byte {
		b, err := asn1.Marshal(rdns)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cn := asn1.ObjectIdentifier{2, 5, 4, 3}
	tests := []struct {
		name string
		der  []byte
		want string
	}{
		{"empty", name(), ""},
		{"reversed", name(
			pkix.RelativeDistinguishedNameSET{{Type: asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}, Value: "org"}},
			pkix.RelativeDistinguishedNameSET{{Type: asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}, Value: "example"}},
			pkix.RelativeDistinguishedNameSET{{Type: asn1.ObjectIdentifier{2, 5, 4, 9}, Value: "1 Main St"}},
			pkix.RelativeDistinguishedNameSET{{Type: cn, Value: "x"}},
		), "CN=x,STREET=1 Main St,DC=example,DC=org"},
		{"multi-valued", name(pkix.RelativeDistinguishedNameSET{
			{Type: asn1.ObjectIdentifier{2, 5, 4, 11}, Value: "Sales"},
			{Type: cn, Value: "J. Smith"},
		}), "CN=J. Smith+OU=Sales"}, // DER sorts the SET (OU first); OpenSSL prints it reversed
		{"bmpstring", name(pkix.RelativeDistinguishedNameSET{{Type: cn, Value: str(30, []byte{0, 'h', 0, 0xe9, 0xd8, 0x3d, 0xde, 0x00})}}), `CN=h\C3\A9\F0\9F\98\80`},
		{"t61string latin-1", name(pkix.RelativeDistinguishedNameSET{{Type: cn, Value: str(20, []byte{'a', 0xe9})}}), `CN=a\C3\A9`},
		{"universalstring", name(pkix.RelativeDistinguishedNameSET{{Type: cn, Value: str(28, []byte{0, 0, 0, 'z'})}}), `CN=z`},
		{"odd bmpstring dumped", name(pkix.RelativeDistinguishedNameSET{{Type: cn, Value: str(30, []byte{0, 'h', 0})}}), `CN=#1E03006800`},
		{"integer value dumped", name(pkix.RelativeDistinguishedNameSET{{Type: cn, Value: raw(7)}}), `CN=#020107`},
		{"unknown type dumped", name(pkix.RelativeDistinguishedNameSET{{Type: asn1.ObjectIdentifier{1, 2, 3, 4}, Value: "a,b"}}), `1.2.3.4=#1303612C62`},
		{"email and serial", name(
			pkix.RelativeDistinguishedNameSET{{Type: asn1.ObjectIdentifier{2, 5, 4, 5}, Value: "42"}},
			pkix.RelativeDistinguishedNameSET{{Type: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}, Value: raw(asn1.RawValue{Tag: asn1.TagIA5String, Bytes: []byte("a@b.c")})}},
		), "emailAddress=a@b.c,serialNumber=42"},
		{"garbage", []byte{0x30, 0x03, 0x31, 0x01, 0x00}, "#3003310100"},
	}
	for _, tt := range tests {
		if got := DN(tt.der); got != tt.want {
			t.Errorf("%s: got %q; want %q", tt.name, got, tt.want)
		}
	}

	p := idtest.MakePKI(t)
	want := `CN=Eve \"the hacker\"\, Jr.\; x=1\0D\0AX-Injected: 1\\,1.3.6.1.4.1.55555.1=#0C0178,` +
		`OU=\ #lead\;trail\ +UID=uid=1,O=\C3\9Cn\C3\AFc\C3\B6d\C3\A9 \+ \<corp\>,C=US`
	if got := DN(p.Tricky.RawSubject); got != want {
		t.Errorf("tricky: got %q; want %q", got, want)
	}
	// For plain ASCII names crypto/x509/pkix agrees.
	for _, c := range []*x509.Certificate{p.Root, p.Inter, p.Leaf} {
		if got, want := DN(c.RawSubject), c.Subject.String(); got != want {
			t.Errorf("got %q; want %q (pkix.Name.String)", got, want)
		}
	}
}

// OpenSSL's -nameopt RFC2253 is what nginx, HAProxy and Envoy print.
func TestIdentityDNMatchesOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("no openssl")
	}
	p := idtest.MakePKI(t)
	for _, c := range []*x509.Certificate{p.Leaf, p.Tricky, p.Inter} {
		path := filepath.Join(t.TempDir(), "c.pem")
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("openssl", "x509", "-in", path, "-noout", "-subject", "-issuer", "-nameopt", "RFC2253").Output()
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
		want := []string{"subject=" + DN(c.RawSubject), "issuer=" + DN(c.RawIssuer)}
		if !slices.Equal(lines, want) {
			t.Errorf("got %q; want %q (openssl)", want, lines)
		}
	}
}

func TestIdentitySerial(t *testing.T) {
	for _, tt := range []struct {
		n    *big.Int
		want string
	}{
		{big.NewInt(0), "00"},
		{big.NewInt(1), "01"},
		{big.NewInt(0xbad), "0bad"},
		{big.NewInt(-255), "-ff"},
		{nil, ""},
	} {
		if got := Serial(tt.n); got != tt.want {
			t.Errorf("Serial(%v): got %q; want %q", tt.n, got, tt.want)
		}
	}
}

func TestIdentitySANEscaping(t *testing.T) {
	p := idtest.MakePKI(t)
	id, err := Parse("", map[string]string{"X-Dns": "dns", "X-Email": "email", "X-Uri": "uri"})
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	id.Set(h, idtest.State(p, "tricky"))
	want := map[string]string{
		"X-Dns":   "evil.example%0D%0AX-Injected:%201,a.example%2Cb.example",
		"X-Email": "eve%0D%0A@example.com",
		"X-Uri":   "https://x.example/p;a=b%2Cc",
	}
	for k, w := range want {
		if got := h.Get(k); got != w {
			t.Errorf("%s: got %q; want %q", k, got, w)
		}
	}
}

func TestIdentityStrip(t *testing.T) {
	forged := func() http.Header {
		h := http.Header{}
		for _, n := range HeaderNames() {
			h[n] = []string{"forged"}
		}
		// Spellings a client can send or a server can confuse: lower case,
		// underscores, not canonicalized.
		h["x-ssl-client-verify"] = []string{"SUCCESS"}
		h["X_SSL_Client_S_DN"] = []string{"CN=admin"}
		h["X-Ssl-Client-S_dn"] = []string{"CN=admin"}
		h["x-forwarded-client-cert"] = []string{"Hash=x"}
		h["CLIENT-CERT"] = []string{":AAAA:"}
		h["X-User"] = []string{"admin"}
		h["x_user"] = []string{"admin"}
		h["X-Other"] = []string{"kept"}
		h["Forwarded"] = []string{"for=1.2.3.4"}
		h["X-Forwarded-For"] = []string{"1.2.3.4"}
		h["X-Forwarded-Proto"] = []string{"https"}
		h["X-Forwarded-Host"] = []string{"a.test"}
		return h
	}
	keptByStrip := []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Other"}
	mapped, err := Parse("", map[string]string{"x-user": "subject"})
	if err != nil {
		t.Fatal(err)
	}
	var nilID *Headers
	for _, tt := range []struct {
		name string
		id   *Headers
		kept []string
	}{
		{"nil", nilID, append([]string{"X-User", "x_user"}, keptByStrip...)},
		{"none", idParse(t, "none"), append([]string{"X-User", "x_user"}, keptByStrip...)},
		{"xfcc", idParse(t, "xfcc"), append([]string{"X-User", "x_user"}, keptByStrip...)},
		{"ssl", idParse(t, "ssl"), append([]string{"X-User", "x_user"}, keptByStrip...)},
		{"map", mapped, keptByStrip},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := forged()
			tt.id.Strip(h)
			got := slices.Sorted(func(yield func(string) bool) {
				for k := range h {
					if !yield(k) {
						return
					}
				}
			})
			want := slices.Sorted(slices.Values(tt.kept))
			if !slices.Equal(got, want) {
				t.Errorf("left %q; want %q", got, want)
			}
		})
	}

	// Rule 14's counter-example: no certificate, forged headers, no Strip call.
	h := forged()
	idParse(t, "ssl").Set(h, nil)
	if got := h["X-Ssl-Client-Verify"]; !slices.Equal(got, []string{"NONE"}) {
		t.Errorf("X-SSL-Client-Verify: got %q; want [NONE]", got)
	}
	for k := range h {
		if strings.Contains(strings.ToLower(strings.ReplaceAll(k, "_", "-")), "ssl-client") && k != "X-Ssl-Client-Verify" {
			t.Errorf("forged %s survived Set", k)
		}
	}
}

func TestIdentityStripFromWire(t *testing.T) {
	raw := "GET / HTTP/1.1\r\nHost: a.test\r\n" +
		"x-ssl-client-verify: SUCCESS\r\nX_SSL_CLIENT_S_DN: CN=admin\r\nx-forwarded-client-cert: Hash=1\r\n" +
		"client-cert: :AAAA:\r\nClient-Cert-Chain: :AAAA:\r\nX-Forwarded-For: 1.2.3.4\r\nx_forwarded_proto: http\r\n" +
		"X-Real-IP: 1.2.3.4\r\nForwarded: for=1.2.3.4\r\nX-Forwarded-Port: 1\r\nX-App: kept\r\n\r\n"
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	idParse(t, "rfc9440").Strip(req.Header)
	StripForwarded(req.Header)
	if len(req.Header) != 1 || req.Header.Get("X-App") != "kept" {
		t.Errorf("got %v; want only X-App", req.Header)
	}
}

func TestIdentityStripForwarded(t *testing.T) {
	h := http.Header{
		"Forwarded": {"for=1.2.3.4"}, "X-Forwarded-For": {"1.2.3.4"}, "X-Forwarded-Proto": {"http"},
		"X-Forwarded-Host": {"a"}, "X-Forwarded-Port": {"80"}, "x_forwarded_for": {"1.2.3.4"},
		"X-Real-Ip": {"1.2.3.4"}, "X-Ssl-Client-Verify": {"SUCCESS"}, "X-App": {"kept"}, "Forwarded-Other": {"kept"},
	}
	StripForwarded(h)
	want := []string{"Forwarded-Other", "X-App", "X-Ssl-Client-Verify"}
	got := slices.Sorted(func(yield func(string) bool) {
		for k := range h {
			if !yield(k) {
				return
			}
		}
	})
	if !slices.Equal(got, want) {
		t.Errorf("left %q; want %q (identity headers are Strip's job)", got, want)
	}
}

func TestIdentityHeaderNames(t *testing.T) {
	want := []string{
		"X-Forwarded-Client-Cert",
		"X-Ssl-Client-Verify", "X-Ssl-Client-S-Dn", "X-Ssl-Client-I-Dn", "X-Ssl-Client-Serial", "X-Ssl-Client-Sha256",
		"X-Ssl-Client-Not-Before", "X-Ssl-Client-Not-After", "X-Ssl-Client-Cert", "X-Ssl-Client-San-Uri", "X-Ssl-Client-San-Dns",
		"Client-Cert", "Client-Cert-Chain",
	}
	got := HeaderNames()
	if !slices.Equal(got, want) {
		t.Errorf("got %q; want %q", got, want)
	}
	got[0] = "changed"
	if HeaderNames()[0] != want[0] {
		t.Error("HeaderNames returns shared state")
	}
}

func TestParseIdentity(t *testing.T) {
	for _, preset := range []string{"", "none", "xfcc", "ssl", "rfc9440"} {
		if _, err := Parse(preset, nil); err != nil {
			t.Errorf("%q: %v", preset, err)
		}
	}
	if _, err := Parse("ssl", map[string]string{}); err != nil {
		t.Errorf("preset with an empty map: %v", err)
	}
	tests := []struct {
		name    string
		preset  string
		headers map[string]string
		want    []string // substrings of the error
	}{
		{"unknown preset", "envoy", nil, []string{`"envoy"`, "xfcc, ssl, rfc9440, none"}},
		{"preset case", "XFCC", nil, []string{`"XFCC"`}},
		{"preset and map", "ssl", map[string]string{"X-A": "subject"}, []string{`"ssl"`, "one or the other"}},
		{"unknown field", "", map[string]string{"X-A": "cn"}, []string{`"X-A"`, `"cn"`, "subject, issuer, serial, sha256, cert, chain, uri, dns, email, not_before, not_after, verify"}},
		{"preset-only field", "", map[string]string{"X-A": "xfcc"}, []string{`"xfcc"`}},
		{"bad name", "", map[string]string{"X A": "subject"}, []string{`"X A"`, "not a valid HTTP header name"}},
		{"empty name", "", map[string]string{"": "subject"}, []string{`""`}},
		{"crlf name", "", map[string]string{"X-A\r\nX-B": "subject"}, []string{"not a valid"}},
		{"host", "", map[string]string{"host": "subject"}, []string{`"host"`, "route or frame"}},
		{"authorization", "", map[string]string{"Authorization": "subject"}, []string{"credentials"}},
		{"x-forwarded-for", "", map[string]string{"X-Forwarded-For": "subject"}, []string{"forwarded headers"}},
		{"x_forwarded_user", "", map[string]string{"X_Forwarded_User": "subject"}, []string{"forwarded headers"}},
		{"duplicate", "", map[string]string{"X-User": "subject", "x_user": "issuer"}, []string{`"X-User"`, `"x_user"`, "same header"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := Parse(tt.preset, tt.headers)
			if err == nil {
				t.Fatalf("got %+v; want an error", id)
			}
			if !errors.Is(err, ErrConfig) {
				t.Errorf("error %v does not wrap ErrConfig", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	if _, err := Parse("", map[string]string{"X-Forwarded-Client-Cert": "subject", "Client-Cert": "cert"}); err != nil {
		t.Errorf("identity header names must be mappable: %v", err)
	}
}

// A real handshake gives the very headers the golden files hold.
func TestIdentityRealHandshake(t *testing.T) {
	x := idtest.NewTLS(t)
	for _, tt := range []struct {
		state    string
		auth     tls.ClientAuthType
		withCert bool
	}{
		{"verified", tls.RequireAndVerifyClientCert, true},
		{"unverified", tls.RequestClientCert, true},
		{"nocert", tls.VerifyClientCertIfGiven, false},
	} {
		t.Run(tt.state, func(t *testing.T) {
			scfg, ccfg := x.Configs(tt.auth, tt.withCert, 0)
			cs := idtest.Handshake(t, scfg, ccfg)
			for _, preset := range []string{"xfcc", "ssl", "rfc9440", "map"} {
				h := http.Header{}
				idParse(t, preset).Set(h, &cs)
				idtest.Golden(t, preset+"-"+tt.state, idDump(h), false)
			}
		})
	}
}

// idDNUnescape undoes RFC 2253 value escaping: \X for a special character,
// \HH for a byte.
func idDNUnescape(s string) (string, bool) {
	isHex := func(c byte) bool { return '0' <= c && c <= '9' || 'A' <= c && c <= 'F' || 'a' <= c && c <= 'f' }
	var b []byte
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b = append(b, s[i])
			continue
		}
		if i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			v, _ := hex.DecodeString(s[i+1 : i+3])
			b = append(b, v[0])
			i += 2
			continue
		}
		if i+1 >= len(s) {
			return "", false
		}
		b = append(b, s[i+1])
		i++
	}
	return string(b), true
}

// Any attribute value comes out printable ASCII, decodes back to itself,
// and keeps an XFCC quoted Subject well framed.
func FuzzIdentityDNValue(f *testing.F) {
	for _, s := range []string{"", " ", "#", "a\\", `"`, "x\r\nY: 1", "é", "\x00", "a,b+c;d<e>f", " #x ", `\"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := identityDNValue(s)
		for i := 0; i < len(got); i++ {
			if got[i] < ' ' || got[i] >= 0x7f {
				t.Fatalf("%q -> %q: byte 0x%02x", s, got, got[i])
			}
		}
		if back, ok := idDNUnescape(got); !ok || back != s {
			t.Fatalf("%q -> %q -> %q", s, got, back)
		}
		quoted := `"CN=` + got + `";URI=x`
		pairs, _ := idXFCCParse(t, "Subject="+quoted)
		if len(pairs) != 2 || pairs[0][1] != "CN="+got || pairs[1] != [2]string{"URI", "x"} {
			t.Fatalf("XFCC framing broken for %q: %q", s, pairs)
		}
	})
}

func TestIdentityStripAllocs(t *testing.T) {
	h := http.Header{
		"Accept": {"*/*"}, "User-Agent": {"x"}, "Content-Type": {"text/plain"}, "Accept-Encoding": {"gzip"},
		"Cookie": {"a=b"}, "Authorization": {"Bearer x"}, "X-Request-Id": {"1"}, "X-Forwarded-For": {"1.2.3.4"},
	}
	id := idParse(t, "map")
	if n := testing.AllocsPerRun(100, func() { id.Strip(h) }); n != 0 {
		t.Errorf("Strip allocates %v times per request; want 0", n)
	}
}

// The identity headers of other proxies and platforms (Strip's families)
// are removed in any case and spelling, with or without an Headers;
// application headers with similar names stay.
func TestIdentityStripForeign(t *testing.T) {
	stripped := []string{
		"X-SSL-Client-DN", "x-ssl-client-cn", "X_SSL_CLIENT_S_DN", "X-Ssl-Cert", "X-SSL-Issuer",
		"Ssl-Client-Cert", "SSL_CLIENT_VERIFY", "ssl_client_s_dn", "ssl_cipher", "ssl_session_id",
		"X-Client-Cert", "X-Client-Cert-Chain-Verified", "X-Client-Cert-Present", "X-Client-Verify", "X-Client-DN",
		"X-Client-S-DN", "X-Client-I-DN", "X-Client-CN", "X-Client-Subject", "X-Client-Issuer-DN", "X-Client-Serial",
		"X-Client-Fingerprint", "X-Client-SAN-URI", "X-Client-SSL-Cipher", "X-Client-TLS-Version",
		"X-TLS-Client-Cert", "x_tls_client_cert",
		"X-Forwarded-Tls-Client-Cert", "X-Forwarded-Tls-Client-Cert-Info",
		"X-Amzn-Mtls-Clientcert", "X-Amzn-Mtls-Clientcert-Leaf", "x-amzn-mtls-clientcert-subject",
		"X-Amzn-Tls-Version", "X-Amzn-Oidc-Data", "X-Amzn-Oidc-Headers",
		"X-ARR-ClientCert", "x_arr_clientcert", "X-ARR-SSL",
		"X-MS-CLIENT-PRINCIPAL", "X-MS-CLIENT-PRINCIPAL-NAME", "X-MS-TOKEN-AAD-ID-TOKEN",
		"Cf-Client-Cert-Der-Base64", "Cf-Client-Cert-Sha256", "Cf-Access-Jwt-Assertion", "Cf-Access-Authenticated-User-Email",
		"X-Goog-Authenticated-User-Email", "X-Goog-Authenticated-User-Id", "X-Goog-IAP-JWT-Assertion",
	}
	kept := []string{
		"X-Client-Version", "X-Client-Id", "X-Client-Platform", "X-Clientcert-Hint", "X-Amzn-Trace-Id",
		"Cf-Ray", "Cf-Access-Client-Id", "X-Ms-Request-Id", "X-Goog-Api-Key", "X-Tlsx", "Sslx",
	}
	for _, id := range []*Headers{nil, idParse(t, "none"), idParse(t, "ssl")} {
		h := http.Header{}
		for _, n := range append(slices.Clone(stripped), kept...) {
			h[n] = []string{"forged"}
		}
		id.Strip(h)
		got := slices.Sorted(maps.Keys(h))
		if want := slices.Sorted(slices.Values(kept)); !slices.Equal(got, want) {
			t.Errorf("left %q; want %q", got, want)
		}
	}
}

// StripList: exact names and "*" prefixes, compared as Strip does.
func TestStripList(t *testing.T) {
	s := NewStripList([]string{"X-Internal-*", "X-Trust_Me", "Remote-User"})
	h := http.Header{
		"X-Internal-Role": {"admin"}, "x_internal_user": {"a"}, "X-Internal": {"kept: not the prefix"},
		"X-Trust-Me": {"1"}, "x_trust_me": {"1"}, "REMOTE_USER": {"admin"}, "Remote-User-Name": {"kept: exact name only"},
		"X-App": {"kept"},
	}
	s.Strip(h)
	got := slices.Sorted(maps.Keys(h))
	if want := []string{"Remote-User-Name", "X-App", "X-Internal"}; !slices.Equal(got, want) {
		t.Errorf("left %q; want %q", got, want)
	}
	var none *StripList
	none.Strip(h) // a nil list removes nothing
	if NewStripList(nil) != nil || len(h) != 3 {
		t.Errorf("an empty list: got %v, %d headers left; want nil and 3", NewStripList(nil), len(h))
	}
	h = http.Header{"Accept": {"*/*"}, "X-Request-Id": {"1"}, "Cookie": {"a=b"}}
	if n := testing.AllocsPerRun(100, func() { s.Strip(h) }); n != 0 {
		t.Errorf("Strip allocates %v times per request; want 0", n)
	}
}

// StripForwarded also removes the client address headers of CDNs.
func TestIdentityStripForwardedCDN(t *testing.T) {
	h := http.Header{
		"True-Client-Ip": {"1.2.3.4"}, "Cf-Connecting-Ip": {"1.2.3.4"}, "cf_connecting_ipv6": {"::1"},
		"Fastly-Client-Ip": {"1.2.3.4"}, "X-Client-Ip": {"1.2.3.4"}, "X-Cluster-Client-Ip": {"1.2.3.4"},
		"X-Azure-Clientip": {"1.2.3.4"}, "X-Original-Forwarded-For": {"1.2.3.4"}, "X-App": {"kept"},
	}
	StripForwarded(h)
	if got := slices.Sorted(maps.Keys(h)); !slices.Equal(got, []string{"X-App"}) {
		t.Errorf("left %q; want [X-App]", got)
	}
}
