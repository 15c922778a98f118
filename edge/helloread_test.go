package edge

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// clientHello returns the first record a Go TLS client sends for sni.
func clientHello(t *testing.T, sni string) []byte {
	t.Helper()
	c, s := net.Pipe()
	defer c.Close()
	defer s.Close()
	go func() { _ = tls.Client(c, &tls.Config{ServerName: sni}).Handshake() }()
	_ = s.SetDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(s, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(s, body); err != nil {
		t.Fatal(err)
	}
	return append(hdr, body...)
}

// readCounter counts the reads made of it.
type readCounter struct {
	r     io.Reader
	reads int
}

func (c *readCounter) Read(p []byte) (int, error) { c.reads++; return c.r.Read(p) }

// helloConn returns the server side of a loopback connection whose client
// has written b (after wait, in a goroutine when wait > 0).
func helloConn(t *testing.T, b []byte, wait time.Duration) net.Conn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cl, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	sv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sv.Close() })
	send := func() { _, _ = cl.Write(b) }
	if wait > 0 {
		go func() { time.Sleep(wait); send() }()
	} else {
		send()
		time.Sleep(50 * time.Millisecond) // the bytes are there before the first read
	}
	_ = sv.SetReadDeadline(time.Now().Add(10 * time.Second))
	return sv
}

// readHello takes a hello that is there already in one read that does not
// wait, and gives back what came with it as the tail; a hello not there
// yet is waited for with exact reads (no buffer held meanwhile). With a
// PROXY header's buffer, the tail and the connection give exactly the
// bytes after the hello, in order.
func TestReadHelloAhead(t *testing.T) {
	hello := clientHello(t, "a.example.com")
	extra := []byte("\x17\x03\x03\x00\x05early")
	sent := append(bytes.Clone(hello), extra...)

	for _, late := range []bool{false, true} {
		t.Run(fmt.Sprint("late ", late), func(t *testing.T) {
			wait := time.Duration(0)
			if late {
				wait = 100 * time.Millisecond
			}
			c := helloConn(t, sent, wait)
			rc := &readCounter{r: c}
			cr := &countingReader{r: rc}
			h, tail, err := readHello(c, cr, cr, nil)
			if err != nil || !bytes.Equal(h.Raw, hello) {
				t.Fatalf("%v, raw %d bytes; want the %d of the hello", err, len(h.Raw), len(hello))
			}
			wantReads, wantTail := 0, extra // all in the first read, which is not the reader's
			if late {
				wantReads, wantTail = 2, nil // exact: header, body
			}
			if rc.reads != wantReads || !bytes.Equal(tail, wantTail) {
				t.Errorf("reads through the reader %d, tail %q; want %d, %q", rc.reads, tail, wantReads, wantTail)
			}
			if want := int64(len(hello) + len(wantTail)); cr.n != want {
				t.Errorf("bytes counted %d; want %d (all read)", cr.n, want)
			}
		})
	}

	stream := append(bytes.Clone(sent), "more"...)
	for _, split := range []int{0, 3, 10, len(hello), len(hello) + 2, len(hello) + len(extra)} {
		t.Run(fmt.Sprint("proxy buffer holds ", split), func(t *testing.T) {
			rest := bytes.NewReader(stream[:split]) // read first, as a PROXY header's buffer is
			conn := bytes.NewReader(stream[split:])
			h, tail, err := readHello(nil, &countingReader{}, io.MultiReader(rest, conn), rest)
			if err != nil || !bytes.Equal(h.Raw, hello) {
				t.Fatalf("%v, raw %d bytes; want the %d of the hello", err, len(h.Raw), len(hello))
			}
			unread, _ := io.ReadAll(conn)
			if got := append(tail, unread...); !bytes.Equal(got, stream[len(hello):]) {
				t.Errorf("tail %q then the connection %q; want %q", tail, unread, stream[len(hello):])
			}
		})
	}
}

// Bytes a client sends with its hello, in the same write, reach the
// passthrough server right after it.
func TestPassthroughBytesWithHello(t *testing.T) {
	dir := t.TempDir()
	srv, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	hello := clientHello(t, "pt.example.com")
	extra := []byte("\x17\x03\x03\x00\x05early")
	got := make(chan []byte, 1)
	go func() {
		c, err := srv.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		b := make([]byte, len(hello)+len(extra))
		n, _ := io.ReadFull(c, b)
		got <- b[:n]
	}()
	path := writeConfigIn(t, dir, fmt.Sprintf(`
log: {level: error, access: false}
listeners:
  - name: pt
    address: "127.0.0.1:0"
    routes:
      - {sni: [pt.example.com], mode: passthrough, backend: raw}
backends:
  - name: raw
    health: {type: none}
    servers: [{address: %q}]
`, srv.Addr().String()))
	e := startEdge(t, path)
	c, err := net.Dial("tcp", e.Addr("pt").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(append(bytes.Clone(hello), extra...)); err != nil {
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b, append(bytes.Clone(hello), extra...)) {
		t.Errorf("the server got %d bytes; want the hello (%d) and the %d after it, as sent", len(b), len(hello), len(extra))
	}
}
