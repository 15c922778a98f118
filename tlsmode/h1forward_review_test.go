package tlsmode

// Regression tests from a review of the lean forward (h1forward.go): each
// failed on the code before the fix it guards (stray bytes on an idle pooled
// connection, a TLS close_notify, statuses below 100, the query cleaning,
// a drain's cancel before the answer, 1xx in the access log, header parity
// with the ReverseProxy path).

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"context"
	"fmt"
	"github.com/rs/zerolog"
	"github.com/tlsedge/tlsedge/tlsmode/identity"
	"net/netip"
	"slices"

	"github.com/tlsedge/tlsedge/affinity"
	"github.com/tlsedge/tlsedge/certs"
)

// revIdle waits until p's pool holds n idle connections.
func revIdle(t *testing.T, p *HTTPProxy, n int) {
	t.Helper()
	deadline := time.Now().Add(lfWait)
	for time.Now().Before(deadline) {
		p.up.mu.Lock()
		got := 0
		for _, l := range p.up.idle {
			got += len(l)
		}
		p.up.mu.Unlock()
		if got == n {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("pool never held %d idle connections", n)
}

// Bytes the server sends on an idle pooled connection (an unsolicited
// answer, a 408 before its idle close) must not become the answer to the
// next request: http.Transport closes such a connection
// (readLoopPeekFailLocked).
func TestRevStrayOnIdle(t *testing.T) {
	for _, tc := range []struct{ name, stray string }{
		{"unsolicited 200", "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nSTRAY!"},
		{"408 then close", "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pooled := make(chan struct{})
			sent := make(chan struct{})
			keep := lfAnswer("")
			srv := lfListen(t, func(ss *lfSess) error {
				if ss.n > 1 {
					return keep(ss)
				}
				if _, err := ss.read(); err != nil {
					return err
				}
				if err := ss.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
					return err
				}
				<-pooled
				err := ss.write(tc.stray)
				close(sent)
				if strings.Contains(tc.stray, "close") {
					return err
				}
				return keep(ss)
			})
			p := lfProxy(t, HTTPOptions{}, srv.addr)
			lc := lfConnect(t, p)
			lc.ok(t, lfGet)
			revIdle(t, p, 1)
			close(pooled)
			<-sent
			time.Sleep(200 * time.Millisecond) // the bytes reach the proxy's socket
			resp, body, err := lfConnect(t, p).do(t, lfGet)
			if resp.StatusCode != 200 || body != "ok" || err != nil {
				t.Errorf("second client got %d %q, %v; want 200 \"ok\" (the server's stray bytes were taken as its answer)", resp.StatusCode, body, err)
			}
		})
	}
}

// Reencrypt: a server that closes an idle TLS connection sends
// close_notify before its FIN; the peek sees a byte and keeps the
// connection, and a POST sent on it gets 502 (not replayable). Through
// http.Transport the idle connection reads the close_notify and is gone.
func TestRevTLSIdleCloseNotifyPost(t *testing.T) {
	ca, err := certs.NewAuthority("rev CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(certs.Leaf{CommonName: "backend", DNSNames: []string{"backend"}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	scfg := &tls.Config{Certificates: []tls.Certificate{leaf.TLS}}
	revPooled := make(chan struct{})
	srv := lfListen(t, func(ss *lfSess) error {
		tc := tls.Server(ss.c, scfg)
		ts := &lfSess{s: ss.s, n: ss.n, c: tc, br: bufio.NewReader(tc)}
		for {
			if _, err := ts.read(); err != nil {
				return err
			}
			if err := ts.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
				return err
			}
			if ss.n == 1 {
				<-revPooled
				return tc.Close() // the server's idle timeout: close_notify, FIN
			}
		}
	})
	p := lfProxy(t, HTTPOptions{Upstream: &tls.Config{RootCAs: ca.Pool(), ServerName: "backend"}}, srv.addr)
	lc := lfConnect(t, p)
	lc.ok(t, lfGet)
	revIdle(t, p, 1)
	close(revPooled)
	if err := srv.waitEnd(t, 1); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // close_notify and FIN reach the proxy
	resp, body, _ := lc.do(t, "POST /p HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: 5\r\n\r\nhello")
	if resp.StatusCode != 200 {
		t.Errorf("POST after the server's idle close: got %d %q; want 200 on a new connection", resp.StatusCode, body)
	}
	t.Logf("accepts %d, seen %d", srv.accepts.Load(), len(srv.seen()))
}

