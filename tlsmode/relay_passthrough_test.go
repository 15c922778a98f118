//go:build linux

package tlsmode

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"net"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/affinity"
)

// Passthrough.Serve with the relay: a real server dialed by a small
// Backend, the peers on 127.0.0.1.

// rlBackend is a tlsmode.Backend that dials one real server.
type rlBackend struct {
	addr string
	srv  *affinity.Server
}

func (b rlBackend) Connect(ctx context.Context, c *Conn) (*Upstream, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", b.addr)
	if err != nil {
		return nil, err
	}
	return &Upstream{Conn: conn, Server: b.srv}, nil
}

func (b rlBackend) AcquireServer(context.Context, *Conn, func(*affinity.Server) bool) (*affinity.Server, error) {
	return nil, ErrNoServer
}

// rlPassthrough runs Passthrough.Serve on a client connection whose hello
// was "peeked" (hello), against a server the test accepts; it returns the
// test's ends, the Conn and a channel closed when Serve returned.
func rlPassthrough(t *testing.T, hello []byte, detach bool) (client, server *net.TCPConn, c *Conn, done chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	client, edgeClient := tcpPair(t)
	c = &Conn{Conn: edgeClient, Peeked: hello, Hello: &Hello{Raw: hello}}
	done = make(chan struct{})
	if detach {
		c.Ended = func() { close(done) }
	}
	p := &Passthrough{Backend: rlBackend{ln.Addr().String(), affinity.NewServer(ln.Addr().String(), 1)}}
	go func() {
		if err := p.Serve(context.Background(), c); err != nil {
			t.Errorf("Serve: %v", err)
		}
		if !detach {
			close(done)
		} else if !c.Detached() {
			t.Error("Serve with Ended set returned without detaching")
			close(done)
		}
	}()
	_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(rlWaitLong))
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	server = sc.(*net.TCPConn)
	t.Cleanup(func() {
		client.Close()
		server.Close()
	})
	if got, err := rlReadN(server, int64(len(hello))); err != nil || !bytes.Equal(got, rlSum(hello)) {
		t.Fatalf("the server did not get the hello replayed: %v", err)
	}
	// Serve hands the stream to the relay just after the replay: wait
	// (bounded) for it, so what the test does next reaches the relay.
	for deadline := time.Now().Add(rlWaitLong); c.live.relay.Load() == nil; {
		if time.Now().After(deadline) {
			t.Fatal("the relay never got the stream")
		}
		time.Sleep(time.Millisecond)
	}
	return client, server, c, done
}

func rlSum(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

func rlWaitDone(t *testing.T, done chan struct{}) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(rlWaitLong):
		t.Fatal("the stream did not end")
	}
}

// Passthrough through the relay, detached: Serve returns at once, the
// hello is replayed and dropped, bytes move, and Ended comes with the
// counts (up includes the hello) and the reason.
func TestRelayPassthroughDetached(t *testing.T) {
	t.Parallel()
	hello := bytes.Repeat([]byte("h"), 517)
	client, server, c, done := rlPassthrough(t, hello, true)
	if _, err := client.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, err := rlReadN(server, 4); err != nil {
		t.Fatal(err)
	}
	if up, down := rlLiveBytes(c, 517+4, 0); up != 517+4 || down != 0 {
		t.Errorf("LiveBytes: got %d, %d; want %d, 0", up, down, 517+4)
	}
	_ = server.CloseWrite()
	rlExpectEOF(t, client, "client")
	client.Close()
	rlWaitDone(t, done)
	if c.BytesUp != 517+4 || c.BytesDown != 0 || c.Reason != "server closed" {
		t.Errorf("got up=%d down=%d reason=%q; want %d 0 %q", c.BytesUp, c.BytesDown, c.Reason, 517+4, "server closed")
	}
	if c.BoundServer() != nil {
		t.Error("still bound to its server after the end")
	}
	if c.Peeked != nil || c.Hello.Raw != nil {
		t.Error("the hello is still held after the replay")
	}
}

// An idle relayed stream is ended by WatchIdle: a FIN to both peers, reason
// "idle timeout".
func TestRelayIdleTimeout(t *testing.T) {
	t.Parallel()
	client, server, c, done := rlPassthrough(t, []byte("hello"), false)
	c.WatchIdle(300 * time.Millisecond)
	rlExpectEOF(t, client, "client")
	rlExpectEOF(t, server, "server")
	client.Close()
	server.Close()
	rlWaitDone(t, done)
	if got := c.ShutdownReason(); got != "idle timeout" {
		t.Errorf("ShutdownReason: got %q; want %q", got, "idle timeout")
	}
}

