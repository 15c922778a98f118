package edge

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// rdBase is a config: ROUTE is replaced by the route's keys after
// backend (rdRoute and more), SERVERS by the servers, BACKEND by more backend keys.
const rdBase = `
listeners:
  - name: public
    address: "127.0.0.1:0"
    routes:
      - {sni: ["*"], backend: bROUTE}
backends:
  - name: b
    health: {type: none}BACKEND
    servers: SERVERS
`

// rdRoute is a terminate redirect route's keys; rdTLS its tls.
const (
	rdTLS   = ", tls: {cert: DIR/edge.pem, key: DIR/edge-key.pem}"
	rdRoute = ", mode: terminate, protocol: redirect" + rdTLS
)

const rdServers = `[{address: "10.0.0.1:443", public: "wss://node-1.example.com/"}, {address: "10.0.0.2:443", public: "https://n2.example.com/base/"}]`

// rdWrite writes a config from rdBase with the route keys, backend keys
// and servers given ("" = the defaults), a 32-byte key DIR/k32 and a
// 31-byte DIR/k31; it returns the config's path.
func rdWrite(t *testing.T, route, backend, servers string) (path, dir string) {
	t.Helper()
	dir = t.TempDir()
	edgeCert(t, dir, "edge.test")
	writeFile(t, filepath.Join(dir, "k32"), strings.Repeat("k", 32))
	writeFile(t, filepath.Join(dir, "k31"), strings.Repeat("k", 31))
	if servers == "" {
		servers = rdServers
	}
	body := strings.NewReplacer("ROUTE", route, "BACKEND", backend, "SERVERS", servers).Replace(rdBase)
	path = filepath.Join(dir, "edge.yaml")
	writeFile(t, path, strings.ReplaceAll(body, "DIR", dir))
	return path, dir
}

// Every way to misconfigure the redirect keys is refused with the key
// named and the fix said.
func TestRedirectValidate(t *testing.T) {
	const r0 = "listeners[0].routes[0]"
	for _, tt := range []struct {
		name, route, backend, servers string
		want                          []string
	}{
		{"reencrypt", ", mode: reencrypt, protocol: redirect" + rdTLS, "\n    tls: {insecure_skip_verify: true}", "", []string{
			r0 + ".mode: a redirect route never connects to its servers (clients go to their public URLs), so there is nothing to reencrypt: use mode terminate",
		}},
		{"passthrough", ", mode: passthrough, protocol: redirect", "", "", []string{
			r0 + ".protocol: passthrough never decrypts, so it cannot see http: use mode terminate or reencrypt",
		}},
		{"public missing", rdRoute, "", `[{address: "10.0.0.1:443", public: "wss://n1/"}, {address: "10.0.0.2:443"}]`, []string{
			"backends[0].servers[1].public: missing: backend b serves a redirect route (" + r0 + "), which sends clients to the public URL of the server it picks; add the URL clients reach 10.0.0.2:443 at, e.g. wss://node-2.example.com/",
		}},
		{"leastconn", rdRoute, "\n    balance: leastconn", "", []string{
			"backends[0].balance: backend b serves a redirect route (" + r0 + "): a redirect holds no connection, so leastconn would count none and send every client to the heaviest server; use roundrobin or random (weights and the load servers report apply)",
		}},
		{"public twice", rdRoute, "", `[{address: "10.0.0.1:443", public: "wss://n1/"}, {address: "10.0.0.2:443", public: "wss://n1/"}]`, []string{
			"backends[0].servers[1].public: wss://n1/ is also servers[0]'s: a redirect token is bound to one public URL, so each server needs its own",
		}},
		{"discovery", rdRoute, "\n    discovery: {dns: \"_wss._tcp.example.com.\"}", "", []string{
			"backends[0].discovery.dns: backend b serves a redirect route (" + r0 + "), but servers found in DNS have no public URL to send clients to: list its servers with public, or use protocol http",
		}},
		{"public bad", rdRoute, "", `[{address: "10.0.0.1:443", public: "ftp://n1/"}, {address: "10.0.0.2:443", public: "https://n2/?a=1"}, {address: "10.0.0.3:443", public: "https://u@n3/"}, {address: "10.0.0.4:443", public: "https://n4/#x"}]`, []string{
			`backends[0].servers[0].public: "ftp://n1/" is not a public URL: the scheme must be http, https, ws or wss; write it like wss://node-3.example.com/ or https://n3.example.com/base/`,
			`backends[0].servers[1].public: "https://n2/?a=1" is not a public URL: a query is not allowed: the request's query is appended; write it like wss://node-3.example.com/ or https://n3.example.com/base/`,
			`backends[0].servers[2].public: "https://u@n3/" is not a public URL: userinfo (user@) is not allowed; write it like wss://node-3.example.com/ or https://n3.example.com/base/`,
			`backends[0].servers[3].public: "https://n4/#x" is not a public URL: a fragment is not allowed; write it like wss://node-3.example.com/ or https://n3.example.com/base/`,
		}},
		{"status", rdRoute + ", redirect_status: 200", "", "", []string{
			r0 + ".redirect_status: 200 is not a redirect status: use 307 (the default; the method and body are kept), 308, 301, 302 or 303",
		}},
		{"token key missing", rdRoute + ", redirect_token: {ttl: 10s}", "", "", []string{
			r0 + ".redirect_token.key_file: missing: the file of the secret key (at least 32 bytes, e.g. made with: head -c 32 /dev/urandom > redirect.key) that tlsedge signs the tokens with and the servers verify them with",
		}},
		{"token key short", rdRoute + ", redirect_token: {key_file: DIR/k31}", "", "", []string{
			r0 + ".redirect_token.key_file: DIR/k31 has 31 bytes: the key must have at least 32 (e.g. head -c 32 /dev/urandom > DIR/k31)",
		}},
		{"token key unreadable", rdRoute + ", redirect_token: {key_file: DIR/nope}", "", "", []string{
			r0 + ".redirect_token.key_file: cannot read DIR/nope: open DIR/nope: no such file or directory",
		}},
		{"token ttl", rdRoute + ", redirect_token: {key_file: DIR/k32, ttl: 2h}", "", "", []string{
			r0 + ".redirect_token.ttl: 2h0m0s is not valid: whole seconds from 1s to 1h, e.g. 30s (the default)",
		}},
		{"token ttl fraction", rdRoute + ", redirect_token: {key_file: DIR/k32, ttl: 1500ms}", "", "", []string{
			r0 + ".redirect_token.ttl: 1.5s is not valid: whole seconds from 1s to 1h, e.g. 30s (the default)",
		}},
		{"token in clear", rdRoute + ", redirect_token: {key_file: DIR/k32}", "", `[{address: "10.0.0.1:443", public: "ws://n1/"}, {address: "10.0.0.2:443", public: "https://n2/"}]`, []string{
			r0 + ".redirect_token: the token is a credential, and servers[0] of backend b has a plaintext public URL (ws://n1/): anyone on the path could read and use it; use https:// or wss://, or remove redirect_token",
		}},
		{"unused keys", rdRoute + `, identity: xfcc, upgrades: [websocket], strip_headers: [X-A], websocket: {failover: true}, http: {response_header_timeout: 5s, max_request_body: 10, read_body_timeout: 5s}`, "", "", []string{
			r0 + ".identity: a redirect route forwards no request, so no identity header: remove identity; to hand the client's identity to the server, use redirect_token",
			r0 + ".upgrades: a redirect route switches no protocol: an upgrade request (a WebSocket) gets the redirect like any request; remove upgrades",
			r0 + ".strip_headers: a redirect route forwards no request, so it strips no header: remove strip_headers",
			r0 + ".websocket.failover: a redirect route carries no WebSocket (the client connects to the server itself): remove it, or use protocol http",
			r0 + ".http.response_header_timeout: a redirect route waits for no server: remove it",
			r0 + ".http.max_request_body: a redirect route reads no request body (the connection closes after the redirect of a request with one): remove it",
			r0 + ".http.read_body_timeout: a redirect route reads no request body: remove it",
		}},
		{"keys on http", ", mode: terminate, protocol: http" + rdTLS + ", redirect_status: 302, redirect_token: {key_file: DIR/k32}", "", "", []string{
			r0 + ".redirect_status: is for protocol redirect routes: remove it, or set protocol: redirect",
			r0 + ".redirect_token: is for protocol redirect routes: remove it, or set protocol: redirect",
		}},
		{"public bad on http", ", mode: terminate, protocol: http" + rdTLS, "", `[{address: "10.0.0.1:443", public: "n1.example.com"}]`, []string{
			`backends[0].servers[0].public: "n1.example.com" is not a public URL: the scheme must be http, https, ws or wss; write it like wss://node-3.example.com/ or https://n3.example.com/base/`,
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path, dir := rdWrite(t, tt.route, tt.backend, tt.servers)
			_, err := LoadFile(path)
			if err == nil {
				t.Fatal("LoadFile: nil error; want problems")
			}
			got := strings.ReplaceAll(strings.ReplaceAll(err.Error(), path+": ", ""), dir, "DIR")
			var problems []string
			for _, l := range strings.Split(got, "\n") {
				// websocket.failover has its own validator (wsfailover.go)
				if !strings.HasPrefix(l, r0+".websocket.failover: ") || strings.Contains(l, "redirect route") {
					problems = append(problems, l)
				}
			}
			if strings.Join(problems, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("problems:\ngot:\n%s\nwant:\n%s", got, strings.Join(tt.want, "\n"))
			}
		})
	}
}

