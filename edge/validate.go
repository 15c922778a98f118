package edge

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/tlsedge/tlsedge/affinity"
)

// validate checks a decoded, defaulted config and adds one problem per
// mistake, each saying how to fix it. It never stops at the first.
func validate(c *Config, ps *Problems) {
	oneOf(ps, "log.level", c.Log.Level, "debug", "info", "warn", "error")
	oneOf(ps, "log.format", c.Log.Format, "json", "console")
	validateAdmin(c, ps)
	validateLimits(c, ps)
	validateACME(c, ps)
	if c.Shutdown.Delay < 0 {
		ps.Add("shutdown.delay", "must be 0 (none) or positive, e.g. 5s")
	}
	if c.Shutdown.Grace < 0 {
		ps.Add("shutdown.grace", "must be positive, e.g. 10s")
	}

	backends := make(map[string]int, len(c.Backends))
	for i, b := range c.Backends {
		p := fmt.Sprintf("backends[%d]", i)
		switch {
		case b.Name == "":
			ps.Add(p+".name", "missing: every backend needs a name that routes refer to")
		case backends[b.Name] > 0:
			ps.Add(p+".name", "duplicate backend name %q (also backends[%d]): names must be unique", b.Name, backends[b.Name]-1)
		default:
			backends[b.Name] = i + 1
		}
		validateBackend(c, ps, p, &b)
	}

	if len(c.Listeners) == 0 {
		ps.Add("listeners", "missing: add at least one listener with an address and routes")
	}
	names := map[string]int{}
	addrs := map[string]int{}
	for i, l := range c.Listeners {
		p := fmt.Sprintf("listeners[%d]", i)
		if l.Name == "" {
			ps.Add(p+".name", "missing: every listener needs a name (it appears in logs and metrics)")
		} else if j, dup := names[l.Name]; dup {
			ps.Add(p+".name", "duplicate listener name %q (also listeners[%d])", l.Name, j)
		} else {
			names[l.Name] = i
		}
		if l.Address == "" {
			ps.Add(p+".address", "missing: write host:port, e.g. \":8443\" or \"127.0.0.1:8443\"")
		} else if checkHostPort(ps, p+".address", l.Address, true) {
			if j, dup := addrs[l.Address]; dup {
				ps.Add(p+".address", "address %s is already used by listeners[%d]", l.Address, j)
			}
			addrs[l.Address] = i
		}
		oneOf(ps, p+".proxy_protocol", l.ProxyProtocol, "off", "optional", "required")
		for j, cidr := range l.TrustedProxies {
			if _, err := parsePrefix(cidr); err != nil {
				ps.Add(fmt.Sprintf("%s.trusted_proxies[%d]", p, j), "%q is not a CIDR or IP address: write it like 10.0.0.0/8 or 192.0.2.1", cidr)
			}
		}
		if l.ProxyProtocol != "off" && len(l.TrustedProxies) == 0 {
			ps.Add(p+".trusted_proxies", "missing: proxy_protocol %s needs the CIDRs of the balancers allowed to send PROXY headers", l.ProxyProtocol)
		}
		if l.ClientHelloTimeout < 0 {
			ps.Add(p+".clienthello_timeout", "must be positive, e.g. 5s")
		}
		if *l.MaxConnections < 0 {
			ps.Add(p+".max_connections", "must be 0 (unlimited) or more")
		}
		checkKeepalive(ps, p+".tcp_keepalive", l.TCPKeepalive)
		if len(l.Routes) == 0 {
			ps.Add(p+".routes", "missing: add at least one route (sni, mode, backend)")
		}
		seen := map[string]string{}
		for j, r := range l.Routes {
			rp := fmt.Sprintf("%s.routes[%d]", p, j)
			if len(r.SNI) == 0 {
				ps.Add(rp+".sni", "missing: list the server names of this route, or \"*\" for the default route")
			}
			for k, pat := range r.SNI {
				kp := fmt.Sprintf("%s.sni[%d]", rp, k)
				n, err := NormalizePattern(pat)
				if err != nil {
					ps.Add(kp, "%v", err)
					continue
				}
				if other, dup := seen[n]; dup {
					ps.Add(kp, "duplicate server name pattern %q on this listener (also %s): each name must route one way", n, other)
					continue
				}
				seen[n] = kp
			}
			oneOf(ps, rp+".mode", r.Mode, "passthrough", "terminate", "reencrypt")
			oneOf(ps, rp+".protocol", r.Protocol, "tcp", "http", "redirect")
			var b *BackendConfig
			var bp string
			if r.Backend == "" {
				ps.Add(rp+".backend", "missing: name one of the backends")
			} else if i := backends[r.Backend]; i == 0 {
				ps.Add(rp+".backend", "no backend named %q%s", r.Backend, knownNames(c.Backends))
			} else {
				b, bp = &c.Backends[i-1], fmt.Sprintf("backends[%d]", i-1)
			}
			validateRouteModes(c, ps, rp, &r, b, bp)
			validateRedirectRoute(c, ps, rp, &r, b, bp)
			validateWSFailover(ps, rp, &r, b, bp)
		}
	}
	validateCookieRoutes(c, ps)
}

// Bounds of drain_rate, rebalance.rate and the API's rate (a second).
const (
	MinRate = 0.01
	MaxRate = 1e6
)

// rateOK reports whether r is a usable rate (NaN and infinities are not).
func rateOK(r float64) bool { return r >= MinRate && r <= MaxRate }

