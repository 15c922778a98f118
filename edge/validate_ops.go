package edge

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// validateAdmin checks admin: an address other than loopback needs TLS with
// client certificates required, so the API (which can drain servers and
// close connections) is never open to the network.
func validateAdmin(c *Config, ps *Problems) {
	a := &c.Admin
	t := &a.TLS
	if a.Address == "" {
		if t.Cert != "" || t.Key != "" || len(t.ClientCA) > 0 || t.ClientAuth != "" {
			ps.Add("admin.tls", "admin.tls without admin.address does nothing: set admin.address (e.g. 127.0.0.1:9900) or remove admin.tls")
		}
		return
	}
	if !checkHostPort(ps, "admin.address", a.Address, true) {
		return
	}
	if t.ClientAuth != "" {
		oneOf(ps, "admin.tls.client_auth", t.ClientAuth, "none", "require")
	}
	hasTLS := t.Cert != "" || t.Key != ""
	if hasTLS {
		if t.Cert == "" || t.Key == "" {
			ps.Add("admin.tls", "cert and key go together: give both")
		} else if _, err := c.keyPair(t.Cert, t.Key); err != nil {
			ps.Add("admin.tls.cert", "cannot load %s with key %s: %v", t.Cert, t.Key, err)
		}
	} else if len(t.ClientCA) > 0 || t.ClientAuth != "" {
		ps.Add("admin.tls", "client_ca and client_auth need the admin endpoint's own cert and key")
	}
	if t.ClientAuth == "none" && len(t.ClientCA) > 0 {
		ps.Add("admin.tls.client_ca", "client_auth none asks for no client certificate, so client_ca is never used: set client_auth: require, or remove client_ca")
	}
	if len(t.ClientCA) > 0 {
		if _, _, err := c.caPool(t.ClientCA); err != nil {
			ps.Add("admin.tls.client_ca", "%v", err)
		}
	}
	if t.ClientAuth == "require" && len(t.ClientCA) == 0 {
		ps.Add("admin.tls.client_ca", "missing: client_auth require verifies operators' certificates against these CA files")
	}
	if !loopbackAddress(a.Address) && !(hasTLS && t.ClientAuth == "require" && len(t.ClientCA) > 0) {
		ps.Add("admin.address", "%s is not a loopback address: the admin API can drain servers and close connections, so off loopback it needs admin.tls with cert, key, client_auth: require and client_ca (or listen on 127.0.0.1)", a.Address)
	}
}

// loopbackAddress reports whether host:port names a loopback host
// (127.0.0.0/8, ::1 or localhost). An empty host means every interface.
func loopbackAddress(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// validateHealth checks the health keys of backend b at path p: keys of the
// http check only with type http, and the TLS the tls and http checks use.
func validateHealth(c *Config, ps *Problems, p string, b *BackendConfig) {
	h := &b.Health
	hp := p + ".health"
	if h.Type == "none" && (h.Interval != 0 || h.Timeout != 0 || h.Rise != 0 || h.Fall != 0) {
		ps.Add(hp, "interval, timeout, rise and fall do nothing with type none: remove them, or choose tcp, tls or http")
	}
	if h.Type != "http" {
		if h.Path != "" {
			ps.Add(hp+".path", "path is for health type http (now %s): set type: http or remove path", h.Type)
		}
		if h.Host != "" {
			ps.Add(hp+".host", "host is for health type http (now %s): set type: http or remove host", h.Type)
		}
		if len(h.ExpectStatus) > 0 {
			ps.Add(hp+".expect_status", "expect_status is for health type http (now %s): set type: http or remove it", h.Type)
		}
	} else {
		if !strings.HasPrefix(h.Path, "/") {
			ps.Add(hp+".path", "%q must start with /, e.g. /healthz", h.Path)
		}
		for i, s := range h.ExpectStatus {
			if _, _, err := parseStatusRange(s); err != nil {
				ps.Add(fmt.Sprintf("%s.expect_status[%d]", hp, i), "%v", err)
			}
		}
	}
	modes := backendModes(c, b.Name)
	hasTLS := b.TLS != (BackendTLSConfig{})
	checksTLS := h.Type == "tls" || h.Type == "http" && hasTLS
	switch {
	case h.Type == "tls" && !hasTLS:
		ps.Add(hp+".type", "a tls check verifies the servers' certificates: give backends' tls.ca (and cert/key if they require a client certificate)")
	case h.Type == "http" && !hasTLS && modes["passthrough"] && !modes["terminate"]:
		ps.Add(hp+".type", "the servers of passthrough routes speak TLS: give this backend tls.ca (and cert/key) so the http check runs over verified TLS")
	case hasTLS && !modes["reencrypt"] && !checksTLS && !modes["terminate"]:
		ps.Add(p+".tls", "tls is used by reencrypt routes and by tls or http health checks, and this backend has neither: remove tls, or set health.type tls or http")
	}
	if checksTLS && hasTLS && !modes["reencrypt"] {
		validateBackendTLS(c, ps, p, b)
	}
}

// backendModes returns the modes of the routes that use backend name.
func backendModes(c *Config, name string) map[string]bool {
	m := map[string]bool{}
	for _, l := range c.Listeners {
		for _, r := range l.Routes {
			if r.Backend == name {
				m[r.Mode] = true
			}
		}
	}
	return m
}

// parseStatusRange reads an expect_status entry: "200", "200-299" or "2xx".
func parseStatusRange(s string) (lo, hi int, err error) {
	s = strings.TrimSpace(strings.ToLower(s))
	bad := fmt.Errorf("%q is not a status: write 200, a range 200-299, or 2xx", s)
	if len(s) == 3 && strings.HasSuffix(s, "xx") && s[0] >= '1' && s[0] <= '5' {
		d := int(s[0]-'0') * 100
		return d, d + 99, nil
	}
	a, b, isRange := strings.Cut(s, "-")
	if lo, err = strconv.Atoi(a); err != nil {
		return 0, 0, bad
	}
	hi = lo
	if isRange {
		if hi, err = strconv.Atoi(b); err != nil {
			return 0, 0, bad
		}
	}
	if lo < 100 || hi > 599 || lo > hi {
		return 0, 0, bad
	}
	return lo, hi, nil
}
