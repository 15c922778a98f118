package edge

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	proxyproto "github.com/pires/go-proxyproto"
)

// X-Forwarded-For from a trusted HTTP proxy in front (no PROXY header) is
// kept and extended; behind an L4 balancer that sends PROXY headers the
// header is the client's own and is replaced by the PROXY source.
func TestForwardedForTrust(t *testing.T) {
	dir := t.TempDir()
	ca, _ := edgeCert(t, dir, "app.example.com")
	xff := make(chan string, 4)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		xff <- r.Header.Get("X-Forwarded-For")
	})}
	go hs.Serve(ln)
	defer hs.Close()
	cfgPath := filepath.Join(dir, "edge.yaml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
listeners:
  - name: public
    address: "127.0.0.1:0"
    proxy_protocol: optional
    trusted_proxies: ["127.0.0.1/32"]
    routes:
      - sni: ["app.example.com"]
        mode: terminate
        protocol: http
        backend: app
        tls: {cert: edge.pem, key: edge-key.pem}
backends:
  - name: app
    health: {type: none}
    servers: [{address: "%s"}]
`, ln.Addr())), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := startEdge(t, cfgPath).Addr("public").String()

	for _, tt := range []struct {
		name  string
		proxy bool
		want  string
	}{
		{"trusted HTTP proxy, no PROXY header", false, "6.6.6.6, 127.0.0.1"},
		{"behind an L4 balancer sending PROXY", true, "203.0.113.7"},
	} {
		c := &http.Client{Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: ca.Pool()},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				conn, err := d.DialContext(ctx, network, addr)
				if err != nil || !tt.proxy {
					return conn, err
				}
				h := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP("203.0.113.7"), Port: 4242}, conn.RemoteAddr())
				if _, err := h.WriteTo(conn); err != nil {
					conn.Close()
					return nil, err
				}
				return conn, nil
			},
		}}
		req, _ := http.NewRequest("GET", "https://app.example.com/", nil)
		req.Header.Set("X-Forwarded-For", "6.6.6.6")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if got := <-xff; got != tt.want {
			t.Errorf("%s: X-Forwarded-For %q; want %q", tt.name, got, tt.want)
		}
	}
}
