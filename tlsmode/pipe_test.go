package tlsmode

import (
	"bytes"
	"io"
	"net"
	"runtime"
	"testing"
	"time"
)

// rlWaitLong bounds every wait of the socket tests (the relay's, the
// close reasons'): long enough for a loaded machine, never asserted as a
// duration.
const rlWaitLong = 30 * time.Second

// tcpPair returns two connected *net.TCPConn ends.
func tcpPair(t testing.TB) (a, b *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan *net.TCPConn)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- nil
			return
		}
		done <- c.(*net.TCPConn)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b = <-done
	if b == nil {
		t.Fatal("accept failed")
	}
	// Both stay reachable until the test ends: a test that stops using
	// one end (writes, then reads only the other) would otherwise lose it
	// to a GC, whose finalizer closes the socket under the test (the peer
	// then reads EOF: TestH1GuardHeadTimeout failed so, 1 run in 200).
	t.Cleanup(func() { runtime.KeepAlive(c); runtime.KeepAlive(b) })
	return c.(*net.TCPConn), b
}

// The client half-closes after its request; the server still answers, and
// Pipe reports the bytes of each direction and who closed first.
func TestPipeHalfClose(t *testing.T) {
	client, edgeClient := tcpPair(t)
	edgeServer, server := tcpPair(t)
	defer client.Close()
	defer server.Close()

	type res struct {
		up, down int64
		reason   string
	}
	out := make(chan res, 1)
	go func() {
		up, down, reason := Pipe(edgeClient, edgeServer)
		out <- res{up, down, reason}
	}()

	req := bytes.Repeat([]byte("q"), 100_000)
	if _, err := client.Write(req); err != nil {
		t.Fatal(err)
	}
	client.CloseWrite()

	_ = server.SetDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(server) // ends at the client's half-close
	if err != nil {
		t.Fatalf("server read: %v", err)
	}
	if !bytes.Equal(got, req) {
		t.Fatalf("server got %d bytes; want %d", len(got), len(req))
	}
	resp := bytes.Repeat([]byte("a"), 300_000)
	if _, err := server.Write(resp); err != nil {
		t.Fatalf("server write after client half-close: %v", err)
	}
	server.Close()

	_ = client.SetDeadline(time.Now().Add(10 * time.Second))
	back, err := io.ReadAll(client)
	if err != nil {
		t.Fatalf("client read: %v", err)
	}
	if len(back) != len(resp) {
		t.Errorf("client got %d bytes; want %d", len(back), len(resp))
	}
	select {
	case r := <-out:
		if r.up != int64(len(req)) || r.down != int64(len(resp)) || r.reason != "client closed" {
			t.Errorf("Pipe: got up=%d down=%d reason=%q; want up=%d down=%d reason=%q",
				r.up, r.down, r.reason, len(req), len(resp), "client closed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Pipe did not return")
	}
}

// A reset on one side ends both directions at once.
func TestPipeResetEndsBoth(t *testing.T) {
	client, edgeClient := tcpPair(t)
	edgeServer, server := tcpPair(t)
	defer client.Close()
	out := make(chan string, 1)
	go func() {
		_, _, reason := Pipe(edgeClient, edgeServer)
		out <- reason
	}()
	server.SetLinger(0)
	server.Close() // RST
	select {
	case r := <-out:
		if r != "server reset" && r != "server closed" {
			t.Errorf("reason: got %q; want server reset or server closed", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Pipe did not return after the server reset")
	}
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := client.Read(make([]byte, 1)); err == nil {
		t.Error("client read: got data; want the connection closed")
	}
}
