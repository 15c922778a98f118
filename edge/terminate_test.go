package edge

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/certs"
)

// termFixture runs an Edge with a terminate/http route for api.example.com
// (client_auth require, identity xfcc) and a lax route for www.example.com,
// both sending to a plain HTTP server that echoes the headers it got.
type termFixture struct {
	e       *Edge
	addr    string
	ca      *certs.Authority
	client  *certs.Issued
	partner *certs.Issued // from a second client CA, trusted only by partner.example.com
	hits    chan http.Header
}

func newTermFixture(t *testing.T) *termFixture {
	t.Helper()
	dir := t.TempDir()
	ca, err := certs.NewAuthority("test CA")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.Issue(certs.Leaf{CommonName: "edge", DNSNames: []string{"api.example.com", "www.example.com", "static.example.com", "partner.example.com"}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := srv.WriteFiles(dir, "edge"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), ca.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	client, err := ca.Issue(certs.Leaf{CommonName: "device-42", Client: true})
	if err != nil {
		t.Fatal(err)
	}
	ca2, err := certs.NewAuthority("partner CA")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca2.pem"), ca2.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	partner, err := ca2.Issue(certs.Leaf{CommonName: "partner-7", Client: true})
	if err != nil {
		t.Fatal(err)
	}

	f := &termFixture{ca: ca, client: client, partner: partner, hits: make(chan http.Header, 10)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.hits <- r.Header.Clone()
		fmt.Fprintf(w, "host=%s\n", r.Host)
	})}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })

	cfgPath := filepath.Join(dir, "edge.yaml")
	body := fmt.Sprintf(`
certs:
  storage: ./data
listeners:
  - name: public
    address: "127.0.0.1:0"
    routes:
      - sni: ["api.example.com"]
        mode: terminate
        protocol: http
        backend: app
        identity: xfcc
        tls: {cert: edge.pem, key: edge-key.pem, client_auth: require, client_ca: ca.pem}
      - sni: ["www.example.com"]
        mode: terminate
        protocol: http
        backend: app
        tls: {cert: edge.pem, key: edge-key.pem}
      - sni: ["static.example.com"]
        mode: terminate
        protocol: http
        backend: app
        tls: {cert: edge.pem, key: edge-key.pem}
      - sni: ["partner.example.com"]
        mode: terminate
        protocol: http
        backend: app
        tls: {cert: edge.pem, key: edge-key.pem, client_auth: require, client_ca: ca2.pem}
backends:
  - name: app
    health: {type: none}
    servers: [{address: "%s"}]
`, ln.Addr())
	if err := os.WriteFile(cfgPath, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	f.e = startEdge(t, cfgPath)
	f.addr = f.e.Addr("public").String()
	return f
}

func (f *termFixture) httpClient(sni string, cert bool) *http.Client {
	tc := &tls.Config{ServerName: sni, RootCAs: f.ca.Pool()}
	if cert {
		tc.Certificates = []tls.Certificate{f.client.TLS}
	}
	return httpsClient(f.addr, tc)
}

func TestTerminateHTTPIdentityAndForgery(t *testing.T) {
	f := newTermFixture(t)
	req, _ := http.NewRequest("GET", "https://api.example.com/x", nil)
	req.Header.Set("X-Forwarded-Client-Cert", "Subject=\"CN=admin\"")
	req.Header.Set("X-Forwarded-For", "6.6.6.6")
	resp, err := f.httpClient("api.example.com", true).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
		t.Fatalf("got %s %s; want 200 over HTTP/2", resp.Proto, resp.Status)
	}
	h := <-f.hits
	xfcc := h.Values("X-Forwarded-Client-Cert")
	if len(xfcc) != 1 || !strings.Contains(xfcc[0], `Subject="CN=device-42"`) || strings.Contains(xfcc[0], "admin") {
		t.Errorf("X-Forwarded-Client-Cert: got %q; want only ours with CN=device-42", xfcc)
	}
	if got := h.Get("X-Forwarded-For"); got != "127.0.0.1" {
		t.Errorf("X-Forwarded-For: got %q; want %q (the client's copy dropped)", got, "127.0.0.1")
	}
	if got := h.Get("X-Forwarded-Proto"); got != "https" {
		t.Errorf("X-Forwarded-Proto: got %q; want https", got)
	}
}

func TestTerminateRequireClientCert(t *testing.T) {
	f := newTermFixture(t)
	c, err := tls.Dial("tcp", f.addr, &tls.Config{ServerName: "api.example.com", RootCAs: f.ca.Pool()})
	if err == nil {
		defer c.Close()
		_, err = c.Read(make([]byte, 1)) // TLS 1.3: the alert comes after the client's Finished
	}
	if err == nil || !strings.Contains(err.Error(), "certificate required") {
		t.Errorf("got %v; want the TLS 1.3 alert certificate required", err)
	}
}

