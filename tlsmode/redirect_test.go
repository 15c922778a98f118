package tlsmode

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/affinity"
	"github.com/tlsedge/tlsedge/certs"
)

// The Location of a redirect: the public URL's path (without its trailing
// slash), the request's path as sent, its query as sent without any
// tlsedge_token, then the token.
func TestRedirectLocation(t *testing.T) {
	for _, tt := range []struct {
		public, path, query, token, want string
	}{
		{"wss://node-3.example.com/", "/chat", "room=7", "", "wss://node-3.example.com/chat?room=7"},
		{"wss://node-3.example.com", "/", "", "", "wss://node-3.example.com/"},
		{"https://n3.example.com/base/", "/a/b", "x=1&y=2", "", "https://n3.example.com/base/a/b?x=1&y=2"},
		{"https://n3.example.com/base", "/a", "", "", "https://n3.example.com/base/a"},
		{"https://n3.example.com:8443/", "/a%2Fb/%20c", "q=%41", "", "https://n3.example.com:8443/a%2Fb/%20c?q=%41"},
		{"https://[2001:db8::1]:8443/", "/", "", "", "https://[2001:db8::1]:8443/"},
		{"https://n3/", "*", "", "", "https://n3/"},
		{"https://n3/", "/p", "", "T.K.N", "https://n3/p?tlsedge_token=T.K.N"},
		{"https://n3/", "/p", "a=1", "T.K.N", "https://n3/p?a=1&tlsedge_token=T.K.N"},
		{"https://n3/", "/p", "tlsedge_token=forged&a=1", "T.K.N", "https://n3/p?a=1&tlsedge_token=T.K.N"},
		{"https://n3/", "/p", "a=1&tlsedge%5Ftoken=forged", "", "https://n3/p?a=1"},
		{"https://n3/", "/p", "a=1;tlsedge_token=forged&b=2", "", "https://n3/p?b=2"},
		{"https://n3/", "/p", "tlsedge_tokens=kept&TLSEDGE_TOKEN=kept", "", "https://n3/p?tlsedge_tokens=kept&TLSEDGE_TOKEN=kept"},
		{"https://n3/", "/p", "a=\x01é", "", "https://n3/p?a=%01%C3%A9"},
		{"https://n3/", "/p", "a=1#x", "T.K.N", "https://n3/p?a=1%23x&tlsedge_token=T.K.N"},
	} {
		u, err := ParsePublicURL(tt.public)
		if err != nil {
			t.Fatalf("ParsePublicURL(%q): %v", tt.public, err)
		}
		if got := redirectLocation(u, tt.path, tt.query, tt.token); got != tt.want {
			t.Errorf("%s + %s ? %s: got %q; want %q", tt.public, tt.path, tt.query, got, tt.want)
		}
	}
}

// Public URLs: absolute http/https/ws/wss with a host; no userinfo,
// query, fragment, bad port or bytes outside printable ASCII.
func TestParsePublicURL(t *testing.T) {
	for _, ok := range []string{"wss://node-3.example.com/", "https://n3.example.com/base/", "http://10.0.0.3:8080", "ws://[::1]:9000/x", "HTTPS://N3.example.com/"} {
		if _, err := ParsePublicURL(ok); err != nil {
			t.Errorf("ParsePublicURL(%q): %v; want nil", ok, err)
		}
	}
	for _, tt := range []struct{ in, want string }{
		{"ftp://n3.example.com/", "the scheme must be http, https, ws or wss"},
		{"node-3.example.com", "the scheme must be http, https, ws or wss"},
		{"/relative", "the scheme must be http, https, ws or wss"},
		{"https:///path", "no host: write it like wss://node-3.example.com/"},
		{"https:n3.example.com", "no host: write it like wss://node-3.example.com/"},
		{"https://user:pw@n3.example.com/", "userinfo (user@) is not allowed"},
		{"https://n3.example.com/?a=1", "a query is not allowed: the request's query is appended"},
		{"https://n3.example.com/?", "a query is not allowed: the request's query is appended"},
		{"https://n3.example.com/#top", "a fragment is not allowed"},
		{"https://n3.example.com/#", "a fragment is not allowed"},
		{"https://n3.example.com:0/", "the port must be 1 to 65535"},
		{"https://n3.example.com:70000/", "the port must be 1 to 65535"},
		{"https://n3.example.com:/", "an empty port"},
		{"https://n3.example.com/a b", "only printable ASCII, no spaces (write an international name in punycode, a path percent-encoded)"},
		{"https://bücher.example/", "only printable ASCII, no spaces (write an international name in punycode, a path percent-encoded)"},
		{"https://n3.example.com:https/", "not a URL"},
	} {
		_, err := ParsePublicURL(tt.in)
		if err == nil || err.Error() != tt.want {
			t.Errorf("ParsePublicURL(%q): got %v; want %q", tt.in, err, tt.want)
		}
	}
}

