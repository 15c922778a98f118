package e2e

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/certs"
)

// The redirect token end to end: a real HTTPS server verifies what
// tlsedge hands it with the recipe of docs/operations.md.

// rdClaims are the claims of a redirect token (docs: operations.md
// "Redirect").
type rdClaims struct {
	Iss        string   `json:"iss"`
	Aud        string   `json:"aud"`
	Iat        int64    `json:"iat"`
	Exp        int64    `json:"exp"`
	Jti        string   `json:"jti"`
	Sub        string   `json:"sub"`
	CertIssuer string   `json:"cert_issuer"`
	CertSerial string   `json:"cert_serial"`
	CertSHA256 string   `json:"cert_sha256"`
	URI        []string `json:"uri"`
	DNS        []string `json:"dns"`
	Email      []string `json:"email"`
	NotAfter   int64    `json:"cert_not_after"`
	Method     string   `json:"method"`
	Path       string   `json:"path"`
}

// rdVerify is the documented recipe: the header is HS256/JWT, the MAC of
// "header.payload" under the key file's bytes matches (constant time), iss
// is tlsedge, aud is this server's own public URL, and now is before exp.
func rdVerify(token string, key []byte, myPublic string, now time.Time) (*rdClaims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[0] != "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9" {
		return nil, errors.New("not a tlsedge token")
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || subtle.ConstantTimeCompare(sig, mac.Sum(nil)) != 1 {
		return nil, errors.New("bad signature")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, err
	}
	var c rdClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, err
	}
	if c.Iss != "tlsedge" || c.Aud != myPublic {
		return nil, errors.New("not for this server")
	}
	if now.Unix() >= c.Exp {
		return nil, errors.New("expired")
	}
	return &c, nil
}

// redirect_token with client_auth verify_if_given: Go's http.Client with
// the device certificate follows the 307 to a real HTTPS server, which
// verifies the token with the recipe and reads the identity: URI SAN,
// SHA-256 and subject (as openssl prints it) equal the certificate's. A
// tlsedge_token the client put in its query is replaced. The token fails
// tampered, at another server, and (ttl 1s) once past exp. A client
// without a certificate gets no token.
func TestRedirectToken(t *testing.T) {
	t.Parallel()
	f := azWriteFiles(t)
	key := []byte("a shared secret of more than 32 bytes, newline too\n")
	keyFile := filepath.Join(f.dir, "redirect.key")
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := thePKI.serverCert("rd-token")
	if err != nil {
		t.Fatal(err)
	}
	// The server: verifies the token against its own public URL and
	// answers the claims as JSON (403 and the error when it fails).
	var pub string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		toks := r.URL.Query()["tlsedge_token"]
		if len(toks) != 1 {
			http.Error(w, fmt.Sprintf("%d tokens", len(toks)), http.StatusForbidden)
			return
		}
		c, err := rdVerify(toks[0], key, pub, time.Now())
		if err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		_ = json.NewEncoder(w).Encode(c)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert.TLS}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "https://")
	pub = "https://localhost:" + portOf(addr) + "/"

	route := azRoute(f, rdHost, "redirect", "b", "verify_if_given", nil)
	route["redirect_token"] = cfgMap{"key_file": keyFile}
	short := azRoute(f, "short.example.com", "redirect", "b", "verify_if_given", nil)
	short["redirect_token"] = cfgMap{"key_file": keyFile, "ttl": "1s"}
	e := runEdge(t, azConfig(f, []any{route, short}, rdBackend([]any{cfgMap{"address": addr, "public": pub}}, nil)))

	device := thePKI.az.leaves[azDevice].TLS
	client := func(follow bool) *http.Client {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: thePKI.serverCA.Pool(), Certificates: []tls.Certificate{device}}}
		d := &net.Dialer{Timeout: waitLong}
		tr.DialContext = func(ctx context.Context, network, a string) (net.Conn, error) {
			if strings.HasSuffix(a, ".example.com:"+portOf(e.addr)) {
				a = e.addr
			}
			return d.DialContext(ctx, network, a)
		}
		c := &http.Client{Transport: tr, Timeout: waitLong}
		if !follow {
			c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		}
		t.Cleanup(tr.CloseIdleConnections)
		return c
	}
	get := func(c *http.Client, host, path string) (*http.Response, string) {
		resp, err := c.Get("https://" + host + ":" + portOf(e.addr) + path)
		if err != nil {
			t.Fatalf("GET %s%s: %v", host, path, err)
		}
		return resp, rdRead(t, resp)
	}

	// Followed: the server reads the identity.
	resp, body := get(client(true), rdHost, "/v1/me?tlsedge_token=forged")
	var got rdClaims
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &got) != nil {
		t.Fatalf("followed redirect: %d %q; want 200 and the claims", resp.StatusCode, body)
	}
	leaf, _ := x509.ParseCertificate(device.Certificate[0])
	sum := sha256.Sum256(leaf.Raw)
	if got.Iss != "tlsedge" || got.Aud != pub || got.Exp-got.Iat != 30 || len(got.URI) != 1 || got.URI[0] != "spiffe://devices.test/tenant/t1/device/d42" ||
		got.CertSHA256 != hex.EncodeToString(sum[:]) || got.Sub != azSubject(t, f.cert[azDevice]) ||
		got.CertSerial != hex.EncodeToString(leaf.SerialNumber.Bytes()) || got.NotAfter != leaf.NotAfter.Unix() ||
		got.Method != "GET" || got.Path != "/v1/me" {
		t.Errorf("claims %+v: want aud %s, ttl 30s, the device's URI SAN, SHA-256 %x, subject, serial, not_after, GET /v1/me", got, pub, sum)
	}

	// Not followed: the token in the Location, checked here.
	resp, _ = get(client(false), rdHost, "/v1/me")
	loc, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != 307 || err != nil || len(loc.Query()["tlsedge_token"]) != 1 {
		t.Fatalf("redirect: %d, Location %q; want 307 with one tlsedge_token", resp.StatusCode, resp.Header.Get("Location"))
	}
	tok := loc.Query().Get("tlsedge_token")
	if _, err := rdVerify(tok, key, pub, time.Now()); err != nil {
		t.Errorf("token: %v; want valid", err)
	}
	parts := strings.Split(tok, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(payload), "d42", "d43", 1))) + "." + parts[2]
	if _, err := rdVerify(tampered, key, pub, time.Now()); err == nil || err.Error() != "bad signature" {
		t.Errorf("tampered token: %v; want bad signature", err)
	}
	if _, err := rdVerify(tok, key, "https://node-9.example.com/", time.Now()); err == nil || err.Error() != "not for this server" {
		t.Errorf("token at another server: %v; want refused", err)
	}

	// ttl 1s: valid for one second, then refused by the server.
	resp, _ = get(client(false), "short.example.com", "/s")
	loc, _ = url.Parse(resp.Header.Get("Location"))
	tok = loc.Query().Get("tlsedge_token")
	p, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	var sc rdClaims
	if err := json.Unmarshal(p, &sc); err != nil || sc.Exp-sc.Iat != 1 {
		t.Fatalf("short token claims %s: want exp = iat + 1", p)
	}
	if !poll(waitLong, func() bool { return time.Now().Unix() >= sc.Exp }) {
		t.Fatal("the clock did not pass exp")
	}
	if _, err := rdVerify(tok, key, pub, time.Now()); err == nil || err.Error() != "expired" {
		t.Errorf("token past exp: %v; want expired", err)
	}
	fr, err := client(true).Get(loc.String())
	if err != nil {
		t.Fatal(err)
	}
	if b := rdRead(t, fr); fr.StatusCode != 403 || b != "expired\n" {
		t.Errorf("server given an expired token: %d %q; want 403 expired", fr.StatusCode, b)
	}

	// No certificate: a redirect without a token.
	a := rdCurl(t, e.addr, false, nil, "/anon?tlsedge_token=forged&k=v")[0]
	if a.status != 307 || a.location != strings.TrimSuffix(pub, "/")+"/anon?k=v" {
		t.Errorf("no certificate: %d, Location %q; want 307 to %sanon?k=v, no token", a.status, a.location, pub)
	}
}

