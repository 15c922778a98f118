package tlsmode

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/affinity"
)

// The affinity cookie is removed from the Cookie fields, every other
// cookie kept as written and in order; fields without it are untouched.
func TestCookieStrip(t *testing.T) {
	tests := []struct {
		name   string
		in     []string // the Cookie fields; nil = none
		want   []string // after
		values []string
	}{
		{"none", nil, nil, nil},
		{"other cookies only", []string{"a=1;b=2"}, []string{"a=1;b=2"}, nil},
		{"alone", []string{"srv=v1"}, nil, []string{"v1"}},
		{"first", []string{"srv=v1; a=1; b=2"}, []string{"a=1; b=2"}, []string{"v1"}},
		{"middle", []string{"a=1; srv=v1; b=2"}, []string{"a=1; b=2"}, []string{"v1"}},
		{"last", []string{"a=1; b=2; srv=v1"}, []string{"a=1; b=2"}, []string{"v1"}},
		{"no spaces, tabs", []string{"a=1;\tsrv=v1 ;b=2"}, []string{"a=1; b=2"}, []string{"v1"}},
		{"quoted", []string{`a="x"; srv="v1"`}, []string{`a="x"`}, []string{"v1"}},
		{"twice", []string{"srv=v1; a=1; srv=v2"}, []string{"a=1"}, []string{"v1", "v2"}},
		{"empty value", []string{"srv=; a=1"}, []string{"a=1"}, []string{""}},
		{"split fields (HTTP/2 crumbs)", []string{"a=1", "srv=v1", "b=2"}, []string{"a=1", "b=2"}, []string{"v1"}},
		{"only in the second field", []string{"a=1;;b=2", "srv=v1; c=3"}, []string{"a=1;;b=2", "c=3"}, []string{"v1"}},
		{"longer name kept", []string{"srv2=x; xsrv=y"}, []string{"srv2=x; xsrv=y"}, nil},
		{"name as a value kept", []string{"a=srv"}, []string{"a=srv"}, nil},
		{"other case kept", []string{"SRV=x; a=1"}, []string{"SRV=x; a=1"}, nil},
		{"space before =", []string{"srv =v1; a=1"}, []string{"a=1"}, []string{"v1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{"X-Other": {"1"}}
			if tc.in != nil {
				h["Cookie"] = append([]string(nil), tc.in...)
			}
			values := ckStrip(h, "srv")
			if !reflect.DeepEqual(h["Cookie"], tc.want) {
				t.Errorf("Cookie fields %q; want %q", h["Cookie"], tc.want)
			}
			if !reflect.DeepEqual(values, tc.values) {
				t.Errorf("values %q; want %q", values, tc.values)
			}
			if h.Get("X-Other") != "1" {
				t.Error("another field was changed")
			}
		})
	}
}

// A value is base64url of the first 16 bytes of HMAC-SHA256(key, backend
// 0x00 address): the same for the same key, backend and address, and
// different when any of them changes.
func TestCookieValue(t *testing.T) {
	mk := func(backend string, key []byte) *CookieAffinity {
		t.Helper()
		ca, err := NewCookieAffinity(CookieOptions{Backend: backend, Key: key})
		if err != nil {
			t.Fatal(err)
		}
		return ca
	}
	key := []byte("0123456789abcdef0123456789abcdef")
	ca := mk("app", key)
	m := hmac.New(sha256.New, key)
	m.Write([]byte("app\x00127.0.0.1:9001"))
	want := base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
	if got := ca.Value("127.0.0.1:9001"); got != want || len(got) != 22 {
		t.Errorf("value %q; want %q (22 characters)", got, want)
	}
	if mk("app", key).Value("127.0.0.1:9001") != want {
		t.Error("two affinities with one key disagree")
	}
	for name, other := range map[string]string{
		"another address": ca.Value("127.0.0.1:9002"),
		"another backend": mk("api", key).Value("127.0.0.1:9001"),
		"another key":     mk("app", []byte("another key of thirty-two bytes!")).Value("127.0.0.1:9001"),
		"the default key": mk("app", nil).Value("127.0.0.1:9001"),
	} {
		if other == want {
			t.Errorf("%s: the same value %q", name, other)
		}
	}
	if a, b := mk("app", nil), mk("app", nil); a.Value("x:1") != b.Value("x:1") {
		t.Error("the default key is not the same for two affinities")
	}
}

