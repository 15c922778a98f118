package edge

import "strings"

// validateWSFailover checks a route's websocket keys. failover needs a
// route that ends TLS and serves HTTP (mode terminate or reencrypt,
// protocol http: tlsedge must read the handshake and the messages) and
// lets clients upgrade to websocket. A redirect route's failover is
// refused by validateRedirectRoute (it carries no WebSocket).
func validateWSFailover(ps *Problems, rp string, r *RouteConfig, _ *BackendConfig, _ string) {
	if !r.WebSocket.Failover {
		return
	}
	p := rp + ".websocket.failover"
	switch {
	case r.Mode == "passthrough":
		ps.Add(p, "passthrough never decrypts, so it cannot relay WebSocket messages: remove it, or use mode terminate or reencrypt with protocol http")
		return
	case r.Protocol == "redirect":
		return // said by validateRedirectRoute
	case r.Protocol != "http":
		ps.Add(p, "needs protocol http: a protocol %s route relays a byte stream and never reads a WebSocket handshake; set protocol: http, or remove it", r.Protocol)
		return
	}
	if r.Upgrades != nil && !allowsWebSocket(r.Upgrades) {
		ps.Add(p, "upgrades does not list websocket, so no WebSocket is ever accepted on this route: add websocket to upgrades, or remove failover")
	}
}

// allowsWebSocket reports whether an upgrades list names websocket.
func allowsWebSocket(upgrades []string) bool {
	for _, u := range upgrades {
		if strings.EqualFold(u, "websocket") {
			return true
		}
	}
	return false
}
