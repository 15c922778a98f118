package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/coder/websocket"
)

// Issue 11, cookie stickiness: "affinity: cookie with cookie: {name, ttl,
// secure, http_only, same_site}: the first response sets a cookie naming
// the server by an HMAC-protected opaque value (not its address); later
// requests with it go to that server while it is up and not draining,
// otherwise are re-balanced and the cookie re-set." Shown with the built
// binary, Go's HTTP/1.1 and HTTP/2 clients (the HTTP/2 one splits the
// Cookie field into one field a cookie) and a WebSocket client.

// ckHost is the route's name.
const ckHost = "ck.example.com"

// ckSetup is one tlsedge in front of three HTTP servers (ck-1..ck-3,
// roundrobin, affinity cookie) with the given cookie keys.
type ckSetup struct {
	e     *edgeProc
	admin string
	bs    map[string]*httpBackend // by name
	cfg   cfgMap
}

func ckStart(t *testing.T, cookie cfgMap) *ckSetup {
	t.Helper()
	p := writeTermFiles(t)
	s := &ckSetup{bs: map[string]*httpBackend{}}
	var addrs []string
	for _, n := range []string{"ck-1", "ck-2", "ck-3"} {
		b := startHTTPBackend(t, n)
		s.bs[n] = b
		addrs = append(addrs, b.Addr())
	}
	backend := cfgMap{"name": "app", "affinity": "cookie", "servers": servers(addrs...), "health": cfgMap{"type": "none"}}
	if cookie != nil {
		backend["cookie"] = cookie
	}
	s.cfg = cfgMap{
		"log": cfgMap{"level": "info", "format": "json"},
		"listeners": []any{cfgMap{"name": "public", "address": "", "routes": []any{
			termRoute(p, ckHost, "terminate", "http", "app", "", nil)}}},
		"backends": []any{backend},
	}
	s.admin = withAdmin(t, s.cfg)
	s.e = runEdge(t, s.cfg)
	return s
}

// ckClient sends requests to one tlsedge over HTTP/1.1 and HTTP/2.
type ckClient struct {
	t      *testing.T
	h1, h2 *http.Client
}

func ckNewClient(t *testing.T, addr string) *ckClient {
	tc := &tls.Config{ServerName: ckHost, RootCAs: thePKI.serverCA.Pool()}
	c := &ckClient{t: t, h1: httpsClient(addr, tc, false), h2: httpsClient(addr, tc, true)}
	t.Cleanup(func() {
		c.h1.CloseIdleConnections()
		c.h2.CloseIdleConnections()
	})
	return c
}

// ckAnswer is what a response said.
type ckAnswer struct {
	backend   string   // X-Backend: the server that answered
	setCookie []string // its Set-Cookie fields
	proto     string
}