// A status below 100 ("HTTP/1.1 099"): the lean forward takes it for a
// 1xx and WriteHeader(99) panics inside the try; the server's slot and the
// in-flight record must still be released.
func TestRevStatusBelow100(t *testing.T) {
	srv := lfListen(t, lfReplyOnce("HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n"))
	s := affinity.NewServer(srv.addr, 1)
	p := NewHTTPProxy(HTTPOptions{Backend: oneServer{s}})
	t.Cleanup(func() { p.Close() })
	lc := lfConnect(t, p)
	if _, err := io.WriteString(lc.tc, lfGet); err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(lc.br)
	t.Logf("client got %q", b)
	revWaitSlotsFree(s)
	p.reqMu.Lock()
	inflight := len(p.requests[srv.addr])
	p.reqMu.Unlock()
	if s.Active() != 0 || inflight != 0 {
		t.Errorf("after the request: server slots held %d, in-flight records %d; want 0, 0", s.Active(), inflight)
	}
}

// revWaitSlotsFree waits up to 2 s for s to hold no connection slot.
func revWaitSlotsFree(s *affinity.Server) {
	for deadline := time.Now().Add(2 * time.Second); s.Active() != 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
}

// The same through ReverseProxy (a chunked body is streamed): for parity.
func TestRevStatusBelow100RP(t *testing.T) {
	srv := lfListen(t, func(ss *lfSess) error {
		if _, err := ss.br.ReadString('\n'); err != nil {
			return err
		}
		if err := ss.write("HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n"); err != nil {
			return err
		}
		return ss.untilEOF()
	})
	s := affinity.NewServer(srv.addr, 1)
	p := NewHTTPProxy(HTTPOptions{Backend: oneServer{s}})
	t.Cleanup(func() { p.Close() })
	lc := lfConnect(t, p)
	if _, err := io.WriteString(lc.tc, "POST / HTTP/1.1\r\nHost: a.example.com\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(lc.br)
	t.Logf("client got %q", b)
	revWaitSlotsFree(s)
	if s.Active() != 0 {
		t.Errorf("ReverseProxy path: server slots held %d; want 0", s.Active())
	}
}

// Query parameters ReverseProxy drops (cleanQueryParams, CVE-2022-2880):
// the lean forward sends them as the client wrote them.
func TestRevCleanQuery(t *testing.T) {
	srv := lfListen(t, func(ss *lfSess) error {
		for {
			line, err := ss.br.ReadString('\n')
			if err != nil {
				return err
			}
			ss.s.mu.Lock()
			ss.s.reqs = append(ss.s.reqs, &lfReq{line: strings.TrimSpace(line)})
			ss.s.mu.Unlock()
			for {
				l, err := ss.br.ReadString('\n')
				if err != nil {
					return err
				}
				if l == "\r\n" {
					break
				}
			}
			if strings.HasPrefix(line, "POST") {
				for { // the chunked body
					l, err := ss.br.ReadString('\n')
					if err != nil {
						return err
					}
					if l == "\r\n" {
						break
					}
				}
			}
			if err := ss.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
				return err
			}
		}
	})
	lc := lfConnect(t, lfProxy(t, HTTPOptions{}, srv.addr))
	lc.ok(t, "GET /p?a=1;b=2&c=%zz&d=4 HTTP/1.1\r\nHost: a.example.com\r\n\r\n")
	lc.ok(t, "POST /p?a=1;b=2&c=%zz&d=4 HTTP/1.1\r\nHost: a.example.com\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
	var lines []string
	for _, r := range srv.seen() {
		lines = append(lines, r.line)
	}
	t.Logf("request lines at the server: %q", lines)
	if len(lines) == 2 && strings.TrimPrefix(lines[0], "GET") != strings.TrimPrefix(lines[1], "POST") {
		t.Errorf("lean and ReverseProxy send different targets: %q vs %q", lines[0], lines[1])
	}
}

// CancelRequest while the answer's head is awaited: what does the client get?
func TestRevCancelBeforeHead(t *testing.T) {
	for _, tc := range []struct{ name, req string }{
		{"lean", lfGet},
		{"ReverseProxy", "POST / HTTP/1.1\r\nHost: a.example.com\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan struct{})
			srv := lfListen(t, func(ss *lfSess) error {
				if _, err := ss.br.ReadString('\n'); err != nil {
					return err
				}
				close(got)
				return ss.untilEOF()
			})
			p := lfProxy(t, HTTPOptions{}, srv.addr)
			lc := lfConnect(t, p)
			if _, err := io.WriteString(lc.tc, tc.req); err != nil {
				t.Fatal(err)
			}
			<-got
			time.Sleep(50 * time.Millisecond)
			deadline := time.Now().Add(lfWait)
			for !p.CancelRequest(srv.addr) {
				if time.Now().After(deadline) {
					t.Fatal("no request in flight")
				}
				time.Sleep(5 * time.Millisecond)
			}
			_ = lc.tc.SetReadDeadline(time.Now().Add(3 * time.Second))
			b, err := io.ReadAll(lc.br)
			t.Logf("client got %q, %v", b, err)
			if strings.HasPrefix(string(b), "HTTP/1.1 200") {
				t.Errorf("a cancelled request answered 200: %q", b)
			}
		})
	}
}