// NewRedirect refuses what validate refuses: another status, a short key,
// a ttl out of bounds or not whole seconds, a bad public URL.
func TestNewRedirectRefuses(t *testing.T) {
	key := []byte(strings.Repeat("k", 32))
	pub := map[string]string{"10.0.0.1:443": "https://n1/"}
	for _, tt := range []struct {
		name string
		opt  RedirectOptions
		want string
	}{
		{"status", RedirectOptions{Status: 200, Public: pub}, "tlsmode: redirect status 200: use 301, 302, 303, 307 or 308"},
		{"short key", RedirectOptions{Public: pub, TokenKey: key[:31]}, "tlsmode: redirect token key of 31 bytes: it must have at least 32"},
		{"ttl short", RedirectOptions{Public: pub, TokenKey: key, TokenTTL: 500 * time.Millisecond}, "tlsmode: redirect token ttl must be whole seconds from 1s to 1h"},
		{"ttl long", RedirectOptions{Public: pub, TokenKey: key, TokenTTL: time.Hour + time.Second}, "tlsmode: redirect token ttl must be whole seconds from 1s to 1h"},
		{"ttl fraction", RedirectOptions{Public: pub, TokenKey: key, TokenTTL: 1500 * time.Millisecond}, "tlsmode: redirect token ttl must be whole seconds from 1s to 1h"},
		{"public", RedirectOptions{Public: map[string]string{"10.0.0.1:443": "n1"}}, "tlsmode: public URL of 10.0.0.1:443: the scheme must be http, https, ws or wss"},
	} {
		if _, err := NewRedirect(tt.opt); err == nil || err.Error() != tt.want {
			t.Errorf("%s: got %v; want %q", tt.name, err, tt.want)
		}
	}
	rd, err := NewRedirect(RedirectOptions{Public: pub, TokenKey: key})
	if err != nil || rd.Status() != 307 || rd.token.ttl != 30*time.Second {
		t.Errorf("defaults: %v; want status 307 and ttl 30s", err)
	}
}

// rdClientState is the connection state of a client whose certificate
// tlsedge verified: URI, DNS and email SANs, subject CN=device-42.
func rdClientState(t *testing.T) (*tls.ConnectionState, *x509.Certificate) {
	t.Helper()
	ca, err := certs.NewAuthority("redirect test CA")
	if err != nil {
		t.Fatal(err)
	}
	spiffe, _ := url.Parse("spiffe://devices.test/device/42")
	leaf, err := ca.Issue(certs.Leaf{CommonName: "device-42", Client: true, URIs: []*url.URL{spiffe},
		DNSNames: []string{"d42.devices.test"}, Emails: []string{"ops@devices.test"}})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(leaf.TLS.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	chains, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		t.Fatal(err)
	}
	return &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}, VerifiedChains: chains}, cert
}

