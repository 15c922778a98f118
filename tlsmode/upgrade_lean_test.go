package tlsmode

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// leanEchoUpgrade serves one upgrade request: after delay it answers 101
// with early in the same write (the server's first bytes of the stream,
// read by the proxy with the 101's head), then echoes what comes until EOF.
func leanEchoUpgrade(early string, delay time.Duration) func(ss *lfSess) error {
	return func(ss *lfSess) error {
		if _, err := ss.read(); err != nil {
			return err
		}
		time.Sleep(delay)
		if err := ss.write("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\nX-Server: yes\r\n\r\n" + early); err != nil {
			return err
		}
		_, err := io.Copy(ss.c, ss.br)
		return err
	}
}

// leanRelayStacks returns the stacks of the goroutines relaying lean
// upgraded streams.
func leanRelayStacks() []string { return stacksWith("(*upRelay)") }

// leanWaitShallow waits until the stream's relaying goroutines all wait
// for their socket (upReadWaiter): the client side's, and the server
// side's unless it is parked already (upgrade_park_linux.go); and checks
// that none is inside crypto/tls's read or an HTTP frame.
func leanWaitShallow(t *testing.T) {
	t.Helper()
	var stacks []string
	for end := time.Now().Add(lfWait); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		stacks = leanRelayStacks()
		waiting := 0
		for _, s := range stacks {
			if strings.Contains(s, "upReadWaiter") {
				waiting++
			}
		}
		if waiting == len(stacks) && (len(stacks) == 2 || len(stacks) == 1 && strings.Contains(stacks[0], "fromClient")) {
			break
		}
		stacks = nil
	}
	if stacks == nil {
		t.Fatalf("the idle stream's goroutines never all waited on their socket:\n%s", strings.Join(leanRelayStacks(), "\n\n"))
	}
	for _, s := range stacks {
		for _, deep := range []string{"crypto/tls.(*Conn).Read", "(*h1Conn).serve", "ServeHTTP", "httputil"} {
			if strings.Contains(s, deep) {
				t.Errorf("an idle stream's goroutine is in %s:\n%s", deep, s)
			}
		}
	}
	if g := idleStacks(); len(g) != 0 {
		t.Errorf("the HTTP loop is still there:\n%s", strings.Join(g, "\n\n"))
	}
}

// leanEcho writes msg on c and reads it back.
func leanEcho(t *testing.T, c *tls.Conn, br *bufio.Reader, msg []byte) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(lfWait))
	errc := make(chan error, 1)
	go func() { _, err := c.Write(msg); errc <- err }()
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(br, got); err != nil {
		t.Fatalf("reading the echo of %d bytes: %v", len(msg), err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("the echo of %d bytes differs", len(msg))
	}
}

