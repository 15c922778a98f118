package tlsmode

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/tlsedge/tlsedge/tlsmode/identity"
	"golang.org/x/net/http/httpguts"
)

// Peer text on the HTTP path after the guard: the Host (or :authority)
// bound to the connection's route, the Connection and Upgrade tokens that
// decide an upgrade, and the header names identity stripping compares.

// fzASCIILower lowercases ASCII letters only.
func fzASCIILower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// fzHostRef is the host a server behind reads from a Host value, by RFC
// 3986's authority grammar as nginx reads it: a bracketed host followed by
// nothing or a port is the text between "[" and "]" (anything else after
// "]" is no authority at all: ""); otherwise the host ends at the first
// ":" (a reg-name holds none), ASCII letters compare lowercase, and one
// trailing dot is dropped.
func fzHostRef(h string) string {
	if strings.HasPrefix(h, "[") {
		i := strings.IndexByte(h, ']')
		if i < 0 {
			return ""
		}
		if rest := h[i+1:]; rest != "" && (rest[0] != ':' || strings.Trim(rest[1:], "0123456789") != "") {
			return ""
		}
		h = h[1:i]
	} else if i := strings.IndexByte(h, ':'); i >= 0 {
		h = h[:i]
	}
	return strings.TrimSuffix(fzASCIILower(h), ".")
}

// fzSNIForm reports whether name is a server name as ReadHello gives it
// (a ClientHello with it as SNI parses to exactly it): a name a route's
// pattern can match.
func fzSNIForm(name string) bool {
	if name == "" || len(name) > 1000 {
		return false
	}
	in := helloDefaultSpec().withExts(helloSNI(name)).hello()
	h, err := ReadHello(bytes.NewReader(in), 0)
	return err == nil && h.ServerName == name
}

// FuzzRequestHost: requestHost puts a Host (HTTP/1, which net/http
// checks with httpguts.ValidHostHeader) or :authority (HTTP/2: any field
// value without "@") in the SNI's normal form, and the route it selects
// must be the one the name a server behind reads selects: whenever that
// name (fzHostRef) is a server name as ReadHello accepts it, requestHost
// gives exactly it or refuses the Host ("": 400), so a Host a server reads
// as strict.example always selects strict.example's route (else 421). Every
// spelling of a host name (any ASCII case, a port, one trailing dot)
// gives the name; the result has no ASCII upper case.
func FuzzRequestHost(f *testing.F) {
	for _, s := range []string{
		"app.example.com", "APP.Example.COM.", "app.example.com:443", "app.example.com.:8443", "[::1]:443", "[app.example.com]",
		"app.example.com:", "app.example.com..", "", ":443", "\u212aey.example", "a_b.example",
		"app.example.com:abc", "1.2.3.4:80", "[fe80::1%25eth0]:443", "app.example.com\t",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		if !httpguts.ValidHeaderFieldValue(h) || strings.Contains(h, "@") {
			return // neither HTTP/1 nor HTTP/2 delivers it
		}
		got := requestHost(h)
		if got != fzASCIILower(got) {
			t.Fatalf("requestHost(%q) = %q: ASCII upper case", h, got)
		}
		if ref := fzHostRef(h); fzSNIForm(ref) && got != ref && got != "" { // "": refused (400)
			t.Fatalf("Host %q: a server reads host %q, but tlsedge routes it as %q", h, ref, got)
		}
		// Spellings of a name a route pattern can name.
		if strings.Trim(h, "abcdefghijklmnopqrstuvwxyz0123456789.-_") == "" && fzSNIForm(h) {
			for _, v := range []string{h, strings.ToUpper(h), h + ".", h + ":443", h + ".:1"} {
				if g := requestHost(v); g != h {
					t.Fatalf("requestHost(%q) = %q; want %q", v, g, h)
				}
			}
		}
	})
}

// fzASCIIFold is net/http's internal ascii.EqualFold, which ReverseProxy
// compares the protocols of an upgrade with: same length, printable ASCII
// only, ASCII case folded.
func fzASCIIFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if a[i] < ' ' || a[i] > '~' || b[i] < ' ' || b[i] > '~' {
			return false
		}
	}
	return fzASCIILower(a) == fzASCIILower(b)
}

