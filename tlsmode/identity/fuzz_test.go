package identity

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
	"golang.org/x/net/http/httpguts"
)

// Identity headers built from certificates whose names come from the
// fuzzer. The certificate is built in memory (crypto/tls hands Set a parsed
// chain; nothing here is signed): DER names with the string type chosen,
// a SAN extension with raw values, and the leaf's DER, serial and dates.

// fzSANs builds a SubjectAltName extension value from entries (first byte
// mod 3: 0 email, 1 DNS, 2 URI; the rest is the value, any bytes) and
// returns the values of each kind in order.
func fzSANs(t *testing.T, entries []string) (ext []byte, email, dns, uri []string) {
	t.Helper()
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, e := range entries {
			if e == "" {
				continue
			}
			v := e[1:]
			tag := []cbasn1.Tag{1, 2, 6}[e[0]%3]
			switch tag {
			case 1:
				email = append(email, v)
			case 2:
				dns = append(dns, v)
			default:
				uri = append(uri, v)
			}
			b.AddASN1(tag.ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(v)) })
		}
	})
	ext, err := b.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return ext, email, dns, uri
}

// fzPercentDecode undoes %HH escapes; false for a bad one.
func fzPercentDecode(s string) (string, bool) {
	v, err := url.PathUnescape(s)
	return v, err == nil
}

// fzCheckValue: a header value is printable ASCII (no CR, LF, NUL, other
// control byte or DEL; no byte above 0x7e either, identitySafe's promise),
// valid for net/http, and starts and ends with no whitespace (a server
// would trim it).
func fzCheckValue(t *testing.T, name, v string) {
	t.Helper()
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			t.Fatalf("%s: byte %#02x at %d in %q", name, v[i], i, v)
		}
	}
	if !httpguts.ValidHeaderFieldValue(v) {
		t.Fatalf("%s: %q is not a valid header value", name, v)
	}
	if v == "" || v != strings.Trim(v, " \t") {
		t.Fatalf("%s: %q is empty or has surrounding whitespace", name, v)
	}
}

// fzCheckSANList checks a comma-separated SAN field: one member per SAN,
// no "," inside one, each member the SAN itself when it holds nothing to
// encode, and decoding back to it when it holds no "%" of its own.
func fzCheckSANList(t *testing.T, name, v string, sans []string, set bool) {
	t.Helper()
	if strings.Join(sans, "") == "" && len(sans) <= 1 {
		if set {
			t.Fatalf("%s set to %q for SANs %q", name, v, sans)
		}
		return
	}
	if !set {
		t.Fatalf("%s not set for SANs %q", name, sans)
	}
	members := strings.Split(v, ",")
	if len(members) != len(sans) {
		t.Fatalf("%s: %d members in %q for %d SANs %q", name, len(members), v, len(sans), sans)
	}
	for i, m := range members {
		fzCheckSAN(t, name, m, sans[i], true)
	}
}

// fzCheckSAN: an encoded SAN is the SAN itself when it holds only printable
// ASCII (no space, and no "," in a list), and percent-decodes to the SAN
// when it holds no "%".
func fzCheckSAN(t *testing.T, name, enc, san string, list bool) {
	t.Helper()
	plain := true
	for i := 0; i < len(san); i++ {
		if c := san[i]; c <= ' ' || c >= 0x7f || (list && c == ',') {
			plain = false
		}
	}
	if plain && enc != san {
		t.Fatalf("%s: SAN %q sent as %q; want it unchanged", name, san, enc)
	}
	if !strings.Contains(san, "%") {
		if back, ok := fzPercentDecode(enc); !ok || back != san {
			t.Fatalf("%s: %q decodes to %q, %v; want SAN %q", name, enc, back, ok, san)
		}
	}
}

// fzSFBytes decodes an RFC 8941 byte sequence ":base64:".
func fzSFBytes(t *testing.T, name, v string) []byte {
	t.Helper()
	inner, ok1 := strings.CutPrefix(v, ":")
	inner, ok2 := strings.CutSuffix(inner, ":")
	if !ok1 || !ok2 {
		t.Fatalf("%s: %q is not an RFC 8941 byte sequence", name, v)
	}
	b, err := base64.StdEncoding.Strict().DecodeString(inner)
	if err != nil {
		t.Fatalf("%s: %q: %v", name, v, err)
	}
	return b
}