// The Set-Cookie field carries exactly the configured attributes.
func TestCookieSetCookieField(t *testing.T) {
	tests := []struct {
		opt   CookieOptions
		attrs string
	}{
		{CookieOptions{}, "; Path=/; SameSite=Lax"},
		{CookieOptions{Name: "sid", TTL: time.Hour, Secure: true, HTTPOnly: true, SameSite: "strict"}, "; Path=/; Max-Age=3600; Secure; HttpOnly; SameSite=Strict"},
		{CookieOptions{Secure: true, SameSite: "none"}, "; Path=/; Secure; SameSite=None"},
		{CookieOptions{TTL: time.Second, HTTPOnly: true, SameSite: "lax"}, "; Path=/; Max-Age=1; HttpOnly; SameSite=Lax"},
	}
	for _, tc := range tests {
		ca, err := NewCookieAffinity(tc.opt)
		if err != nil {
			t.Fatal(err)
		}
		name := tc.opt.Name
		if name == "" {
			name = DefaultCookieName
		}
		if got, want := ca.SetCookie("a:1"), name+"="+ca.Value("a:1")+tc.attrs; got != want {
			t.Errorf("%+v: %q; want %q", tc.opt, got, want)
		}
	}
	for _, bad := range []CookieOptions{{Name: "a b"}, {Name: "a;b"}, {TTL: -time.Second}, {TTL: time.Millisecond}, {SameSite: "Lax"}} {
		if _, err := NewCookieAffinity(bad); err == nil {
			t.Errorf("%+v accepted; want an error", bad)
		}
	}
}

// ckFake is a CookieBackend of fixed servers that records its calls.
type ckFake struct {
	servers []*affinity.Server
	byAddr  []string // the addresses AcquireServerByAddress was asked for
	plain   int      // AcquireServer calls
}

func (f *ckFake) Connect(context.Context, *Conn) (*Upstream, error) { return nil, ErrNoServer }
func (f *ckFake) AcquireServer(_ context.Context, _ *Conn, skip func(*affinity.Server) bool) (*affinity.Server, error) {
	f.plain++
	for _, s := range f.servers {
		if skip == nil || !skip(s) {
			return s, nil
		}
	}
	return nil, ErrNoServer
}
func (f *ckFake) ServerList() []*affinity.Server { return f.servers }
func (f *ckFake) AcquireServerByAddress(ctx context.Context, c *Conn, addr string, skip func(*affinity.Server) bool) (*affinity.Server, error) {
	f.byAddr = append(f.byAddr, addr)
	for _, s := range f.servers {
		if s.Address == addr && (skip == nil || !skip(s)) {
			return s, nil
		}
	}
	return f.AcquireServer(ctx, c, skip)
}

