package tlsmode

import (
	"crypto/sha256"
	"crypto/x509"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tlsedge/tlsedge/internal/idtest"
)

func TestGlobMatch(t *testing.T) {
	for _, tt := range []struct {
		pattern, value string
		kind           GlobKind
		want           bool
	}{
		{"spiffe://partners.test/acme/*", "spiffe://partners.test/acme/app", authzURI, true},
		{"spiffe://partners.test/acme/*", "spiffe://partners.test/globex/app", authzURI, false},
		{"spiffe://partners.test/acme/*", "spiffe://partners.test/acme/app/x", authzURI, false},
		{"spiffe://partners.test/acme/**", "spiffe://partners.test/acme/app/x", authzURI, true},
		{"spiffe://partners.test/acme/*", "spiffe://partners.test/acme/", authzURI, false},
		{"spiffe://partners.test/acme/*", "spiffe://partners.test/acme/..%2fglobex", authzURI, false},
		{"spiffe://partners.test/acme/**", "spiffe://partners.test/acme/../globex/app", authzURI, false},
		{"spiffe://partners.test/acme/**", "spiffe://partners.test/acme/./app", authzURI, false},
		{"spiffe://partners.test/acme/**", "spiffe://partners.test/acme//app", authzURI, false},
		{"spiffe://partners.test/acme/*", "spiffe://partners.test/acme/a\\b", authzURI, false},
		{"spiffe://partners.test/acme/*", "spiffe://partners.test/acme/a?b", authzURI, false},
		{"spiffe://partners.test/acme/*", "spiffe://partners.test/acme/a\x00", authzURI, false},
		{"spiffe://partners.test/acme/app", "spiffe://partners.test/acme/app", authzURI, true},
		{"spiffe://partners.test/acme/app", "spiffe://partners.test/ACME/app", authzURI, false},
		{"*", "spiffe://x/y", authzURI, false}, // "*" stays in one segment
		{"**", "spiffe://x/y", authzURI, true},
		{"*.devices.example", "a1.devices.example", authzDNS, true},
		{"*.devices.example", "A1.Devices.Example", authzDNS, true},
		{"*.devices.example", "a.b.devices.example", authzDNS, false},
		{"*.devices.example", "devices.example", authzDNS, false},
		{"*.devices.example", ".devices.example", authzDNS, false},
		{"device-*", "device-0042", authzCN, true},
		{"device-*", "Device-0042", authzCN, false},
		{"device-*", "device-\r\nX: 1", authzCN, false},
		{"device-*", "device-\xff", authzCN, false},
		{"device-*", "device-" + strings.Repeat("x", 2000), authzCN, false},
		{"*@partner.example", "ops@partner.example", authzEmail, true},
		{"*@partner.example", "ops@evil@partner.example", authzEmail, false},
		{"*@partner.example", "OPS@Partner.Example", authzEmail, true},
		{"a*b*c", "aXbYc", authzCN, true},
		{"a*b*c", "aXbY", authzCN, false},
		{"Zürich *", "Zürich Ops", authzCN, true},
		{"key.example", "\u212aey.example", authzDNS, false}, // KELVIN SIGN is not K
		{"*.example", "\u212aey.example", authzDNS, true},    // one label, whatever its letters
	} {
		if got := GlobMatch(tt.pattern, tt.value, tt.kind); got != tt.want {
			t.Errorf("GlobMatch(%q, %q, %d) = %v, want %v", tt.pattern, tt.value, tt.kind, got, tt.want)
		}
	}
}

