package tlsmode

// Authorization of HTTP requests by client identity: a route's path rules
// (routes[].authorize) and unauthenticated paths, checked after the
// SNI/Host binding and before any server is contacted.

import (
	"crypto/tls"
	"net/http"
	"strings"
)

// PathRule is one authorize rule: requests whose path starts with one of
// Paths (and whose method is one of Methods, when set) are admitted when
// the client's verified certificate matches Allow (nil: any verified
// certificate).
type PathRule struct {
	Paths   []string
	Methods []string
	Allow   AllowList
}

// HTTPAuthz is the authorization of a protocol http route. The zero value
// (and nil) admits every request.
type HTTPAuthz struct {
	// Identified: a request on a connection without a verified
	// certificate is refused (403) unless its path is Unauthenticated. Set
	// when the route has an allow list or rules.
	Identified bool
	// Rules: the first rule whose paths and methods match decides; a
	// request no rule matches is refused. nil = no path rules.
	Rules []PathRule
	// Unauthenticated paths are served to every client, also those
	// without a certificate (client_auth verify_if_given), e.g. /healthz;
	// no rule applies to them.
	Unauthenticated []string
}

// Check returns "" when a may serve r from a connection with TLS state
// cs, else why not (the 403's reason); status 400 for a path that is not
// in canonical form (dot segments, encoded slashes ...), which a server
// could read as another path than the rules saw.
func (a *HTTPAuthz) Check(r *http.Request, cs *tls.ConnectionState) (status int, reason string) {
	if a == nil || (!a.Identified && a.Rules == nil) {
		return 0, ""
	}
	path := r.URL.Path
	if (a.Rules != nil || a.Unauthenticated != nil) && (r.URL.RawPath != "" || !canonicalPath(path)) {
		return http.StatusBadRequest, "path not in canonical form"
	}
	if pathMatches(a.Unauthenticated, path) {
		return 0, "" // for everyone: a client with a certificate too
	}
	if cs == nil || len(cs.VerifiedChains) == 0 {
		return http.StatusForbidden, "no client certificate"
	}
	if a.Rules == nil {
		return 0, ""
	}
	for i := range a.Rules {
		rule := &a.Rules[i]
		if !pathMatches(rule.Paths, path) {
			if pathMatchesFold(rule.Paths, path) {
				// Servers that ignore case (IIS, Express) would read it as
				// the rule's path: too ambiguous to judge.
				return http.StatusBadRequest, "path differs from an authorize path only in letter case"
			}
			continue
		}
		if rule.Methods != nil && !methodMatches(rule.Methods, r.Method) {
			continue
		}
		if rule.Allow == nil || rule.Allow.Admits(cs) {
			return 0, ""
		}
		return http.StatusForbidden, "client not allowed on " + rule.Paths[0]
	}
	return http.StatusForbidden, "no authorize rule for this path"
}

// pathMatches reports whether path is under one of prefixes: a prefix
// ending in "/" matches any path starting with it; another matches itself
// and what lies under it ("/v1/telemetry" matches "/v1/telemetry/x", not
// "/v1/telemetryX").
func pathMatches(prefixes []string, path string) bool {
	for _, p := range prefixes {
		if path == p || strings.HasPrefix(path, p) && (strings.HasSuffix(p, "/") || path[len(p)] == '/') {
			return true
		}
		if strings.HasSuffix(p, "/") && path == p[:len(p)-1] { // "/admin/" covers "/admin": servers redirect or serve it alike
			return true
		}
	}
	return false
}

// RuleCovers reports whether every request a rule with paths and methods
// matches is matched by an earlier rule with earlierPaths and
// earlierMethods (no methods = every method): the later rule never decides.
func RuleCovers(earlierPaths, earlierMethods, paths, methods []string) bool {
	if len(earlierMethods) > 0 {
		if len(methods) == 0 {
			return false
		}
		for _, m := range methods {
			if !methodMatches(earlierMethods, m) {
				return false
			}
		}
	}
	for _, q := range paths {
		// q matches itself, what lies under it and, ending in "/", itself
		// without the "/": prefix matching is covered when those three are.
		child := q + "/x"
		if strings.HasSuffix(q, "/") {
			child = q + "x"
		}
		if !pathMatches(earlierPaths, q) || !pathMatches(earlierPaths, child) ||
			strings.HasSuffix(q, "/") && len(q) > 1 && !pathMatches(earlierPaths, q[:len(q)-1]) {
			return false
		}
	}
	return true
}

// pathMatchesFold is pathMatches ignoring ASCII letter case.
func pathMatchesFold(prefixes []string, path string) bool {
	lower := make([]string, len(prefixes))
	for i, p := range prefixes {
		lower[i] = asciiLower(p)
	}
	return pathMatches(lower, asciiLower(path))
}

// methodMatches reports whether m is one of methods; GET covers HEAD, as
// servers answer HEAD with their GET handler.
func methodMatches(methods []string, m string) bool {
	for _, x := range methods {
		if x == m || x == http.MethodGet && m == http.MethodHead {
			return true
		}
	}
	return false
}

// canonicalPath reports whether p is an absolute path without empty, "."
// or ".." segments, backslashes, ";" parameters or control bytes: the
// forms servers disagree on (Tomcat's "/..;/", IIS's "\", nginx's
// merge_slashes).
func canonicalPath(p string) bool {
	if p == "" || p[0] != '/' || strings.ContainsAny(p, "\\;") || hasControl(p) {
		return false
	}
	for _, seg := range strings.Split(p[1:], "/") {
		if seg == "." || seg == ".." || strings.HasSuffix(seg, ".") || strings.HasSuffix(seg, " ") {
			return false // IIS trims trailing dots and spaces: "/admin./x" is "/admin/x" there
		}
	}
	return !strings.Contains(p, "//")
}
