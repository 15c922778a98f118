package edge

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/affinity"
	"github.com/tlsedge/tlsedge/tlsmode"
)

// ckBase is a config with one route to backend b; the cases replace
// AFFINITY, COOKIE (more backend keys) and ROUTE (the route).
const ckBase = `
listeners:
  - name: public
    address: "127.0.0.1:0"
    routes:
      - ROUTE
backends:
  - name: b
    affinity: AFFINITY
    COOKIE
    servers: [{address: "127.0.0.1:9001"}, {address: "127.0.0.1:9002"}]
`

// ckHTTPRoute is a valid protocol http route to b.
const ckHTTPRoute = `{sni: ["a.example.com"], mode: terminate, protocol: http, backend: b, tls: {cert: "CERT", key: "KEY"}}`

// ckConfig writes ckBase (affinity cookie, the http route unless route is
// set) into a folder with a certificate and key files, and returns its
// path.
func ckConfig(t *testing.T, cookie, route string) string {
	t.Helper()
	return ckConfigAff(t, "cookie", cookie, route)
}

func ckConfigAff(t *testing.T, aff, cookie, route string) string {
	t.Helper()
	dir := t.TempDir()
	_, leaf := edgeCert(t, dir, "a.example.com")
	cert, key, err := leaf.WriteFiles(dir, "edge")
	if err != nil {
		t.Fatal(err)
	}
	if route == "" {
		route = ckHTTPRoute
	}
	body := strings.NewReplacer("ROUTE", route, "AFFINITY", aff, "COOKIE", cookie).Replace(ckBase)
	body = strings.NewReplacer("CERT", cert, "KEY", key).Replace(body)
	for name, data := range map[string]string{
		"good.key":  strings.Repeat("k", 32),
		"short.key": strings.Repeat("k", 31),
		"other.key": strings.Repeat("o", 40),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return writeConfigIn(t, dir, body)
}

// ckProblems is every problem LoadFile finds in the config at path ("" for
// none).
func ckProblems(t *testing.T, path string) string {
	t.Helper()
	if _, err := LoadFile(path); err != nil {
		return err.Error()
	}
	return ""
}

// Every way to misconfigure the cookie keys is refused with the key named
// and the fix said; good configs pass.
func TestCookieValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, cookie, route string
		want                []string // nil = valid
		aff                 string   // "" = cookie
	}{
		{"defaults", "", "", nil, ""},
		{"every key", `cookie: {name: "__Host-srv", ttl: 24h, secure: true, http_only: false, same_site: none, key_file: good.key}`, "", nil, ""},
		{"strict", `cookie: {same_site: strict}`, "", nil, ""},
		{"cookie without affinity cookie", `cookie: {name: x}`, "", []string{"backends[0].cookie: set, but affinity is none: the cookie keys apply only with affinity: cookie; set affinity: cookie, or remove cookie"}, "none"},
		{"cookie with hashing", `cookie: {ttl: 1h}`, "", []string{"backends[0].cookie: set, but affinity is source_ip:"}, "source_ip"},
		{"no cookie, affinity none", "", "", nil, "none"},
		{"bad name", `cookie: {name: "my cookie"}`, "", []string{`backends[0].cookie.name: "my cookie" is not a cookie name`}, ""},
		{"name with =", `cookie: {name: "a=b"}`, "", []string{`backends[0].cookie.name: "a=b" is not a cookie name`}, ""},
		{"__Host- without secure", `cookie: {name: "__Host-x", secure: false, same_site: lax}`, "", []string{`backends[0].cookie.name: "__Host-x": browsers keep a __Host- or __Secure- cookie only with Secure`}, ""},
		{"__secure- without secure", `cookie: {name: "__secure-x", secure: false}`, "", []string{`backends[0].cookie.name: "__secure-x": browsers keep`}, ""},
		{"negative ttl", `cookie: {ttl: -1s}`, "", []string{"backends[0].cookie.ttl: must be 0 (a session cookie, the default) or positive"}, ""},
		{"fractional ttl", `cookie: {ttl: 1500ms}`, "", []string{"backends[0].cookie.ttl: 1.5s: the cookie's Max-Age counts whole seconds"}, ""},
		{"sub-second ttl", `cookie: {ttl: 500ms}`, "", []string{"backends[0].cookie.ttl: 500ms: the cookie's Max-Age counts whole seconds"}, ""},
		{"bad same_site", `cookie: {same_site: Lax}`, "", []string{`backends[0].cookie.same_site: "Lax" is not valid: use lax, strict or none`}, ""},
		{"none without secure", `cookie: {same_site: none, secure: false}`, "", []string{"backends[0].cookie.same_site: none needs secure: true"}, ""},
		{"short key", `cookie: {key_file: short.key}`, "", []string{"backends[0].cookie.key_file:", "has 31 bytes; want at least 32"}, ""},
		{"missing key", `cookie: {key_file: nope.key}`, "", []string{"backends[0].cookie.key_file:", "nope.key: no such file or directory"}, ""},
		{"tcp route", "", `{sni: ["a.example.com"], mode: terminate, protocol: tcp, backend: b, tls: {cert: "CERT", key: "KEY"}}`, []string{"listeners[0].routes[0].protocol: tcp: backend b has affinity cookie, but a tcp route relays bytes and reads no cookie: use protocol http"}, ""},
		{"passthrough route", "", `{sni: ["a.example.com"], backend: b}`, []string{"listeners[0].routes[0].mode: passthrough: backend b has affinity cookie, but a passthrough route never reads HTTP"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			aff := tc.aff
			if aff == "" {
				aff = "cookie"
			}
			got := ckProblems(t, ckConfigAff(t, aff, tc.cookie, tc.route))
			if tc.want == nil {
				if got != "" {
					t.Fatalf("problems:\n%s\nwant none", got)
				}
				return
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("problems:\n%s\nwant one with %q", got, w)
				}
			}
		})
	}
}

