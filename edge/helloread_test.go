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

// readHello takes a whole hello in one read of the connection, and gives
// back what came with it (and what a PROXY header's buffer still held)
// as the tail, in order: nothing is lost or moved.
func TestReadHelloAhead(t *testing.T) {
	hello := clientHello(t, "a.example.com")
	extra := []byte("\x17\x03\x03\x00\x05early")

	rc := &readCounter{r: bytes.NewReader(hello)}
	h, tail, err := readHello(rc, nil)
	if err != nil || !bytes.Equal(h.Raw, hello) || len(tail) != 0 {
		t.Fatalf("hello alone: %v, raw %d bytes (want %d), tail %q", err, len(h.Raw), len(hello), tail)
	}
	if rc.reads != 1 {
		t.Errorf("a %d-byte hello took %d reads; want 1", len(hello), rc.reads)
	}

	stream := append(append(bytes.Clone(hello), extra...), "more"...)
	for _, split := range []int{0, 3, 10, len(hello), len(hello) + 2, len(hello) + len(extra)} {
		t.Run(fmt.Sprint("proxy buffer holds ", split), func(t *testing.T) {
			rest := bytes.NewReader(stream[:split]) // read first, as a PROXY header's buffer is
			conn := bytes.NewReader(stream[split:])
			h, tail, err := readHello(io.MultiReader(rest, conn), rest)
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
