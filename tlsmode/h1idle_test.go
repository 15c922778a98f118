package tlsmode

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

// idleTLSConn is a terminated connection as Terminate makes it: the record
// reader under crypto/tls (c.rec, so the idle wait of h1idle.go is on),
// served by p on a goroutine; it returns the client end, the Conn and
// ServeConn's result.
func idleTLSConn(t *testing.T, p *HTTPProxy) (*tls.Conn, *Conn, chan error) {
	t.Helper()
	return idleTLSConnWith(t, p, nil)
}

// idleTLSConnWith is idleTLSConn with the client's TLS config changed by
// client (nil: none).
func idleTLSConnWith(t *testing.T, p *HTTPProxy, client func(*tls.Config)) (*tls.Conn, *Conn, chan error) {
	t.Helper()
	a, b := tcpPair(t)
	c := &Conn{Conn: a}
	c.rec = &recConn{Conn: a}
	scfg, ccfg := edgeTLSConfigs(t)
	if client != nil {
		client(ccfg)
	}
	server, tc := tls.Server(c.rec, scfg), tls.Client(b, ccfg)
	ret := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := server.Handshake(); err != nil {
			ret <- err
			return
		}
		ret <- p.ServeConn(context.Background(), server, c)
	}()
	t.Cleanup(func() {
		tc.Close()
		<-done
	})
	return tc, c, ret
}

// idleStacks returns the stacks of the goroutines serving an HTTP/1 loop.
func idleStacks() []string { return stacksWith("(*h1Conn).serve") }

// stacksWith returns the stacks of the goroutines that have frame in them.
func stacksWith(frame string) []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, frame) {
			out = append(out, g)
		}
	}
	return out
}

// idleGet sends n GETs at once (pipelined) and reads n answers.
func idleGet(t *testing.T, c *tls.Conn, br *bufio.Reader, n int) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, strings.Repeat("GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n", n)); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d of %d: %v", i+1, n, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// A keep-alive connection quiet for longer than h1QuietAfter waits for its
// next request outside crypto/tls's read (a shallow stack the GC can
// shrink); the next request, and pipelined ones, are served as before.
func TestH1IdleWaitIsShallow(t *testing.T) {
	p := NewHTTPProxy(HTTPOptions{Backend: noServers{}})
	client, _, _ := idleTLSConn(t, p)
	br := bufio.NewReader(client)
	idleGet(t, client, br, 1)

	var stack string
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if s := idleStacks(); len(s) == 1 && strings.Contains(s[0], "upReadWaiter") {
			stack = s[0]
			break
		}
	}
	if stack == "" {
		t.Fatalf("the idle connection never waited on the socket; its goroutine:\n%s", strings.Join(idleStacks(), "\n\n"))
	}
	if strings.Contains(stack, "crypto/tls.(*Conn).Read") {
		t.Errorf("the idle wait is inside crypto/tls's read:\n%s", stack)
	}
	idleGet(t, client, br, 1)
	time.Sleep(2 * h1QuietAfter)
	idleGet(t, client, br, 3)
}
