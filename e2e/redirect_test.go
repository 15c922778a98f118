package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// The redirect scheme on the built binary (issue 11, "Redirect: curl and a
// WebSocket client get 307 to the chosen server's public URL, spread by
// the policy; with a token the server verifies it and reads the client's
// identity from it"; docs/config.md protocol redirect, redirect_status,
// redirect_token, servers[].public). Clients are curl, Go's http.Client and
// coder/websocket; the token is checked with the recipe of the docs
// (rdVerify below is that recipe, word for word).

const rdHost = "rd.example.com"

// rdServers are n servers for a redirect backend: addresses nobody
// listens on (a redirect never connects to them; health checks are off)
// and public URLs node-<i>.example.com, the second with a base path.
func rdServers(t testing.TB, n int) (servers []any, public []string) {
	for i := 1; i <= n; i++ {
		pub := fmt.Sprintf("wss://node-%d.example.com/", i)
		if i == 2 {
			pub = "https://node-2.example.com:8443/base/"
		}
		servers = append(servers, cfgMap{"address": freeAddr(t), "public": pub})
		public = append(public, pub)
	}
	return servers, public
}

// rdBackend is a backend called b with servers and more keys.
func rdBackend(servers []any, keys cfgMap) cfgMap {
	b := cfgMap{"name": "b", "servers": servers, "health": cfgMap{"type": "none"}}
	for k, v := range keys {
		b[k] = v
	}
	return b
}

// rdCurl makes the requests (paths with queries) to tlsedge with one curl
// over one connection, HTTP/1.1 or /2, and returns each answer's status,
// Location, Cache-Control and body.
func rdCurl(t testing.TB, addr string, h2 bool, args []string, paths ...string) []rdAnswer {
	t.Helper()
	needTools(t, "curl")
	a := []string{"-sS", "--max-time", "30", "--cacert", thePKI.serverCAFile, "--path-as-is",
		"--resolve", rdHost + ":" + portOf(addr) + ":127.0.0.1", "-w", "\n@@ %{http_code} %header{location} %header{cache-control}\n", "--http1.1"}
	if h2 {
		a[len(a)-1] = "--http2"
	}
	a = append(a, args...)
	for _, p := range paths {
		a = append(a, "https://"+rdHost+":"+portOf(addr)+p)
	}
	c := startCommand(t, 60*time.Second, "curl", a...)
	if code := exitCode(c.wait(t, 55*time.Second)); code != 0 {
		t.Fatalf("curl: exit %d\n%s", code, c.out.String())
	}
	var out []rdAnswer
	rest := c.out.String()
	for {
		i := strings.Index(rest, "\n@@ ")
		if i < 0 {
			break
		}
		body := rest[:i]
		line, after, _ := strings.Cut(rest[i+4:], "\n")
		var ans rdAnswer
		f := strings.Split(line, " ")
		if len(f) != 3 {
			t.Fatalf("curl trailer %q: want status, location, cache-control", line)
		}
		fmt.Sscan(f[0], &ans.status)
		ans.location, ans.cacheControl, ans.body = f[1], f[2], body
		out = append(out, ans)
		rest = after
	}
	if len(out) != len(paths) {
		t.Fatalf("curl: %d answers; want %d\n%s", len(out), len(paths), c.out.String())
	}
	return out
}

type rdAnswer struct {
	status                 int
	location, cacheControl string
	body                   string
}