// FuzzIdentityHeaders sets every preset's identity headers (xfcc, ssl,
// rfc9440 and a map of every field) from a verified certificate whose CN,
// O, OU (string type chosen, one RDN multi-valued or not), issuer CN, SANs,
// DER, serial and dates come from the fuzzer, and checks: every value is
// one printable-ASCII value net/http accepts, with no surrounding space,
// and a server reading the request gets exactly it; subject and issuer
// parse back (RFC 2253) to the certificate's attributes; SAN lists have one
// member per SAN, and unencoded SANs stay as they are and decode back; the
// serial, SHA-256, PEM, RFC 8941 and date fields decode to the
// certificate's; the ssl preset's values equal the fields'; the XFCC
// element splits into exactly its pairs and its Subject is the DN. A
// subject given as raw bytes (garbage DER) still yields clean values.
func FuzzIdentityHeaders(f *testing.F) {
	f.Add("client-1", "Example, Inc.", "payments", "tlsedge test CA", []byte{0}, false, "\x01client.example.com\xff\x02spiffe://example.org/ns/a\xff\x00client@example.com", []byte{0x01, 0x23}, false, int64(1735689600), []byte("leaf DER"), []byte(nil))
	f.Add("Eve \"the hacker\", Jr.; x=1\r\nX-Injected: 1\\", " #lead;trail ", "uid=1", "a+b", []byte{0, 3, 4, 5}, true,
		"\x01evil.example\r\nX-Injected: 1\xff\x01a.example,b.example\xff\x02https://x.example/p;a=b,c\xff\x00eve\r\n@example.com", []byte{0xff}, true, int64(0), []byte{0x30, 0x82}, []byte(nil))
	f.Add(" ", "#", "\x00\x7f\x85", "é€😀", []byte{4, 5, 3, 1}, false, "\x01 \xff\x01\xff\x02%0D\xff\x02\"q\"\\", []byte{}, false, int64(-62135596800), []byte{}, []byte(nil))
	f.Add("trailing ", "a\\", "<>", "", []byte{2}, true, "\x02\xff\x01x", []byte{0, 0, 1}, true, int64(253402300799), []byte("x"), []byte{0x30, 0x03, 0x31, 0x01, 0x00})
	f.Add("x", "y", "z", "w", []byte{1}, false, "", []byte{7}, false, int64(1), []byte("d"), []byte{0x30, 0x00})

	presets := map[string]*Headers{"xfcc": idParse(f, "xfcc"), "ssl": idParse(f, "ssl"), "rfc9440": idParse(f, "rfc9440"), "map": idParse(f, "map")}
	f.Fuzz(func(t *testing.T, cn, o, ou, issuer string, sels []byte, multi bool, sans string, serial []byte, neg bool, when int64, der, rawSubject []byte) {
		if len(cn)+len(o)+len(ou)+len(issuer)+len(sans)+len(der)+len(rawSubject) > 1<<13 {
			return // longer names only repeat characters
		}
		if len(sels) == 0 {
			sels = []byte{0}
		}
		rdns := [][]fzAVA{{{"O", o}}, {{"OU", ou}}, {{"CN", cn}}}
		if multi {
			rdns = [][]fzAVA{{{"O", o}}, {{"OU", ou}, {"CN", cn}}}
		}
		subject, wantSubject := fzName(t, rdns, sels)
		issuerDER, wantIssuer := fzName(t, [][]fzAVA{{{"CN", issuer}}}, slices.Concat(sels[1:], sels[:1]))
		if len(rawSubject) > 0 {
			subject, wantSubject = rawSubject, nil
		}
		sanExt, emails, dnss, uris := fzSANs(t, strings.Split(sans, "\xff"))
		n := new(big.Int).SetBytes(serial)
		if neg {
			n.Neg(n)
		}
		// x509 reads years 0 to 9999.
		const minT, maxT = -62167219200, 253402300799
		sec := minT + int64(uint64(when)%uint64(maxT-minT+1))
		notBefore := time.Unix(sec, 0).UTC()
		leaf := &x509.Certificate{
			Raw: der, RawSubject: subject, RawIssuer: issuerDER, SerialNumber: n,
			NotBefore: notBefore, NotAfter: notBefore.Add(time.Hour),
			Subject:    pkix.Name{Names: []pkix.AttributeTypeAndValue{{Type: fzAttrOIDs["CN"], Value: cn}}},
			Extensions: []pkix.Extension{{Id: identityOIDSAN, Value: sanExt}},
		}
		inter := &x509.Certificate{Raw: append([]byte("intermediate "), der...)}
		cs := &tls.ConnectionState{
			Version: tls.VersionTLS13, HandshakeComplete: true,
			PeerCertificates: []*x509.Certificate{leaf, inter},
			VerifiedChains:   [][]*x509.Certificate{{leaf, inter}},
		}

		all := http.Header{}
		got := map[string]http.Header{}
		for name, id := range presets {
			h := http.Header{}
			id.Set(h, cs)
			got[name] = h
			for k, vs := range h {
				if len(vs) != 1 {
					t.Fatalf("%s %s: %d values %q", name, k, len(vs), vs)
				}
				fzCheckValue(t, name+" "+k, vs[0])
				all[k] = vs
			}
		}
		// What a server reads is what was set.
		req, err := http.NewRequest("GET", "http://server.test/", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header = all
		var wire bytes.Buffer
		if err := req.Write(&wire); err != nil {
			t.Fatal(err)
		}
		back, err := http.ReadRequest(bufio.NewReader(&wire))
		if err != nil {
			t.Fatalf("server cannot read the request: %v\n%q", err, wire.String())
		}
		for k, vs := range all {
			if !slices.Equal(back.Header[k], vs) {
				t.Fatalf("%s: server read %q; want %q", k, back.Header[k], vs)
			}
		}
		back.Header.Del("User-Agent") // added by Request.Write
		if len(back.Header) != len(all) {
			t.Fatalf("server read headers %q; want %q", back.Header, all)
		}

		m := got["map"]
		if wantSubject != nil {
			fzCheckDN(t, "subject", m.Get("X-Client-Subject"), wantSubject)
		}
		fzCheckDN(t, "issuer", m.Get("X-Client-Issuer"), wantIssuer)
		s := m.Get("X-Client-Serial")
		mag, isNeg := strings.CutPrefix(s, "-")
		v, ok := new(big.Int).SetString(mag, 16)
		if ok && isNeg {
			v.Neg(v)
		}
		if !ok || v.Cmp(n) != 0 || len(mag)%2 != 0 || mag != strings.ToLower(mag) || isNeg != (n.Sign() < 0) {
			t.Fatalf("serial %q does not read back as %v (lowercase hex, two digits a byte)", s, n)
		}
		sum := sha256.Sum256(der)
		if s := m.Get("X-Client-Sha256"); s != hex.EncodeToString(sum[:]) {
			t.Fatalf("sha256 %q", s)
		}
		p, err := url.PathUnescape(m.Get("X-Client-Cert"))
		if err != nil {
			t.Fatalf("cert %q: %v", m.Get("X-Client-Cert"), err)
		}
		if blk, rest := pem.Decode([]byte(p)); blk == nil || blk.Type != "CERTIFICATE" || !bytes.Equal(blk.Bytes, der) || len(rest) != 0 {
			t.Fatalf("cert %q does not decode to the leaf", m.Get("X-Client-Cert"))
		}
		if c := fzSFBytes(t, "chain", m.Get("X-Client-Chain")); !bytes.Equal(c, inter.Raw) {
			t.Fatalf("chain %q", m.Get("X-Client-Chain"))
		}
		for _, f := range []struct {
			name string
			sans []string
		}{{"X-Client-Uri", uris}, {"X-Client-Dns", dnss}, {"X-Client-Email", emails}} {
			_, set := m[f.name]
			fzCheckSANList(t, f.name, m.Get(f.name), f.sans, set)
		}
		for _, f := range []string{"X-Client-Not-Before", "X-Client-Not-After"} {
			tm, err := time.Parse(time.RFC3339, m.Get(f))
			want := notBefore
			if f == "X-Client-Not-After" {
				want = leaf.NotAfter
			}
			if err != nil && want.Year() <= 9999 || err == nil && !tm.Equal(want) {
				t.Fatalf("%s %q: %v; want %v", f, m.Get(f), err, want)
			}
		}
		if v := m.Get("X-Client-Verify"); v != VerifySuccess {
			t.Fatalf("verify %q", v)
		}

		ssl := got["ssl"]
		for sslName, field := range map[string]string{
			"X-Ssl-Client-S-Dn": "X-Client-Subject", "X-Ssl-Client-I-Dn": "X-Client-Issuer", "X-Ssl-Client-Serial": "X-Client-Serial",
			"X-Ssl-Client-Sha256": "X-Client-Sha256", "X-Ssl-Client-Cert": "X-Client-Cert", "X-Ssl-Client-San-Uri": "X-Client-Uri",
			"X-Ssl-Client-San-Dns": "X-Client-Dns", "X-Ssl-Client-Verify": "X-Client-Verify",
			"X-Ssl-Client-Not-Before": "X-Client-Not-Before", "X-Ssl-Client-Not-After": "X-Client-Not-After",
		} {
			if !slices.Equal(ssl[sslName], m[field]) {
				t.Fatalf("%s %q; field %s %q", sslName, ssl[sslName], field, m[field])
			}
		}

		rfc := got["rfc9440"]
		if c := fzSFBytes(t, "Client-Cert", rfc.Get("Client-Cert")); !bytes.Equal(c, der) {
			t.Fatalf("Client-Cert %q", rfc.Get("Client-Cert"))
		}
		if c := fzSFBytes(t, "Client-Cert-Chain", rfc.Get("Client-Cert-Chain")); !bytes.Equal(c, inter.Raw) {
			t.Fatalf("Client-Cert-Chain %q", rfc.Get("Client-Cert-Chain"))
		}

		fzCheckXFCC(t, got["xfcc"].Get("X-Forwarded-Client-Cert"), leaf, wantSubject, uris, dnss)
	})
}

// fzCheckXFCC: the XFCC element is exactly Hash, Cert, Subject (the DN,
// verbatim) and one URI and DNS pair per SAN; quoted values unquote to the
// SAN as identitySAN encodes it outside a list.
func fzCheckXFCC(t *testing.T, v string, leaf *x509.Certificate, wantSubject [][]fzAVA, uris, dnss []string) {
	t.Helper()
	pairs, quoted := idXFCCParse(t, v)
	sum := sha256.Sum256(leaf.Raw)
	want := [][2]string{{"Hash", hex.EncodeToString(sum[:])}, {"Cert", identityURLPEM(leaf.Raw)}, {"Subject", DN(leaf.RawSubject)}}
	for _, u := range uris {
		want = append(want, [2]string{"URI", u})
	}
	for _, d := range dnss {
		want = append(want, [2]string{"DNS", d})
	}
	if len(pairs) != len(want) {
		t.Fatalf("XFCC %q: %d pairs %q; want %d", v, len(pairs), pairs, len(want))
	}
	if !quoted[2] {
		t.Fatalf("XFCC %q: Subject not quoted", v)
	}
	if wantSubject != nil {
		fzCheckDN(t, "XFCC Subject", pairs[2][1], wantSubject)
	}
	unquote := strings.NewReplacer(`\\`, `\`, `\"`, `"`)
	for i, p := range pairs {
		if p[0] != want[i][0] {
			t.Fatalf("XFCC %q: pair %d is %q; want key %q", v, i, p, want[i][0])
		}
		if i < 3 {
			if p[1] != want[i][1] {
				t.Fatalf("XFCC %q: %s=%q; want %q", v, p[0], p[1], want[i][1])
			}
			continue
		}
		val := p[1]
		if quoted[i] {
			val = unquote.Replace(val)
		} else if strings.ContainsAny(val, `,;="\`) {
			t.Fatalf("XFCC %q: %s=%q holds a separator unquoted", v, p[0], val)
		}
		fzCheckSAN(t, "XFCC "+p[0], val, want[i][1], false)
	}
}
