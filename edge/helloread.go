package edge

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"sync"

	"github.com/tlsedge/tlsedge/tlsmode"
)

// helloAhead is how much one read of the ClientHello may take: a typical
// hello (300 bytes to 2 KiB with a post-quantum key share) comes whole in
// one read(2), where ReadHello's exact reads (the record's header, then
// its body) made two.
const helloAhead = 4 << 10

// helloReaders are the read-ahead buffers of hellos being read: one a
// connection only while its hello is read.
var helloReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, helloAhead) }}

// readHello reads a ClientHello from r through a pooled read-ahead buffer.
// tail is every byte read past the hello (what the client sent with it),
// then what rest (a PROXY header's buffer that r reads first) still holds:
// the bytes that follow the hello on the connection, in order. Routing
// replays them after the hello (Conn.Peeked).
func readHello(r io.Reader, rest *bytes.Reader) (h *tlsmode.Hello, tail []byte, err error) {
	br := helloReaders.Get().(*bufio.Reader)
	br.Reset(r)
	h, err = tlsmode.ReadHello(br, tlsmode.DefaultMaxHello)
	if err == nil || errors.Is(err, tlsmode.ErrNoSNI) {
		left := 0
		if rest != nil {
			left = rest.Len()
		}
		if n := br.Buffered(); n+left > 0 {
			tail = make([]byte, n, n+left)
			_, _ = io.ReadFull(br, tail) // buffered: no read of r
			if left > 0 {
				tail = tail[:n+left]
				_, _ = io.ReadFull(rest, tail[n:])
			}
		}
	}
	br.Reset(nil)
	helloReaders.Put(br)
	return h, tail, err
}
