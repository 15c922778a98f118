package edge

import (
	"crypto/x509"
	"time"

	"github.com/tlsedge/tlsedge/certs"
	"github.com/tlsedge/tlsedge/tlsmode/identity"
)

// validateRouteModes checks what depends on a route's mode: tls, protocol,
// identity and the backend's tls for reencrypt.
func validateRouteModes(c *Config, ps *Problems, rp string, r *RouteConfig, b *BackendConfig, bp string) {
	validateRouteAuthz(c, ps, rp, r)
	if r.Mode == "passthrough" {
		t := &r.TLS
		if t.Cert != "" || t.Key != "" || t.ACME != "" || t.ClientAuth != "" || len(t.ClientCA) > 0 || len(t.CRL) > 0 ||
			t.OCSP != "" || t.MinVersion != "" || len(t.ALPN) > 0 || t.Profile != "" || len(t.CipherSuites) > 0 ||
			t.SessionTicketRotation != 0 || t.OCSPStapling != "" {
			ps.Add(rp+".tls", "passthrough never decrypts, so it has no tls: remove it, or use mode terminate or reencrypt")
		}
		if r.HTTP != (RouteHTTPConfig{}) {
			ps.Add(rp+".http", "passthrough never decrypts, so http limits cannot apply: remove them, or use mode terminate")
		}
		if r.isHTTP() {
			ps.Add(rp+".protocol", "passthrough never decrypts, so it cannot see http: use mode terminate or reencrypt")
		}
		if r.Identity.Preset != "" || r.Identity.Headers != nil {
			ps.Add(rp+".identity", "passthrough never sees the client certificate: the servers verify it themselves; remove identity")
		}
		if r.Upgrades != nil || r.StripHeaders != nil {
			ps.Add(rp, "upgrades and strip_headers are for protocol http routes; passthrough never sees requests")
		}
		return
	}
	if r.Mode != "terminate" && r.Mode != "reencrypt" {
		return // already reported
	}
	validateServerTLS(c, ps, rp, r)
	validateRouteHardening(ps, rp, r)
	h := r.HTTP
	if !r.isHTTP() && h != (RouteHTTPConfig{}) {
		ps.Add(rp+".http", "http limits apply to protocol http routes only")
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"read_header_timeout", h.ReadHeaderTimeout}, {"idle_timeout", h.IdleTimeout}, {"response_header_timeout", h.ResponseHeaderTimeout}, {"write_timeout", h.WriteTimeout}} {
		if d.v < 0 {
			ps.Add(rp+".http."+d.key, "must be positive, e.g. 30s (0 = the default)")
		}
	}
	if h.MaxHeaderBytes < 0 {
		ps.Add(rp+".http.max_header_bytes", "must be 0 (default 64 KiB) or more")
	}
	if h.MaxRequestBody < 0 {
		ps.Add(rp+".http.max_request_body", "must be 0 (unlimited) or a size in bytes")
	}
	switch r.Protocol {
	case "http":
		if _, err := identity.Parse(r.Identity.Preset, r.Identity.Headers); err != nil {
			ps.Add(rp+".identity", "%v", err)
		}
		if b != nil && b.ProxyProtocol != "off" {
			ps.Add(bp+".proxy_protocol", "backend %s serves a protocol http route (%s), whose requests share keep-alive connections: a PROXY header cannot describe them; use off (X-Forwarded-For carries the client address)", b.Name, rp)
		}
	case "tcp":
		if r.Identity.Preset != "" && r.Identity.Preset != "none" || r.Identity.Headers != nil {
			ps.Add(rp+".identity", "identity headers need protocol http; a tcp route forwards the client certificate in PROXY v2 TLVs (set proxy_protocol: v2 on the backend)")
		}
	}
	if r.Mode == "reencrypt" && b != nil {
		validateBackendTLS(c, ps, bp, b)
	}
	if r.Mode == "terminate" && b != nil && b.TLS != (BackendTLSConfig{}) {
		ps.Add(bp+".tls", "backend %s has tls (its servers speak TLS) but %s is mode terminate, which sends them plaintext: use mode reencrypt, or remove tls", b.Name, rp)
	}
}

