package tlsmode

// Authorization by client identity: the patterns of a route's allow list
// (routes[].allow, routes[].authorize[].allow) and their matching against a
// verified client certificate.

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"strings"
	"unicode/utf8"

	"github.com/tlsedge/tlsedge/tlsmode/identity"
)

// ClientPattern is one entry of an allow list: it admits a verified client
// certificate when every field it sets matches (an entry with no field set
// admits nothing). URI, DNS, CN and Email are globs (see GlobMatch; DNS
// and Email compare ASCII letters case-insensitively); a
// certificate matches when one of its SANs of that kind does.
type ClientPattern struct {
	URI   string
	DNS   string
	CN    string
	Email string
	// IssuerCAs admit a chain that went through one of these CA
	// certificates (same public key and subject). A subject name alone
	// is never enough: another trusted CA could issue a CA of that name.
	IssuerCAs []*x509.Certificate
	// SHA256 pins: the leaf certificate's DER hash is one of these.
	SHA256 [][32]byte
}

// Empty reports whether p sets no field.
func (p *ClientPattern) Empty() bool {
	return p.URI == "" && p.DNS == "" && p.CN == "" && p.Email == "" &&
		len(p.IssuerCAs) == 0 && len(p.SHA256) == 0
}

// Matches reports whether the verified connection cs satisfies every field
// of p. A connection without a verified chain matches nothing.
func (p *ClientPattern) Matches(cs *tls.ConnectionState) bool {
	if cs == nil || len(cs.PeerCertificates) == 0 || len(cs.VerifiedChains) == 0 || p.Empty() {
		return false
	}
	leaf := cs.PeerCertificates[0]
	if p.URI != "" && !anyMatch(p.URI, authzURIs(leaf), authzURI) {
		return false
	}
	if p.DNS != "" && !anyMatch(p.DNS, leaf.DNSNames, authzDNS) {
		return false
	}
	if p.Email != "" && !anyMatch(p.Email, leaf.EmailAddresses, authzEmail) {
		return false
	}
	if p.CN != "" && !GlobMatch(p.CN, leaf.Subject.CommonName, authzCN) {
		return false
	}
	if len(p.IssuerCAs) > 0 && !chainHas(cs.VerifiedChains, func(c *x509.Certificate) bool {
		for _, ca := range p.IssuerCAs {
			if string(c.RawSubject) == string(ca.RawSubject) && string(c.RawSubjectPublicKeyInfo) == string(ca.RawSubjectPublicKeyInfo) {
				return true
			}
		}
		return false
	}) {
		return false
	}
	if len(p.SHA256) > 0 {
		sum := sha256.Sum256(leaf.Raw)
		pinned := false
		for _, h := range p.SHA256 {
			pinned = pinned || h == sum
		}
		if !pinned {
			return false
		}
	}
	return true
}

// AllowList admits a connection when any of its patterns matches.
type AllowList []ClientPattern

// Admits reports whether one of l's patterns matches cs.
func (l AllowList) Admits(cs *tls.ConnectionState) bool {
	for i := range l {
		if l[i].Matches(cs) {
			return true
		}
	}
	return false
}

// chainHas reports whether a CA certificate (any but the leaf) of one of
// the verified chains satisfies f.
func chainHas(chains [][]*x509.Certificate, f func(*x509.Certificate) bool) bool {
	for _, chain := range chains {
		for _, c := range chain[min(1, len(chain)):] {
			if f(c) {
				return true
			}
		}
	}
	return false
}

func authzURIs(c *x509.Certificate) []string {
	out := make([]string, 0, len(c.URIs))
	for _, u := range c.URIs {
		out = append(out, u.String())
	}
	return out
}

func anyMatch(pattern string, values []string, kind GlobKind) bool {
	for _, v := range values {
		if GlobMatch(pattern, v, kind) {
			return true
		}
	}
	return false
}

// GlobKind says how a glob treats its value.
type GlobKind uint8