// Roundrobin over 3 servers: 30 requests (HTTP/1.1, one connection) get
// 307 with Location = the public URL + the request's path and query, no
// store, the short body; exactly 10 go to each server; the access lines
// name the server and the reason "redirected to <public>". Over HTTP/2
// the same (3 requests, one each). HEAD gets the Location and no body.
func TestRedirectRoundRobin(t *testing.T) {
	t.Parallel()
	f := azWriteFiles(t)
	servers, public := rdServers(t, 3)
	e := runEdge(t, azConfig(f, []any{azRoute(f, rdHost, "redirect", "b", "", nil)}, rdBackend(servers, nil)))

	var paths []string
	for i := 0; i < 30; i++ {
		paths = append(paths, fmt.Sprintf("/chat/%d?room=%d&x=a%%20b", i, i))
	}
	count := map[string]int{}
	for i, a := range rdCurl(t, e.addr, false, nil, paths...) {
		pub := ""
		for _, p := range public {
			if strings.HasPrefix(a.location, strings.TrimSuffix(p, "/")+"/chat/") {
				pub = p
			}
		}
		want := strings.TrimSuffix(pub, "/") + paths[i]
		if a.status != 307 || pub == "" || a.location != want || a.cacheControl != "no-store" || a.body != "307 temporary redirect\n" {
			t.Errorf("request %d: %d, Location %q, Cache-Control %q, body %q; want 307 to a public URL + %s, no-store, the short body",
				i, a.status, a.location, a.cacheControl, a.body, paths[i])
		}
		count[pub]++
	}
	for _, p := range public {
		if count[p] != 10 {
			t.Errorf("redirects by server: %v; want exactly 10 to each of %v", count, public)
			break
		}
	}
	lines := e.waitLogs(t, 30, "30 request lines", func(l logLine) bool {
		return l.msg() == "request" && strings.HasPrefix(l.str("path"), "/chat/")
	})
	addrOf := map[string]string{}
	for i, s := range servers {
		addrOf[public[i]] = s.(cfgMap)["address"].(string)
	}
	for _, l := range lines {
		pub := strings.TrimPrefix(l.str("reason"), "redirected to ")
		if int(l.num("status")) != 307 || addrOf[pub] == "" || l.str("server") != addrOf[pub] {
			t.Errorf("request line %v: want status 307, reason \"redirected to <public>\" and that server's address", l)
		}
	}

	h2 := rdCurl(t, e.addr, true, nil, "/a", "/b", "/c")
	seen := map[string]bool{}
	for _, a := range h2 {
		seen[a.location[:strings.LastIndex(a.location, "/")]] = true
		if a.status != 307 || a.cacheControl != "no-store" {
			t.Errorf("HTTP/2: %d, Cache-Control %q; want 307, no-store", a.status, a.cacheControl)
		}
	}
	if len(seen) != 3 {
		t.Errorf("HTTP/2 Locations %v: want one on each server", h2)
	}
	head := rdCurl(t, e.addr, false, []string{"-I"}, "/h?q=1")[0]
	if head.status != 307 || !strings.HasSuffix(head.location, "/h?q=1") || strings.Contains(head.body, "307 temporary redirect\n") {
		t.Errorf("HEAD: %+v; want 307 with the Location and no body", head)
	}
}

// Weights spread redirects: roundrobin over weights 1 and 3 sends exactly
// 2 and 6 of 8; with the heavy server's weight set to 1 through the admin
// API, 8 more go 4 and 4 (the weight in force, as for reported load). (leastconn is refused on a redirect backend: a
// redirect holds no connection, so it would count none.)
func TestRedirectWeights(t *testing.T) {
	t.Parallel()
	f := azWriteFiles(t)
	servers, public := rdServers(t, 2)
	servers[1].(cfgMap)["weight"] = 3
	cfg := azConfig(f, []any{azRoute(f, rdHost, "redirect", "b", "", nil)}, rdBackend(servers, cfgMap{"balance": "roundrobin"}))
	admin := newAdmin(t, withAdmin(t, cfg))
	e := runEdge(t, cfg)
	count := func() map[string]int {
		n := map[string]int{}
		for _, a := range rdCurl(t, e.addr, false, nil, "/1", "/2", "/3", "/4", "/5", "/6", "/7", "/8") {
			n[a.location[:strings.LastIndex(a.location, "/")+1]]++
		}
		return n
	}
	if n := count(); n[public[0]] != 2 || n[public[1]] != 6 {
		t.Errorf("redirects by server with weights 1 and 3: %v; want 2 to %s and 6 to %s", n, public[0], public[1])
	}
	addr := servers[1].(cfgMap)["address"].(string)
	if st := admin.do(http.MethodPut, "/api/v1/backends/b/servers/"+addr+"/weight", map[string]int{"weight": 1}, nil); st != http.StatusOK {
		t.Fatalf("PUT weight: %d", st)
	}
	if n := count(); n[public[0]] != 4 || n[public[1]] != 4 {
		t.Errorf("redirects by server with weights 1 and 1: %v; want 4 and 4", n)
	}
}