var _ = errors.New
var _ net.Conn

// ReverseProxy path of the two above: chunked POSTs (streamed) only.
func TestRevRPParity(t *testing.T) {
	const cpost = "POST /c HTTP/1.1\r\nHost: a.example.com\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
	readChunked := func(ss *lfSess) error {
		for {
			l, err := ss.br.ReadString('\n')
			if err != nil {
				return err
			}
			if l == "\r\n" {
				break
			}
		}
		for {
			l, err := ss.br.ReadString('\n')
			if err != nil {
				return err
			}
			if l == "0\r\n" {
				_, err = ss.br.ReadString('\n')
				return err
			}
		}
	}
	t.Run("stray", func(t *testing.T) {
		sent := make(chan struct{})
		srv := lfListen(t, func(ss *lfSess) error {
			for i := 0; ; i++ {
				if err := readChunked(ss); err != nil {
					return err
				}
				if err := ss.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
					return err
				}
				if ss.n == 1 && i == 0 {
					time.Sleep(200 * time.Millisecond)
					_ = ss.write("HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nSTRAY!")
					close(sent)
				}
			}
		})
		p := lfProxy(t, HTTPOptions{}, srv.addr)
		lc := lfConnect(t, p)
		lc.ok(t, cpost)
		<-sent
		time.Sleep(200 * time.Millisecond)
		resp, body, err := lfConnect(t, p).do(t, cpost)
		t.Logf("RP stray: %d %q %v accepts %d", resp.StatusCode, body, err, srv.accepts.Load())
	})
	t.Run("close_notify", func(t *testing.T) {
		ca, _ := certs.NewAuthority("rev CA")
		leaf, _ := ca.Issue(certs.Leaf{CommonName: "backend", DNSNames: []string{"backend"}, Server: true})
		scfg := &tls.Config{Certificates: []tls.Certificate{leaf.TLS}}
		srv := lfListen(t, func(ss *lfSess) error {
			tc := tls.Server(ss.c, scfg)
			ts := &lfSess{s: ss.s, n: ss.n, c: tc, br: bufio.NewReader(tc)}
			for {
				if err := readChunked(ts); err != nil {
					return err
				}
				if err := ts.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
					return err
				}
				if ss.n == 1 {
					time.Sleep(200 * time.Millisecond)
					return tc.Close()
				}
			}
		})
		p := lfProxy(t, HTTPOptions{Upstream: &tls.Config{RootCAs: ca.Pool(), ServerName: "backend"}}, srv.addr)
		lc := lfConnect(t, p)
		lc.ok(t, cpost)
		_ = srv.waitEnd(t, 1)
		time.Sleep(100 * time.Millisecond)
		resp, body, _ := lc.do(t, cpost)
		t.Logf("RP close_notify: %d %q accepts %d", resp.StatusCode, body, srv.accepts.Load())
	})
}

