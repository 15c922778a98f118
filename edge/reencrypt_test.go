package edge

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// Reencrypt without server_name verifies the server for the client's SNI,
// so a pooled server connection opened for a.example.com never carries a
// request of a client that asked for b.example.com.
func TestReencryptUpstreamNamePerClientSNI(t *testing.T) {
	dir := t.TempDir()
	ca, leaf := edgeCert(t, dir, "*.example.com")
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), ca.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	snis := make(chan string, 10)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{leaf.TLS}})
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		snis <- r.TLS.ServerName + " " + r.Host
	})}
	go hs.Serve(ln)
	defer hs.Close()

	e := startEdge(t, writeConfigIn(t, dir, fmt.Sprintf(`
listeners:
  - name: public
    address: "127.0.0.1:0"
    routes:
      - sni: ["*.example.com"]
        mode: reencrypt
        protocol: http
        backend: app
        tls: {cert: edge.pem, key: edge-key.pem}
backends:
  - name: app
    health: {type: none}
    tls: {ca: ca.pem}
    servers: [{address: "%s"}]
`, ln.Addr())))
	addr := e.Addr("public").String()
	for _, name := range []string{"a.example.com", "b.example.com", "a.example.com"} {
		c := httpsClient(addr, &tls.Config{RootCAs: ca.Pool()})
		resp, err := c.Get("https://" + name + "/")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d; want 200", name, resp.StatusCode)
		}
		if got, want := <-snis, name+" "+name; got != want {
			t.Errorf("the server saw SNI and Host %q; want %q", got, want)
		}
	}
}

func writeConfigIn(t *testing.T, dir, body string) string {
	t.Helper()
	p := filepath.Join(dir, "edge.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