// A valid redirect route loads, with its defaults, and builds: status,
// the public URLs by address and the token key.
func TestRedirectBuild(t *testing.T) {
	path, dir := rdWrite(t, rdRoute+", redirect_status: 308, redirect_token: {key_file: k32, ttl: 5s}", "", "")
	cfg, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rc := &cfg.Listeners[0].Routes[0]
	rd, err := buildRedirect(cfg, rc, &cfg.Backends[0])
	if err != nil || rd == nil || rd.Status() != 308 {
		t.Fatalf("buildRedirect: %v, %v; want a Redirect with status 308", rd, err)
	}
	if rc.RedirectToken.TTL != 5*time.Second {
		t.Errorf("ttl %v; want 5s", rc.RedirectToken.TTL)
	}
	// The key file shrinks after validate: the build uses the key
	// validate read (files are read once per config).
	if err := os.WriteFile(filepath.Join(dir, "k32"), []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := buildRedirect(cfg, rc, &cfg.Backends[0]); err != nil {
		t.Errorf("buildRedirect after the key file shrank on disk: %v; want the key validate read", err)
	}
	// Defaults: 307, no token. Another protocol: no Redirect.
	path, _ = rdWrite(t, rdRoute, "", "")
	if cfg, err = LoadFile(path); err != nil {
		t.Fatal(err)
	}
	rc = &cfg.Listeners[0].Routes[0]
	if rd, err := buildRedirect(cfg, rc, &cfg.Backends[0]); err != nil || rd.Status() != 307 {
		t.Errorf("defaults: %v, %v; want status 307", rd, err)
	}
	rc.Protocol = "http"
	if rd, err := buildRedirect(cfg, rc, &cfg.Backends[0]); err != nil || rd != nil {
		t.Errorf("protocol http: %v, %v; want nil, nil", rd, err)
	}
}
