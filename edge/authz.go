package edge

// Authorization by client identity: validating and building a route's
// allow list, path rules and unauthenticated paths.

import (
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/tlsedge/tlsedge/tlsmode"
)

// hasAuthz reports whether the route sets any authorization key.
func (r *RouteConfig) hasAuthz() bool {
	return r.Allow != nil || r.Authorize != nil || r.AllowUnauthenticatedPaths != nil
}

// validateRouteAuthz checks a route's allow, authorize and
// allow_unauthenticated_paths.
func validateRouteAuthz(c *Config, ps *Problems, rp string, r *RouteConfig) {
	validateClientLimits(ps, rp, r)
	if r.ReauthorizeOnReload != nil && r.Mode == "passthrough" {
		ps.Add(rp+".reauthorize_on_reload", "passthrough never sees the client certificate, so there is nothing to check again: remove it")
	}
	if !r.hasAuthz() {
		return
	}
	if r.Mode == "passthrough" {
		ps.Add(rp, "allow, authorize and allow_unauthenticated_paths need the client's identity, which passthrough never sees (the servers verify it): use mode terminate or reencrypt, or remove them")
		return
	}
	if r.TLS.ClientAuth != "require" && r.TLS.ClientAuth != "verify_if_given" {
		ps.Add(rp+".tls.client_auth", "allow and authorize match verified client certificates: set client_auth: require (or verify_if_given) with client_ca")
	}
	if r.Allow != nil && len(r.Allow) == 0 {
		ps.Add(rp+".allow", "an empty list admits no one: list identity patterns, or remove allow to admit every verified certificate")
	}
	_, routeCAs, _ := c.caPool(r.TLS.ClientCA) // its errors are client_ca's
	for i := range r.Allow {
		validatePattern(c, ps, fmt.Sprintf("%s.allow[%d]", rp, i), &r.Allow[i], routeCAs)
	}
	if !r.isHTTP() {
		if r.Authorize != nil || r.AllowUnauthenticatedPaths != nil {
			ps.Add(rp, "authorize and allow_unauthenticated_paths apply to requests: use protocol http, or only allow")
		}
		return
	}
	if r.Authorize != nil && len(r.Authorize) == 0 {
		ps.Add(rp+".authorize", "an empty list refuses every request: list rules, or remove authorize")
	}
	for i, rule := range r.Authorize {
		p := fmt.Sprintf("%s.authorize[%d]", rp, i)
		if len(rule.Paths) == 0 {
			ps.Add(p+".paths", "missing: list the path prefixes this rule decides, e.g. [/v1/telemetry]")
		}
		for j, path := range rule.Paths {
			validatePath(ps, fmt.Sprintf("%s.paths[%d]", p, j), path)
		}
		for j, m := range rule.Methods {
			if m == "" || strings.ToUpper(m) != m || strings.ContainsAny(m, " \t/") {
				ps.Add(fmt.Sprintf("%s.methods[%d]", p, j), "%q is not a method: write it upper case, e.g. GET", m)
			}
		}
		if rule.Allow != nil && len(rule.Allow) == 0 {
			ps.Add(p+".allow", "an empty list admits no one: list identity patterns, or remove allow to admit every verified certificate")
		}
		for j := range rule.Allow {
			validatePattern(c, ps, fmt.Sprintf("%s.allow[%d]", p, j), &rule.Allow[j], routeCAs)
		}
	}
	for i, rule := range r.Authorize {
		for j := range i {
			if tlsmode.RuleCovers(r.Authorize[j].Paths, r.Authorize[j].Methods, rule.Paths, rule.Methods) {
				ps.Add(fmt.Sprintf("%s.authorize[%d]", rp, i), "never decides: authorize[%d] (paths %v, methods %v) matches every request it would, and the first rule that matches decides; move it before, or remove it", j, r.Authorize[j].Paths, orAll(r.Authorize[j].Methods))
				break
			}
		}
	}
	if r.AllowUnauthenticatedPaths != nil && r.TLS.ClientAuth != "verify_if_given" {
		ps.Add(rp+".allow_unauthenticated_paths", "only clients without a certificate use these paths, and client_auth %q admits none: set client_auth: verify_if_given, or remove the key", r.TLS.ClientAuth)
	}
	for j, path := range r.AllowUnauthenticatedPaths {
		validatePath(ps, fmt.Sprintf("%s.allow_unauthenticated_paths[%d]", rp, j), path)
	}
}