// A token carries the verified client's identity and the server it was
// made for; VerifyRedirectToken accepts it at that server until exp, and
// refuses it tampered, signed with another key, at another server, and
// expired. A client without a verified certificate gets no token.
func TestRedirectToken(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef\n")
	cs, cert := rdClientState(t)
	now := time.Unix(1_800_000_000, 0)
	s := &redirectSigner{key: key, ttl: 30 * time.Second, now: func() time.Time { return now }}
	const pub = "wss://node-3.example.com/"
	tok := s.sign(cs, pub, "GET", "/v1/chat%20room")
	parts := strings.Split(tok, ".")
	if len(parts) != 3 || parts[0] != "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9" {
		t.Fatalf("token %q: want header.payload.mac with the HS256 JWT header", tok)
	}
	if strings.Trim(tok, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") != "" {
		t.Errorf("token %q holds bytes outside base64url and '.'", tok)
	}
	c, err := VerifyRedirectToken(tok, key, pub, now.Add(29*time.Second), 0)
	if err != nil {
		t.Fatalf("VerifyRedirectToken: %v", err)
	}
	sum := sha256.Sum256(cert.Raw)
	want := RedirectClaims{Issuer: "tlsedge", Audience: pub, IssuedAt: now.Unix(), Expires: now.Unix() + 30, ID: c.ID,
		Subject: "CN=device-42", CertIssuer: "CN=redirect test CA,O=tlsedge throwaway PKI", CertSerial: hex.EncodeToString(cert.SerialNumber.Bytes()),
		CertSHA256: hex.EncodeToString(sum[:]), URI: []string{"spiffe://devices.test/device/42"},
		DNS: []string{"d42.devices.test"}, Email: []string{"ops@devices.test"},
		NotAfter: cert.NotAfter.Unix(), Method: "GET", Path: "/v1/chat%20room"}
	if !reflect.DeepEqual(*c, want) {
		t.Errorf("claims:\ngot  %+v\nwant %+v", *c, want)
	}
	if id, err := base64.RawURLEncoding.DecodeString(c.ID); err != nil || len(id) != 16 {
		t.Errorf("jti %q: want 16 bytes base64url", c.ID)
	}
	if again := s.sign(cs, pub, "GET", "/v1/chat%20room"); again == tok {
		t.Error("two tokens are equal: want a new jti each")
	}

	// The payload as a server reads it: plain JSON with these names.
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var raw map[string]any
	if err := json.Unmarshal(payload, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"iss", "aud", "iat", "exp", "jti", "sub", "cert_issuer", "cert_serial", "cert_sha256", "uri", "dns", "email", "cert_not_after", "method", "path"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("payload %s: no %q", payload, k)
		}
	}

	flip := func(s string) string { // one character of s changed
		b := []byte(s)
		if b[len(b)/2] == 'A' {
			b[len(b)/2] = 'B'
		} else {
			b[len(b)/2] = 'A'
		}
		return string(b)
	}
	forged, _ := json.Marshal(RedirectClaims{Issuer: "tlsedge", Audience: pub, Expires: now.Unix() + 3600, Subject: "CN=admin"})
	for _, tt := range []struct {
		name, tok, pub string
		key            []byte
		at             time.Time
		want           error
	}{
		{"tampered payload", parts[0] + "." + flip(parts[1]) + "." + parts[2], pub, key, now, ErrRedirectTokenSignature},
		{"forged payload", parts[0] + "." + base64.RawURLEncoding.EncodeToString(forged) + "." + parts[2], pub, key, now, ErrRedirectTokenSignature},
		{"tampered mac", parts[0] + "." + parts[1] + "." + flip(parts[2]), pub, key, now, ErrRedirectTokenSignature},
		{"other key", tok, pub, key[:32], now, ErrRedirectTokenSignature},
		{"alg none", base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + ".", pub, key, now, ErrRedirectTokenMalformed},
		{"two parts", parts[0] + "." + parts[1], pub, key, now, ErrRedirectTokenMalformed},
		{"other server", tok, "wss://node-4.example.com/", key, now, ErrRedirectTokenAudience},
		{"expired", tok, pub, key, now.Add(30 * time.Second), ErrRedirectTokenExpired},
	} {
		if _, err := VerifyRedirectToken(tt.tok, tt.key, tt.pub, tt.at, 0); !errors.Is(err, tt.want) {
			t.Errorf("%s: got %v; want %v", tt.name, err, tt.want)
		}
	}
	if _, err := VerifyRedirectToken(tok, key, pub, now.Add(32*time.Second), 5*time.Second); err != nil {
		t.Errorf("2s past exp with 5s leeway: %v; want accepted", err)
	}

	for name, st := range map[string]*tls.ConnectionState{
		"no state":       nil,
		"no certificate": {},
		"not verified":   {PeerCertificates: cs.PeerCertificates},
	} {
		if tok := s.sign(st, pub, "GET", "/"); tok != "" {
			t.Errorf("%s: token %q; want none", name, tok)
		}
	}
}

// rdBackend picks its servers in turn (skipping draining ones) and
// counts the slots it hands out.
type rdBackend struct {
	mu      sync.Mutex
	servers []*affinity.Server
	next    int
}

func (*rdBackend) Connect(context.Context, *Conn) (*Upstream, error) { return nil, ErrNoServer }
func (b *rdBackend) AcquireServer(_ context.Context, _ *Conn, skip func(*affinity.Server) bool) (*affinity.Server, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for range b.servers {
		s := b.servers[b.next%len(b.servers)]
		b.next++
		if !s.Draining() && (skip == nil || !skip(s)) {
			s.Acquire()
			return s, nil
		}
	}
	return nil, fmt.Errorf("test backend: %w", ErrNoServer)
}

// rdServe serves one client TLS connection with a redirect proxy of rd
// over backend b and returns the client's reader and writer.
func rdServe(t *testing.T, b Backend, rd *Redirect) (*tls.Conn, *bufio.Reader) {
	t.Helper()
	p := NewHTTPProxy(HTTPOptions{Backend: b, Redirect: rd})
	t.Cleanup(func() { p.Close() })
	server, client := tlsPair(t)
	t.Cleanup(func() { client.Close() })
	go func() { _ = p.ServeConn(context.Background(), server, &Conn{Conn: server.NetConn()}) }()
	_ = client.SetDeadline(time.Now().Add(10 * time.Second))
	return client, bufio.NewReader(client)
}

