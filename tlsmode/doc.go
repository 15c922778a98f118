// Package tlsmode serves one client connection once the edge has routed it
// by its SNI: the ClientHello parser (hello.go), the three modes and what
// they forward.
//
//   - passthrough.go: the hello is replayed to a server and the raw TLS
//     bytes are relayed, on Linux by an epoll relay shared by the process
//     (relay_*_linux.go: a small buffer for small reads, splice(2) for
//     bulk; one event loop per core, started on first use) and elsewhere
//     by goroutines (pipe.go, relay_other.go).
//   - terminate.go: the TLS handshake with the route's certificate and
//     client certificate policy (authz.go, denied.go, clientlimit.go); a tcp
//     route relays the plaintext (with PROXY v2 TLVs, proxyssl.go), an http
//     route serves it with the HTTP proxy.
//   - reencrypt: terminate, then a verified TLS connection to the server
//     (upstream.go).
//
// The HTTP proxy of an http route: httpproxy.go (options, ServeHTTP, the
// rewrite of requests), httpanswers.go (its own error answers and the
// access log), httpconn.go (one client connection's lifecycle: HTTP/2 on a
// net/http.Server of its own), h1server.go, h1response.go, h1head.go and
// h1body.go (HTTP/1.x served by tlsedge itself: no buffer while idle, and
// h1park.go: an idle keep-alive connection parked in the shared epoll set,
// no goroutine), h1guard.go and h1parse.go (the HTTP/1 smuggling guard),
// httpparts.go and httplimits.go (bodies, timeouts, HTTP/2 settings),
// h1forward.go and h1upstream.go (the lean forward of requests with no
// body or a buffered one, on tlsedge's own keep-alive server
// connections), httptransport.go (the pick of a server per request,
// retries, the ReverseProxy transports for the rest),
// upgrade.go (WebSocket and other upgrades: close frames on shutdown),
// upgrade_lean.go, upgrade_copy.go and upgrade_park_linux.go (the lean
// relay of an upgraded stream: one goroutine per idle WebSocket, its
// server side parked in a shared epoll set), authzhttp.go (path rules),
// the identity headers (package tlsmode/identity), redirect*.go (protocol redirect),
// cookie.go (cookie affinity) and wsfailover*.go (WebSocket failover).
//
// reasons.go says why a connection ended (its access line's reason), from
// the typed failures the handlers return, in one place.
//
// live.go holds what other goroutines read of a live connection (the
// server it is bound to, its byte counts, how to end it). tlsmode reads no
// config file; the only process-wide state is the passthrough relay, the
// parking set of idle HTTP/1 connections and upgraded streams, and their
// logger (SetRelayLogger).
package tlsmode
