package identity

// Certificate names for identity headers: SANs read from the extension as
// the certificate spells them, and distinguished names in RFC 2253 form as
// OpenSSL prints them (-nameopt RFC2253), both escaped so no value can split
// or inject a header.

import (
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"slices"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// SANs are a certificate's DNS, email and URI SANs as it spells them.
type SANs struct{ DNS, Email, URI []string }

var identityOIDSAN = asn1.ObjectIdentifier{2, 5, 29, 17}

// SANsOf returns the DNS, email and URI SANs exactly as the
// certificate spells them, in order. crypto/x509 re-serializes URIs through
// net/url, which can change them, so the extension is read again here; if
// that fails (x509 already parsed it, so it should not) the parsed fields
// are used.
func SANsOf(c *x509.Certificate) SANs {
	var out SANs
	for _, ext := range c.Extensions {
		if !ext.Id.Equal(identityOIDSAN) {
			continue
		}
		in := cryptobyte.String(ext.Value)
		var seq cryptobyte.String
		if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
			break
		}
		ok := true
		for ok && !seq.Empty() {
			var v cryptobyte.String
			var tag cbasn1.Tag
			if !seq.ReadAnyASN1(&v, &tag) {
				ok = false
				break
			}
			switch tag {
			case cbasn1.Tag(1).ContextSpecific():
				out.Email = append(out.Email, string(v))
			case cbasn1.Tag(2).ContextSpecific():
				out.DNS = append(out.DNS, string(v))
			case cbasn1.Tag(6).ContextSpecific():
				out.URI = append(out.URI, string(v))
			}
		}
		if ok {
			return out
		}
		break
	}
	out = SANs{DNS: c.DNSNames, Email: c.EmailAddresses}
	for _, u := range c.URIs {
		out.URI = append(out.URI, u.String())
	}
	return out
}

// identityDNNames are the attribute type names used in DNs: RFC 2253's table
// (§2.3), then OpenSSL's short names for other types from published LDAP
// schemas and PKCS #9 emailAddress, as nginx, HAProxy and Envoy print them.
var identityDNNames = map[string]string{
	"2.5.4.3":                    "CN",
	"2.5.4.7":                    "L",
	"2.5.4.8":                    "ST",
	"2.5.4.10":                   "O",
	"2.5.4.11":                   "OU",
	"2.5.4.6":                    "C",
	"2.5.4.9":                    "STREET",
	"0.9.2342.19200300.100.1.25": "DC",
	"0.9.2342.19200300.100.1.1":  "UID",
	"2.5.4.5":                    "serialNumber",
	"2.5.4.17":                   "postalCode",
	"2.5.4.12":                   "title",
	"2.5.4.4":                    "SN",
	"2.5.4.42":                   "GN",
	"2.5.4.43":                   "initials",
	"2.5.4.44":                   "generationQualifier",
	"2.5.4.46":                   "dnQualifier",
	"2.5.4.65":                   "pseudonym",
	"2.5.4.15":                   "businessCategory",
	"1.2.840.113549.1.9.1":       "emailAddress",
}

// DN formats a DER Name (x509.Certificate.RawSubject / RawIssuer) as
// an RFC 2253 string; see the top of this file. A Name that does not parse
// (crypto/x509 already parsed it, so it should not happen) is "#" and the
// hex of its DER.
func DN(raw []byte) string {
	in := cryptobyte.String(raw)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return "#" + strings.ToUpper(hex.EncodeToString(raw))
	}
	var rdns []string
	for !seq.Empty() {
		var set cryptobyte.String
		if !seq.ReadASN1(&set, cbasn1.SET) {
			return "#" + strings.ToUpper(hex.EncodeToString(raw))
		}
		var avas []string
		for !set.Empty() {
			var ava cryptobyte.String
			var oid asn1.ObjectIdentifier
			var elem cryptobyte.String
			if !set.ReadASN1(&ava, cbasn1.SEQUENCE) || !ava.ReadASN1ObjectIdentifier(&oid) ||
				!ava.ReadAnyASN1Element(&elem, nil) || !ava.Empty() {
				return "#" + strings.ToUpper(hex.EncodeToString(raw))
			}
			avas = append(avas, identityAVA(oid, elem))
		}
		slices.Reverse(avas) // OpenSSL reverses the attributes of a multi-valued RDN too
		rdns = append(rdns, strings.Join(avas, "+"))
	}
	slices.Reverse(rdns)
	return strings.Join(rdns, ",")
}

// identityHeaderDN is DN for an unquoted header value: a DN ending
// in an escaped space ("\ ") would end the header in a space, which HTTP
// trims (RFC 9110 §5.5), leaving a stray backslash; RFC 2253's hex form
// "\20" says the same and survives.
func identityHeaderDN(raw []byte) string {
	dn := DN(raw)
	if strings.HasSuffix(dn, `\ `) {
		dn = dn[:len(dn)-1] + "20"
	}
	return dn
}

// identityAVA formats one attribute type and value.
func identityAVA(oid asn1.ObjectIdentifier, elem cryptobyte.String) string {
	name, known := identityDNNames[oid.String()]
	if known {
		if s, ok := identityASN1String(elem); ok {
			return name + "=" + identityDNValue(s)
		}
	} else {
		name = oid.String()
	}
	return name + "=#" + strings.ToUpper(hex.EncodeToString(elem))
}

// identityASN1String decodes a DER string value to UTF-8 (T61String read as
// Latin-1, as crypto/x509 and OpenSSL do).
func identityASN1String(elem cryptobyte.String) (string, bool) {
	var v cryptobyte.String
	var tag cbasn1.Tag
	if !elem.ReadAnyASN1(&v, &tag) {
		return "", false
	}
	switch tag {
	case cbasn1.UTF8String, cbasn1.PrintableString, cbasn1.IA5String,
		cbasn1.Tag(18), // NumericString
		cbasn1.Tag(26): // VisibleString
		return string(v), true
	case cbasn1.T61String:
		rs := make([]rune, len(v))
		for i, c := range v {
			rs[i] = rune(c)
		}
		return string(rs), true
	case cbasn1.Tag(30): // BMPString, UCS-2 big-endian
		if len(v)%2 != 0 {
			return "", false
		}
		u := make([]uint16, len(v)/2)
		for i := range u {
			u[i] = uint16(v[2*i])<<8 | uint16(v[2*i+1])
		}
		return string(utf16.Decode(u)), true
	case cbasn1.Tag(28): // UniversalString, UCS-4 big-endian
		if len(v)%4 != 0 {
			return "", false
		}
		var b []byte
		for i := 0; i < len(v); i += 4 {
			r := rune(v[i])<<24 | rune(v[i+1])<<16 | rune(v[i+2])<<8 | rune(v[i+3])
			b = utf8.AppendRune(b, r)
		}
		return string(b), true
	}
	return "", false
}

// identityDNValue escapes an attribute value per RFC 2253 §2.4, plus
// control characters and non-ASCII bytes as \HH (OpenSSL's ESC_CTRL and
// ESC_MSB).
func identityDNValue(s string) string {
	const hexDigits = "0123456789ABCDEF"
	b := make([]byte, 0, len(s)+8)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case strings.IndexByte(`,+"\<>;`, c) >= 0,
			c == '#' && i == 0,
			c == ' ' && (i == 0 || i == len(s)-1):
			b = append(b, '\\', c)
		case c < ' ' || c >= 0x7f:
			b = append(b, '\\', hexDigits[c>>4], hexDigits[c&15])
		default:
			b = append(b, c)
		}
	}
	return string(b)
}
