package edge

import "github.com/tlsedge/tlsedge/tlsmode"

// buildRedirect is the redirect of a protocol redirect route; nil for
// other routes (stub: being built).
func buildRedirect(c *Config, rc *RouteConfig, bc *BackendConfig) (*tlsmode.Redirect, error) {
	return nil, nil
}

// validateRedirectRoute checks the redirect keys of a route and its
// backend (stub: being built).
func validateRedirectRoute(c *Config, ps *Problems, rp string, r *RouteConfig, b *BackendConfig, bp string) {
	if r.Protocol == "redirect" {
		ps.Add(rp+".protocol", "redirect is not supported yet")
	}
}
