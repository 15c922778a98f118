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
)

// A server that answers 101 to a request that asked for no upgrade gets a
// 502, and its slot is given back (leastconn would otherwise count it
// forever).
func TestUpgradeMismatchReleasesServer(t *testing.T) {
	dir := t.TempDir()
	ca, _ := edgeCert(t, dir, "app.example.com")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
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
				io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: other\r\n\r\n")
				io.Copy(io.Discard, c)
			}()
		}
	}()
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
        tls: {cert: edge.pem, key: edge-key.pem}
backends:
  - name: app
    balance: leastconn
    health: {type: none}
    servers: [{address: "%s"}]
`, ln.Addr())), 0o644); err != nil {
		t.Fatal(err)
	}
	e := startEdge(t, cfgPath)
	resp, err := httpsClient(e.Addr("public").String(), &tls.Config{RootCAs: ca.Pool()}).Get("https://app.example.com/")
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
}
