package edge

// validateWSFailover checks a route's websocket keys (stub: being built).
func validateWSFailover(ps *Problems, rp string, r *RouteConfig, b *BackendConfig, bp string) {
	if r.WebSocket.Failover {
		ps.Add(rp+".websocket.failover", "not supported yet")
	}
}
