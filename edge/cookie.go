package edge

import "github.com/tlsedge/tlsedge/tlsmode"

// buildCookie is the cookie affinity of a backend; nil unless affinity
// is cookie (stub: being built).
func buildCookie(c *Config, bc *BackendConfig) (*tlsmode.CookieAffinity, error) {
	return nil, nil
}

// validateCookie checks a backend's cookie keys (stub: being built).
func validateCookie(ps *Problems, p string, b *BackendConfig) {
	if b.Affinity == "cookie" {
		ps.Add(p+".affinity", "cookie is not supported yet")
	}
}