// orAll shows a rule's methods, "all" for none.
func orAll(methods []string) any {
	if len(methods) == 0 {
		return "all"
	}
	return methods
}

func validatePath(ps *Problems, p, path string) {
	if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, "?#%\\;*") || strings.Contains(path, "//") ||
		strings.Contains(path+"/", "/./") || strings.Contains(path+"/", "/../") {
		ps.Add(p, "%q is not a path prefix: write a plain absolute path such as /v1/telemetry (no query, encoding, globs or dot segments)", path)
	}
}

func validatePattern(c *Config, ps *Problems, p string, e *ClientPatternConfig, routeCAs []*x509.Certificate) {
	if e.URI == "" && e.DNS == "" && e.CN == "" && e.Email == "" && e.Issuer == "" && e.SHA256 == nil {
		ps.Add(p, "an empty entry admits no one: set uri, dns, cn, email, issuer or sha256")
	}
	for _, g := range []struct{ key, v string }{{"uri", e.URI}, {"dns", e.DNS}, {"cn", e.CN}, {"email", e.Email}} {
		if strings.ContainsFunc(g.v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			ps.Add(p+"."+g.key, "contains a control character")
		}
		if strings.Contains(g.v, "***") {
			ps.Add(p+"."+g.key, "%q: use * (within a segment or label) or ** (across / in a URI)", g.v)
		}
	}
	if e.URI != "" && !strings.Contains(e.URI, ":") {
		ps.Add(p+".uri", "%q can never match: a URI SAN always has a scheme, e.g. spiffe://example.org/app/*", e.URI)
	}
	if e.Email != "" && !strings.Contains(e.Email, "@") {
		ps.Add(p+".email", "%q can never match: an email SAN always has an @, e.g. *@example.org", e.Email)
	}
	if strings.ContainsAny(e.DNS, "/:@ ") {
		ps.Add(p+".dns", "%q can never match: a DNS SAN is a host name, e.g. *.devices.example.org", e.DNS)
	}
	if strings.Contains(e.DNS, "**") || strings.Contains(e.CN, "**") || strings.Contains(e.Email, "**") {
		ps.Add(p, "** (across /) is for uri patterns only")
	}
	for j, h := range e.SHA256 {
		if _, err := parsePin(h); err != nil {
			ps.Add(fmt.Sprintf("%s.sha256[%d]", p, j), "%v", err)
		}
	}
	if strings.Contains(e.Issuer, "=") && len(issuerByDN(e.Issuer, routeCAs)) == 0 {
		ps.Add(p+".issuer", "%q is the subject of no certificate in the route's client_ca: write the DN of one of them as openssl x509 -noout -subject -nameopt RFC2253 prints it, or give the CA's PEM file (for an intermediate, say)", e.Issuer)
	}
	if e.Issuer != "" && !strings.Contains(e.Issuer, "=") {
		if _, _, err := c.caPool([]string{e.Issuer}); err != nil {
			ps.Add(p+".issuer", "neither a DN (CN=...,O=...) nor a readable PEM file of CA certificates: %v", err)
		}
	}
}

// parsePin reads a SHA-256 pin: 64 hex digits, colons allowed.
func parsePin(s string) ([32]byte, error) {
	var pin [32]byte
	b, err := hex.DecodeString(strings.ReplaceAll(s, ":", ""))
	if err != nil || len(b) != 32 {
		return pin, fmt.Errorf("%q is not a SHA-256 (64 hex digits, e.g. from openssl x509 -noout -fingerprint -sha256)", s)
	}
	copy(pin[:], b)
	return pin, nil
}

// issuerByDN are the certificates of cas whose subject is dn (as openssl
// prints it with -nameopt RFC2253).
func issuerByDN(dn string, cas []*x509.Certificate) []*x509.Certificate {
	var out []*x509.Certificate
	for _, ca := range cas {
		if tlsmode.SubjectDN(ca) == dn {
			out = append(out, ca)
		}
	}
	return out
}