// Reencrypt: an answer and stray bytes in one TLS record. The pooled
// reader took none of the stray bytes (the body's last read went straight
// to the tls.Conn), so Buffered() is 0 and the raw socket is empty: the
// stray bytes wait inside the tls.Conn and become the next request's answer.
func TestRevTLSStrayInRecord(t *testing.T) {
	ca, _ := certs.NewAuthority("rev CA")
	leaf, _ := ca.Issue(certs.Leaf{CommonName: "backend", DNSNames: []string{"backend"}, Server: true})
	scfg := &tls.Config{Certificates: []tls.Certificate{leaf.TLS}}
	body := strings.Repeat("b", 12000)
	srv := lfListen(t, func(ss *lfSess) error {
		tc := tls.Server(ss.c, scfg)
		ts := &lfSess{s: ss.s, n: ss.n, c: tc, br: bufio.NewReader(tc)}
		revStray := ""
		for i := 0; ; i++ {
			if _, err := ts.read(); err != nil {
				return err
			}
			a := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
			if ss.n == 1 && i == 0 {
				a = "HTTP/1.1 200 OK\r\nContent-Length: 12000\r\n\r\n" + body + "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nSTRAY!"
			}
			if ss.n == 1 && i == 0 {
				a, revStray = "HTTP/1.1 200 OK\r\nContent-Length: 12000\r\n\r\n"+body, a[len(a)-44:]
			}
			if err := ts.write(a); err != nil {
				return err
			}
			if revStray != "" {
				_ = ts.write(revStray) // a record of its own
				revStray = ""
			}
		}
	})
	p := lfProxy(t, HTTPOptions{Upstream: &tls.Config{RootCAs: ca.Pool(), ServerName: "backend"}}, srv.addr)
	lc := lfConnect(t, p)
	resp, b, err := lc.do(t, lfGet)
	if resp.StatusCode != 200 || b != body || err != nil {
		t.Fatalf("first: %d %d bytes %v", resp.StatusCode, len(b), err)
	}
	resp, b, err = lfConnect(t, p).do(t, lfGet)
	if resp.StatusCode != 200 || b != "ok" || err != nil {
		t.Errorf("second client got %d %q, %v; want 200 \"ok\"", resp.StatusCode, b, err)
	}
	t.Logf("accepts %d", srv.accepts.Load())
}

// A 103 then a 502 from the server: what the access line says.
func TestRevAccess1xx(t *testing.T) {
	srv := lfListen(t, func(ss *lfSess) error {
		if _, err := ss.read(); err != nil {
			return err
		}
		return ss.write("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 502 Bad Gateway\r\nContent-Length: 2\r\n\r\nno")
	})
	var buf revBuf
	p := lfProxy(t, HTTPOptions{Access: true, Log: zerolog.New(&buf)}, srv.addr)
	lc := lfConnect(t, p)
	if _, err := io.WriteString(lc.tc, lfGet); err != nil {
		t.Fatal(err)
	}
	r1, _ := http.ReadResponse(lc.br, nil)
	r2, _ := http.ReadResponse(lc.br, nil)
	io.ReadAll(r2.Body)
	time.Sleep(100 * time.Millisecond)
	t.Logf("client: %d then %d; log: %s", r1.StatusCode, r2.StatusCode, buf.String())
	if !strings.Contains(buf.String(), `"status":502`) {
		t.Errorf("access line does not say 502")
	}
}

type revBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *revBuf) Write(p []byte) (int, error) { b.mu.Lock(); defer b.mu.Unlock(); return b.b.Write(p) }
func (b *revBuf) String() string              { b.mu.Lock(); defer b.mu.Unlock(); return b.b.String() }

