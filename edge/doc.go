// Package edge runs tlsedge: the config, the listeners and route tables,
// the pools of servers, reload, operations and the admin API. tlsmode
// serves each connection once edge has routed it.
//
// One connection's path through the files:
//
//   - listener.go accepts it, after the per-address limits of limits.go,
//     reads a PROXY header from a trusted balancer (proxyin.go), peeks the
//     ClientHello (tlsmode/hello.go) and finds its route in the listener's
//     table (routes.go: exact names, then wildcards, then "*"). An ACME
//     TLS-ALPN-01 validation is answered here (acme.go).
//   - The route's handler, built with the config (build.go, routetls.go,
//     authz.go, tickets.go, acme_build.go), serves it: tlsmode's
//     passthrough, terminate or reencrypt, and for protocol http the HTTP
//     proxy with the route's limits, identity, authorization, redirect and
//     cookie settings (redirect.go, cookie.go, pool_cookie.go).
//   - The backend's Pool (pool.go) picks a server by balance and affinity
//     (package affinity) among the servers that are up (health.go,
//     health_probe.go), not draining, not ejected (outlier.go), at their
//     weight scaled by agent reports (agent.go; both checks run on the
//     per-server loops of checkloop.go), takes a slot on it (its
//     connection cap and queue) and dials it.
//   - While it lives the connection is in the registry (registry.go: the
//     connection directory of GET /api/v1/connections), its events feed the
//     metrics (events.go, metrics*.go), and a drain, a rebalance or the
//     admin API may end it (ops.go, rebalance.go, admin*.go).
//
// The config: load.go reads the file (viper, TLSEDGE_ environment keys),
// decode.go types it and lists every unknown key, defaults.go fills the
// defaults, validate*.go and the validate functions beside each feature
// check it, problems.go says what is wrong and how to fix it. edge.go puts
// a config in force (apply): a reload builds everything new, keeps the
// servers' state and the HTTP proxies of unchanged routes, swaps, and
// drains what was removed (reload.go, reloads.go, reauth.go re-checks the
// clients of open connections). watch.go reloads when a named file
// changes; discovery*.go re-applies when DNS changes a pool.
package edge