// A connection outlives its client certificate (keep-alive): once the
// certificate has expired, a redirect route with redirect_token answers
// 403 and closes, rather than hand out a token that vouches for it.
func TestRedirectTokenCertExpired(t *testing.T) {
	t.Parallel()
	f := azWriteFiles(t)
	keyFile := filepath.Join(f.dir, "redirect.key")
	if err := os.WriteFile(keyFile, []byte("a shared secret of more than 32 bytes, newline too\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	route := azRoute(f, rdHost, "redirect", "b", "require", nil)
	route["redirect_token"] = cfgMap{"key_file": keyFile}
	e := runEdge(t, azConfig(f, []any{route}, rdBackend([]any{cfgMap{"address": "127.0.0.1:9", "public": "https://n1.example.com/"}}, nil)))
	notAfter := time.Now().Add(3 * time.Second)
	leaf := pkMint(t).issue(thePKI.az.partnersCA, certs.Leaf{CommonName: "short-lived",
		URIs: []*url.URL{mustURL("spiffe://devices.test/short")}, NotAfter: notAfter, Client: true})
	c, err := tls.Dial("tcp", e.addr, &tls.Config{ServerName: rdHost, RootCAs: thePKI.serverCA.Pool(), Certificates: []tls.Certificate{leaf.TLS}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * waitLong))
	br := bufio.NewReader(c)
	ask := func() *http.Response {
		t.Helper()
		if _, err := io.WriteString(c, "GET /p HTTP/1.1\r\nHost: "+rdHost+"\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if resp := ask(); resp.StatusCode != 307 || !strings.Contains(resp.Header.Get("Location"), "tlsedge_token=") {
		t.Fatalf("before expiry: %d, Location %q; want 307 with a token", resp.StatusCode, resp.Header.Get("Location"))
	}
	if !poll(3*waitLong, func() bool { return time.Now().After(notAfter.Add(time.Second)) }) {
		t.Fatal("the clock did not pass the certificate's expiry")
	}
	resp := ask()
	if resp.StatusCode != 403 || resp.Header.Get("Location") != "" || !resp.Close {
		t.Errorf("after expiry: %d, Location %q, close %v; want 403, no Location, Connection: close", resp.StatusCode, resp.Header.Get("Location"), resp.Close)
	}
	e.waitLog(t, "the refusal's access line", func(l logLine) bool {
		return l.msg() == "request" && l["status"] == float64(403) && strings.Contains(l.str("reason"), "client certificate expired")
	})
}