// The same client header through the lean forward (GET) and ReverseProxy
// (chunked POST): the fields the server gets must be the same.
func TestRevHeaderParity(t *testing.T) {
	for _, trusted := range []bool{false, true} {
		t.Run(fmt.Sprint("trusted=", trusted), func(t *testing.T) {
			srv := lfListen(t, func(ss *lfSess) error {
				for {
					var lines []string
					for {
						l, err := ss.br.ReadString('\n')
						if err != nil {
							return err
						}
						if l == "\r\n" {
							break
						}
						lines = append(lines, strings.TrimRight(l, "\r\n"))
					}
					if strings.HasPrefix(lines[0], "POST") {
						for {
							l, err := ss.br.ReadString('\n')
							if err != nil {
								return err
							}
							if l == "0\r\n" {
								ss.br.ReadString('\n')
								break
							}
						}
					}
					ss.s.mu.Lock()
					ss.s.reqs = append(ss.s.reqs, &lfReq{line: lines[0], fields: sortedStrings(lines[1:])})
					ss.s.mu.Unlock()
					if err := ss.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
						return err
					}
				}
			})
			id, err := identity.Parse("ssl", nil)
			if err != nil {
				t.Fatal(err)
			}
			ck, _ := NewCookieAffinity(CookieOptions{Backend: "b"})
			p := lfProxy(t, HTTPOptions{Identity: id, Cookie: ck, StripHeaders: []string{"X-Internal-*"}}, srv.addr)
			server, client := tlsPair(t)
			c := &Conn{Conn: server.NetConn(), Source: netip.MustParseAddrPort("192.0.2.7:40000"), PeerTrusted: trusted}
			go p.ServeConn(context.Background(), server, c)
			t.Cleanup(func() { client.Close() })
			_ = client.SetDeadline(time.Now().Add(lfWait))
			br := bufio.NewReader(client)
			hdr := "Host: a.example.com\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-For: 5.6.7.8\r\nForwarded: for=x\r\nX-Forwarded-Host: evil\r\n" +
				"X_Forwarded_For: y\r\nConnection: keep-alive, X-Foo, X-SSL-Client-Verify\r\nX-Foo: 1\r\nTe: trailers\r\nProxy-Connection: x\r\nKeep-Alive: 5\r\n" +
				"Cookie: a=1; tlsedge_server=zzz; b=2\r\nX-SSL-Client-Verify: SUCCESS\r\nX-Ssl-Client-S-Dn: CN=admin\r\nUser-Agent: one\r\nUser-Agent: two\r\n" +
				"X-Internal-Id: 7\r\nAccept: */*\r\nUpgrade-Insecure-Requests: 1\r\n"
			for _, raw := range []string{"GET /x HTTP/1.1\r\n" + hdr + "\r\n", "POST /x HTTP/1.1\r\n" + hdr + "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"} {
				io.WriteString(client, raw)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatal(err)
				}
				io.ReadAll(resp.Body)
			}
			seen := srv.seen()
			if len(seen) != 2 {
				t.Fatalf("seen %d", len(seen))
			}
			drop := func(f []string) []string {
				return slices.DeleteFunc(slices.Clone(f), func(s string) bool {
					return strings.HasPrefix(s, "Content-Length") || strings.HasPrefix(s, "Transfer-Encoding")
				})
			}
			a, b := drop(seen[0].fields), drop(seen[1].fields)
			t.Logf("lean: %q", a)
			t.Logf("RP:   %q", b)
			if !slices.Equal(a, b) {
				t.Errorf("fields differ")
			}
		})
	}
}

// Reencrypt: three idle connections the server closed gracefully (a Go
// server's Shutdown: close_notify, FIN); a GET after it.
func TestRevTLSGracefulRestartGet(t *testing.T) {
	ca, _ := certs.NewAuthority("rev CA")
	leaf, _ := ca.Issue(certs.Leaf{CommonName: "backend", DNSNames: []string{"backend"}, Server: true})
	scfg := &tls.Config{Certificates: []tls.Certificate{leaf.TLS}}
	var arrived sync.WaitGroup
	arrived.Add(3)
	closeAll := make(chan struct{})
	srv := lfListen(t, func(ss *lfSess) error {
		tc := tls.Server(ss.c, scfg)
		ts := &lfSess{s: ss.s, n: ss.n, c: tc, br: bufio.NewReader(tc)}
		for {
			if _, err := ts.read(); err != nil {
				return err
			}
			if ss.n <= 3 {
				arrived.Done()
				arrived.Wait()
			}
			if err := ts.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
				return err
			}
			if ss.n <= 3 {
				<-closeAll
				return tc.Close()
			}
		}
	})
	p := lfProxy(t, HTTPOptions{Upstream: &tls.Config{RootCAs: ca.Pool(), ServerName: "backend"}}, srv.addr)
	var wg sync.WaitGroup
	for range 3 {
		lc := lfConnect(t, p)
		wg.Add(1)
		go func() { defer wg.Done(); lc.ok(t, lfGet) }()
	}
	wg.Wait()
	revIdle(t, p, 3)
	close(closeAll)
	for range 3 {
		<-srv.ends
	}
	time.Sleep(100 * time.Millisecond)
	resp, body, _ := lfConnect(t, p).do(t, lfGet)
	if resp.StatusCode != 200 {
		t.Errorf("GET after the server's graceful restart: %d %q; want 200", resp.StatusCode, body)
	}
}
