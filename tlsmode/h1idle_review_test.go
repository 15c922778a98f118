package tlsmode

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/affinity"
)

// idleProxyConn is idleTLSConn with an HTTPProxy in front of handler.
func idleProxyConn(t *testing.T, opt HTTPOptions, handler http.Handler) (*tls.Conn, *Conn, chan error) {
	t.Helper()
	hs := httptest.NewServer(handler)
	t.Cleanup(hs.Close)
	opt.Backend = oneServer{affinity.NewServer(strings.TrimPrefix(hs.URL, "http://"), 1)}
	p := NewHTTPProxy(opt)
	t.Cleanup(func() { p.Close() })
	return idleTLSConn(t, p)
}

// A pipelined next request whose head is only partly sent while a slow
// answer (longer than h1BackgroundReadDelay) is in flight: the background
// read starts the head clock on its first bytes. The head's rest comes
// 300 ms after the answer, well inside read_header_timeout (10 s) and
// idle_timeout: the second request must be answered.
func TestH1IdlePipelinedPartialHeadAfterSlowAnswer(t *testing.T) {
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(300 * time.Millisecond) // past h1BackgroundReadDelay: the background read runs
		}
		fmt.Fprintf(w, "ok %s\n", r.URL.Path)
	})
	client, c, ret := idleProxyConn(t, HTTPOptions{}, slow)
	_ = client.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(client)
	if _, err := io.WriteString(client, "GET /slow HTTP/1.1\r\nHost: a.example.com\r\n\r\nGET /b HTTP/1.1\r\nHo"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	time.Sleep(300 * time.Millisecond) // past h1QuietAfter
	if _, err := io.WriteString(client, "st: a.example.com\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		client.Close()
		select {
		case e := <-ret:
			t.Fatalf("second request: %v; ServeConn returned %v, reason %q", err, e, c.Reason)
		case <-time.After(10 * time.Second):
			t.Fatalf("second request: %v", err)
		}
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok /b\n" {
		t.Fatalf("second answer %d %q; want 200 \"ok /b\\n\"", resp.StatusCode, body)
	}
}