// A redirect route to a cookie backend is refused by validateCookieRoutes
// (whatever validateRedirectRoute says of the route itself).
func TestCookieRedirectRouteRefused(t *testing.T) {
	t.Parallel()
	cfg := &Config{
		Listeners: []ListenerConfig{{Routes: []RouteConfig{
			{Mode: "terminate", Protocol: "http", Backend: "b"},
			{Mode: "terminate", Protocol: "redirect", Backend: "b"},
			{Mode: "terminate", Protocol: "redirect", Backend: "plain"},
		}}},
		Backends: []BackendConfig{{Name: "b", Affinity: "cookie"}, {Name: "plain", Affinity: "none"}},
	}
	ps := &Problems{}
	validateCookieRoutes(cfg, ps)
	if len(ps.List) != 1 || ps.List[0].Path != "listeners[0].routes[1].protocol" ||
		!strings.HasPrefix(ps.List[0].Msg, "redirect: backend b has affinity cookie, but a redirect route forwards nothing") {
		t.Fatalf("problems %+v; want one, at listeners[0].routes[1].protocol, saying a redirect route forwards nothing", ps.List)
	}
}

// buildCookie: the defaults, every attribute, and the key: the same
// key_file gives the same values (instances agree), another key others.
func TestCookieBuild(t *testing.T) {
	t.Parallel()
	build := func(cookie string) (*tlsmode.CookieAffinity, *Config) {
		t.Helper()
		cfg, err := LoadFile(ckConfig(t, cookie, ""))
		if err != nil {
			t.Fatal(err)
		}
		ca, err := buildCookie(cfg, &cfg.Backends[0])
		if err != nil || ca == nil {
			t.Fatalf("buildCookie: %v, %v", ca, err)
		}
		return ca, cfg
	}
	const addr = "127.0.0.1:9001"
	def, _ := build("")
	if got, want := def.SetCookie(addr), "tlsedge_server="+def.Value(addr)+"; Path=/; Secure; HttpOnly; SameSite=Lax"; got != want {
		t.Errorf("defaults: Set-Cookie %q; want %q", got, want)
	}
	all, _ := build(`cookie: {name: sid, ttl: 2h, secure: false, http_only: false, same_site: strict}`)
	if got, want := all.SetCookie(addr), "sid="+all.Value(addr)+"; Path=/; Max-Age=7200; SameSite=Strict"; got != want {
		t.Errorf("every key: Set-Cookie %q; want %q", got, want)
	}
	if def.Value(addr) != all.Value(addr) {
		t.Errorf("no key_file: values %q and %q for one server; want the same (the constant key)", def.Value(addr), all.Value(addr))
	}
	k1, _ := build(`cookie: {key_file: good.key}`)
	k2, _ := build(`cookie: {key_file: good.key}`) // the same contents in another folder
	k3, _ := build(`cookie: {key_file: other.key}`)
	if k1.Value(addr) != k2.Value(addr) {
		t.Errorf("the same key: values %q and %q; want the same", k1.Value(addr), k2.Value(addr))
	}
	if k1.Value(addr) == k3.Value(addr) || k1.Value(addr) == def.Value(addr) {
		t.Errorf("values %q (good.key), %q (other.key), %q (no key); want all different", k1.Value(addr), k3.Value(addr), def.Value(addr))
	}
	// Not cookie affinity: nothing built.
	cfg := &Config{}
	if ca, err := buildCookie(cfg, &BackendConfig{Name: "x", Affinity: "none"}); ca != nil || err != nil {
		t.Errorf("affinity none: %v, %v; want nil, nil", ca, err)
	}
	// A key file gone at build time fails the build (no silent default).
	if _, err := buildCookie(cfg, &BackendConfig{Name: "x", Affinity: "cookie", Cookie: &CookieConfig{KeyFile: "/nonexistent/cookie.key"}}); err == nil {
		t.Error("a missing key_file built; want an error")
	}
}

