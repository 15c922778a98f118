package edge

import "github.com/tlsedge/tlsedge/tlsmode"

// buildRedirect is the redirect of a protocol redirect route; nil for
// other routes (stub: being built).
func buildRedirect(c *Config, rc *RouteConfig, bc *BackendConfig) (*tlsmode.Redirect, error) {
	return nil, nil
}

// buildCookie is the cookie affinity of a backend; nil unless affinity
// is cookie (stub: being built).
func buildCookie(c *Config, bc *BackendConfig) (*tlsmode.CookieAffinity, error) {
	return nil, nil
}

// validateRedirectRoute checks the redirect and cookie keys of a route
// and its backend (stub: being built).
func validateRedirectRoute(c *Config, ps *Problems, rp string, r *RouteConfig, b *BackendConfig, bp string) {
	if r.Protocol == "redirect" {
		ps.Add(rp+".protocol", "redirect is not supported yet")
	}
}

// validateCookie checks a backend's cookie keys (stub: being built).
func validateCookie(ps *Problems, p string, b *BackendConfig) {
	if b.Affinity == "cookie" {
		ps.Add(p+".affinity", "cookie is not supported yet")
	}
}
