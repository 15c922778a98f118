package edge

import (
	"bytes"
	"io"
	"net"
	"sync"

	"github.com/tlsedge/tlsedge/tlsmode"
)

// helloAhead is how much the first read of a ClientHello may take: a
// typical hello (300 bytes to 2 KiB with a post-quantum key share) comes
// whole in one read(2), where ReadHello's exact reads (the record's header,
// then its body) made two.
const helloAhead = 4 << 10

// helloBuf is a first read's buffer, and the reader that hands its bytes
// out before the connection's.
type helloBuf struct {
	buf    [helloAhead]byte
	off, n int
	r      io.Reader // the connection, after buf
}

func (a *helloBuf) Read(p []byte) (int, error) {
	if a.off < a.n {
		k := copy(p, a.buf[a.off:a.n])
		a.off += k
		return k, nil
	}
	return a.r.Read(p)
}

// helloBufs are the buffers of first reads: taken only for a read that
// does not wait (tlsmode.ReadNow), so a connection whose client has sent
// nothing yet holds none.
var helloBufs = sync.Pool{New: func() any { return new(helloBuf) }}

// readHello reads a ClientHello from c. Without a PROXY header (rest nil),
// the first read takes up to helloAhead bytes at once when they are there
// already (tlsmode.ReadNow, which never waits); when they are not, or there
// is a PROXY header, it reads through r with ReadHello's exact reads, which
// wait. cr counts every byte read (r reads through it). tail is every byte
// read past the hello (what the client sent with it), then what rest still
// holds: the bytes that follow the hello on the connection, in order.
// Routing replays them after the hello (Conn.Peeked).
func readHello(c net.Conn, cr *countingReader, r io.Reader, rest *bytes.Reader) (h *tlsmode.Hello, tail []byte, err error) {
	if rest != nil {
		h, err = tlsmode.ReadHello(r, tlsmode.DefaultMaxHello)
		if rest.Len() > 0 {
			tail = make([]byte, rest.Len())
			_, _ = io.ReadFull(rest, tail)
		}
		return h, tail, err
	}
	a := helloBufs.Get().(*helloBuf)
	a.n = tlsmode.ReadNow(c, a.buf[:])
	if a.n == 0 { // nothing there yet: wait with exact reads, holding no buffer
		helloBufs.Put(a)
		h, err = tlsmode.ReadHello(r, tlsmode.DefaultMaxHello)
		return h, nil, err
	}
	a.off, a.r = 0, r
	cr.n += int64(a.n)
	h, err = tlsmode.ReadHello(a, tlsmode.DefaultMaxHello)
	if a.off < a.n {
		tail = bytes.Clone(a.buf[a.off:a.n])
	}
	a.r = nil
	helloBufs.Put(a)
	return h, tail, err
}
