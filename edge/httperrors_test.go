package edge

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Failed forwards answer with a status and a reason: 503 when no server is
// available, 504 when the server does not answer in time, 502 when it
// cannot be reached, 413 over max_request_body.
func TestTerminateHTTPErrors(t *testing.T) {
	dir := t.TempDir()
	ca, _ := edgeCert(t, dir, "slow.example.com", "none.example.com", "dead.example.com", "small.example.com", "retry.example.com")
	// A server that accepts and reads but never answers.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			go io.Copy(io.Discard, c)
		}
	}()
	// A server that answers, for the body limit and retries.
	ok, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bodies := make(chan string, 10)
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			bodies <- "error: " + err.Error()
			return
		}
		bodies <- string(b)
		fmt.Fprintln(w, "ok")
	})}
	go hs.Serve(ok)
	defer hs.Close()
	dead := closedPort(t)

	route := func(name, backend, extra string) string {
		return fmt.Sprintf(`
      - sni: [%q]
        mode: terminate
        protocol: http
        backend: %s
        tls: {cert: edge.pem, key: edge-key.pem}
%s`, name, backend, extra)
	}
	body := `
listeners:
  - name: public
    address: "127.0.0.1:0"
    routes:` +
		route("slow.example.com", "silent", "        http: {response_header_timeout: 300ms}") +
		route("none.example.com", "drained", "") +
		route("dead.example.com", "dead", "") +
		route("small.example.com", "ok", "        http: {max_request_body: 10}") +
		route("retry.example.com", "retry", "") + fmt.Sprintf(`
backends:
  - name: silent
    health: {type: none}
    servers: [{address: "%s"}]
  - name: drained
    health: {type: none}
    servers: [{address: "%s", weight: 0}]
  - name: dead
    health: {type: none}
    retries: 0
    servers: [{address: "%s"}]
  - name: ok
    health: {type: none}
    servers: [{address: "%s"}]
  - name: retry
    balance: roundrobin
    retries: 1
    health: {type: none}
    servers: [{address: "%s"}, {address: "%s"}]
`, silent.Addr(), ok.Addr(), dead, ok.Addr(), dead, ok.Addr())
	cfgPath := filepath.Join(dir, "edge.yaml")
	if err := os.WriteFile(cfgPath, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	e := startEdge(t, cfgPath)
	client := httpsClient(e.Addr("public").String(), &tls.Config{RootCAs: ca.Pool()})

	tests := []struct {
		host, body string
		status     int
		reason     string
	}{
		// Round-robin starts on the dead server: a request without a body
		// is retried on the other; one with a body is not (the transport
		// closed it), and the other server never sees a truncated request.
		{"retry.example.com", "", 200, "ok"},
		{"retry.example.com", "", 200, "ok"},
		{"retry.example.com", "payload", 502, "cannot connect"},
		{"slow.example.com", "", 504, "gateway timeout"},
		{"none.example.com", "", 503, "no server available"},
		{"dead.example.com", "", 502, "cannot connect"},
		{"small.example.com", "0123456789abcdef", 413, "too large"},
		{"small.example.com", "0123", 200, "ok"},
	}
	for _, tt := range tests {
		var body io.Reader
		if tt.body != "" {
			body = strings.NewReader(tt.body)
		}
		req, _ := http.NewRequest("POST", "https://"+tt.host+"/", body)
		resp, err := client.Do(req)
		if err != nil {
			t.Errorf("%s: %v", tt.host, err)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.status || !strings.Contains(string(b), tt.reason) {
			t.Errorf("%s %q: got %d %q; want %d with %q", tt.host, tt.body, resp.StatusCode, b, tt.status, tt.reason)
		}
		if resp.StatusCode == 200 {
			if got := <-bodies; got != tt.body {
				t.Errorf("%s: the server got body %q; want %q", tt.host, got, tt.body)
			}
		}
	}
	select {
	case got := <-bodies:
		t.Errorf("the server got an extra request with body %q", got)
	default:
	}
}