func validateServerTLS(c *Config, ps *Problems, rp string, r *RouteConfig) {
	t := &r.TLS
	tp := rp + ".tls"
	validateRouteACME(c, ps, rp, r)
	switch {
	case t.ACME.Mode() != "off":
		// the route's certificate comes from ACME (validateRouteACME)
	case t.Cert == "" || t.Key == "":
		ps.Add(tp, "missing cert and key: mode %s needs the route's certificate chain and key (PEM files), or acme: true", r.Mode)
	default:
		pair, err := c.keyPair(t.Cert, t.Key)
		if err != nil {
			ps.Add(tp+".cert", "cannot load %s with key %s: %v", t.Cert, t.Key, err)
		} else if pair.Leaf != nil && time.Now().After(pair.Leaf.NotAfter) {
			ps.Expired(tp+".cert", "certificate %s expired on %s: replace it with a valid one (or use acme: true)", t.Cert, pair.Leaf.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	if _, ok := clientAuthTypes[t.ClientAuth]; !ok {
		ps.Add(tp+".client_auth", "%q is not valid: use none, request, verify_if_given or require", t.ClientAuth)
	}
	verifies := t.ClientAuth == "verify_if_given" || t.ClientAuth == "require"
	if verifies && len(t.ClientCA) == 0 {
		ps.Add(tp+".client_ca", "missing: client_auth %s verifies client certificates against these CA files", t.ClientAuth)
	}
	var cas []*x509.Certificate
	if len(t.ClientCA) > 0 {
		if !verifies {
			ps.Add(tp+".client_ca", "client certificates are verified only with client_auth verify_if_given or require (now %q)", t.ClientAuth)
		}
		_, list, err := c.caPool(t.ClientCA)
		if err != nil {
			ps.Add(tp+".client_ca", "%v", err)
		}
		cas = list
	}
	if len(t.CRL) > 0 {
		if len(t.ClientCA) == 0 {
			ps.Add(tp+".crl", "CRLs need client_ca: they are checked against the CAs that signed them")
		} else if cas != nil {
			if _, err := c.revocationLists(t.CRL, cas); err != nil {
				ps.Add(tp+".crl", "%v", err)
			}
		}
	}
	if t.OCSPStapling != "" && t.OCSPStapling != "on" && t.OCSPStapling != "off" {
		ps.Add(tp+".ocsp_stapling", "%q is not valid: use on or off", t.OCSPStapling)
	}
	if _, err := certs.ParseOCSPMode(t.OCSP); err != nil {
		ps.Add(tp+".ocsp", "%q is not valid: use off, soft or hard", t.OCSP)
	} else if t.OCSP != "" && t.OCSP != "off" && len(t.ClientCA) == 0 {
		ps.Add(tp+".ocsp", "OCSP checks verified client certificates: it needs client_ca and client_auth verify_if_given or require")
	}
	if _, ok := tlsVersions[t.MinVersion]; !ok {
		ps.Add(tp+".min_version", "%q is not valid: use \"1.2\" or \"1.3\" (quoted)", t.MinVersion)
	}
	if r.isHTTP() && len(t.ALPN) > 0 {
		ok := false
		for _, p := range t.ALPN {
			ok = ok || p == "h2" || p == "http/1.1"
		}
		if !ok {
			ps.Add(tp+".alpn", "protocol http needs h2 or http/1.1 in alpn (or leave alpn out: h2, http/1.1)")
		}
	}
}

func validateBackendTLS(c *Config, ps *Problems, bp string, b *BackendConfig) {
	t := &b.TLS
	tp := bp + ".tls"
	switch {
	case t.CA == "" && !t.InsecureSkipVerify:
		ps.Add(tp+".ca", "missing: reencrypt verifies the servers' certificates; give the CA file that signed them (or, not recommended, insecure_skip_verify: true)")
	case t.CA != "":
		if _, _, err := c.caPool([]string{t.CA}); err != nil {
			ps.Add(tp+".ca", "%v", err)
		}
	}
	if (t.Cert == "") != (t.Key == "") {
		ps.Add(tp, "cert and key go together: give both for upstream mutual TLS, or neither")
	} else if t.Cert != "" {
		pair, err := c.keyPair(t.Cert, t.Key)
		if err != nil {
			ps.Add(tp+".cert", "cannot load %s with key %s: %v", t.Cert, t.Key, err)
		} else if pair.Leaf != nil && time.Now().After(pair.Leaf.NotAfter) {
			ps.Expired(tp+".cert", "certificate %s expired on %s: replace it with a valid one", t.Cert, pair.Leaf.NotAfter.UTC().Format(time.RFC3339))
		}
	}
}

func (c *Config) resolveAll(ps []string) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = c.resolve(p)
	}
	return out
}
