package tlsmode

import (
	"bufio"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/certs"
)

// leanParkUpgrade sends an upgrade request for proto on client and reads the 101.
func leanUpgrade(t *testing.T, client *tls.Conn, proto string) *bufio.Reader {
	t.Helper()
	_ = client.SetDeadline(time.Now().Add(lfWait))
	extra := ""
	if proto == "websocket" {
		extra = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
	}
	if _, err := io.WriteString(client, "GET /ws HTTP/1.1\r\nHost: a.example.com\r\nConnection: Upgrade\r\nUpgrade: "+proto+"\r\n"+extra+"\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(client)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 101 {
		t.Fatalf("got %v, %v; want 101", resp, err)
	}
	return br
}

// The client closes while the server side is parked: run's kick resumes
// it, ServeConn returns, the server sees EOF and the slot is free.
func TestLeanParkClientClosesWhileParked(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("parking is Linux-only")
	}
	srv := lfListen(t, leanEchoUpgrade("", 0))
	p := lfProxy(t, HTTPOptions{Upgrades: []string{"echo"}}, srv.addr)
	client, _, ret := idleTLSConn(t, p)
	br := leanUpgrade(t, client, "echo")
	leanEcho(t, client, br, []byte("hello"))
	leanParked(t)
	client.Close()
	leanServeEnds(t, ret)
	if err := srv.waitEnd(t, 1); err != nil {
		t.Errorf("the server's side ended with %v; want EOF", err)
	}
	if s := p.opt.Backend.(oneServer).s; s.Active() != 0 {
		t.Errorf("the server holds %d slots; want 0", s.Active())
	}
}

// leanTLSServer wraps serve in a TLS server (reencrypt) with a fresh CA
// (its config changed by opts) and returns the proxy's upstream config.
func leanTLSServer(t *testing.T, serve func(ss *lfSess) error, opts ...func(*tls.Config)) (*lfServer, *tls.Config) {
	t.Helper()
	ca, err := certs.NewAuthority("lean CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(certs.Leaf{CommonName: "backend", DNSNames: []string{"backend"}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	scfg := &tls.Config{Certificates: []tls.Certificate{leaf.TLS}}
	for _, o := range opts {
		o(scfg)
	}
	srv := lfListen(t, func(ss *lfSess) error {
		tc := tls.Server(ss.c, scfg)
		return serve(&lfSess{s: ss.s, n: ss.n, c: tc, br: bufio.NewReader(tc)})
	})
	return srv, &tls.Config{RootCAs: ca.Pool(), ServerName: "backend"}
}

// Reencrypt: the server side (TLS through the record reader) parks, is
// resumed by the server's records each time, and a shutdown while parked
// sends the close frame.
func TestLeanParkReencryptParks(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("parking is Linux-only")
	}
	srv, up := leanTLSServer(t, leanEchoUpgrade("", 0))
	p := lfProxy(t, HTTPOptions{Upgrades: []string{"echo"}, Upstream: up}, srv.addr)
	client, _, ret := idleTLSConn(t, p)
	br := leanUpgrade(t, client, "echo")
	big := make([]byte, 100<<10)
	_, _ = rand.Read(big)
	for _, msg := range [][]byte{[]byte("one"), big, []byte("three")} {
		leanParked(t)
		leanEcho(t, client, br, msg)
	}
	leanParked(t)
	client.Close()
	leanServeEnds(t, ret)
}

func TestLeanParkReencryptShutdownWhileParked(t *testing.T) { leanShutdownWhileParked(t, true) }

// leanParkPusher answers a WebSocket upgrade, then pushes n text frames
// "msg-i", pausing gaps[i%len(gaps)] before each (around upQuietAfter: the
// pushes land between the quiet wait's timeout and the arming), then waits
// for EOF.
func leanParkPusher(n int, gaps []time.Duration) func(ss *lfSess) error {
	return func(ss *lfSess) error {
		if _, err := ss.read(); err != nil {
			return err
		}
		if err := ss.write("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"); err != nil {
			return err
		}
		for i := range n {
			time.Sleep(gaps[i%len(gaps)])
			msg := fmt.Sprintf("msg-%d", i)
			if err := ss.write(string([]byte{0x81, byte(len(msg))}) + msg); err != nil {
				return err
			}
		}
		return ss.untilEOF()
	}
}