// ckPool is a roundrobin pool of three servers with affinity cookie.
func ckPool(t *testing.T, extra string) *Pool {
	t.Helper()
	// Loaded with affinity none (backendConfig's route is passthrough,
	// which cookie affinity may not serve), then made cookie.
	bc := backendConfig(t, `
  - name: b
    health: {type: none}
    `+extra+`
    servers: [{address: "127.0.0.1:9001"}, {address: "127.0.0.1:9002"}, {address: "127.0.0.1:9003"}]
`)
	bc.Affinity = "cookie"
	p, err := newPool(bc, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.commit()
	return p
}

// AcquireServerByAddress takes the named server while it is up, not
// draining, not ejected and not skipped (weight 0 keeps it); otherwise
// the policy picks.
func TestPoolAcquireServerByAddress(t *testing.T) {
	t.Parallel()
	p := ckPool(t, "")
	c := &tlsmode.Conn{Source: netip.MustParseAddrPort("127.0.0.1:5000"), Dest: netip.MustParseAddrPort("127.0.0.1:8443")}
	ctx := context.Background()
	named := p.Servers[1]
	take := func() *affinity.Server {
		t.Helper()
		s, err := p.AcquireServerByAddress(ctx, c, named.Address, nil)
		if err != nil {
			t.Fatal(err)
		}
		s.Release()
		return s
	}
	for i := range 10 {
		if s := take(); s != named {
			t.Fatalf("pick %d: %s; want the named %s", i, s, named)
		}
	}
	if a := named.Active(); a != 0 {
		t.Errorf("active %d after the releases; want 0", a)
	}
	named.SetWeight(0)
	if s := take(); s != named {
		t.Errorf("weight 0: %s; want the named %s (weight 0 takes no new clients, keeps those of its cookie)", s, named)
	}
	named.SetWeight(1)
	for _, tc := range []struct {
		what       string
		set, unset func()
	}{
		{"draining", func() { named.SetDraining(true) }, func() { named.SetDraining(false) }},
		{"down", func() { named.SetHealthy(false) }, func() { named.SetHealthy(true) }},
		{"ejected", func() { named.SetEjected(true) }, func() { named.SetEjected(false) }},
	} {
		tc.set()
		seen := map[*affinity.Server]bool{}
		for range 4 {
			s := take()
			if s == named {
				t.Errorf("%s: got the named server; want another", tc.what)
			}
			seen[s] = true
		}
		if len(seen) != 2 {
			t.Errorf("%s: the policy picked %v; want both other servers (roundrobin)", tc.what, seen)
		}
		tc.unset()
	}
	skipNamed := func(s *affinity.Server) bool { return s == named }
	if s, err := p.AcquireServerByAddress(ctx, c, named.Address, skipNamed); err != nil || s == named {
		t.Errorf("named server skipped (tried): %v, %v; want another", s, err)
	} else {
		s.Release()
	}
	if s, err := p.AcquireServerByAddress(ctx, c, "127.0.0.1:1", nil); err != nil || s == nil {
		t.Errorf("an address not in the pool: %v, %v; want the policy's pick", s, err)
	} else {
		s.Release()
	}
	for _, s := range p.Servers {
		s.SetHealthy(false)
	}
	if _, err := p.AcquireServerByAddress(ctx, c, named.Address, nil); !errors.Is(err, tlsmode.ErrNoServer) {
		t.Errorf("every server down: %v; want ErrNoServer", err)
	}
}

// At max_connections_per_server the named server, when full, is passed
// over like any full server; when every server is full the request waits
// and a slot freed on the named server goes to it.
func TestPoolAcquireServerByAddressCap(t *testing.T) {
	defer slowQueuePoll()() // only a wake-up hands the slot over
	p := ckPool(t, "max_connections_per_server: 1\n    queue_timeout: 5s")
	c := &tlsmode.Conn{}
	ctx := context.Background()
	named := p.Servers[0]
	first, err := p.AcquireServerByAddress(ctx, c, named.Address, nil)
	if err != nil || first != named {
		t.Fatalf("first: %v, %v; want %s", first, err, named)
	}
	var others []*affinity.Server
	for range 2 {
		s, err := p.AcquireServerByAddress(ctx, c, named.Address, nil)
		if err != nil || s == named {
			t.Fatalf("the named server is full: got %v, %v; want another server", s, err)
		}
		others = append(others, s)
	}
	got := make(chan *affinity.Server, 1)
	go func() {
		s, err := p.AcquireServerByAddress(ctx, c, named.Address, nil)
		if err != nil {
			t.Error(err)
		}
		got <- s
	}()
	select {
	case s := <-got:
		t.Fatalf("got %s while every server was full; want a wait", s)
	case <-time.After(100 * time.Millisecond):
	}
	named.Release()
	select {
	case s := <-got:
		if s != named {
			t.Errorf("waiter got %s; want the named %s, whose slot was freed", s, named)
		}
		s.Release()
	case <-time.After(5 * time.Second):
		t.Fatal("the waiter did not get the freed slot within 5s")
	}
	for _, s := range others {
		s.Release()
	}
}

// A replaced cookie key_file changes the route's key (so a reload builds
// its proxy with the new key) and is among the files the watch reloads
// for.
func TestCookieKeyFileChangesRouteKey(t *testing.T) {
	t.Parallel()
	path := ckConfig(t, `cookie: {key_file: good.key}`, "")
	key := func() string {
		t.Helper()
		cfg, err := LoadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		k, err := httpRouteKey(cfg, &cfg.Listeners[0], &cfg.Listeners[0].Routes[0], &cfg.Backends[0])
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(cfg.namedFiles(), filepath.Join(filepath.Dir(path), "good.key")) {
			t.Errorf("named files %v: want good.key among them", cfg.namedFiles())
		}
		return k
	}
	before := key()
	if again := key(); again != before {
		t.Fatalf("the same files: route keys %s and %s; want equal", before, again)
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(path), "good.key"), []byte(strings.Repeat("n", 32)), 0o600); err != nil {
		t.Fatal(err)
	}
	if after := key(); after == before {
		t.Error("the key file's contents changed, the route key did not")
	}
}