// get sends GET path with the Cookie field cookie ("" = none), over
// HTTP/2 when h2, and expects a 200.
func (c *ckClient) get(h2 bool, path, cookie string) ckAnswer {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodGet, "https://"+ckHost+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	hc := c.h1
	if h2 {
		hc = c.h2
	}
	resp, err := hc.Do(req)
	if err != nil {
		c.t.Fatalf("GET %s through tlsedge: %v", path, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		c.t.Fatalf("GET %s: status %d; want 200", path, resp.StatusCode)
	}
	if want := map[bool]string{false: "HTTP/1.1", true: "HTTP/2.0"}[h2]; resp.Proto != want {
		c.t.Fatalf("GET %s: spoken %s; want %s", path, resp.Proto, want)
	}
	return ckAnswer{backend: resp.Header.Get("X-Backend"), setCookie: resp.Header.Values("Set-Cookie"), proto: resp.Proto}
}

// ckValueOf returns the value of the single Set-Cookie of a, checking the
// whole field against want (a regexp with VALUE where the value goes).
func ckValueOf(t *testing.T, a ckAnswer, want string) string {
	t.Helper()
	if len(a.setCookie) != 1 {
		t.Fatalf("answer of %s has Set-Cookie %q; want exactly one", a.backend, a.setCookie)
	}
	re := regexp.MustCompile("^" + strings.Replace(regexp.QuoteMeta(want), "VALUE", "([A-Za-z0-9_-]{22})", 1) + "$")
	m := re.FindStringSubmatch(a.setCookie[0])
	if m == nil {
		t.Fatalf("Set-Cookie %q; want %s (a 22-character base64url value)", a.setCookie[0], want)
	}
	return m[1]
}

// ckSeenCookie is the Cookie fields the backend received with path.
func (s *ckSetup) ckSeenCookie(t *testing.T, path string) []string {
	t.Helper()
	var all []*httpBackend
	for _, b := range s.bs {
		all = append(all, b)
	}
	r, _ := findRequest(t, path, all...)
	return r.Header.Values("Cookie")
}

// 50 requests with the cookie all reach one server, which never sees the
// affinity cookie but sees the client's others; the Set-Cookie is exactly
// the configured one; after that server is drained the requests move to
// another and the cookie changes, and the 50 after that stay there.
func TestCookieStickyThenDrained(t *testing.T) {
	t.Parallel()
	s := ckStart(t, cfgMap{"name": "ck_srv", "ttl": "1h", "same_site": "strict"})
	c := ckNewClient(t, s.e.addr)
	const attrs = "; Path=/; Max-Age=3600; Secure; HttpOnly; SameSite=Strict"

	first := c.get(false, "/ck/first", "a=1")
	value := ckValueOf(t, first, "ck_srv=VALUE"+attrs)
	home := first.backend
	if got := s.ckSeenCookie(t, "/ck/first"); len(got) != 1 || got[0] != "a=1" {
		t.Errorf("first request: the server saw Cookie %q; want [\"a=1\"]", got)
	}
	if strings.Contains(value, strings.Split(s.bs[home].Addr(), ":")[1]) {
		t.Errorf("cookie value %q shows the server's port", value)
	}

	// The affinity cookie first, in the middle, last; HTTP/1.1 and HTTP/2.
	shapes := []string{
		"ck_srv=" + value + "; a=1; b=2",
		"a=1; ck_srv=" + value + "; b=2",
		"a=1; b=2; ck_srv=" + value,
	}
	for i := range 50 {
		path := fmt.Sprintf("/ck/sticky/%d", i)
		a := c.get(i%2 == 1, path, shapes[i%3])
		if a.backend != home {
			t.Errorf("request %d (%s) with the cookie reached %s; want %s", i, a.proto, a.backend, home)
		}
		if len(a.setCookie) != 0 {
			t.Errorf("request %d (%s): Set-Cookie %q; want none (the cookie names the server that answered)", i, a.proto, a.setCookie)
		}
		if got := s.ckSeenCookie(t, path); len(got) != 1 || got[0] != "a=1; b=2" {
			t.Errorf("request %d (%s, Cookie %q): the server saw Cookie %q; want [\"a=1; b=2\"]", i, a.proto, shapes[i%3], got)
		}
	}
	// Only the affinity cookie: the server gets no Cookie field at all.
	c.get(true, "/ck/only", "ck_srv="+value)
	if got := s.ckSeenCookie(t, "/ck/only"); len(got) != 0 {
		t.Errorf("request with only the affinity cookie: the server saw Cookie %q; want none", got)
	}

	admin := newAdmin(t, s.admin)
	if st := admin.do(http.MethodPost, "/api/v1/backends/app/servers/"+s.bs[home].Addr()+"/drain", nil, nil); st != http.StatusOK {
		t.Fatalf("POST drain of %s: status %d", home, st)
	}
	moved := c.get(false, "/ck/moved", "a=1; ck_srv="+value)
	if moved.backend == home {
		t.Fatalf("the first request after the drain reached %s, which is draining", home)
	}
	newValue := ckValueOf(t, moved, "ck_srv=VALUE"+attrs)
	if newValue == value {
		t.Errorf("the cookie was re-set to the same value %q for another server", newValue)
	}
	if got := s.ckSeenCookie(t, "/ck/moved"); len(got) != 1 || got[0] != "a=1" {
		t.Errorf("request after the drain: the server saw Cookie %q; want [\"a=1\"]", got)
	}
	for i := range 50 {
		a := c.get(i%2 == 0, fmt.Sprintf("/ck/after/%d", i), "ck_srv="+newValue+"; a=1")
		if a.backend != moved.backend {
			t.Errorf("request %d (%s) after the drain reached %s; want %s", i, a.proto, a.backend, moved.backend)
		}
		if len(a.setCookie) != 0 {
			t.Errorf("request %d (%s) after the drain: Set-Cookie %q; want none", i, a.proto, a.setCookie)
		}
	}
}

// A cookie value that names no server (garbage, a forged one of the right
// shape, an empty one) is ignored: the request is balanced by roundrobin,
// the answer sets the cookie of the server that answered, and the server
// does not see the bad cookie. Each server's value is always the same.
// The default attributes: a session cookie, Secure, HttpOnly, Lax.
func TestCookieForgedIgnored(t *testing.T) {
	t.Parallel()
	s := ckStart(t, nil)
	c := ckNewClient(t, s.e.addr)
	const attrs = "; Path=/; Secure; HttpOnly; SameSite=Lax"
	bad := []string{
		"tlsedge_server=garbage",
		"tlsedge_server=AAAAAAAAAAAAAAAAAAAAAA",
		"tlsedge_server=",
		`tlsedge_server="` + strings.Repeat("x", 300) + `"`,
		"tlsedge_server=" + s.bs["ck-1"].Addr(),
	}
	values := map[string]string{} // server -> its value
	servedBy := map[string]int{}
	for i := range 3 * len(bad) {
		path := fmt.Sprintf("/ck/forged/%d", i)
		a := c.get(i%2 == 0, path, "z=9; "+bad[i%len(bad)])
		v := ckValueOf(t, a, "tlsedge_server=VALUE"+attrs)
		if prev, ok := values[a.backend]; ok && prev != v {
			t.Errorf("server %s was named by %q and by %q; want one value a server", a.backend, prev, v)
		}
		values[a.backend] = v
		servedBy[a.backend]++
		if got := s.ckSeenCookie(t, path); len(got) != 1 || got[0] != "z=9" {
			t.Errorf("request %d with %q: the server saw Cookie %q; want [\"z=9\"]", i, bad[i%len(bad)], got)
		}
	}
	// Roundrobin over three servers: 15 requests, 5 each.
	for _, n := range []string{"ck-1", "ck-2", "ck-3"} {
		if servedBy[n] != 5 {
			t.Errorf("requests with a bad cookie served by %v; want 5 each (roundrobin, the cookie ignored)", servedBy)
			break
		}
	}
	if len(values) == 3 && (values["ck-1"] == values["ck-2"] || values["ck-2"] == values["ck-3"] || values["ck-1"] == values["ck-3"]) {
		t.Errorf("values %v; want a different value for each server", values)
	}
	// Each learned value then holds its server.
	for n, v := range values {
		for i := range 3 {
			if a := c.get(i == 1, "/ck/learned", "tlsedge_server="+v); a.backend != n || len(a.setCookie) != 0 {
				t.Errorf("with the value of %s: reached %s, Set-Cookie %q; want %s and none", n, a.backend, a.setCookie, n)
			}
		}
	}
}

// A WebSocket upgrade gets the cookie on its 101, and one sent with the
// cookie reaches its server without a Set-Cookie.
func TestCookieWebSocket(t *testing.T) {
	t.Parallel()
	s := ckStart(t, cfgMap{"secure": false, "http_only": false})
	dial := func(cookie string) (string, []string) {
		t.Helper()
		tr := &http.Transport{
			TLSClientConfig: &tls.Config{ServerName: ckHost, RootCAs: thePKI.serverCA.Pool(), NextProtos: []string{"http/1.1"}},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, s.e.addr)
			},
		}
		defer tr.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		defer cancel()
		h := http.Header{}
		if cookie != "" {
			h.Set("Cookie", cookie)
		}
		ws, resp, err := websocket.Dial(ctx, "wss://"+ckHost+"/ck/ws", &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}, HTTPHeader: h})
		if err != nil {
			t.Fatalf("WebSocket through tlsedge: %v", err)
		}
		defer ws.CloseNow()
		if err := ws.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
			t.Fatalf("WebSocket write: %v", err)
		}
		if _, msg, err := ws.Read(ctx); err != nil || string(msg) != "ping" {
			t.Fatalf("WebSocket echo: %q, %v; want ping", msg, err)
		}
		_ = ws.Close(websocket.StatusNormalClosure, "")
		return resp.Header.Get("X-Backend"), resp.Header.Values("Set-Cookie")
	}
	home, set := dial("")
	if len(set) != 1 {
		t.Fatalf("101 without a cookie: Set-Cookie %q; want one", set)
	}
	value := ckValueOf(t, ckAnswer{backend: home, setCookie: set}, "tlsedge_server=VALUE; Path=/; SameSite=Lax")
	for i := range 4 {
		if got, set := dial("tlsedge_server=" + value); got != home || len(set) != 0 {
			t.Errorf("WebSocket %d with the cookie: reached %s, Set-Cookie %q; want %s and none", i, got, set, home)
		}
	}
	for _, b := range s.bs {
		for _, r := range b.Requests() {
			if r.Upgrade && strings.Contains(strings.Join(r.Header.Values("Cookie"), ";"), "tlsedge_server") {
				t.Errorf("%s received the affinity cookie with a WebSocket upgrade: %q", b.name, r.Header.Values("Cookie"))
			}
		}
	}
}

