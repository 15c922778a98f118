package e2e

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// What an idle keep-alive HTTP/1 connection keeps in tlsedge, read from the
// running binary's goroutine profile: no goroutine (tlsmode/h1park.go: its
// socket waits in the shared epoll set). Each round of requests on the same
// connections is answered after they parked, and the client's identity
// reaches the server each time (formatted again after each park).
func TestKeepAliveIdleHoldsNoGoroutine(t *testing.T) {
	t.Parallel()
	e, adminAddr, b := idleTermEdge(t, "api.example.com", "ka-1")

	const n = 10
	type client struct {
		tc *tls.Conn
		br *bufio.Reader
	}
	var clients []client
	for _, d := range issueDevices(t, n) {
		tc, err := tls.Dial("tcp", e.addr, &tls.Config{ServerName: "api.example.com", RootCAs: thePKI.serverCA.Pool(),
			Certificates: []tls.Certificate{d.cert}, NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tc.Close() })
		clients = append(clients, client{tc, bufio.NewReader(tc)})
	}
	for round := range 3 {
		for i, c := range clients {
			_ = c.tc.SetDeadline(time.Now().Add(waitLong))
			path := fmt.Sprintf("/round/%d/device/%d", round, i)
			if _, err := fmt.Fprintf(c.tc, "GET %s HTTP/1.1\r\nHost: api.example.com\r\n\r\n", path); err != nil {
				t.Fatalf("round %d, connection %d: %v", round, i, err)
			}
			resp, err := http.ReadResponse(c.br, nil)
			if err != nil {
				t.Fatalf("round %d, connection %d: %v", round, i, err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("round %d, connection %d: status %d", round, i, resp.StatusCode)
			}
			reqs := b.Requests()
			r := reqs[len(reqs)-1]
			if want := fmt.Sprintf("CN=device-%d", i); r.Path != path || !strings.Contains(r.Header.Get("X-Forwarded-Client-Cert"), want) {
				t.Errorf("round %d, connection %d: the server's last request was %s with XFCC %q; want %s naming %s",
					round, i, r.Path, r.Header.Get("X-Forwarded-Client-Cert"), path, want)
			}
		}
		var serving int
		if !poll(waitLong, func() bool {
			c := goroutinesWith(t, adminAddr, "(*h1Conn).serve", "tlsmode.runDetached")
			serving = c[0] + c[1]
			return serving == 0
		}) {
			t.Fatalf("round %d: %d goroutines serve %d idle keep-alive connections; want none", round, serving, n)
		}
	}
}
