package identity

import (
	"encoding/asn1"
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode/utf16"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Distinguished names for FuzzIdentityHeaders: DER names built from
// fuzzed text with the string type chosen, and an RFC 2253 reader that
// takes the headers' DNs apart as an LDAP client would.

// fzAVA is one attribute of a name: its type's name as a DN prints it and
// its value as text.
type fzAVA struct{ typ, val string }

var fzAttrOIDs = map[string]asn1.ObjectIdentifier{
	"CN": {2, 5, 4, 3}, "O": {2, 5, 4, 10}, "OU": {2, 5, 4, 11},
}

// fzDERString encodes s as an ASN.1 string of the type sel picks and
// returns the text a decoder gets back: UTF8String, PrintableString and
// IA5String carry the bytes as they are, T61String is read as Latin-1,
// BMPString and UniversalString carry s's characters (invalid UTF-8 as
// U+FFFD).
func fzDERString(b *cryptobyte.Builder, sel byte, s string) string {
	switch sel % 6 {
	case 1:
		b.AddASN1(cbasn1.PrintableString, func(b *cryptobyte.Builder) { b.AddBytes([]byte(s)) })
	case 2:
		b.AddASN1(cbasn1.IA5String, func(b *cryptobyte.Builder) { b.AddBytes([]byte(s)) })
	case 3:
		b.AddASN1(cbasn1.T61String, func(b *cryptobyte.Builder) { b.AddBytes([]byte(s)) })
		rs := make([]rune, len(s))
		for i := 0; i < len(s); i++ {
			rs[i] = rune(s[i])
		}
		return string(rs)
	case 4:
		rs := []rune(s)
		b.AddASN1(cbasn1.Tag(30), func(b *cryptobyte.Builder) {
			for _, u := range utf16.Encode(rs) {
				b.AddUint16(u)
			}
		})
		return string(rs)
	case 5:
		rs := []rune(s)
		b.AddASN1(cbasn1.Tag(28), func(b *cryptobyte.Builder) {
			for _, r := range rs {
				b.AddUint32(uint32(r))
			}
		})
		return string(rs)
	default:
		b.AddASN1(cbasn1.UTF8String, func(b *cryptobyte.Builder) { b.AddBytes([]byte(s)) })
	}
	return s
}

// fzName builds a DER Name from RDNs of {type, value, string type} and
// returns it with the RDNs as a DN prints them back (decoded values, each
// RDN's attributes and the RDNs reversed, as OpenSSL prints them).
func fzName(t *testing.T, rdns [][]fzAVA, sels []byte) ([]byte, [][]fzAVA) {
	t.Helper()
	var want [][]fzAVA
	var b cryptobyte.Builder
	i := 0
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, rdn := range rdns {
			var got []fzAVA
			b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
				for _, a := range rdn {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1ObjectIdentifier(fzAttrOIDs[a.typ])
						got = append(got, fzAVA{a.typ, fzDERString(b, sels[i%len(sels)], a.val)})
						i++
					})
				}
			})
			slices.Reverse(got)
			want = append(want, got)
		}
	})
	slices.Reverse(want)
	der, err := b.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return der, want
}

// fzDNSplit splits s at each c that no backslash escapes (RFC 2253: "\"
// and a special character, or "\" and two hex digits).
func fzDNSplit(s string, c byte) []string {
	var parts []string
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case c:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

// fzParseDN reads an RFC 2253 string as an LDAP client would: RDNs split at
// unescaped ",", attributes at unescaped "+", "type=value", values
// unescaped. It refuses what a parser would read otherwise than as a
// string value: a dangling "\", an unescaped leading "#" (hex form) or
// leading or trailing space (stripped by parsers), or an unescaped special
// character inside a value.
func fzParseDN(dn string) ([][]fzAVA, error) {
	if dn == "" {
		return nil, nil
	}
	var out [][]fzAVA
	for _, r := range fzDNSplit(dn, ',') {
		var rdn []fzAVA
		for _, a := range fzDNSplit(r, '+') {
			typ, esc, ok := strings.Cut(a, "=")
			if !ok || typ == "" {
				return nil, fmt.Errorf("attribute %q: no type", a)
			}
			// Walk the value one character or escape at a time.
			for i := 0; i < len(esc); i++ {
				if esc[i] == '\\' {
					i++
					continue
				}
				c := esc[i]
				if (i == 0 && (c == '#' || c == ' ')) || (i == len(esc)-1 && c == ' ') {
					return nil, fmt.Errorf("value %q: a parser would read it otherwise", esc)
				}
				if strings.IndexByte(`,+"\<>;`, c) >= 0 {
					return nil, fmt.Errorf("value %q: unescaped %q", esc, c)
				}
			}
			val, ok := idDNUnescape(esc)
			if !ok {
				return nil, fmt.Errorf("value %q: dangling backslash", esc)
			}
			rdn = append(rdn, fzAVA{typ, val})
		}
		out = append(out, rdn)
	}
	return out, nil
}

// fzCheckDN: a DN header parses back to the name's attributes.
func fzCheckDN(t *testing.T, name, dn string, want [][]fzAVA) {
	t.Helper()
	got, err := fzParseDN(dn)
	if err != nil {
		t.Fatalf("%s: %q: %v", name, dn, err)
	}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("%s: %q parses to %q; want %q", name, dn, got, want)
	}
}