// leanParkReadFrame reads one unmasked server frame (payload < 126 bytes).
func leanParkReadFrame(br *bufio.Reader) (byte, []byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return 0, nil, err
	}
	if h[1]&0x80 != 0 || h[1]&0x7f >= 126 {
		return 0, nil, fmt.Errorf("unexpected frame header % x", h)
	}
	b := make([]byte, h[1]&0x7f)
	_, err := io.ReadFull(br, b)
	return h[0] & 0x0f, b, err
}

// Server pushes spaced around the quiet wait (so they race the arming and
// the parker's resume), on several streams at once, plain and reencrypt:
// every frame arrives, in order, none twice.
func TestLeanParkPushesAroundQuietAfter(t *testing.T) {
	gaps := []time.Duration{0, upQuietAfter - 5*time.Millisecond, upQuietAfter, upQuietAfter + 2*time.Millisecond, 3 * time.Millisecond, upQuietAfter + 10*time.Millisecond}
	const n = 30
	for _, reenc := range []bool{false, true} {
		t.Run(fmt.Sprintf("reencrypt=%v", reenc), func(t *testing.T) {
			t.Parallel()
			var srv *lfServer
			var up *tls.Config
			if reenc {
				srv, up = leanTLSServer(t, leanParkPusher(n, gaps))
			} else {
				srv = lfListen(t, leanParkPusher(n, gaps))
			}
			p := lfProxy(t, HTTPOptions{Upstream: up}, srv.addr)
			done := make(chan error, 3)
			for range 3 {
				client, _, ret := idleTLSConn(t, p)
				br := leanUpgrade(t, client, "websocket")
				go func() {
					defer func() { client.Close(); <-ret }()
					for i := range n {
						op, b, err := leanParkReadFrame(br)
						if err != nil || op != 1 || string(b) != fmt.Sprintf("msg-%d", i) {
							done <- fmt.Errorf("frame %d: op %d %q, %v", i, op, b, err)
							return
						}
					}
					done <- nil
				}()
			}
			for range 3 {
				if err := <-done; err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// A shutdown at times around the quiet wait's end and the arming: the
// client always gets every whole frame sent before, then the close frame,
// and ServeConn returns.
func TestLeanParkShutdownAroundPark(t *testing.T) {
	gaps := []time.Duration{upQuietAfter + 5*time.Millisecond}
	for i, delay := range []time.Duration{45, 48, 50, 52, 55, 58, 62, 70} {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			srv := lfListen(t, leanParkPusher(1000, gaps))
			p := lfProxy(t, HTTPOptions{}, srv.addr)
			client, c, ret := idleTLSConn(t, p)
			br := leanUpgrade(t, client, "websocket")
			if _, b, err := leanParkReadFrame(br); err != nil || string(b) != "msg-0" {
				t.Fatalf("first frame %q, %v", b, err)
			}
			time.Sleep(delay * time.Millisecond)
			c.Shutdown("drained")
			for j := 1; ; j++ {
				op, b, err := leanParkReadFrame(br)
				if err != nil {
					t.Fatalf("frame %d: %v; want frames then a close frame", j, err)
				}
				if op == 8 {
					break
				}
				if string(b) != fmt.Sprintf("msg-%d", j) {
					t.Fatalf("frame %d: %q", j, b)
				}
			}
			client.Close()
			leanServeEnds(t, ret)
		})
	}
}

// The server closes (FIN) at times around the quiet wait's end and the
// arming: the client always gets the last bytes, then close_notify.
func TestLeanParkServerFINAroundPark(t *testing.T) {
	for i, delay := range []time.Duration{40, 45, 48, 50, 51, 52, 55, 60} {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			srv := lfListen(t, func(ss *lfSess) error {
				if _, err := ss.read(); err != nil {
					return err
				}
				if err := ss.write("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"); err != nil {
					return err
				}
				time.Sleep(5 * time.Millisecond)
				if err := ss.write("last"); err != nil {
					return err
				}
				time.Sleep(delay * time.Millisecond)
				return nil // lfListen closes the connection
			})
			p := lfProxy(t, HTTPOptions{Upgrades: []string{"echo"}}, srv.addr)
			client, _, ret := idleTLSConn(t, p)
			br := leanUpgrade(t, client, "echo")
			if rest, err := io.ReadAll(br); err != nil || string(rest) != "last" {
				t.Fatalf("after the server closed: %q, %v; want \"last\" and close_notify", rest, err)
			}
			client.Close()
			leanServeEnds(t, ret)
		})
	}
}
