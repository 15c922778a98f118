package edge

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/tlsedge/tlsedge/tlsmode"
)

// websocket.failover is refused, with the key named and the fix said,
// wherever tlsedge could not relay WebSocket messages.
func TestWFValidate(t *testing.T) {
	const route = `routes: [{sni: ["*"], backend: b}]`
	const tlsKeys = `tls: {cert: DIR/edge.pem, key: DIR/edge-key.pem}`
	for _, tt := range []struct {
		name, to string
		want     []string
	}{
		{"passthrough", `routes: [{sni: ["*"], backend: b, websocket: {failover: true}}]`, []string{
			`listeners[0].routes[0].websocket.failover: passthrough never decrypts, so it cannot relay WebSocket messages: remove it, or use mode terminate or reencrypt with protocol http`,
		}},
		{"tcp", `routes: [{sni: ["*"], backend: b, mode: terminate, protocol: tcp, ` + tlsKeys + `, websocket: {failover: true}}]`, []string{
			`listeners[0].routes[0].websocket.failover: needs protocol http: a protocol tcp route relays a byte stream and never reads a WebSocket handshake; set protocol: http, or remove it`,
		}},
		{"no upgrades", `routes: [{sni: ["*"], backend: b, mode: terminate, protocol: http, ` + tlsKeys + `, upgrades: [], websocket: {failover: true}}]`, []string{
			`listeners[0].routes[0].websocket.failover: upgrades does not list websocket, so no WebSocket is ever accepted on this route: add websocket to upgrades, or remove failover`,
		}},
		{"other upgrade", `routes: [{sni: ["*"], backend: b, mode: terminate, protocol: http, ` + tlsKeys + `, upgrades: [mqtt], websocket: {failover: true}}]`, []string{
			`listeners[0].routes[0].websocket.failover: upgrades does not list websocket, so no WebSocket is ever accepted on this route: add websocket to upgrades, or remove failover`,
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

// failover is accepted on protocol http routes of both modes that end TLS,
// with the default upgrades or a list naming websocket (in any case), and
// is off by default.
func TestWFValidateAccepts(t *testing.T) {
	const route = `routes: [{sni: ["*"], backend: b}]`
	for _, tt := range []struct {
		name, to, backendTLS string
		want                 bool
	}{
		{"default off", `routes: [{sni: ["*"], backend: b, mode: terminate, protocol: http, tls: {cert: DIR/edge.pem, key: DIR/edge-key.pem}}]`, "", false},
		{"terminate", `routes: [{sni: ["*"], backend: b, mode: terminate, protocol: http, tls: {cert: DIR/edge.pem, key: DIR/edge-key.pem}, websocket: {failover: true}}]`, "", true},
		{"reencrypt with upgrades", `routes: [{sni: ["*"], backend: b, mode: reencrypt, protocol: http, tls: {cert: DIR/edge.pem, key: DIR/edge-key.pem}, upgrades: [WebSocket], websocket: {failover: true}}]`,
			"\n    tls: {insecure_skip_verify: true}", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			edgeCert(t, dir, "edge.test")
			path := filepath.Join(dir, "edge.yaml")
			base := strings.Replace(opsBase, `servers: [{address: "127.0.0.1:9001"}]`,
				`servers: [{address: "127.0.0.1:9001"}]`+tt.backendTLS, 1)
			writeFile(t, path, strings.ReplaceAll(strings.Replace(base, route, tt.to, 1), "DIR", dir))
			cfg, err := LoadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Listeners[0].Routes[0].WebSocket.Failover; got != tt.want {
				t.Errorf("websocket.failover = %v; want %v", got, tt.want)
			}
		})
	}
}

// A failover WebSocket moves to another server for exactly the reasons the
// edge gives when it closes connections because of their server (drain,
// rebalance, the admin API): the strings must stay the same.
func TestWFReasonsMatchEdge(t *testing.T) {
	for _, c := range []struct{ edge, tlsmode string }{
		{reasonDrained, tlsmode.ReasonDrained},
		{reasonRebalance, tlsmode.ReasonRebalanced},
		{reasonAdmin, tlsmode.ReasonAdminClose},
	} {
		if c.edge != c.tlsmode {
			t.Errorf("edge reason %q != tlsmode's %q", c.edge, c.tlsmode)
		}
	}
}