// affinity source_ip: every request from one address goes to the same
// server, over 20 requests on separate connections; redirect_status 302
// is answered.
func TestRedirectSourceIPAffinity(t *testing.T) {
	t.Parallel()
	f := azWriteFiles(t)
	servers, _ := rdServers(t, 3)
	route := azRoute(f, rdHost, "redirect", "b", "", nil)
	route["redirect_status"] = 302
	e := runEdge(t, azConfig(f, []any{route}, rdBackend(servers, cfgMap{"affinity": "source_ip"})))
	var paths []string
	for i := 0; i < 20; i++ {
		paths = append(paths, fmt.Sprintf("/s/%d", i))
	}
	first := ""
	for i, a := range rdCurl(t, e.addr, false, []string{"--no-keepalive", "-H", "Connection: close"}, paths...) {
		base := strings.TrimSuffix(a.location, paths[i])
		if first == "" {
			first = base
		}
		if a.status != 302 || base != first || !strings.HasSuffix(a.location, paths[i]) || a.body != "302 found\n" {
			t.Errorf("request %d: %d, Location %q, body %q; want 302 to %s%s", i, a.status, a.location, a.body, first, paths[i])
		}
	}
	if conns := len(e.waitLogs(t, 20, "20 connection lines", func(l logLine) bool { return l.msg() == "connection" })); conns != 20 {
		t.Errorf("%d connections logged; want 20 (one a request)", conns)
	}
}

