package identity

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"net/http"
	"strings"
	"time"
)

// The identity headers' values: each field of a verified client
// certificate, encoded as its format wants it (RFC 2253 DNs, XFCC, RFC 8941
// byte sequences, percent-encoded SANs).

// Set strips h (see Strip) and then sets these identity headers from the
// connection state. A certificate counts as verified when tlsedge verified
// its chain (cs.VerifiedChains non-empty). When it was not verified, or none
// was presented, or cs is nil, only the verify field is set (FAILED or NONE;
// X-SSL-Client-Verify in the ssl preset) and no other field of an unverified
// certificate ever is; xfcc and rfc9440 set nothing. A header whose value
// would be empty (no URI SAN, no intermediates) is not set.
func (id *Headers) Set(h http.Header, cs *tls.ConnectionState) {
	id.Strip(h)
	id.Values(cs).Apply(h)
}

// Values are formatted identity headers, ready to set on many
// requests (every request of one connection carries the same identity).
// They are shared, never modified.
type Values []identityKV

type identityKV struct {
	name string
	val  []string
}

// Values formats these identity headers for the connection state cs, once.
func (id *Headers) Values(cs *tls.ConnectionState) Values {
	if id == nil || len(id.headers) == 0 {
		return nil
	}
	var out Values
	verify := identityVerify(cs)
	for _, hd := range id.headers {
		var v string
		switch {
		case hd.field == idVerify:
			v = verify
		case verify == VerifySuccess:
			v = identityValue(hd.field, cs)
		}
		if v != "" {
			out = append(out, identityKV{hd.name, []string{identitySafe(v)}})
		}
	}
	return out
}

// Apply sets the headers on h (call Headers.Strip first). The value slices
// are shared with other requests: h must not be modified in place after.
func (vs Values) Apply(h http.Header) {
	for _, kv := range vs {
		h[kv.name] = kv.val
	}
}

// identityVerify is the verify field for cs.
func identityVerify(cs *tls.ConnectionState) string {
	switch {
	case cs == nil || len(cs.PeerCertificates) == 0:
		return VerifyNone
	case len(cs.VerifiedChains) == 0:
		return VerifyFailed
	}
	return VerifySuccess
}

// identityValue formats one field of a verified connection.
func identityValue(f identityField, cs *tls.ConnectionState) string {
	leaf := cs.PeerCertificates[0]
	switch f {
	case idSubject:
		return identityHeaderDN(leaf.RawSubject)
	case idIssuer:
		return identityHeaderDN(leaf.RawIssuer)
	case idSerial:
		return Serial(leaf.SerialNumber)
	case idSHA256:
		sum := sha256.Sum256(leaf.Raw)
		return hex.EncodeToString(sum[:])
	case idCert:
		return identityURLPEM(leaf.Raw)
	case idChain:
		return identitySFList(cs.PeerCertificates[1:])
	case idClientCert:
		return identitySFBytes(leaf.Raw)
	case idURI:
		return identitySANList(SANsOf(leaf).URI)
	case idDNS:
		return identitySANList(SANsOf(leaf).DNS)
	case idEmail:
		return identitySANList(SANsOf(leaf).Email)
	case idNotBefore:
		return leaf.NotBefore.UTC().Format(time.RFC3339)
	case idNotAfter:
		return leaf.NotAfter.UTC().Format(time.RFC3339)
	case idXFCC:
		return identityXFCC(leaf)
	}
	return ""
}

// identityXFCC formats one XFCC element the way Envoy does:
// Hash=<hex sha256 of DER>;Cert="<URL-encoded PEM>";Subject="<RFC 2253>"
// then URI=<san> and DNS=<san> once per SAN (none when there are none;
// Envoy writes an empty URI= there).
//
// Subject is always quoted and, as in Envoy, holds the RFC 2253 string
// verbatim: that string already escapes every " as \" and every \ as \\,
// so the closing quote is the first unescaped " and the text between the
// quotes is the DN, escapes included. Per Envoy's docs a URI or DNS value
// holding , ; = or " is double-quoted with " escaped as \" (and \ as \\,
// so a value ending in \ cannot eat the closing quote; Envoy itself never
// quotes them). Valid host names and URIs hold neither " nor \.
func identityXFCC(leaf *x509.Certificate) string {
	var b strings.Builder
	sum := sha256.Sum256(leaf.Raw)
	b.WriteString("Hash=")
	b.WriteString(hex.EncodeToString(sum[:]))
	b.WriteString(`;Cert="`)
	b.WriteString(identityURLPEM(leaf.Raw))
	b.WriteString(`";Subject="`)
	b.WriteString(DN(leaf.RawSubject))
	b.WriteString(`"`)
	sans := SANsOf(leaf)
	for _, u := range sans.URI {
		b.WriteString(";URI=")
		b.WriteString(identityXFCCValue(identitySAN(u, false)))
	}
	for _, d := range sans.DNS {
		b.WriteString(";DNS=")
		b.WriteString(identityXFCCValue(identitySAN(d, false)))
	}
	return b.String()
}

func identityXFCCValue(v string) string {
	if !strings.ContainsAny(v, `,;="\`) {
		return v
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + `"`
}

// identityPEMEscaper URL-encodes a PEM block exactly as Envoy does for XFCC
// Cert (newline, space, +, / and =); PEM holds no other special character.
var identityPEMEscaper = strings.NewReplacer("\n", "%0A", " ", "%20", "+", "%2B", "/", "%2F", "=", "%3D")

func identityURLPEM(der []byte) string {
	return identityPEMEscaper.Replace(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
}

// identitySFBytes is der as an RFC 8941 byte sequence: ":base64:".
func identitySFBytes(der []byte) string {
	return ":" + base64.StdEncoding.EncodeToString(der) + ":"
}

// identitySFList is an RFC 8941 list of byte sequences (", " between
// members), or "" for none.
func identitySFList(certs []*x509.Certificate) string {
	parts := make([]string, len(certs))
	for i, c := range certs {
		parts[i] = identitySFBytes(c.Raw)
	}
	return strings.Join(parts, ", ")
}

// Serial is the serial number as lowercase hex, two digits per byte
// of its magnitude (as Envoy prints it; "00" for zero, "-" before a
// negative one).
func Serial(n *big.Int) string {
	if n == nil {
		return ""
	}
	s := hex.EncodeToString(new(big.Int).Abs(n).Bytes())
	if s == "" {
		s = "00"
	}
	if n.Sign() < 0 {
		s = "-" + s
	}
	return s
}

func identitySANList(vals []string) string {
	parts := make([]string, len(vals))
	for i, v := range vals {
		parts[i] = identitySAN(v, true)
	}
	return strings.Join(parts, ",")
}

// identitySAN percent-encodes control characters, space, DEL and non-ASCII
// bytes, and "," when the value goes into a comma-separated list.
func identitySAN(s string, list bool) string {
	enc := func(c byte) bool { return c <= ' ' || c >= 0x7f || (list && c == ',') }
	return Percent(s, enc)
}

// identitySafe is the last guard before a value becomes a header: control
// characters and non-ASCII bytes are percent-encoded. Values built above
// never hold any, so this normally returns v unchanged.
func identitySafe(v string) string {
	return Percent(v, func(c byte) bool { return c < ' ' || c >= 0x7f })
}

func Percent(s string, enc func(byte) bool) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if enc(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	const hexDigits = "0123456789ABCDEF"
	b := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if enc(c) {
			b = append(b, '%', hexDigits[c>>4], hexDigits[c&15])
		} else {
			b = append(b, c)
		}
	}
	return string(b)
}