// The handshake watch on a relayed stream: a client that sends nothing
// after its hello is ended; one that goes on is not.
func TestRelayHandshakeWatch(t *testing.T) {
	t.Parallel()
	client, server, c, done := rlPassthrough(t, []byte("hello"), false)
	c.WatchHandshake(200*time.Millisecond, 5)
	rlExpectEOF(t, server, "server")
	client.Close()
	server.Close()
	rlWaitDone(t, done)
	if got := c.ShutdownReason(); got != ReasonHandshakeTimeout {
		t.Errorf("silent client: got %q; want %q", got, ReasonHandshakeTimeout)
	}

	client, server, c, done = rlPassthrough(t, []byte("hello"), false)
	if _, err := client.Write([]byte("finished")); err != nil {
		t.Fatal(err)
	}
	if _, err := rlReadN(server, 8); err != nil {
		t.Fatal(err)
	}
	fired := make(chan struct{})
	c.WatchHandshake(time.Millisecond, 5)
	time.AfterFunc(200*time.Millisecond, func() { close(fired) })
	<-fired
	if got := c.ShutdownReason(); got != "" {
		t.Errorf("client that went on: ended with %q; want it live", got)
	}
	client.Close()
	server.Close()
	rlWaitDone(t, done)
}

// Shutdown in the middle of a bulk transfer: both peers get their stream
// ended (FIN, then the sockets closed by CloseGrace at the latest) and the
// relay lets go of everything.
func TestRelayShutdownMidTransfer(t *testing.T) {
	t.Parallel()
	client, server, c, done := rlPassthrough(t, []byte("hello"), false)
	go func() { // the client writes without end, the server reads slowly
		buf := make([]byte, 64<<10)
		for {
			if _, err := client.Write(buf); err != nil {
				return
			}
		}
	}()
	if _, err := rlReadN(server, 4<<20); err != nil {
		t.Fatal(err)
	}
	if !c.Shutdown("drained") {
		t.Fatal("Shutdown: got false; want true")
	}
	_ = server.SetReadDeadline(time.Now().Add(rlWaitLong))
	if _, err := io.Copy(io.Discard, server); err != nil {
		t.Logf("server read ended with %v", err)
	}
	rlWaitDone(t, done)
	if got := c.ShutdownReason(); got != "drained" {
		t.Errorf("ShutdownReason: got %q; want %q", got, "drained")
	}
	if c.BytesUp < 4<<20 {
		t.Errorf("BytesUp: got %d; want at least %d", c.BytesUp, 4<<20)
	}
}

// Shutdown of a stream whose peers take the FIN but never close: the
// relay closes both sockets after CloseGrace on its own.
func TestRelayShutdownStubbornPeers(t *testing.T) {
	t.Parallel()
	client, server, c, done := rlPassthrough(t, []byte("hello"), true)
	if !c.Shutdown("shutting down") {
		t.Fatal("Shutdown: got false; want true")
	}
	rlExpectEOF(t, client, "client") // the FIN; neither peer closes
	rlExpectEOF(t, server, "server")
	rlWaitDone(t, done) // CloseGrace later
	if c.Reason != "closed" {
		t.Errorf("reason: got %q; want %q (closed by the relay)", c.Reason, "closed")
	}
	// The relay closed the sockets: writing to them fails at last.
	_ = client.SetWriteDeadline(time.Now().Add(rlWaitLong))
	var err error
	for range 100 {
		if _, err = client.Write([]byte("x")); err != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err == nil {
		t.Error("client writes still succeed after the relay closed the stream")
	}
}

// CloseNow (the last resort of a shutdown) closes both sockets of a
// relayed stream at once.
func TestRelayCloseNow(t *testing.T) {
	t.Parallel()
	client, server, c, done := rlPassthrough(t, []byte("hello"), true)
	c.CloseNow()
	rlWaitDone(t, done)
	if c.Reason != "closed" {
		t.Errorf("reason: got %q; want %q", c.Reason, "closed")
	}
	rlExpectEOF(t, client, "client")
	rlExpectEOF(t, server, "server")
}
