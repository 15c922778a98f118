package edge

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/tlsedge/tlsedge/tlsmode"
)

// Route is one entry of a listener's route table.
type Route struct {
	Pattern  string // the first SNI pattern, normalized: names the route in logs
	Mode     string
	Backend  string
	Handler  tlsmode.Handler
	Listener string
	Protocol string // tcp | http (what runs inside TLS; passthrough: tcp)

	pool  *Pool       // the backend's pool in the config the route was built with
	obs   *routeObs   // its metric handles; nil without metrics
	authz *routeAuthz // who may use it (terminate, reencrypt); nil for passthrough
}

// RoutePattern implements tlsmode.Route.
func (r *Route) RoutePattern() string { return r.Pattern }

// Table is an immutable route table: it is built whole at load or reload
// and swapped in behind an atomic pointer, so a connection in flight keeps
// the table it was routed with.
type Table struct {
	exact    map[string]*Route // "api.example.com"
	wildcard map[string]*Route // "example.com" for the pattern "*.example.com"
	def      *Route            // "*"
}

// Match returns the route for a normalized server name ("" = no SNI), or nil.
// Most specific first: an exact name, then a wildcard covering exactly the
// left-most label (as in certificates, "*.example.com" matches
// "a.example.com" but not "a.b.example.com" nor "example.com"), then "*".
func (t *Table) Match(name string) *Route {
	if name != "" {
		if r := t.exact[name]; r != nil {
			return r
		}
		if i := strings.IndexByte(name, '.'); i > 0 {
			if r := t.wildcard[name[i+1:]]; r != nil {
				return r
			}
		}
	}
	return t.def
}

// MatchRoute implements tlsmode.RouteMatcher: nil when no route matches.
func (t *Table) MatchRoute(name string) tlsmode.Route {
	if r := t.Match(name); r != nil {
		return r
	}
	return nil
}

func (t *Table) add(pattern string, r *Route) {
	switch {
	case pattern == "*":
		t.def = r
	case strings.HasPrefix(pattern, "*."):
		t.wildcard[pattern[2:]] = r
	default:
		t.exact[pattern] = r
	}
}

func newTable() *Table {
	return &Table{exact: map[string]*Route{}, wildcard: map[string]*Route{}}
}

// NormalizePattern lowercases an SNI pattern and drops one trailing dot. It
// accepts "*", exact host names and left-most wildcards ("*.example.com").
func NormalizePattern(p string) (string, error) {
	n := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(p), "."))
	if n == "*" {
		return n, nil
	}
	host := strings.TrimPrefix(n, "*.")
	if strings.Contains(host, "*") {
		return "", fmt.Errorf("%q: a wildcard may only be the whole left-most label, like *.example.com, or \"*\" alone for the default route", p)
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return "", fmt.Errorf("%q: an IP address is never sent as SNI (RFC 6066); clients connecting by IP reach the \"*\" default route", p)
	}
	if host == "" || len(host) > 253 {
		return "", fmt.Errorf("%q is not a host name", p)
	}
	for _, label := range strings.Split(host, ".") {
		if label == "" || len(label) > 63 {
			return "", fmt.Errorf("%q is not a host name: empty or over-long label", p)
		}
		for _, ch := range label {
			if !(ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_') {
				return "", fmt.Errorf("%q is not a host name: character %q not allowed", p, ch)
			}
		}
	}
	return n, nil
}