// buildAllowList turns validated patterns into matchers (CA files read).
// An issuer given as a DN is pinned to the route's client_ca certificates
// of that subject (their keys), so no other CA can pass for it.
func buildAllowList(c *Config, rc *RouteConfig, list []ClientPatternConfig) (tlsmode.AllowList, error) {
	if list == nil {
		return nil, nil
	}
	_, routeCAs, err := c.caPool(rc.TLS.ClientCA)
	if err != nil && len(rc.TLS.ClientCA) > 0 {
		return nil, err
	}
	out := make(tlsmode.AllowList, 0, len(list))
	for _, e := range list {
		p := tlsmode.ClientPattern{URI: e.URI, DNS: e.DNS, CN: e.CN, Email: e.Email}
		switch {
		case strings.Contains(e.Issuer, "="):
			p.IssuerCAs = issuerByDN(e.Issuer, routeCAs)
			if len(p.IssuerCAs) == 0 {
				return nil, fmt.Errorf("issuer %q is the subject of no certificate in client_ca", e.Issuer)
			}
		case e.Issuer != "":
			_, cas, err := c.caPool([]string{e.Issuer})
			if err != nil {
				return nil, err
			}
			p.IssuerCAs = append([]*x509.Certificate(nil), cas...)
		}
		for _, h := range e.SHA256 {
			pin, err := parsePin(h)
			if err != nil {
				return nil, err
			}
			p.SHA256 = append(p.SHA256, pin)
		}
		out = append(out, p)
	}
	return out, nil
}

// buildHTTPAuthz is the request authorization of a protocol http route;
// nil when it sets none of the keys.
func buildHTTPAuthz(c *Config, rc *RouteConfig) (*tlsmode.HTTPAuthz, error) {
	if !rc.hasAuthz() {
		return nil, nil
	}
	a := &tlsmode.HTTPAuthz{Identified: true, Unauthenticated: rc.AllowUnauthenticatedPaths}
	for _, rule := range rc.Authorize {
		allow, err := buildAllowList(c, rc, rule.Allow)
		if err != nil {
			return nil, err
		}
		methods := rule.Methods
		if methods != nil && len(methods) == 0 {
			methods = nil
		}
		a.Rules = append(a.Rules, tlsmode.PathRule{Paths: rule.Paths, Methods: methods, Allow: allow})
	}
	return a, nil
}

// validateClientLimits checks routes[].client_limits.
func validateClientLimits(ps *Problems, rp string, r *RouteConfig) {
	l := r.ClientLimits
	if l == nil {
		return
	}
	p := rp + ".client_limits"
	if r.Mode == "passthrough" {
		ps.Add(p, "passthrough never sees the client certificate that identifies a client: use mode terminate or reencrypt, or remove client_limits")
		return
	}
	if r.TLS.ClientAuth != "require" && r.TLS.ClientAuth != "verify_if_given" {
		ps.Add(p, "client limits count verified client certificates: set tls.client_auth: require (or verify_if_given) with client_ca")
	}
	if l.Connections < 0 {
		ps.Add(p+".connections", "must be 0 (no limit) or more")
	}
	if !(l.RequestsPerSecond >= 0 && l.RequestsPerSecond <= MaxRate) { // NaN too
		ps.Add(p+".requests_per_second", "must be 0 (no limit) to %g", float64(MaxRate))
	}
	if l.Burst < 0 {
		ps.Add(p+".burst", "must be 0 (the rate, at least 1) or more")
	}
	if l.Burst > 0 && l.RequestsPerSecond == 0 {
		ps.Add(p+".burst", "is the bucket of requests_per_second: set requests_per_second too, or remove burst")
	}
	if (l.RequestsPerSecond > 0 || l.Burst > 0) && !r.isHTTP() {
		ps.Add(p+".requests_per_second", "requests are counted on protocol http routes only; a tcp route has connections")
	}
	if l.Key != "" {
		oneOf(ps, p+".key", l.Key, "sha256", "uri", "dns", "email", "cn", "subject")
	}
	if l.Connections == 0 && l.RequestsPerSecond == 0 {
		ps.Add(p, "sets no limit: set connections and/or requests_per_second, or remove client_limits")
	}
}

// clientLimitSettings are the tlsmode settings of a route's client_limits.
func clientLimitSettings(l *ClientLimitsConfig) tlsmode.ClientLimitSettings {
	return tlsmode.ClientLimitSettings{Connections: l.Connections, Rate: l.RequestsPerSecond, Burst: l.Burst, Key: l.Key}
}