const (
	authzCN    GlobKind = iota // "*" matches any run of characters
	authzURI                   // "*" stays inside one path segment, "**" crosses "/"
	authzDNS                   // "*" stays inside one label; case-insensitive
	authzEmail                 // "*" does not cross "@"; case-insensitive
)

// GlobKinds by the names a config uses.
var GlobKinds = map[string]GlobKind{"cn": authzCN, "uri": authzURI, "dns": authzDNS, "email": authzEmail}

// authzMaxValue bounds the values a glob is matched against: longer ones
// match nothing (matching is O(len(pattern) × len(value))).
const authzMaxValue = 1024

// GlobMatch reports whether value matches pattern. A pattern without "*"
// is an exact comparison. A value that is not valid UTF-8, holds a control
// byte, or is longer than 1 KiB matches no glob; nor does a DNS name with an
// empty label; a URI value matches a glob
// only in its plain form (no percent-encoding, no "\", no "?" or "#", no
// empty, "." or ".." path segment), so an encoded "/" cannot slip a value
// past a "*" that must stay inside one segment.
func GlobMatch(pattern, value string, kind GlobKind) bool {
	if kind == authzDNS || kind == authzEmail {
		pattern, value = asciiLower(pattern), asciiLower(value)
	}
	if !strings.Contains(pattern, "*") {
		return pattern == value
	}
	if len(value) > authzMaxValue || !utf8.ValidString(value) || hasControl(value) {
		return false
	}
	if kind == authzURI && !plainURI(value) || kind == authzDNS && !plainDNS(value) {
		return false
	}
	var sep byte
	switch kind {
	case authzURI:
		sep = '/'
	case authzDNS:
		sep = '.'
	case authzEmail:
		sep = '@'
	}
	return globDP(pattern, value, sep)
}

// globDP matches by dynamic programming over (pattern, value) positions:
// "**" matches any run, "*" any run without sep (sep 0: any run).
func globDP(p, v string, sep byte) bool {
	// cur[j]: p[:i] matches v[:j].
	cur := make([]bool, len(v)+1)
	next := make([]bool, len(v)+1)
	cur[0] = true
	for i := 0; i < len(p); {
		star, width := 0, 1
		if p[i] == '*' {
			star = 1
			if i+1 < len(p) && p[i+1] == '*' {
				star, width = 2, 2
			}
		}
		clear(next)
		for j := 0; j <= len(v); j++ {
			switch {
			case star > 0:
				// next[j] = cur[j] || (next[j-1] && v[j-1] may be eaten)
				next[j] = cur[j] || (j > 0 && next[j-1] && (star == 2 || sep == 0 || v[j-1] != sep))
			case j < len(v) && cur[j] && p[i] == v[j]:
				next[j+1] = true
			}
		}
		cur, next = next, cur
		i += width
	}
	return cur[len(v)]
}

// asciiLower lowers ASCII letters only: Unicode case mapping would let a
// SAN such as "\u212aey.example" (KELVIN SIGN) pass for "key.example".
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// plainDNS reports whether d has no empty label.
func plainDNS(d string) bool {
	return d != "" && !strings.HasPrefix(d, ".") && !strings.HasSuffix(d, ".") && !strings.Contains(d, "..")
}

// plainURI reports whether u has no percent-encoding, backslash, query,
// fragment, or empty, "." or ".." path segment after its authority.
func plainURI(u string) bool {
	if strings.ContainsAny(u, "%\\?#") {
		return false
	}
	rest := u
	if i := strings.Index(rest, "://"); i >= 0 {
		rest = rest[i+3:]
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			rest = rest[j:]
		} else {
			return true
		}
	}
	segs := strings.Split(rest, "/")
	for k, s := range segs {
		if k == 0 && s == "" { // the leading "/"
			continue
		}
		if s == "" || s == "." || s == ".." {
			return false
		}
	}
	return true
}

// SubjectDN is c's subject as `openssl x509 -noout -subject -nameopt
// RFC2253` prints it (the form the identity headers use).
func SubjectDN(c *x509.Certificate) string { return identity.DN(c.RawSubject) }
