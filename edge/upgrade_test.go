package edge

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A server that answers 101 for another protocol than the one asked (or
// for a request that asked none) gets a 502, and its slot is given back
// (leastconn would otherwise count it forever); so does a token that only
// Unicode case folding makes equal (the Kelvin sign K for k), which
// ReverseProxy refuses without closing the stream. Nothing is left in the
// connection directory and shutdown does not wait for it.
func TestUpgradeMismatchReleasesServer(t *testing.T) {
	tests := []struct{ name, asked, answered string }{
		{"101 to a request without Upgrade", "", "other"},
		{"101 for another protocol", "websocket", "other"},
		{"101 for a Unicode look-alike", "websocket", "websoc\u212Aet"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			ca, _ := edgeCert(t, dir, "app.example.com")
			addr := upgradeServer(t, tt.answered)
			cfgPath := filepath.Join(dir, "edge.yaml")
			if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
listeners:
  - name: public
    address: "127.0.0.1:0"
    routes:
      - sni: ["app.example.com"]
        mode: terminate
        protocol: http
        backend: app
        tls: {cert: edge.pem, key: edge-key.pem, alpn: [http/1.1]}
backends:
  - name: app
    balance: leastconn
    health: {type: none}
    servers: [{address: "%s"}]
`, addr)), 0o644); err != nil {
				t.Fatal(err)
			}
			e := startEdge(t, cfgPath)
			req, _ := http.NewRequest(http.MethodGet, "https://app.example.com/", nil)
			if tt.asked != "" {
				req.Header.Set("Connection", "Upgrade")
				req.Header.Set("Upgrade", tt.asked)
			}
			resp, err := httpsClient(e.Addr("public").String(), &tls.Config{RootCAs: ca.Pool(), NextProtos: []string{"http/1.1"}}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadGateway {
				t.Errorf("status: got %d; want 502", resp.StatusCode)
			}
			s := e.Pools()["app"].Servers[0]
			waitFor(t, "the server's slot released", func() bool { return s.Active() == 0 })
			if n := e.reg.boundCount(s); n != 0 {
				t.Errorf("%d connections still bound to the server; want 0", n)
			}
			done := make(chan struct{})
			go func() { e.Shutdown(time.Second); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Shutdown(1s) did not return within 10 s")
			}
		})
	}
}

// upgradeServer answers every request with a 101 to protocol, then holds
// the connection.
func upgradeServer(t *testing.T, protocol string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+protocol+"\r\n\r\n")
				io.Copy(io.Discard, c)
			}()
		}
	}()
	return ln.Addr().String()
}