func TestClientPatternMatches(t *testing.T) {
	p := idtest.MakePKI(t)
	verified := idtest.State(p, "verified")
	sum := sha256.Sum256(p.Leaf.Raw)
	other := sha256.Sum256(p.Tricky.Raw)
	for _, tt := range []struct {
		name  string
		pat   ClientPattern
		state string
		want  bool
	}{
		{"uri", ClientPattern{URI: "spiffe://example.org/ns/default/sa/*"}, "verified", true},
		{"uri other namespace", ClientPattern{URI: "spiffe://example.org/ns/prod/sa/*"}, "verified", false},
		{"dns (one of two SANs)", ClientPattern{DNS: "alt.example.com"}, "verified", true},
		{"cn", ClientPattern{CN: "client-*"}, "verified", true},
		{"email", ClientPattern{Email: "client@example.com"}, "verified", true},
		{"issuer CA, the root", ClientPattern{IssuerCAs: []*x509.Certificate{p.Root}}, "verified", true},
		{"issuer CA file", ClientPattern{IssuerCAs: []*x509.Certificate{p.Inter}}, "verified", true},
		{"issuer CA that is the leaf", ClientPattern{IssuerCAs: []*x509.Certificate{p.Leaf}}, "verified", false},
		{"pin", ClientPattern{SHA256: [][32]byte{other, sum}}, "verified", true},
		{"pin of another cert", ClientPattern{SHA256: [][32]byte{other}}, "verified", false},
		{"all fields must match", ClientPattern{CN: "client-1", DNS: "nope.example"}, "verified", false},
		{"all fields match", ClientPattern{CN: "client-1", DNS: "*.example.com", SHA256: [][32]byte{sum}}, "verified", true},
		{"empty pattern admits nothing", ClientPattern{}, "verified", false},
		{"unverified chain", ClientPattern{CN: "client-1"}, "unverified", false},
		{"no certificate", ClientPattern{CN: "*"}, "nocert", false},
		{"tricky CN with CR LF never matches a glob", ClientPattern{CN: "Eve*"}, "tricky", false},
		{"tricky DNS with CR LF never matches a glob", ClientPattern{DNS: "*.example\r\nX-Injected: 1"}, "tricky", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cs := verified
			if tt.state != "verified" {
				cs = idtest.State(p, tt.state)
			}
			if got := tt.pat.Matches(cs); got != tt.want {
				t.Fatalf("Matches = %v, want %v", got, tt.want)
			}
			if got := (AllowList{{CN: "nobody"}, tt.pat}).Admits(cs); got != tt.want {
				t.Fatalf("Admits = %v, want %v", got, tt.want)
			}
		})
	}
}

// globRegexp is the reference semantics of GlobMatch for a value that is
// eligible (valid UTF-8, no control bytes, plain URI/DNS): "**" is .*, "*"
// is [^sep]*, the rest literal.
func globRegexp(pattern string, kind GlobKind) *regexp.Regexp {
	sep := map[GlobKind]string{authzURI: "/", authzDNS: ".", authzEmail: "@"}[kind]
	star := ".*"
	if sep != "" {
		star = "[^" + regexp.QuoteMeta(sep) + "]*"
	}
	var b strings.Builder
	b.WriteString("(?s)^")
	if kind == authzDNS || kind == authzEmail {
		pattern = asciiLower(pattern)
	}
	for i := 0; i < len(pattern); i++ {
		switch {
		case strings.HasPrefix(pattern[i:], "**"):
			b.WriteString(".*")
			i++
		case pattern[i] == '*':
			b.WriteString(star)
		default:
			b.WriteString(regexp.QuoteMeta(pattern[i : i+1]))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// FuzzGlobMatch checks GlobMatch against the regexp reference on hostile
// values ("*", "/", "%2f", unicode, NUL ...): never a match the reference
// denies, and on eligible values exactly the reference's answer.
func FuzzGlobMatch(f *testing.F) {
	for _, s := range [][2]string{
		{"spiffe://partners.test/acme/*", "spiffe://partners.test/acme/app"},
		{"spiffe://partners.test/acme/*", "spiffe://partners.test/acme/..%2fglobex"},
		{"spiffe://partners.test/acme/**", "spiffe://partners.test/acme/a/b"},
		{"*.devices.example", "x.devices.example"},
		{"device-*", "device-\x00"},
		{"*", "*"},
		{"a**b*c", "a/x/b/c"},
		{"Zürich*", "Zürich\u202e"},
	} {
		for k := range 4 {
			f.Add(s[0], s[1], uint8(k))
		}
	}
	f.Fuzz(func(t *testing.T, pattern, value string, k uint8) {
		kind := GlobKind(k % 4)
		if len(pattern) > 64 || !utf8.ValidString(pattern) {
			return
		}
		got := GlobMatch(pattern, value, kind)
		if !strings.Contains(pattern, "*") {
			want := pattern == value
			if kind == authzDNS || kind == authzEmail {
				want = asciiLower(pattern) == asciiLower(value)
			}
			if got != want {
				t.Fatalf("exact %q vs %q: got %v", pattern, value, got)
			}
			return
		}
		v := value
		if kind == authzDNS || kind == authzEmail {
			v = asciiLower(v)
		}
		ref := globRegexp(pattern, kind).MatchString(v)
		if got && !ref {
			t.Fatalf("GlobMatch(%q, %q, %d) = true, the reference says false", pattern, value, kind)
		}
		eligible := len(value) <= authzMaxValue && utf8.ValidString(value) && !hasControl(value) &&
			(kind != authzURI || plainURI(value)) && (kind != authzDNS || plainDNS(v))
		if eligible && got != ref {
			t.Fatalf("GlobMatch(%q, %q, %d) = %v, the reference says %v", pattern, value, kind, got, ref)
		}
		if !eligible && got {
			t.Fatalf("GlobMatch(%q, %q, %d) matched an ineligible value", pattern, value, kind)
		}
	})
}