// FuzzUpgradeToken: the request headers that decide an upgrade, as lists
// of field lines (split at 0xFF). ReverseProxy switches protocols when
// httpguts finds the token "upgrade" in Connection and then asks the
// server for h.Get("Upgrade"); tlsedge checks its allowlist on
// upgradeType. Properties: whenever ReverseProxy sees an upgrade,
// upgradeType sees the same protocol (the allowlist is never skipped); a
// request upgradeAllowed lets through asks, as ReverseProxy forwards it,
// for a protocol of the allowlist (one field line, one token, ASCII case
// only: no list, no Unicode folding); and the 101 check sameToken never
// matches what ReverseProxy's own check refuses, and agrees with it on
// tokens.
func FuzzUpgradeToken(f *testing.F) {
	for _, s := range [][2]string{
		{"Upgrade", "websocket"}, {"keep-alive, Upgrade", "WebSocket"}, {"upgrade", "h2c"}, {"Upgrade", "websocket, h2c"},
		{"Upgrade", "websocket\xffh2c"}, {"Upgrade\xffclose", " websocket "}, {"upgrade\u00a0", "websocket"}, {"UPGRADE", "\u212aebsocket"},
		{"close", "websocket"}, {"", "websocket"}, {"Upgrade", ""}, {"x, ,upgrade ,", "websocket\t"}, {"Upgrade", "websoc\u212aet"},
	} {
		f.Add(s[0], s[1], "websocket")
	}
	f.Add("Upgrade", "foo/1", "Foo/1")
	f.Fuzz(func(t *testing.T, conn, up, allowed string) {
		h := http.Header{}
		for _, v := range strings.Split(conn, "\xff") {
			if conn != "" {
				h.Add("Connection", strings.Trim(v, " \t")) // net/http trims field values
			}
		}
		for _, v := range strings.Split(up, "\xff") {
			if up != "" {
				h.Add("Upgrade", strings.Trim(v, " \t"))
			}
		}
		for _, vs := range h {
			for _, v := range vs {
				if !httpguts.ValidHeaderFieldValue(v) {
					return // net/http refuses the request
				}
			}
		}
		rp := ""
		if httpguts.HeaderValuesContainsToken(h["Connection"], "Upgrade") {
			rp = h.Get("Upgrade")
		}
		ours := upgradeType(h)
		if rp != "" && ours != rp {
			t.Fatalf("Connection %q, Upgrade %q: ReverseProxy upgrades to %q, tlsedge checks %q", h["Connection"], h["Upgrade"], rp, ours)
		}
		p := &HTTPProxy{upgrades: []string{allowed}}
		if ours != "" && p.upgradeAllowed(h) {
			if !fzASCIIFold(strings.Trim(h.Get("Upgrade"), " \t"), allowed) || len(h["Upgrade"]) != 1 {
				t.Fatalf("Upgrade %q let through for allowlist %q", h["Upgrade"], allowed)
			}
		}
		if sameToken(up, allowed) && !fzASCIIFold(up, allowed) {
			t.Fatalf("sameToken(%q, %q) but ReverseProxy refuses the 101", up, allowed)
		}
		if httpguts.ValidHeaderFieldName(up) && httpguts.ValidHeaderFieldName(allowed) && sameToken(up, allowed) != fzASCIIFold(up, allowed) {
			t.Fatalf("tokens %q, %q: sameToken %v, ReverseProxy's ascii.EqualFold %v", up, allowed, sameToken(up, allowed), fzASCIIFold(up, allowed))
		}
	})
}

// fzNameKey is a header name as CGI, PHP, WSGI and nginx read it: ASCII
// case folded, "_" read as "-".
func fzNameKey(name string) string { return strings.ReplaceAll(fzASCIILower(name), "_", "-") }

// fzStripped reports whether strip removes a header named name.
func fzStripped(strip func(http.Header), name string) bool {
	h := http.Header{name: {"v"}}
	strip(h)
	return len(h) == 0
}

// FuzzStripHeaders: header names are peer text compared by Strip,
// identity.StripForwarded and a StripList. For any name net/http accepts, the
// decision is the same for every spelling a server may read as the same
// header (any ASCII case, "_" for "-" and back); every name of a preset or
// of a header map, and every Forwarded / X-Forwarded-* / X-Real-IP name, is
// removed; framing, routing and credential headers are never removed; a
// StripList removes exactly its names and prefixes.
func FuzzStripHeaders(f *testing.F) {
	for _, s := range []string{
		"X-SSL-Client-S-DN", "x_ssl_client_s_dn", "X-Forwarded-For", "X_FORWARDED_FOR", "Forwarded", "X-Real-IP", "x-real_ip",
		"X-Client-Version", "Host", "Content-Length", "Transfer-Encoding", "Cookie", "X-Forwarded-Client-Cert", "Client-Cert",
		"Client_Cert_Chain", "X-Client-Subject", "X-Amzn-Mtls-Clientcert", "Ssl-Client-Cert", "X-Clientcert-Hint",
		strings.Repeat("X-SSL-", 20), "X-\u212aey",
	} {
		f.Add(s, "X-Site-*")
	}
	mapped := idParse(f, "map")
	f.Fuzz(func(t *testing.T, name, pattern string) {
		if !httpguts.ValidHeaderFieldName(name) {
			return
		}
		key := fzNameKey(name)
		list := identity.NewStripList([]string{pattern})
		strippers := map[string]func(http.Header){
			"Strip":                   (*identity.Headers)(nil).Strip,
			"Strip(map)":              mapped.Strip,
			"identity.StripForwarded": identity.StripForwarded,
			"StripList":               list.Strip,
		}
		for what, strip := range strippers {
			want := fzStripped(strip, name)
			for _, v := range []string{strings.ToUpper(name), fzASCIILower(name), http.CanonicalHeaderKey(name),
				strings.ReplaceAll(name, "_", "-"), strings.ReplaceAll(name, "-", "_"), key} {
				if got := fzStripped(strip, v); got != want {
					t.Fatalf("%s removes %q: %v, but %q: %v", what, name, want, v, got)
				}
			}
		}
		for _, n := range append(identity.HeaderNames(), "X-Client-Subject", "X-Client-Verify", "X-Client-Uri") {
			if key == fzNameKey(n) && (!fzStripped(strippers["Strip"], name) || !fzStripped(strippers["Strip(map)"], name)) {
				t.Fatalf("identity header %q kept", name)
			}
		}
		if (key == "forwarded" || key == "x-real-ip" || strings.HasPrefix(key, "x-forwarded-")) && !fzStripped(identity.StripForwarded, name) {
			t.Fatalf("identity.StripForwarded kept %q", name)
		}
		switch key {
		case "host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer",
			"cookie", "authorization", "content-type", "x-forwarded-for", "forwarded":
			if fzStripped(strippers["Strip"], name) || fzStripped(strippers["Strip(map)"], name) {
				t.Fatalf("Strip removed %q", name)
			}
		}
		pk, prefix := strings.CutSuffix(pattern, "*")
		pk = fzNameKey(pk)
		if want := key == pk || (prefix && strings.HasPrefix(key, pk)); fzStripped(list.Strip, name) != want {
			t.Fatalf("StripList %q on %q: removed %v; want %v", pattern, name, !want, want)
		}
	})
}
