package edge

import (
	"fmt"
	"strings"

	"github.com/tlsedge/tlsedge/tlsmode"
)

// The redirect scheme's config (protocol redirect, redirect_status,
// redirect_token, servers[].public): checked here, built into the
// tlsmode.Redirect of the route's HTTP proxy (tlsmode/redirect.go).

// buildRedirect is the redirect of a protocol redirect route; nil for
// other routes. Its public URLs come from the backend's configured servers
// by address (validate requires one on each, and refuses DNS discovery):
// the proxy keeps this Redirect while only the servers' weights change
// (SetBackend), and a change of a public URL, of the servers, of the route
// or of the token key's contents gives the route a new proxy (httpRouteKey).
func buildRedirect(c *Config, rc *RouteConfig, bc *BackendConfig) (*tlsmode.Redirect, error) {
	if rc.Protocol != "redirect" {
		return nil, nil
	}
	opt := tlsmode.RedirectOptions{Status: rc.RedirectStatus, Public: serverPublics(bc)}
	if t := rc.RedirectToken; t != nil {
		key, err := c.readFile(t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("redirect_token.key_file: %w", err)
		}
		if len(key) < tlsmode.MinRedirectTokenKey {
			return nil, fmt.Errorf("redirect_token.key_file %s: %d bytes; the key must have at least %d", t.KeyFile, len(key), tlsmode.MinRedirectTokenKey)
		}
		opt.TokenKey, opt.TokenTTL = key, t.TTL
	}
	return tlsmode.NewRedirect(opt)
}

// validateRedirectRoute checks the redirect keys of a route and its
// backend: protocol redirect only on mode terminate, with a backend whose
// every server has a public URL and no DNS discovery; redirect_status and
// redirect_token only on redirect routes, with a valid status, a readable
// key of at least 32 bytes, a ttl of whole seconds from 1s to 1h, and
// https/wss public URLs (the token must not travel in clear); the keys a
// redirect route cannot use (it forwards nothing) are refused.
// (validateBackend checks servers[].public on every backend.)
func validateRedirectRoute(c *Config, ps *Problems, rp string, r *RouteConfig, b *BackendConfig, bp string) {
	if r.Protocol != "redirect" {
		if r.RedirectStatus != 0 {
			ps.Add(rp+".redirect_status", "is for protocol redirect routes: remove it, or set protocol: redirect")
		}
		if r.RedirectToken != nil {
			ps.Add(rp+".redirect_token", "is for protocol redirect routes: remove it, or set protocol: redirect")
		}
		return
	}
	switch r.Mode {
	case "terminate":
	case "reencrypt":
		ps.Add(rp+".mode", "a redirect route never connects to its servers (clients go to their public URLs), so there is nothing to reencrypt: use mode terminate")
	case "passthrough":
		return // validateRouteModes said it: passthrough cannot see http
	default:
		return // not a mode: already reported
	}
	if r.RedirectStatus != 0 && !tlsmode.RedirectStatusOK(r.RedirectStatus) {
		ps.Add(rp+".redirect_status", "%d is not a redirect status: use 307 (the default; the method and body are kept), 308, 301, 302 or 303", r.RedirectStatus)
	}
	validateRedirectToken(c, ps, rp, r, b)
	validateRedirectUnused(ps, rp, r)
	if b == nil {
		return // no such backend: already reported
	}
	if b.Balance == "leastconn" {
		ps.Add(bp+".balance", "backend %s serves a redirect route (%s): a redirect holds no connection, so leastconn would count none and send every client to the heaviest server; use roundrobin or random (weights and the load servers report apply)", b.Name, rp)
	}
	seen := map[string]int{}
	for i, s := range b.Servers {
		if j, dup := seen[s.Public]; dup && s.Public != "" {
			ps.Add(fmt.Sprintf("%s.servers[%d].public", bp, i), "%s is also servers[%d]'s: a redirect token is bound to one public URL, so each server needs its own", s.Public, j)
		}
		seen[s.Public] = i
	}
	if b.Discovery.DNS != "" {
		ps.Add(bp+".discovery.dns", "backend %s serves a redirect route (%s), but servers found in DNS have no public URL to send clients to: list its servers with public, or use protocol http", b.Name, rp)
	}
	for i, s := range b.Servers {
		if s.Public == "" {
			ps.Add(fmt.Sprintf("%s.servers[%d].public", bp, i), "missing: backend %s serves a redirect route (%s), which sends clients to the public URL of the server it picks; add the URL clients reach %s at, e.g. wss://node-%d.example.com/", b.Name, rp, s.Address, i+1)
		}
	}
}