// checkKeepalive accepts a positive duration or "off" (-1).
func checkKeepalive(ps *Problems, path string, d time.Duration) {
	if d < 0 && d != -1 {
		ps.Add(path, "must be a positive duration such as 15s, or off")
	}
}

func validateBackend(c *Config, ps *Problems, p string, b *BackendConfig) {
	if _, err := affinity.ParseBalance(b.Balance); err != nil {
		ps.Add(p+".balance", "%q is not a balance policy: use roundrobin, leastconn or random", b.Balance)
	}
	if _, err := affinity.ParseMode(b.Affinity); err != nil && b.Affinity != "cookie" {
		ps.Add(p+".affinity", "%q is not an affinity: use none, source_ip, class_c, five_tuple or cookie", b.Affinity)
	}
	validateCookie(ps, p, b)
	validateServerPublics(ps, p, b)
	if f := b.HashBalanceFactor; f != 0 && !(f > 1 && f <= 100) {
		ps.Add(p+".hash_balance_factor", "%v must be 0 (off) or above 1, e.g. 1.25 (a server takes at most 125%% of the average load)", f)
	}
	oneOf(ps, p+".proxy_protocol", b.ProxyProtocol, "off", "v1", "v2")
	if b.ConnectTimeout < 0 {
		ps.Add(p+".connect_timeout", "must be positive, e.g. 3s")
	}
	if *b.Retries < 0 {
		ps.Add(p+".retries", "must be 0 or more")
	}
	if b.DrainTimeout < 0 {
		ps.Add(p+".drain_timeout", "must be positive, e.g. 30s")
	}
	if !rateOK(b.DrainRate) {
		ps.Add(p+".drain_rate", "%v: must be from %v to %v: connections closed a second once drain_timeout has passed, e.g. 100", b.DrainRate, MinRate, MaxRate)
	}
	if r := b.Rebalance; r != nil {
		if !(r.Above >= 1 && r.Above <= 100) {
			ps.Add(p+".rebalance.above", "%v must be from 1 to 100, e.g. 1.25 (a server above 125%% of its share gives connections back)", r.Above)
		}
		if !rateOK(r.Rate) {
			ps.Add(p+".rebalance.rate", "%v: must be from %v to %v: connections closed a second, e.g. 10", r.Rate, MinRate, MaxRate)
		}
		if r.Interval < 0 && r.Interval != -1 {
			ps.Add(p+".rebalance.interval", "must be positive, e.g. 30s, or off (only POST .../rebalance starts one)")
		}
		if b.Affinity != "none" {
			ps.Add(p+".rebalance", "a rebalance closes connections so that clients come back elsewhere, but with affinity %s they hash to the same server again: use affinity none (leastconn), or remove rebalance", b.Affinity)
		}
	}
	if b.IdleTimeout < -1 {
		ps.Add(p+".idle_timeout", "must be 0 (off) or positive, e.g. 10m")
	}
	checkKeepalive(ps, p+".tcp_keepalive", b.TCPKeepalive)
	discValidate(ps, p, b)
	seen := map[string]int{}
	for i, s := range b.Servers {
		sp := fmt.Sprintf("%s.servers[%d]", p, i)
		if s.Address == "" {
			ps.Add(sp+".address", "missing: write host:port")
		} else if checkHostPort(ps, sp+".address", s.Address, false) {
			if j, dup := seen[s.Address]; dup {
				ps.Add(sp+".address", "server %s is listed twice (also servers[%d]): raise its weight instead", s.Address, j)
			}
			seen[s.Address] = i
		}
		if *s.Weight < 0 || *s.Weight > affinity.MaxWeight {
			ps.Add(sp+".weight", "must be from 0 (no new connections) to %d", affinity.MaxWeight)
		}
	}
	h := b.Health
	oneOf(ps, p+".health.type", h.Type, "tcp", "tls", "http", "none")
	validateHealth(c, ps, p, b)
	agValidate(ps, p, b)
	if h.Interval < 0 {
		ps.Add(p+".health.interval", "must be positive, e.g. 2s")
	}
	if h.Timeout < 0 {
		ps.Add(p+".health.timeout", "must be positive, e.g. 1s")
	}
	if h.Rise < 0 {
		ps.Add(p+".health.rise", "must be 1 or more")
	}
	if h.Fall < 0 {
		ps.Add(p+".health.fall", "must be 1 or more")
	}
}

func oneOf(ps *Problems, path, v string, allowed ...string) {
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	ps.Add(path, "%q is not valid: use %s", v, strings.Join(allowed, ", "))
}

// checkHostPort reports whether s is host:port with a numeric port; an empty
// host is allowed only for listening addresses.
func checkHostPort(ps *Problems, path, s string, listen bool) bool {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		ps.Add(path, "%q is not host:port: write it like 127.0.0.1:9001 or [::1]:9001", s)
		return false
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		if !(listen && n == 0 && err == nil) {
			ps.Add(path, "%q: port must be a number from 1 to 65535", s)
			return false
		}
	}
	if host == "" && !listen {
		ps.Add(path, "%q: a server address needs a host", s)
		return false
	}
	return true
}

// parsePrefix accepts a CIDR or a single address.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

func knownNames(bs []BackendConfig) string {
	var names []string
	for _, b := range bs {
		if b.Name != "" {
			names = append(names, b.Name)
		}
	}
	if len(names) == 0 {
		return ": add it under backends"
	}
	return ": known backends are " + strings.Join(names, ", ")
}
