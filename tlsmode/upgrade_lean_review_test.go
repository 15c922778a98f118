package tlsmode

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"
)

// leanPattern is n bytes that are easy to compare.
func leanPattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}

// Reencrypt: the server sends its 101 head and a 10 KB first message in
// one write (one TLS record). The proxy's 4 KiB response reader takes the
// head and part of the message; crypto/tls keeps the rest. The client must
// get the whole message without sending anything.
func TestLeanUpgradeReviewReencryptEarlyInSameRecord(t *testing.T) {
	early := leanPattern(10 << 10)
	// Full-size records from the start, as OpenSSL writes them.
	srv, up := leanTLSServer(t, leanEchoUpgrade(string(early), 0), leanFullRecords)
	p := lfProxy(t, HTTPOptions{Upgrades: []string{"echo"}, Upstream: up}, srv.addr)
	client, _, ret := idleTLSConnWith(t, p, leanFullRecords)
	br := leanUpgrade(t, client, "echo")
	got := make([]byte, len(early))
	n, err := io.ReadFull(br, got)
	if err != nil || !bytes.Equal(got, early) {
		t.Fatalf("the server's first message: %d of %d bytes, %v; want all of it", n, len(early), err)
	}
	client.Close()
	leanServeEnds(t, ret)
}

// The client sends its upgrade head and 10 KB of the new protocol in one
// write (one TLS record) and waits for the echo. The guard's 4 KiB buffer
// takes the head and part of the bytes; crypto/tls keeps the rest.
func TestLeanUpgradeReviewClientBytesInHeadRecord(t *testing.T) {
	srv := lfListen(t, leanEchoUpgrade("", 0))
	p := lfProxy(t, HTTPOptions{Upgrades: []string{"echo"}}, srv.addr)
	client, _, ret := idleTLSConnWith(t, p, leanFullRecords)
	_ = client.SetDeadline(time.Now().Add(lfWait))
	first := leanPattern(10 << 10)
	head := "GET /ws HTTP/1.1\r\nHost: a.example.com\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"
	if _, err := client.Write(append([]byte(head), first...)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(client)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("got %v, %v; want 101", resp, err)
	}
	got := make([]byte, len(first))
	n, err := io.ReadFull(br, got)
	if err != nil || !bytes.Equal(got, first) {
		t.Fatalf("the echo of the client's first bytes: %d of %d, %v; want all of them", n, len(first), err)
	}
	client.Close()
	leanServeEnds(t, ret)
}

// The client sends its head, then (a second record, before the 101) 10 KB
// of the new protocol; the server answers after the background read has
// started, which takes one byte of that record out of crypto/tls.
func TestLeanUpgradeReviewClientBytesAfterBackgroundRead(t *testing.T) {
	srv := lfListen(t, leanEchoUpgrade("", 3*h1BackgroundReadDelay))
	p := lfProxy(t, HTTPOptions{Upgrades: []string{"echo"}}, srv.addr)
	client, _, ret := idleTLSConnWith(t, p, leanFullRecords)
	_ = client.SetDeadline(time.Now().Add(lfWait))
	first := leanPattern(10 << 10)
	if _, err := io.WriteString(client, "GET /ws HTTP/1.1\r\nHost: a.example.com\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Write(first); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(client)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("got %v, %v; want 101", resp, err)
	}
	got := make([]byte, len(first))
	n, err := io.ReadFull(br, got)
	if err != nil || !bytes.Equal(got, first) {
		t.Fatalf("the echo of the client's first bytes: %d of %d, %v; want all of them", n, len(first), err)
	}
	client.Close()
	leanServeEnds(t, ret)
}

// leanFullRecords makes a client write full-size TLS records from the
// start, as OpenSSL does (crypto/tls's first records are small).
func leanFullRecords(c *tls.Config) { c.DynamicRecordSizingDisabled = true }

// Reencrypt: a server refuses an upgrade with a keep-alive 403, then
// closes that connection while it idles (close_notify and FIN). A POST
// that comes next must not be sent on the dead connection: a pooled
// connection the server closed is dropped (upIdleClosed), whatever request
// it was dialed for.
func TestLeanUpgradeReviewRefusedUpgradeConnClosedWhileIdle(t *testing.T) {
	closeNow := make(chan struct{})
	var once sync.Once
	letClose := func() { once.Do(func() { close(closeNow) }) }
	srv, up := leanTLSServer(t, func(ts *lfSess) error {
		if ts.n == 1 {
			if _, err := ts.read(); err != nil {
				return err
			}
			if err := ts.write("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"); err != nil {
				return err
			}
			<-closeNow
			return ts.c.Close() // the server's keep-alive ends: close_notify, FIN
		}
		return lfAnswer("")(ts)
	})
	t.Cleanup(letClose) // after lfListen's registration: runs before its close
	p := lfProxy(t, HTTPOptions{Upgrades: []string{"echo"}, Upstream: up}, srv.addr)
	c1 := lfConnect(t, p)
	resp, _, _ := c1.do(t, "GET /ws HTTP/1.1\r\nHost: a.example.com\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	if resp.StatusCode != 403 {
		letClose()
		t.Fatalf("the upgrade got %d; want the server's 403", resp.StatusCode)
	}
	// The proxy keeps the refused upgrade's server connection (keep-alive
	// answer): once it is in the pool the server closes it.
	revIdle(t, p, 1)
	letClose()
	if err := srv.waitEnd(t, 1); err != nil {
		t.Fatalf("server connection 1: %v", err)
	}
	time.Sleep(100 * time.Millisecond) // close_notify and FIN reach the proxy
	c2 := lfConnect(t, p)
	resp, body, err := c2.do(t, "POST /form HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: 1\r\n\r\nx")
	lfWantOK(t, resp, body, err)
}