// The proxy's hooks: a valid cookie asks the backend for its server on
// every attempt (removed from the forwarded request at the first); the
// response sets the cookie only when the server that answered is not the
// one it named (the record is the request's own reqState).
func TestCookieProxyHooks(t *testing.T) {
	a, b := affinity.NewServer("10.0.0.1:80", 1), affinity.NewServer("10.0.0.2:80", 1)
	fake := &ckFake{servers: []*affinity.Server{a, b}}
	ca, err := NewCookieAffinity(CookieOptions{Backend: "app", Name: "srv"})
	if err != nil {
		t.Fatal(err)
	}
	p := NewHTTPProxy(HTTPOptions{Backend: fake, Cookie: ca})
	c := &Conn{}
	request := func(cookie string) (*http.Request, *reqState, context.CancelFunc) {
		rs := &reqState{}
		ctx, cancel := context.WithCancel(context.WithValue(context.Background(), reqKey{}, rs))
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://x/", nil)
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		return req, rs, cancel
	}
	respond := func(req *http.Request, rs *reqState, s *affinity.Server) []string {
		rs.server = s
		resp := &http.Response{Header: http.Header{}, Request: req}
		p.cookieResponse(resp, rs)
		return resp.Header.Values("Set-Cookie")
	}

	// No cookie: the policy's pick, and the cookie set.
	req, rs, cancel := request("a=1")
	s, err := p.acquireServer(req, c, nil)
	if err != nil || s != a || fake.plain != 1 || len(fake.byAddr) != 0 {
		t.Fatalf("no cookie: %v, %v (plain %d, by address %v); want %s from AcquireServer", s, err, fake.plain, fake.byAddr, a)
	}
	if got := respond(req, rs, s); len(got) != 1 || got[0] != ca.SetCookie(a.Address) {
		t.Errorf("no cookie: Set-Cookie %q; want %q", got, ca.SetCookie(a.Address))
	}
	cancel()

	// b's cookie: b, asked by address; stripped; no Set-Cookie.
	req, rs, cancel = request("a=1; srv=" + ca.Value(b.Address))
	if s, err := p.acquireServer(req, c, nil); err != nil || s != b || !reflect.DeepEqual(fake.byAddr, []string{b.Address}) {
		t.Fatalf("b's cookie: %v, %v (by address %v); want %s asked by address", s, err, fake.byAddr, b)
	}
	if got := req.Header["Cookie"]; !reflect.DeepEqual(got, []string{"a=1"}) {
		t.Errorf("forwarded Cookie %q; want [a=1]", got)
	}
	// A retry (b tried) still knows the cookie named b: the backend is
	// asked for b again and, b skipped, answers a; the response re-sets.
	skipB := func(s *affinity.Server) bool { return s == b }
	if s, err := p.acquireServer(req, c, skipB); err != nil || s != a || len(fake.byAddr) != 2 || fake.byAddr[1] != b.Address {
		t.Fatalf("retry: %v, %v (by address %v); want %s after asking for %s", s, err, fake.byAddr, a, b)
	}
	if got := respond(req, rs, a); len(got) != 1 || got[0] != ca.SetCookie(a.Address) {
		t.Errorf("answered by another server: Set-Cookie %q; want %q", got, ca.SetCookie(a.Address))
	}
	if !rs.ckChecked || rs.ckNamed != b.Address {
		t.Errorf("the request's record: checked %v, named %q; want b's address", rs.ckChecked, rs.ckNamed)
	}
	cancel()

	// b's cookie answered by b: no Set-Cookie.
	req, rs, cancel = request("srv=" + ca.Value(b.Address))
	s, _ = p.acquireServer(req, c, nil)
	if got := respond(req, rs, s); s != b || len(got) != 0 {
		t.Errorf("answered by the cookie's server %s: Set-Cookie %q; want %s and none", s, got, b)
	}
	if _, ok := req.Header["Cookie"]; ok {
		t.Errorf("forwarded Cookie %q; want none (it held only the affinity cookie)", req.Header["Cookie"])
	}
	cancel()

	// Garbage and a value of a server the pool no longer has: balanced.
	plain := fake.plain
	for _, v := range []string{"garbage", ca.Value("10.0.0.3:80")} {
		req, rs, cancel = request("srv=" + v)
		s, _ := p.acquireServer(req, c, nil)
		if got := respond(req, rs, s); len(got) != 1 || req.Header["Cookie"] != nil {
			t.Errorf("cookie %q: Set-Cookie %q, forwarded Cookie %q; want one Set-Cookie and no Cookie", v, got, req.Header["Cookie"])
		}
		cancel()
	}
	if fake.plain != plain+2 {
		t.Errorf("AcquireServer calls %d; want %d (bad values are balanced)", fake.plain, plain+2)
	}

	// A new backend snapshot with another server: its value is known.
	c3 := affinity.NewServer("10.0.0.3:80", 1)
	p.SetBackend(&ckFake{servers: []*affinity.Server{a, c3}})
	req, rs, cancel = request("srv=" + ca.Value(c3.Address))
	defer cancel()
	if s, _ := p.acquireServer(req, c, nil); s != c3 {
		t.Errorf("after a new snapshot: %v; want %s", s, c3)
	}
	if got := respond(req, rs, c3); len(got) != 0 {
		t.Errorf("after a new snapshot: Set-Cookie %q; want none", got)
	}
}
