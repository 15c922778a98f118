package tlsmode

import (
	"bytes"
	"crypto/tls"
	"io"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/certs"
)

// rcRecord is a TLS record header and body of n bytes of fill.
func rcRecord(n int, fill byte) []byte {
	r := []byte{23, 3, 3, byte(n >> 8), byte(n)}
	return append(r, bytes.Repeat([]byte{fill}, n)...)
}

// recConn hands out one record at a time, header then body, however the
// bytes arrive and however large the reader's buffer: a read never crosses
// a record's end, idle is true exactly between records with nothing
// buffered, and the bytes come through unchanged (the peeked hello first).
func TestRecConnRecordAtATime(t *testing.T) {
	hello := rcRecord(40, 'h')
	var stream []byte
	var ends []int // offsets (after the hello) where a record ends
	for i, n := range []int{100, 0, 5000, 1, 16384, 300} {
		stream = append(stream, rcRecord(n, byte('a'+i))...)
		ends = append(ends, len(stream))
	}
	client, server := tcpPair(t)
	go func() {
		// In pieces that straddle headers and bodies.
		for rest := stream; len(rest) > 0; {
			k := min(len(rest), 777)
			if _, err := client.Write(rest[:k]); err != nil {
				return
			}
			rest = rest[k:]
			time.Sleep(time.Millisecond)
		}
	}()
	rc := &recConn{Conn: server, buf: hello}
	var got []byte
	p := make([]byte, 64<<10)
	atEnd := func(off int) bool {
		if off == 0 {
			return true
		}
		for _, e := range ends {
			if e == off {
				return true
			}
		}
		return false
	}
	for len(got) < len(hello)+len(stream) {
		_ = server.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := rc.Read(p)
		if err != nil {
			t.Fatalf("after %d bytes: %v", len(got), err)
		}
		before := len(got)
		got = append(got, p[:n]...)
		// The read stayed inside one header or one body.
		if before < len(hello) {
			if len(got) > len(hello) || (before < 5 && len(got) > 5) {
				t.Fatalf("a read of the hello crossed its header or its end: %d..%d", before, len(got))
			}
			continue
		}
		off := len(got) - len(hello)
		if rc.idle() != (atEnd(off) && len(rc.buf) == 0) {
			t.Fatalf("at offset %d (a record's end: %v, %d bytes buffered): idle() = %v", off, atEnd(off), len(rc.buf), rc.idle())
		}
	}
	if !bytes.Equal(got, append(append([]byte(nil), hello...), stream...)) {
		t.Fatal("the bytes came through changed")
	}
	if rc.pooled != nil || rc.buf != nil {
		t.Errorf("after the last record the reader holds a buffer (%d bytes buffered)", len(rc.buf))
	}
}

// The reads of a record never cross its end even when the socket holds
// more: a read for the header takes what the socket has into the buffer
// and hands out five bytes, the body comes from the buffer.
func TestRecConnHoldsWhatFollows(t *testing.T) {
	client, server := tcpPair(t)
	two := append(rcRecord(10, 'x'), rcRecord(20, 'y')...)
	if _, err := client.Write(two); err != nil {
		t.Fatal(err)
	}
	rc := &recConn{Conn: server}
	p := make([]byte, 1024)
	_ = server.SetReadDeadline(time.Now().Add(10 * time.Second))
	var sizes []int
	for range 4 {
		n, err := rc.Read(p)
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, n)
	}
	if want := []int{5, 10, 5, 20}; !equalInts(sizes, want) {
		t.Errorf("read sizes %v; want %v (header, body, header, body)", sizes, want)
	}
	if !rc.idle() || rc.pooled != nil {
		t.Errorf("after both records: idle %v, buffer held %v; want idle and none", rc.idle(), rc.pooled != nil)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Under crypto/tls: after a handshake and a message read whole, crypto/tls
// holds nothing the record reader has not accounted for: the reader is
// idle; a second message sent meanwhile shows (not idle) and is read.
func TestRecConnUnderTLS(t *testing.T) {
	client, server := tcpPair(t)
	ca, err := certs.NewAuthority("rec CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(certs.Leaf{CommonName: "rec.test", DNSNames: []string{"rec.test"}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	rc := &recConn{Conn: server}
	srv := tls.Server(rc, &tls.Config{Certificates: []tls.Certificate{leaf.TLS}})
	cl := tls.Client(client, &tls.Config{InsecureSkipVerify: true, ServerName: "rec.test"})
	errc := make(chan error, 1)
	go func() {
		if err := cl.Handshake(); err != nil {
			errc <- err
			return
		}
		_, err := cl.Write([]byte("first"))
		errc <- err
	}()
	p := make([]byte, 100)
	_ = srv.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := srv.Read(p)
	if err != nil || string(p[:n]) != "first" {
		t.Fatalf("read %q, %v; want first", p[:n], err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !rc.idle() {
		t.Error("after the message was read whole the record reader is not idle")
	}
	if _, err := cl.Write([]byte("second")); err != nil {
		t.Fatal(err)
	}
	n, err = io.ReadAtLeast(srv, p, 6)
	if err != nil || string(p[:n]) != "second" {
		t.Fatalf("read %q, %v; want second", p[:n], err)
	}
}
