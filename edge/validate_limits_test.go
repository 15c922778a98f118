package edge

import (
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
)

// Hardening keys that Go would otherwise quietly replace or that would
// open a hole are refused with the key named.
func TestHardeningKeysValidate(t *testing.T) {
	const route = `routes: [{sni: ["*"], backend: b}]`
	for _, tt := range []struct {
		name, to string
		want     []string
	}{
		{"h2c upgrade", `routes: [{sni: ["*"], backend: b, mode: terminate, protocol: http, tls: {cert: DIR/edge.pem, key: DIR/edge-key.pem}, upgrades: [websocket, H2C]}]`, []string{
			`listeners[0].routes[0].upgrades[1]: h2c cannot be allowed: inside the tunnel tlsedge would check no Host and strip no header; clients reach HTTP/2 over TLS with ALPN h2`,
		}},
		{"h2 windows", `routes: [{sni: ["*"], backend: b, mode: terminate, protocol: http, tls: {cert: DIR/edge.pem, key: DIR/edge-key.pem}, http: {h2: {receive_window: 4294967296, connection_receive_window: 32768, max_concurrent_streams: 5000000000}}}]`, []string{
			`listeners[0].routes[0].http.h2.max_concurrent_streams: must be 0 (the default, 100) to 1048576`,
			`listeners[0].routes[0].http.h2.receive_window: must be 0 (the default, 1 MiB) or 1 to 2147483647 bytes`,
			`listeners[0].routes[0].http.h2.connection_receive_window: must be 0 (the default, 1 MiB) or 65535 to 2147483647 bytes (HTTP/2's initial connection window is 65535)`,
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			edgeCert(t, dir, "edge.test")
			path := filepath.Join(dir, "edge.yaml")
			writeFile(t, path, strings.Replace(opsBase, route, strings.ReplaceAll(tt.to, "DIR", dir), 1))
			_, err := LoadFile(path)
			if err == nil {
				t.Fatal("LoadFile: nil error; want problems")
			}
			got := strings.ReplaceAll(err.Error(), path+": ", "")
			if got != strings.Join(tt.want, "\n") {
				t.Errorf("problems:\ngot:\n%s\nwant:\n%s", got, strings.Join(tt.want, "\n"))
			}
		})
	}
}

// Per-IP limits count an IPv6 client by its /64.
func TestLimitKeyIPv6Prefix(t *testing.T) {
	var l ipLimiter
	lim := ipLimits{perIP: 2}
	for i, a := range []string{"2001:db8:1:2::1", "2001:db8:1:2:ffff::9"} {
		if kind, _, held := l.admit(netip.MustParseAddr(a), lim, t0); kind != "" || !held {
			t.Fatalf("connection %d refused: %s", i, kind)
		}
	}
	if kind, _, _ := l.admit(netip.MustParseAddr("2001:db8:1:2:abcd::7"), lim, t0); kind != refusedPerIP {
		t.Fatalf("a third address of the same /64 admitted (%q)", kind)
	}
	if kind, _, held := l.admit(netip.MustParseAddr("2001:db8:1:3::1"), lim, t0); kind != "" || !held {
		t.Fatalf("another /64 refused: %s", kind)
	}
	l.release(netip.MustParseAddr("2001:db8:1:2::5"))
	if kind, _, _ := l.admit(netip.MustParseAddr("2001:db8:1:2::6"), lim, t0); kind != "" {
		t.Fatalf("after a release the /64 is still full: %s", kind)
	}
}
