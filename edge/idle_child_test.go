package edge_test

// The child process of BenchmarkIdle (idle_footprint_test.go): the
// clients and every server behind the edge, so that the parent measures
// the edge alone.

import (
	"bufio"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestIdleHelperProcess is BenchmarkIdle's child process (it does nothing
// in a normal test run): it serves the edge's backends, then opens and
// closes client connections as its input says ("open KIND ADDR SNI N",
// "close"), answering each line ("ready N", "closed", "error ...").
func TestIdleHelperProcess(t *testing.T) {
	dir := os.Getenv(idleEnv)
	if dir == "" {
		return
	}
	if err := idleChild(dir); err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func idleChild(dir string) error {
	pool, srvCert, err := idleTLS(dir, "server")
	if err != nil {
		return err
	}
	_, cliCert, err := idleTLS(dir, "client")
	if err != nil {
		return err
	}
	srvTLS := &tls.Config{Certificates: []tls.Certificate{srvCert}}
	var addrs []string
	for _, cfg := range []*tls.Config{nil, srvTLS} { // the plain and HTTPS backends
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		if cfg != nil {
			ln = tls.NewListener(ln, cfg)
		}
		go func() { _ = http.Serve(ln, http.HandlerFunc(idleBackend)) }()
		addrs = append(addrs, ln.Addr().String())
	}
	echo, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{srvCert},
		ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert})
	if err != nil {
		return err
	}
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
	fmt.Println("backends", strings.Join(append(addrs, echo.Addr().String()), " "))

	var held []net.Conn
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 5 && f[0] == "open":
			n, _ := strconv.Atoi(f[4])
			cfg := &tls.Config{ServerName: f[3], RootCAs: pool, CurvePreferences: []tls.CurveID{tls.X25519}}
			if f[1] != "tls" {
				cfg.Certificates = []tls.Certificate{cliCert}
			}
			if f[1] != "tls" && f[1] != "echo" {
				cfg.NextProtos = []string{"http/1.1"}
			}
			conns, err := idleOpen(f[1], f[2], cfg, n)
			held = append(held, conns...)
			if err != nil {
				fmt.Println("error", err)
				continue
			}
			fmt.Println("ready", len(conns))
		case len(f) == 1 && f[0] == "close":
			for _, c := range held {
				c.Close()
			}
			held = nil
			fmt.Println("closed")
		default:
			fmt.Println("error bad command", f)
		}
	}
	return sc.Err()
}

// idleOpen opens n connections to addr, idleWorkers at a time, each used
// once as kind says: tls, mtls (the handshake only), get (one keep-alive
// GET), ws (a WebSocket upgrade and one frame each way), echo (one byte
// echoed).
func idleOpen(kind, addr string, cfg *tls.Config, n int) ([]net.Conn, error) {
	conns := make([]net.Conn, n)
	var next atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range idleWorkers {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n && firstErr.Load() == nil; i = int(next.Add(1)) - 1 {
				c, err := idleUse(kind, addr, cfg)
				if err != nil {
					firstErr.CompareAndSwap(nil, fmt.Errorf("connection %d: %w", i, err))
					return
				}
				conns[i] = c
			}
		})
	}
	wg.Wait()
	var out []net.Conn
	for _, c := range conns {
		if c != nil {
			out = append(out, c)
		}
	}
	if err, _ := firstErr.Load().(error); err != nil {
		return out, err
	}
	return out, nil
}

func idleUse(kind, addr string, cfg *tls.Config) (net.Conn, error) {
	d := &net.Dialer{Timeout: idleWait}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(idleWait))
	err = func() error {
		br := bufio.NewReader(c)
		switch kind {
		case "get", "ws":
			req := "GET / HTTP/1.1\r\nHost: " + cfg.ServerName + "\r\n"
			if kind == "ws" {
				req += "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
			}
			if _, err := io.WriteString(c, req+"\r\n"); err != nil {
				return err
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if want := map[string]int{"get": 200, "ws": 101}[kind]; resp.StatusCode != want {
				return fmt.Errorf("status %d; want %d", resp.StatusCode, want)
			}
			if kind == "get" {
				return nil
			}
			// A masked text frame "ping"; the server echoes it unmasked.
			if _, err := c.Write([]byte{0x81, 0x84, 1, 2, 3, 4, 'p' ^ 1, 'i' ^ 2, 'n' ^ 3, 'g' ^ 4}); err != nil {
				return err
			}
			got := make([]byte, 6)
			if _, err := io.ReadFull(br, got); err != nil || string(got) != "\x81\x04ping" {
				return fmt.Errorf("websocket echo %q, %v", got, err)
			}
		case "echo":
			got := make([]byte, 1)
			if _, err := c.Write([]byte{'x'}); err != nil {
				return err
			}
			if _, err := io.ReadFull(br, got); err != nil || got[0] != 'x' {
				return fmt.Errorf("echo %q, %v", got, err)
			}
		}
		return nil
	}()
	if err != nil {
		c.Close()
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// idleBackend answers 100 bytes, or a WebSocket upgrade, after which it
// echoes each small frame from the client unmasked.
func idleBackend(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		_, _ = w.Write([]byte(strings.Repeat("x", 100)))
		return
	}
	c, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer c.Close()
	sum := sha1.Sum([]byte(r.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: "+
		base64.StdEncoding.EncodeToString(sum[:])+"\r\n\r\n")
	for {
		var hdr [6]byte // a frame under 126 bytes: 2 header bytes, 4 mask bytes
		if _, err := io.ReadFull(brw, hdr[:]); err != nil {
			return
		}
		p := make([]byte, hdr[1]&0x7f)
		if _, err := io.ReadFull(brw, p); err != nil {
			return
		}
		for i := range p {
			p[i] ^= hdr[2+i%4]
		}
		if _, err := c.Write(append([]byte{hdr[0], byte(len(p))}, p...)); err != nil {
			return
		}
	}
}
