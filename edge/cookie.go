package edge

import (
	"fmt"
	"strings"
	"time"

	"github.com/tlsedge/tlsedge/tlsmode"
)

// Cookie affinity (backends[].affinity: cookie, backends[].cookie): the
// config's side. The proxy's side, and the cookie's format, are in
// tlsmode/cookie.go; the pool's in pool_cookie.go.

// MinCookieKey is the least number of bytes of cookie.key_file.
const MinCookieKey = 32

// cookieOptions is bc's cookie with the defaults applied: name
// tlsedge_server, a session cookie, Secure, HttpOnly, SameSite=Lax, the
// constant key (key is read by the caller).
func cookieOptions(bc *BackendConfig) tlsmode.CookieOptions {
	var cc CookieConfig
	if bc.Cookie != nil {
		cc = *bc.Cookie
	}
	opt := tlsmode.CookieOptions{
		Backend:  bc.Name,
		Name:     cc.Name,
		TTL:      cc.TTL,
		Secure:   cc.Secure == nil || *cc.Secure,
		HTTPOnly: cc.HTTPOnly == nil || *cc.HTTPOnly,
		SameSite: cc.SameSite,
	}
	if opt.Name == "" {
		opt.Name = tlsmode.DefaultCookieName
	}
	if opt.SameSite == "" {
		opt.SameSite = "lax"
	}
	return opt
}

// buildCookie is the cookie affinity of a backend; nil unless affinity
// is cookie. It reads cookie.key_file.
func buildCookie(c *Config, bc *BackendConfig) (*tlsmode.CookieAffinity, error) {
	if bc.Affinity != "cookie" {
		return nil, nil
	}
	opt := cookieOptions(bc)
	if bc.Cookie != nil && bc.Cookie.KeyFile != "" {
		key, err := readCookieKey(c, bc.Cookie.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("backend %s: cookie.key_file: %w", bc.Name, err)
		}
		opt.Key = key
	}
	return tlsmode.NewCookieAffinity(opt)
}

// readCookieKey reads a key_file (relative to the config's folder, once
// per config: validate and the build judge the same bytes): its bytes as
// they are, at least MinCookieKey of them.
func readCookieKey(c *Config, path string) ([]byte, error) {
	key, err := c.readFile(path)
	if err != nil {
		return nil, err
	}
	if len(key) < MinCookieKey {
		return nil, fmt.Errorf("%s has %d bytes; want at least %d", c.resolve(path), len(key), MinCookieKey)
	}
	return key, nil
}

// validateCookie checks a backend's cookie keys (validateCookieRoutes
// checks its routes and key_file).
func validateCookie(ps *Problems, p string, b *BackendConfig) {
	cc, cp := b.Cookie, p+".cookie"
	if b.Affinity != "cookie" {
		if cc != nil {
			ps.Add(cp, "set, but affinity is %s: the cookie keys apply only with affinity: cookie; set affinity: cookie, or remove cookie", b.Affinity)
		}
		return
	}
	if cc == nil {
		return // the defaults
	}
	opt := cookieOptions(b)
	if !tlsmode.ValidCookieName(opt.Name) {
		ps.Add(cp+".name", "%q is not a cookie name: use letters, digits and !#$%%&'*+-.^_`|~ only (no spaces, \"=\", \";\", \",\" or quotes), e.g. tlsedge_server", opt.Name)
	}
	lower := strings.ToLower(opt.Name)
	if !opt.Secure && (strings.HasPrefix(lower, "__host-") || strings.HasPrefix(lower, "__secure-")) {
		ps.Add(cp+".name", "%q: browsers keep a __Host- or __Secure- cookie only with Secure: set secure: true, or choose another name", opt.Name)
	}
	switch {
	case cc.TTL < 0:
		ps.Add(cp+".ttl", "must be 0 (a session cookie, the default) or positive, e.g. 24h")
	case cc.TTL%time.Second != 0:
		ps.Add(cp+".ttl", "%v: the cookie's Max-Age counts whole seconds: write e.g. 1s, 90s or 24h", cc.TTL)
	}
	switch opt.SameSite {
	case "lax", "strict":
	case "none":
		if !opt.Secure {
			ps.Add(cp+".same_site", "none needs secure: true (browsers drop a SameSite=None cookie without Secure): set secure: true, or use lax or strict")
		}
	default:
		ps.Add(cp+".same_site", "%q is not valid: use lax, strict or none", cc.SameSite)
	}
}

// validateCookieRoutes checks what a backend with affinity cookie needs
// beyond its own keys: a readable key_file of at least MinCookieKey
// bytes, and routes that all are protocol http (terminate or reencrypt),
// the only ones where tlsedge reads requests and answers.
func validateCookieRoutes(c *Config, ps *Problems) {
	for i := range c.Backends {
		b := &c.Backends[i]
		if b.Affinity != "cookie" || b.Cookie == nil || b.Cookie.KeyFile == "" {
			continue
		}
		if _, err := readCookieKey(c, b.Cookie.KeyFile); err != nil {
			ps.Add(fmt.Sprintf("backends[%d].cookie.key_file", i), "%v: it must be readable and hold at least %d secret bytes, the same file on every instance, e.g. made by: openssl rand -base64 48 > cookie.key", err, MinCookieKey)
		}
	}
	for i, l := range c.Listeners {
		for j, r := range l.Routes {
			b := c.backend(r.Backend)
			if b == nil || b.Affinity != "cookie" || (r.Mode != "passthrough" && r.Protocol == "http") {
				continue
			}
			rp := fmt.Sprintf("listeners[%d].routes[%d]", i, j)
			fix := "or give backend " + b.Name + " another affinity (source_ip keeps a client by its address on any route)"
			switch {
			case r.Mode == "passthrough":
				ps.Add(rp+".mode", "passthrough: backend %s has affinity cookie, but a passthrough route never reads HTTP (the TLS is the server's): use mode terminate or reencrypt with protocol http, %s", b.Name, fix)
			case r.Protocol == "redirect":
				ps.Add(rp+".protocol", "redirect: backend %s has affinity cookie, but a redirect route forwards nothing (its clients go to the server directly and never bring the cookie back through tlsedge): use protocol http, %s", b.Name, fix)
			default:
				ps.Add(rp+".protocol", "%s: backend %s has affinity cookie, but a %s route relays bytes and reads no cookie: use protocol http, %s", r.Protocol, b.Name, r.Protocol, fix)
			}
		}
	}
}
