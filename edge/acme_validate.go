package edge

import (
	"crypto/x509"
	"fmt"
	"net/url"
	"strings"

	"github.com/tlsedge/tlsedge/certs"
)

// validateACME checks certs.acme: its keys, and that on-demand keys come
// with on_demand.
func validateACME(c *Config, ps *Problems) {
	a := &c.Certs.ACME
	const p = "certs.acme"
	if a.Directory != "" {
		if u, err := url.Parse(a.Directory); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			ps.Add(p+".directory", "%q is not an ACME directory URL: write it like https://acme.example.com/directory", a.Directory)
		}
	}
	if a.CARoot != "" {
		b, err := c.readFile(a.CARoot)
		if err != nil {
			ps.Add(p+".ca_root", "cannot read %s: %v", a.CARoot, err)
		} else if !x509.NewCertPool().AppendCertsFromPEM(b) {
			ps.Add(p+".ca_root", "%s holds no PEM certificate: give the PEM of the roots that sign the ACME server's HTTPS certificate", a.CARoot)
		}
	}
	seen := map[string]bool{}
	for i, ch := range a.Challenges {
		kp := fmt.Sprintf("%s.challenges[%d]", p, i)
		switch {
		case ch != certs.AcmeTLSALPN01 && ch != certs.AcmeHTTP01:
			ps.Add(kp, "%q is not valid: use tls-alpn-01 or http-01", ch)
		case seen[ch]:
			ps.Add(kp, "%s is listed twice", ch)
		}
		seen[ch] = true
	}
	if a.Challenges != nil && len(a.Challenges) == 0 {
		ps.Add(p+".challenges", "empty: list tls-alpn-01, http-01 or both (or leave it out: tls-alpn-01)")
	}
	switch {
	case seen[certs.AcmeHTTP01] && a.HTTPAddress == "":
		ps.Add(p+".http_address", "missing: http-01 needs the plain HTTP listener's address, e.g. \":80\"")
	case a.HTTPAddress != "" && !seen[certs.AcmeHTTP01]:
		ps.Add(p+".http_address", "only used by the http-01 challenge: add http-01 to challenges, or remove it")
	case a.HTTPAddress != "":
		if checkHostPort(ps, p+".http_address", a.HTTPAddress, true) {
			for i, l := range c.Listeners {
				if l.Address == a.HTTPAddress {
					ps.Add(p+".http_address", "address %s is already used by listeners[%d]", a.HTTPAddress, i)
				}
			}
		}
	}
	if r := a.RenewalWindowRatio; r < 0 || r >= 1 || r != r {
		ps.Add(p+".renewal_window_ratio", "must be between 0 and 1, e.g. 0.33 (renew with a third of the lifetime left); 0 = 1/3")
	}
	if a.RenewInterval < 0 {
		ps.Add(p+".renew_interval", "must be positive, e.g. 10m (0 = 10m)")
	}
	if a.OnDemandOrders < 0 {
		ps.Add(p+".on_demand_orders", "must be 0 (10) or more")
	}
	if a.OnDemandInterval < 0 {
		ps.Add(p+".on_demand_interval", "must be positive, e.g. 1m (0 = 1m)")
	}
	if a.Ask != "" {
		if u, err := url.Parse(a.Ask); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			ps.Add(p+".ask", "%q is not an http(s) URL: write it like http://127.0.0.1:9123/allowed", a.Ask)
		}
	}
	if a.OnDemand && a.Ask == "" {
		ps.Add(p+".ask", "missing: on-demand issuance needs an ask URL that answers 2xx only for the names you serve; without it anyone pointing DNS names under your wildcard at tlsedge spends the CA's per-domain limits (Let's Encrypt: 50 certificates a week), blocking the renewals of your acme: true names (Caddy refuses on-demand without ask too)")
	}
	if !a.OnDemand {
		for _, k := range []struct {
			key string
			set bool
		}{{"ask", a.Ask != ""}, {"on_demand_orders", a.OnDemandOrders != 0}, {"on_demand_interval", a.OnDemandInterval != 0}} {
			if k.set {
				ps.Add(p+"."+k.key, "only used by on-demand issuance: set certs.acme.on_demand: true, or remove it")
			}
		}
	}
}

// validateRouteACME checks a terminate/reencrypt route's tls.acme.
func validateRouteACME(c *Config, ps *Problems, rp string, r *RouteConfig) {
	t := &r.TLS
	tp := rp + ".tls"
	mode := t.ACME.Mode()
	switch mode {
	case "":
		ps.Add(tp+".acme", "%q is not valid: use true, false or on_demand", string(t.ACME))
		return
	case "off":
		return
	}
	if t.Cert != "" || t.Key != "" {
		ps.Add(tp+".acme", "acme and cert/key both give the route's certificate: keep one")
	}
	if c.Certs.ACME.Email == "" {
		ps.Add("certs.acme.email", "missing: routes with tls.acme (%s) need the ACME account's contact email", rp)
	}
	var wild, any bool
	for _, s := range r.SNI {
		n, err := NormalizePattern(s)
		if err != nil {
			continue // reported with sni
		}
		wild = wild || strings.HasPrefix(n, "*.")
		any = any || n == "*"
	}
	switch mode {
	case "on":
		if wild || any {
			ps.Add(tp+".acme", "acme: true obtains certificates for the route's exact names at start; a wildcard or \"*\" sni needs acme: on_demand (with certs.acme.on_demand) or a certificate file")
		}
	case "on_demand":
		if any {
			ps.Add(tp+".acme", "on_demand for the \"*\" route would order a certificate for any name a client sends: list wildcard patterns like *.example.com instead")
		} else if !wild {
			ps.Add(tp+".acme", "on_demand is for routes whose sni has a wildcard (*.example.com); for exact names use acme: true")
		}
		if !c.Certs.ACME.OnDemand {
			ps.Add(tp+".acme", "on_demand needs certs.acme.on_demand: true (the switch that allows on-demand issuance at all)")
		}
	}
}