func rdRoundTrip(t *testing.T, c *tls.Conn, br *bufio.Reader, raw string) (*http.Response, string) {
	t.Helper()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, &http.Request{Method: strings.Fields(raw)[0]})
	if err != nil {
		t.Fatalf("reading the answer to %.40q: %v", raw, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

// Over a real TLS connection: each request is answered 307 with the
// Location of the next server in turn, no-store, the short body (none for
// HEAD); the slot is given back at once; a drained server is passed over;
// with no server left, 503; CONNECT gets 405; a request with a body gets
// its redirect and the connection closes.
func TestServeRedirect(t *testing.T) {
	s1, s2 := affinity.NewServer("10.0.0.1:443", 1), affinity.NewServer("10.0.0.2:443", 1)
	b := &rdBackend{servers: []*affinity.Server{s1, s2}}
	rd, err := NewRedirect(RedirectOptions{Public: map[string]string{
		s1.Address: "wss://node-1.example.com/", s2.Address: "https://node-2.example.com/app/"}})
	if err != nil {
		t.Fatal(err)
	}
	c, br := rdServe(t, b, rd)
	for i, want := range []string{
		"wss://node-1.example.com/chat?room=7",
		"https://node-2.example.com/app/chat?room=7",
		"wss://node-1.example.com/chat?room=7",
	} {
		resp, body := rdRoundTrip(t, c, br, "GET /chat?room=7 HTTP/1.1\r\nHost: a.example.com\r\n\r\n")
		if resp.StatusCode != 307 || resp.Header.Get("Location") != want || resp.Header.Get("Cache-Control") != "no-store" ||
			body != "307 temporary redirect\n" || resp.Close {
			t.Errorf("request %d: %d, Location %q, Cache-Control %q, body %q, close %v; want 307, %q, no-store, the short body, kept open",
				i, resp.StatusCode, resp.Header.Get("Location"), resp.Header.Get("Cache-Control"), body, resp.Close, want)
		}
	}
	if s1.Active() != 0 || s2.Active() != 0 {
		t.Errorf("slots held: %d, %d; want 0 (a redirect holds none)", s1.Active(), s2.Active())
	}
	resp, body := rdRoundTrip(t, c, br, "HEAD /x HTTP/1.1\r\nHost: a.example.com\r\n\r\n")
	if resp.StatusCode != 307 || resp.Header.Get("Location") != "https://node-2.example.com/app/x" || body != "" {
		t.Errorf("HEAD: %d, %q, body %q; want 307 to node-2, no body", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	s1.SetDraining(true)
	for i := 0; i < 2; i++ {
		resp, _ = rdRoundTrip(t, c, br, "GET /d HTTP/1.1\r\nHost: a.example.com\r\n\r\n")
		if loc := resp.Header.Get("Location"); loc != "https://node-2.example.com/app/d" {
			t.Errorf("with node-1 drained: Location %q; want node-2", loc)
		}
	}
	s2.SetDraining(true)
	resp, body = rdRoundTrip(t, c, br, "GET /d HTTP/1.1\r\nHost: a.example.com\r\n\r\n")
	if resp.StatusCode != 503 || resp.Header.Get("Location") != "" || body != "503 service unavailable: no server available\n" {
		t.Errorf("none left: %d, Location %q, body %q; want 503 without Location", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	s1.SetDraining(false)
	resp, _ = rdRoundTrip(t, c, br, "CONNECT n:443 HTTP/1.1\r\nHost: a.example.com\r\n\r\n")
	if resp.StatusCode != 405 || resp.Header.Get("Location") != "" {
		t.Errorf("CONNECT: %d, Location %q; want 405 without Location", resp.StatusCode, resp.Header.Get("Location"))
	}

	c, br = rdServe(t, b, rd)
	resp, _ = rdRoundTrip(t, c, br, "POST /up HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: 5\r\n\r\nhello")
	if resp.StatusCode != 307 || resp.Header.Get("Location") != "wss://node-1.example.com/up" || !resp.Close {
		t.Errorf("POST with a body: %d, %q, close %v; want 307 to node-1 and Connection: close", resp.StatusCode, resp.Header.Get("Location"), resp.Close)
	}
	if _, err := br.ReadByte(); err == nil {
		t.Error("read more after the redirect of a request with a body: want the connection closed")
	}
}

// A server the pick returns without a public URL (validate prevents it):
// 503, no Location.
func TestServeRedirectNoPublic(t *testing.T) {
	s := affinity.NewServer("10.0.0.9:443", 1)
	rd, err := NewRedirect(RedirectOptions{Public: map[string]string{"10.0.0.1:443": "https://n1/"}})
	if err != nil {
		t.Fatal(err)
	}
	c, br := rdServe(t, &rdBackend{servers: []*affinity.Server{s}}, rd)
	resp, _ := rdRoundTrip(t, c, br, "GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n")
	if resp.StatusCode != 503 || resp.Header.Get("Location") != "" || s.Active() != 0 {
		t.Errorf("got %d, Location %q, %d slots; want 503, none, 0", resp.StatusCode, resp.Header.Get("Location"), s.Active())
	}
}