// Two instances on the same config (with a shared key_file) give each
// server the same value: a cookie one sets holds on the other.
func TestCookieTwoInstancesAgree(t *testing.T) {
	t.Parallel()
	key := filepath.Join(t.TempDir(), "cookie.key")
	if err := os.WriteFile(key, []byte("a shared secret of more than 32 bytes, the same on every instance\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := ckStart(t, cfgMap{"key_file": key})
	delete(s.cfg, "admin")     // one admin port each
	other := runEdge(t, s.cfg) // the same config on another port
	c1, c2 := ckNewClient(t, s.e.addr), ckNewClient(t, other.addr)
	const attrs = "; Path=/; Secure; HttpOnly; SameSite=Lax"
	v1, v2 := map[string]string{}, map[string]string{}
	for range 3 { // roundrobin: each instance names each server once
		a := c1.get(false, "/ck/one", "")
		v1[a.backend] = ckValueOf(t, a, "tlsedge_server=VALUE"+attrs)
		b := c2.get(true, "/ck/two", "")
		v2[b.backend] = ckValueOf(t, b, "tlsedge_server=VALUE"+attrs)
	}
	if len(v1) != 3 || fmt.Sprint(v1) != fmt.Sprint(v2) {
		t.Fatalf("values of the servers: instance 1 %v, instance 2 %v; want the same value for each of the 3 servers", v1, v2)
	}
	for n, v := range v1 {
		for i := range 10 {
			c := c2
			if i%2 == 1 {
				c = c1
			}
			if a := c.get(i%3 == 0, "/ck/both", "tlsedge_server="+v); a.backend != n || len(a.setCookie) != 0 {
				t.Errorf("request %d with the value instance 1 set for %s: reached %s, Set-Cookie %q; want %s and none", i, n, a.backend, a.setCookie, n)
			}
		}
	}
}