// SNI of the lax route, Host of the strict one: 421, and the server is never contacted.
func TestTerminateMisdirected(t *testing.T) {
	f := newTermFixture(t)
	c := f.httpClient("www.example.com", false)
	req, _ := http.NewRequest("GET", "https://www.example.com/", nil)
	req.Host = "API.example.com."
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("status: got %d; want 421", resp.StatusCode)
	}
	select {
	case h := <-f.hits:
		t.Errorf("the server was contacted: %v", h)
	default:
	}
}

// oneSessionCache offers the one session it holds for every server name, as
// a malicious client would, to try a ticket on another route.
type oneSessionCache struct{ cs *tls.ClientSessionState }

func (c *oneSessionCache) Get(string) (*tls.ClientSessionState, bool) { return c.cs, c.cs != nil }
func (c *oneSessionCache) Put(_ string, cs *tls.ClientSessionState) {
	if cs != nil && c.cs == nil {
		c.cs = cs
	}
}

// A session from one route must never resume on another: not from the lax
// route (no client certificate) on the strict one, nor from a route trusting
// another client CA. Routes share ticket keys only when their TLS policy is
// identical, and a ticket is tied to the server name it was issued for.
func TestTerminateSessionScopedPerRoute(t *testing.T) {
	f := newTermFixture(t)
	tests := []struct {
		name, from, to string
		cert           *certs.Issued
		served         bool // the target route serves the client (with a full handshake)
	}{
		{"no-cert route to require route", "www.example.com", "api.example.com", nil, false},
		{"CA2 route to CA1 route", "partner.example.com", "api.example.com", f.partner, false},
		// Go itself refuses the two above on resumption; this one (an
		// identical policy, so shared keys) only the ticket's server name
		// prevents.
		{"lax route to another lax route", "www.example.com", "static.example.com", nil, true},
	}
	for _, tt := range tests {
		for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			name := tt.name + "/" + tls.VersionName(v)
			cache := &oneSessionCache{}
			dial := func(sni string) (*tls.Conn, error) {
				cfg := &tls.Config{ServerName: sni, RootCAs: f.ca.Pool(), ClientSessionCache: cache, MinVersion: v, MaxVersion: v}
				if tt.cert != nil {
					cfg.Certificates = []tls.Certificate{tt.cert.TLS}
				}
				c, err := tls.Dial("tcp", f.addr, cfg)
				if err != nil {
					return nil, err
				}
				// TLS 1.3 tickets arrive after the handshake: write and read once.
				fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", sni)
				_, err = io.ReadAll(c)
				return c, err
			}
			for i := 0; i < 2; i++ {
				c, err := dial(tt.from)
				if err != nil {
					t.Fatalf("%s: %s: %v", name, tt.from, err)
				}
				<-f.hits
				// The second time the same route resumes: the session is real.
				if i == 1 && !c.ConnectionState().DidResume {
					t.Fatalf("%s: %s did not resume its own session; the test proves nothing", name, tt.from)
				}
				c.Close()
			}
			c, err := dial(tt.to)
			if tt.served {
				if err != nil {
					t.Fatalf("%s: %s: %v", name, tt.to, err)
				}
				<-f.hits
				if c.ConnectionState().DidResume {
					t.Errorf("%s: %s resumed %s's session; want a full handshake", name, tt.to, tt.from)
				}
				c.Close()
			} else if err == nil {
				resumed := c.ConnectionState().DidResume
				c.Close()
				t.Errorf("%s: %s served the client (resumed=%v); want a refused handshake", name, tt.to, resumed)
			}
			select {
			case h := <-f.hits:
				t.Errorf("%s: %s's server was contacted: %v", name, tt.to, h)
			default:
			}
		}
	}
}

// Shutdown drains: an idle keep-alive HTTP connection is closed at once
// instead of being held for the whole grace period.
func TestTerminateShutdownClosesIdleHTTP(t *testing.T) {
	f := newTermFixture(t)
	c, err := tls.Dial("tcp", f.addr, &tls.Config{ServerName: "www.example.com", RootCAs: f.ca.Pool(), NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	<-f.hits

	go f.e.Shutdown(time.Minute) // a long grace: only draining closes the idle connection soon
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := br.ReadByte(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("idle keep-alive connection during shutdown: got %v; want it closed by tlsedge", err)
	}
}