// An upgraded stream through the lean forward: the 101 goes out with the
// server's fields; the server's first bytes (read with the 101) and the
// client's (sent right behind its head, before the 101: the background
// read of the request takes the first of them) both arrive; once idle, the stream
// is carried by two goroutines waiting on their sockets, with no HTTP
// frame and no crypto/tls read under them; bytes flow again after that;
// the client's close ends it all, the server's slot and the access line
// included.
func TestLeanUpgradeIdleIsShallow(t *testing.T) {
	srv := lfListen(t, leanEchoUpgrade("early", 3*h1BackgroundReadDelay))
	var logs bytes.Buffer // written by the relay before ServeConn returns
	p := lfProxy(t, HTTPOptions{Upgrades: []string{"echo"}, Log: zerolog.New(&logs), Access: true}, srv.addr)
	client, c, ret := idleTLSConn(t, p)
	_ = client.SetDeadline(time.Now().Add(lfWait))
	if _, err := io.WriteString(client, "GET /ws HTTP/1.1\r\nHost: a.example.com\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nfirst"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(client)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("X-Server") != "yes" || resp.Header.Get("Upgrade") != "echo" {
		t.Fatalf("got %d %v; want the server's 101", resp.StatusCode, resp.Header)
	}
	got := make([]byte, len("earlyfirst"))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != "earlyfirst" {
		t.Fatalf("first bytes: %q, %v; want the server's early bytes, then the echo of the client's", got, err)
	}
	if c.Upgrade() != "echo" || c.BoundServer() == nil {
		t.Errorf("Upgrade() = %q, bound to %v; want echo and the server", c.Upgrade(), c.BoundServer())
	}
	leanWaitShallow(t)
	big := make([]byte, 200<<10)
	_, _ = rand.Read(big)
	leanEcho(t, client, br, big)
	leanEcho(t, client, br, []byte("again"))
	leanWaitShallow(t)

	client.Close()
	leanServeEnds(t, ret)
	// One access line, at the stream's end, as ReverseProxy's path wrote it.
	if line := logs.String(); strings.Count(line, `"message":"request"`) != 1 || !strings.Contains(line, `"method":"GET"`) ||
		!strings.Contains(line, `"path":"/ws"`) || !strings.Contains(line, `"proto":"HTTP/1.1"`) || !strings.Contains(line, `"status":101`) {
		t.Errorf("access log: %s; want one line for GET /ws HTTP/1.1 with status 101", line)
	}
	if err := srv.waitEnd(t, 1); err != nil {
		t.Errorf("the server's side ended with %v; want EOF", err)
	}
	if s := p.opt.Backend.(oneServer).s; s.Active() != 0 {
		t.Errorf("the server holds %d slots after the stream ended; want 0", s.Active())
	}
	if c.Upgrade() != "echo" || c.BoundServer() != nil {
		t.Errorf("after the end: bound to %v; want no server", c.BoundServer())
	}
}

// Reencrypt: the server's TLS is read through a record reader, so the
// server's side of an idle stream waits on its socket too; bulk both ways
// (many records) arrives whole.
func TestLeanUpgradeReencryptIdleIsShallow(t *testing.T) {
	srv, up := leanTLSServer(t, leanEchoUpgrade("", 0))
	p := lfProxy(t, HTTPOptions{Upgrades: []string{"echo"}, Upstream: up}, srv.addr)
	client, _, ret := idleTLSConn(t, p)
	br := leanUpgrade(t, client, "echo")
	leanEcho(t, client, br, []byte("hello"))
	leanWaitShallow(t)
	big := make([]byte, 300<<10)
	_, _ = rand.Read(big)
	leanEcho(t, client, br, big)
	leanWaitShallow(t)
	client.Close()
	leanServeEnds(t, ret)
}

// The server ends its side (EOF): the client gets close_notify and may go
// on sending until it closes (ReverseProxy's half-close).
func TestLeanUpgradeServerEOF(t *testing.T) {
	gotAfter := make(chan string, 1)
	srv := lfListen(t, func(ss *lfSess) error {
		if _, err := ss.read(); err != nil {
			return err
		}
		if err := ss.write("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nbye"); err != nil {
			return err
		}
		_ = ss.c.(interface{ CloseWrite() error }).CloseWrite()
		b, err := io.ReadAll(ss.br)
		gotAfter <- string(b)
		return err
	})
	p := lfProxy(t, HTTPOptions{Upgrades: []string{"echo"}}, srv.addr)
	client, _, ret := idleTLSConn(t, p)
	br := leanUpgrade(t, client, "echo")
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "bye" {
		t.Fatalf("after the 101: %q, %v; want \"bye\" and close_notify", rest, err)
	}
	if _, err := io.WriteString(client, "still here"); err != nil {
		t.Fatal(err)
	}
	client.Close()
	select {
	case s := <-gotAfter:
		if s != "still here" {
			t.Errorf("the server got %q after its EOF; want the client's last bytes", s)
		}
	case <-time.After(lfWait):
		t.Fatal("the server's side did not end")
	}
	leanServeEnds(t, ret)
}

// A 101 to another protocol than the one asked for is refused (502) and
// the connection closes; the server's slot is free again.
func TestLeanUpgradeMismatch(t *testing.T) {
	srv := lfListen(t, lfReplyOnce("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: other\r\n\r\n"))
	p := lfProxy(t, HTTPOptions{Upgrades: []string{"echo"}}, srv.addr)
	client, _, _ := idleTLSConn(t, p)
	_ = client.SetDeadline(time.Now().Add(lfWait))
	if _, err := io.WriteString(client, "GET /ws HTTP/1.1\r\nHost: a.example.com\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(client)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 502 {
		t.Fatalf("got %v, %v; want 502", resp, err)
	}
	if err := srv.waitEnd(t, 1); err != nil {
		t.Errorf("server connection: %v", err)
	}
	if s := p.opt.Backend.(oneServer).s; s.Active() != 0 {
		t.Errorf("the server holds %d slots; want 0", s.Active())
	}
}

// leanParked waits until the stream's server side is parked: one
// goroutine of the relay left (the client side's, waiting on its socket),
// none copying from the server.
func leanParked(t *testing.T) {
	t.Helper()
	for end := time.Now().Add(lfWait); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		s := leanRelayStacks()
		if len(s) == 1 && strings.Contains(s[0], "fromClient") && strings.Contains(s[0], "upReadWaiter") {
			return
		}
	}
	t.Fatalf("the idle stream's server side never parked; the relay's goroutines:\n%s", strings.Join(leanRelayStacks(), "\n\n"))
}

