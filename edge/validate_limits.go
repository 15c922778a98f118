package edge

import (
	"crypto/tls"
	"fmt"
	"math"
	"strings"
	"time"
)

// validateLimits checks the limits and timeouts a peer could otherwise hold
// tlsedge with: each must be 0 (its documented meaning) or a sane positive
// value.
func validateLimits(c *Config, ps *Problems) {
	if *c.Log.FailureBurst < 0 {
		ps.Add("log.failure_burst", "must be 0 (log every failure) or more, e.g. 20")
	}
	if c.Log.FailureInterval < 0 {
		ps.Add("log.failure_interval", "must be positive, e.g. 10s")
	}
	for i, l := range c.Listeners {
		p := fmt.Sprintf("listeners[%d]", i)
		if l.HandshakeTimeout < 0 {
			ps.Add(p+".handshake_timeout", "must be positive, e.g. 10s")
		}
		for _, k := range []struct {
			key string
			v   int
		}{{"max_connections_per_ip", *l.MaxConnectionsPerIP}, {"max_handshakes", *l.MaxHandshakes}, {"connection_burst_per_ip", l.ConnectionBurstPerIP}} {
			if k.v < 0 {
				ps.Add(p+"."+k.key, "must be 0 (unlimited) or more")
			}
		}
		if r := *l.ConnectionRatePerIP; r != 0 && !rateOK(r) || math.IsNaN(r) {
			ps.Add(p+".connection_rate_per_ip", "%v: must be 0 (unlimited) or from %v to %v new connections a second", r, MinRate, MaxRate)
		}
	}
	for i, b := range c.Backends {
		p := fmt.Sprintf("backends[%d]", i)
		if b.MaxConnectionsPerServer < 0 {
			ps.Add(p+".max_connections_per_server", "must be 0 (unlimited) or more")
		}
		if b.QueueTimeout < 0 {
			ps.Add(p+".queue_timeout", "must be positive, e.g. 3s")
		}
		if b.MaxResponseHeaderBytes < 0 {
			ps.Add(p+".max_response_header_bytes", "must be 0 (64 KiB) or more")
		}
	}
}

// validateRouteHardening checks a terminate or reencrypt route's TLS
// profile, suites, tickets, upgrades, strip list and HTTP/2 limits.
func validateRouteHardening(ps *Problems, rp string, r *RouteConfig) {
	t := &r.TLS
	tp := rp + ".tls"
	oneOf(ps, tp+".profile", t.Profile, "intermediate", "modern")
	if len(t.CipherSuites) > 0 {
		if t.Profile == "modern" {
			ps.Add(tp+".cipher_suites", "profile modern is TLS 1.3 only, whose suites are fixed: remove cipher_suites, or use profile intermediate")
		}
		for j, name := range t.CipherSuites {
			if _, err := cipherSuite(name); err != nil {
				ps.Add(fmt.Sprintf("%s.cipher_suites[%d]", tp, j), "%v", err)
			}
		}
	}
	if t.Profile == "modern" && t.MinVersion == "1.2" {
		ps.Add(tp+".min_version", "profile modern is TLS 1.3 only: remove min_version, or use profile intermediate")
	}
	if d := t.SessionTicketRotation; d != -1 && (d < time.Second || d > 24*time.Hour) {
		ps.Add(tp+".session_ticket_rotation", "must be from 1s to 24h, e.g. 1h, or off")
	}
	h := r.HTTP
	if !r.isHTTP() {
		if r.Upgrades != nil {
			ps.Add(rp+".upgrades", "upgrades are for protocol http routes")
		}
		if r.StripHeaders != nil {
			ps.Add(rp+".strip_headers", "strip_headers is for protocol http routes (a tcp route forwards no headers)")
		}
		return
	}
	for j, u := range r.Upgrades {
		if u == "" || strings.ContainsAny(u, " \t,/") {
			ps.Add(fmt.Sprintf("%s.upgrades[%d]", rp, j), "%q is not a protocol token such as websocket", u)
		}
		if strings.EqualFold(u, "h2c") {
			ps.Add(fmt.Sprintf("%s.upgrades[%d]", rp, j), "h2c cannot be allowed: inside the tunnel tlsedge would check no Host and strip no header; clients reach HTTP/2 over TLS with ALPN h2")
		}
	}
	for j, name := range r.StripHeaders {
		if n := strings.TrimSuffix(name, "*"); n == "" || strings.ContainsAny(n, " \t:*") {
			ps.Add(fmt.Sprintf("%s.strip_headers[%d]", rp, j), "%q is not a header name (or a prefix ending in *)", name)
		}
	}
	if h.ReadBodyTimeout < 0 {
		ps.Add(rp+".http.read_body_timeout", "must be positive, e.g. 60s (0 = the default)")
	}
	if h.H2.MaxConcurrentStreams < 0 || h.H2.MaxConcurrentStreams > 1<<20 {
		ps.Add(rp+".http.h2.max_concurrent_streams", "must be 0 (the default, 100) to 1048576")
	}
	// RFC 9113 §6.9.1 and Go's HTTP/2 server: a window outside these
	// bounds would silently become Go's default.
	if w := h.H2.ReceiveWindow; w != 0 && (w < 1 || w > 1<<31-1) {
		ps.Add(rp+".http.h2.receive_window", "must be 0 (the default, 1 MiB) or 1 to 2147483647 bytes")
	}
	if w := h.H2.ConnectionReceiveWindow; w != 0 && (w < 65535 || w > 1<<31-1) {
		ps.Add(rp+".http.h2.connection_receive_window", "must be 0 (the default, 1 MiB) or 65535 to 2147483647 bytes (HTTP/2's initial connection window is 65535)")
	}
	if h.H2.PingTimeout < 0 {
		ps.Add(rp+".http.h2.ping_timeout", "must be 0 (the default) or positive")
	}
	if d := h.H2.PingInterval; d < 0 && d != -1 {
		ps.Add(rp+".http.h2.ping_interval", "must be a positive duration such as 30s, or off")
	}
}

// cipherSuite finds a TLS 1.2 suite by its Go or IANA name; insecure ones
// and TLS 1.3 ones are refused.
func cipherSuite(name string) (uint16, error) {
	for _, s := range tls.CipherSuites() {
		if strings.EqualFold(s.Name, name) {
			for _, v := range s.SupportedVersions {
				if v == tls.VersionTLS12 {
					return s.ID, nil
				}
			}
			return 0, fmt.Errorf("%s is a TLS 1.3 suite: those are fixed, list only TLS 1.2 suites", name)
		}
	}
	for _, s := range tls.InsecureCipherSuites() {
		if strings.EqualFold(s.Name, name) {
			return 0, fmt.Errorf("%s is insecure (no forward secrecy, or a weak cipher): it is not offered", name)
		}
	}
	return 0, fmt.Errorf("%q is not a TLS 1.2 cipher suite: use names such as TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", name)
}