// A WebSocket client (coder/websocket, not following redirects) gets 307
// to the wss:// public URL with the path and query and Connection: close;
// it then dials that URL itself and talks to the server there.
func TestRedirectWebSocket(t *testing.T) {
	t.Parallel()
	f := azWriteFiles(t)
	// The server the client is sent to: a real WebSocket echo server over
	// TLS, its public URL wss://localhost:<port>/ws-base/.
	cert, err := thePKI.serverCert("rd-ws")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx, cancel := context.WithTimeout(r.Context(), waitLong)
		defer cancel()
		typ, msg, err := c.Read(ctx)
		if err == nil {
			_ = c.Write(ctx, typ, []byte(r.URL.RequestURI()+" "+string(msg)))
		}
		c.Close(websocket.StatusNormalClosure, "")
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert.TLS}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "https://")
	pub := "wss://localhost:" + portOf(addr) + "/ws-base/"
	e := runEdge(t, azConfig(f, []any{azRoute(f, rdHost, "redirect", "b", "", nil)},
		rdBackend([]any{cfgMap{"address": addr, "public": pub}}, nil)))

	client := &http.Client{
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: thePKI.serverCA.Pool()}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	dialer := &net.Dialer{Timeout: waitLong}
	client.Transport.(*http.Transport).DialContext = func(ctx context.Context, network, a string) (net.Conn, error) {
		if strings.HasPrefix(a, rdHost+":") {
			a = e.addr
		}
		return dialer.DialContext(ctx, network, a)
	}
	c, resp, err := websocket.Dial(ctx, "wss://"+rdHost+":"+portOf(e.addr)+"/live?room=9", &websocket.DialOptions{HTTPClient: client})
	if err == nil {
		c.CloseNow()
		t.Fatal("WebSocket through the redirect route: upgraded; want a redirect")
	}
	want := "wss://localhost:" + portOf(addr) + "/ws-base/live?room=9"
	if resp == nil || resp.StatusCode != 307 || resp.Header.Get("Location") != want || !resp.Close {
		t.Fatalf("WebSocket upgrade: %v, %v; want 307, Location %s, Connection: close", err, resp, want)
	}
	// The client follows: straight to the server, tlsedge out of the path.
	c, _, err = websocket.Dial(ctx, resp.Header.Get("Location"), &websocket.DialOptions{HTTPClient: client})
	if err != nil {
		t.Fatalf("WebSocket to the Location: %v", err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := c.Read(ctx); err != nil || string(msg) != "/ws-base/live?room=9 hello" {
		t.Errorf("echo: %q, %v; want %q", msg, err, "/ws-base/live?room=9 hello")
	}
}

// A drained server (admin API) is no longer redirected to; with every
// server drained, 503 without Location.
func TestRedirectDrain(t *testing.T) {
	t.Parallel()
	f := azWriteFiles(t)
	servers, public := rdServers(t, 2)
	cfg := azConfig(f, []any{azRoute(f, rdHost, "redirect", "b", "", nil)}, rdBackend(servers, nil))
	admin := newAdmin(t, withAdmin(t, cfg))
	e := runEdge(t, cfg)
	drain := func(i int) {
		a := servers[i].(cfgMap)["address"].(string)
		if st := admin.do(http.MethodPost, "/api/v1/backends/b/servers/"+a+"/drain", nil, nil); st != http.StatusOK {
			t.Fatalf("POST drain %s: status %d", a, st)
		}
	}
	drain(0)
	for i, a := range rdCurl(t, e.addr, false, nil, "/1", "/2", "/3", "/4", "/5", "/6") {
		if a.status != 307 || !strings.HasPrefix(a.location, strings.TrimSuffix(public[1], "/")+"/") {
			t.Errorf("request %d with %s drained: %d to %q; want 307 to %s", i, public[0], a.status, a.location, public[1])
		}
	}
	drain(1)
	a := rdCurl(t, e.addr, false, nil, "/none")[0]
	if a.status != 503 || a.location != "" || a.body != "503 service unavailable: no server available\n" {
		t.Errorf("every server drained: %+v; want 503, no Location", a)
	}
}

// What an http route does before answering holds: an authorize rule
// refuses with 403 and no Location, a Host of another route gets 421.
func TestRedirectRefusals(t *testing.T) {
	t.Parallel()
	f := azWriteFiles(t)
	servers, _ := rdServers(t, 2)
	route := azRoute(f, rdHost, "redirect", "b", "verify_if_given", nil)
	route["authorize"] = []any{cfgMap{"paths": []any{"/admin"}, "allow": []any{cfgMap{"cn": "operator-*"}}},
		cfgMap{"paths": []any{"/"}, "allow": []any{cfgMap{"uri": "spiffe://devices.test/**"}}}}
	other := azRoute(f, "other.example.com", "redirect", "b", "", nil)
	e := runEdge(t, azConfig(f, []any{route, other}, rdBackend(servers, nil)))
	dev := []string{"--cert", f.cert[azDevice], "--key", f.key[azDevice]}

	if a := rdCurl(t, e.addr, false, dev, "/admin/x")[0]; a.status != 403 || a.location != "" || a.body != "403 forbidden: client not allowed on /admin\n" {
		t.Errorf("device on /admin: %+v; want 403, no Location", a)
	}
	if a := rdCurl(t, e.addr, false, dev, "/ok")[0]; a.status != 307 || a.location == "" {
		t.Errorf("device on /ok: %+v; want 307", a)
	}
	for _, h2 := range []bool{false, true} {
		a := rdCurl(t, e.addr, h2, []string{"-H", "Host: other.example.com"}, "/x")[0]
		if a.status != 421 || a.location != "" {
			t.Errorf("Host other.example.com on the connection of %s (h2 %v): %+v; want 421, no Location", rdHost, h2, a)
		}
	}
}

// ---------------------------------------------------------------- tokens

// rdRead reads and closes resp's body.
func rdRead(t testing.TB, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	return string(b)
}