// An idle stream keeps one goroutine: the server's side is parked
// (upgrade_park_linux.go) and resumed when the server sends, as often as
// the stream goes quiet; the server closing a parked side is seen too.
func TestLeanUpgradeServerSideParks(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("parking is Linux-only")
	}
	closeNow := make(chan struct{})
	srv := lfListen(t, func(ss *lfSess) error {
		if _, err := ss.read(); err != nil {
			return err
		}
		if err := ss.write("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"); err != nil {
			return err
		}
		if _, err := io.CopyN(ss.c, ss.br, int64(len("onetwofour"))); err != nil {
			return err
		}
		<-closeNow // echoed the three messages: now close
		return nil
	})
	p := lfProxy(t, HTTPOptions{Upgrades: []string{"echo"}}, srv.addr)
	client, _, ret := idleTLSConn(t, p)
	br := leanUpgrade(t, client, "echo")
	for _, msg := range []string{"one", "two", "four"} {
		leanParked(t)
		leanEcho(t, client, br, []byte(msg)) // the parker resumes the server's side
	}
	leanParked(t)
	close(closeNow) // the server closes while its side is parked
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Fatalf("after the server closed: %q, %v; want close_notify", rest, err)
	}
	client.Close()
	leanServeEnds(t, ret)
}

// A shutdown (drain, reload, idle timeout) of a WebSocket whose server
// side is parked still sends the close frame to the client and ends the
// stream.
func TestLeanUpgradeShutdownWhileParked(t *testing.T) { leanShutdownWhileParked(t, false) }

// leanShutdownWhileParked shuts down a parked WebSocket from a plain or a
// TLS (reencrypt) server and checks the close frame reaches the client and
// the stream ends.
func leanShutdownWhileParked(t *testing.T, reencrypt bool) {
	if runtime.GOOS != "linux" {
		t.Skip("parking is Linux-only")
	}
	serve := func(ss *lfSess) error {
		if _, err := ss.read(); err != nil {
			return err
		}
		if err := ss.write("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"); err != nil {
			return err
		}
		return ss.untilEOF()
	}
	var srv *lfServer
	var up *tls.Config
	if reencrypt {
		srv, up = leanTLSServer(t, serve)
	} else {
		srv = lfListen(t, serve)
	}
	p := lfProxy(t, HTTPOptions{Upstream: up}, srv.addr)
	client, c, ret := idleTLSConn(t, p)
	br := leanUpgrade(t, client, "websocket")
	leanParked(t)
	c.Shutdown("drained")
	frame := make([]byte, 2)
	if _, err := io.ReadFull(br, frame); err != nil || frame[0] != 0x88 {
		t.Fatalf("after the shutdown: % x, %v; want a close frame", frame, err)
	}
	client.Close()
	leanServeEnds(t, ret)
}

// leanServeEnds waits for ServeConn's return (ret: idleTLSConn's).
func leanServeEnds(t *testing.T, ret chan error) {
	t.Helper()
	select {
	case <-ret:
	case <-time.After(lfWait):
		t.Fatalf("ServeConn did not return; the relay's goroutines:\n%s", strings.Join(leanRelayStacks(), "\n\n"))
	}
}
