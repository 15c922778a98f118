package edge

import (
	"crypto/x509"
	"strings"
	"testing"
)

// fzCertCovers reports whether a certificate for pattern (a name or a
// left-most wildcard) verifies name, by crypto/x509's rules; ok is false
// when name is not a host name x509 applies wildcards to (its
// validHostnameInput: labels of letters, digits, "_" and "-" not first).
func fzCertCovers(pattern, name string) (covers, ok bool) {
	for _, label := range strings.Split(name, ".") {
		if label == "" || strings.HasPrefix(label, "-") || strings.Trim(label, "abcdefghijklmnopqrstuvwxyz0123456789_-") != "" {
			return false, false
		}
	}
	return (&x509.Certificate{DNSNames: []string{pattern}}).VerifyHostname(name) == nil, true
}

// fzSNINormal reports whether name is in ReadHello's normal form: "" (no
// SNI) or printable ASCII without space, lower case, no empty label, no
// trailing dot.
func fzSNINormal(name string) bool {
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c > '~' || ('A' <= c && c <= 'Z') {
			return false
		}
	}
	return name == "" || !strings.HasPrefix(name, ".") && !strings.HasSuffix(name, ".") && !strings.Contains(name, "..")
}

// FuzzTableMatch: the route table matches a client's server name (SNI,
// peer text, ReadHello's normal form) to patterns from the config. For any
// name and any two patterns NormalizePattern accepts (plus the default
// route): a name equal to an exact pattern gets that route; otherwise a
// wildcard route only when the name is one non-empty label more than the
// wildcard's suffix, exactly when a certificate for the wildcard verifies
// the name (crypto/x509) for every name x509 applies wildcards to;
// otherwise the default route.
func FuzzTableMatch(f *testing.F) {
	for _, s := range [][3]string{
		{"api.example.com", "api.example.com", "*.example.com"},
		{"web.example.com", "api.example.com", "*.example.com"},
		{"a.b.example.com", "*.b.example.com", "*.example.com"},
		{"example.com", "*.example.com", "example.com"},
		{"", "*.example.com", "x"},
		{".example.com", "*.example.com", "x"},
		{"a..example.com", "*.example.com", "x"},
		{"a:b.example.com", "*.example.com", "x"},
		{"*.example.com", "*.example.com", "x"},
		{"xn--bcher-kva.example", "*.example", "xn--bcher-kva.example"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, name, p1, p2 string) {
		if !fzSNINormal(name) {
			return // ReadHello never gives it
		}
		tbl := newTable()
		def := &Route{Pattern: "*"}
		tbl.add("*", def)
		routes := map[string]*Route{"*": def}
		for _, p := range []string{p1, p2} {
			n, err := NormalizePattern(p)
			if err != nil || routes[n] != nil {
				continue
			}
			r := &Route{Pattern: n}
			routes[n] = r
			tbl.add(n, r)
		}
		got := tbl.Match(name)
		if got == nil {
			t.Fatalf("Match(%q) = nil with a default route", name)
		}
		if r := routes[name]; r != nil && name != "*" {
			if got != r {
				t.Fatalf("Match(%q) = %q; want the exact pattern", name, got.Pattern)
			}
			return
		}
		var wild *Route
		for p, r := range routes {
			suffix, ok := strings.CutPrefix(p, "*.")
			if !ok {
				continue
			}
			label, ok := strings.CutSuffix(name, "."+suffix)
			if ok && label != "" && !strings.Contains(label, ".") {
				wild = r
			}
			if covers, valid := fzCertCovers(p, name); valid && covers != (ok && label != "" && !strings.Contains(label, ".")) {
				t.Fatalf("%q vs pattern %q: x509 covers %v, tlsedge's wildcard rule says %v", name, p, covers, !covers)
			}
		}
		if wild != nil && got != wild {
			t.Fatalf("Match(%q) = %q; want wildcard %q", name, got.Pattern, wild.Pattern)
		}
		if wild == nil && got != def {
			t.Fatalf("Match(%q) = %q; want the default route", name, got.Pattern)
		}
	})
}