// validateRedirectToken checks redirect_token of a redirect route.
func validateRedirectToken(c *Config, ps *Problems, rp string, r *RouteConfig, b *BackendConfig) {
	t := r.RedirectToken
	if t == nil {
		return
	}
	tp := rp + ".redirect_token"
	if t.KeyFile == "" {
		ps.Add(tp+".key_file", "missing: the file of the secret key (at least %d bytes, e.g. made with: head -c 32 /dev/urandom > redirect.key) that tlsedge signs the tokens with and the servers verify them with", tlsmode.MinRedirectTokenKey)
	} else if key, err := c.readFile(t.KeyFile); err != nil {
		ps.Add(tp+".key_file", "cannot read %s: %v", t.KeyFile, err)
	} else if len(key) < tlsmode.MinRedirectTokenKey {
		ps.Add(tp+".key_file", "%s has %d bytes: the key must have at least %d (e.g. head -c 32 /dev/urandom > %s)", t.KeyFile, len(key), tlsmode.MinRedirectTokenKey, t.KeyFile)
	}
	if t.TTL != 0 {
		if err := tlsmode.RedirectTokenTTLOK(t.TTL); err != nil {
			ps.Add(tp+".ttl", "%v is not valid: whole seconds from 1s to 1h, e.g. 30s (the default)", t.TTL)
		}
	}
	if b == nil {
		return
	}
	for i, s := range b.Servers {
		if u, err := tlsmode.ParsePublicURL(s.Public); err == nil && (u.Scheme == "http" || u.Scheme == "ws") {
			ps.Add(tp, "the token is a credential, and servers[%d] of backend %s has a plaintext public URL (%s): anyone on the path could read and use it; use https:// or wss://, or remove redirect_token", i, b.Name, s.Public)
		}
	}
}

// validateRedirectUnused refuses the keys a redirect route would ignore:
// it forwards no request, so no header is added or stripped, no protocol
// is switched to, no request body is read and no server answers.
func validateRedirectUnused(ps *Problems, rp string, r *RouteConfig) {
	if r.Identity.Preset != "" && r.Identity.Preset != "none" || r.Identity.Headers != nil {
		ps.Add(rp+".identity", "a redirect route forwards no request, so no identity header: remove identity; to hand the client's identity to the server, use redirect_token")
	}
	if r.Upgrades != nil {
		ps.Add(rp+".upgrades", "a redirect route switches no protocol: an upgrade request (a WebSocket) gets the redirect like any request; remove upgrades")
	}
	if r.StripHeaders != nil {
		ps.Add(rp+".strip_headers", "a redirect route forwards no request, so it strips no header: remove strip_headers")
	}
	if r.WebSocket.Failover {
		ps.Add(rp+".websocket.failover", "a redirect route carries no WebSocket (the client connects to the server itself): remove it, or use protocol http")
	}
	h := r.HTTP
	if h.ResponseHeaderTimeout != 0 {
		ps.Add(rp+".http.response_header_timeout", "a redirect route waits for no server: remove it")
	}
	if h.MaxRequestBody != 0 {
		ps.Add(rp+".http.max_request_body", "a redirect route reads no request body (the connection closes after the redirect of a request with one): remove it")
	}
	if h.ReadBodyTimeout != 0 {
		ps.Add(rp+".http.read_body_timeout", "a redirect route reads no request body: remove it")
	}
}

// validateServerPublics checks servers[].public of backend b (at path p)
// wherever it is set.
func validateServerPublics(ps *Problems, p string, b *BackendConfig) {
	for i, s := range b.Servers {
		if s.Public == "" {
			continue
		}
		if _, err := tlsmode.ParsePublicURL(s.Public); err != nil {
			ps.Add(fmt.Sprintf("%s.servers[%d].public", p, i), "%q is not a public URL: %s; write it like wss://node-3.example.com/ or https://n3.example.com/base/",
				s.Public, strings.TrimPrefix(err.Error(), "tlsmode: "))
		}
	}
}
