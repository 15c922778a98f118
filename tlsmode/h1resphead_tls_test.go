package tlsmode

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/certs"
)

// holdConn collects writes while held, then writes them in one system call.
type holdConn struct {
	net.Conn
	mu   sync.Mutex
	hold bool
	buf  bytes.Buffer
}

func (h *holdConn) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.hold {
		return h.buf.Write(p)
	}
	return h.Conn.Write(p)
}
func (h *holdConn) Close() error { _ = h.flush(); return h.Conn.Close() }

func (h *holdConn) flush() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hold = false
	_ = h.Conn.SetWriteDeadline(time.Time{}) // tls.Conn.Close set it to now
	_, err := h.Conn.Write(h.buf.Bytes())
	return err
}

// A reencrypt server on TLS 1.2 answers with a Content-Length body and
// closes, its close_notify in the same write as the last record:
// crypto/tls returns the last bytes with io.EOF. The answer is whole: the
// client gets it and keeps its connection (leanBody once took the EOF for
// a cut body, and the proxy aborted the client's connection).
func TestLfTLSCloseNotifyAfterBody(t *testing.T) {
	t.Parallel()
	ca, err := certs.NewAuthority("rev CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(certs.Leaf{CommonName: "backend", DNSNames: []string{"backend"}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	scfg := &tls.Config{Certificates: []tls.Certificate{leaf.TLS}, DynamicRecordSizingDisabled: true, MaxVersion: tls.VersionTLS12} // 16 KiB records, as nginx
	body := strings.Repeat("x", 8000)
	srv := lfListen(t, func(ss *lfSess) error {
		if ss.n > 1 {
			tc := tls.Server(ss.c, scfg)
			return lfAnswer("")(&lfSess{s: ss.s, n: ss.n, c: tc, br: bufio.NewReader(tc)})
		}
		hc := &holdConn{Conn: ss.c}
		tc := tls.Server(hc, scfg)
		ts := &lfSess{s: ss.s, n: ss.n, c: tc, br: bufio.NewReader(tc)}
		if _, err := ts.read(); err != nil {
			return err
		}
		if err := ts.write("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 8000\r\n\r\n"); err != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond) // the head is read alone
		hc.mu.Lock()
		hc.hold = true
		hc.mu.Unlock()
		_ = ts.write(body)
		return tc.Close() // close_notify, then the held bytes go in one write
	})
	p := lfProxy(t, HTTPOptions{Upstream: &tls.Config{RootCAs: ca.Pool(), ServerName: "backend"}}, srv.addr)
	lc := lfConnect(t, p)
	resp, got, err := lc.do(t, lfGet)
	if resp.StatusCode != 200 || got != body || err != nil {
		t.Fatalf("got %d, %d bytes, %v; want 200 and 8000 bytes", resp.StatusCode, len(got), err)
	}
	// the client connection is kept alive: a second request on it
	if _, err := io.WriteString(lc.tc, lfGet); err != nil {
		t.Fatal(err)
	}
	if r2, err := http.ReadResponse(lc.br, nil); err != nil {
		t.Fatalf("second request on the same client connection: %v (the proxy cut the connection after a whole answer)", err)
	} else {
		r2.Body.Close()
	}
}
