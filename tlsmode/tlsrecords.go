package tlsmode

import (
	"net"
)

// recConn sits under crypto/tls on a terminated connection. It replays the
// peeked ClientHello, then reads the socket, and hands crypto/tls the bytes
// of one TLS record at a time (its 5-byte header, then its body), so
// crypto/tls never holds bytes past the record it is reading: bytes the
// socket gave beyond that wait here, in a pooled 4 KiB buffer held only
// while they do. So once crypto/tls's plaintext has been read to its end,
// nothing unread is held anywhere but in the socket (idle), and a caller
// may wait for the socket to become readable on a shallow stack (the HTTP/1
// loop's readOne, h1idle.go) rather than deep inside crypto/tls's read: an
// idle connection's goroutine stack then shrinks to a few KiB.
//
// A record's header is read into the buffer (a small request comes whole
// with it, one read(2)); a body the buffer does not hold is read straight
// into crypto/tls's own buffer, never past its end.
type recConn struct {
	net.Conn
	buf    []byte // unread bytes: the peeked hello, then the pooled buffer's
	pooled []byte // the pooled buffer buf is in; nil when none is held
	hdr    [5]byte
	hn     int // header bytes of the current record handed out (5: in its body)
	left   int // body bytes of the current record still to hand out
}

// CloseWrite sends a FIN (see endStream).
func (c *recConn) CloseWrite() error { return closeWrite(c.Conn) }

func (c *recConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	inBody := c.hn == len(c.hdr)
	seg := len(c.hdr) - c.hn
	if inBody {
		seg = c.left
	}
	p = p[:min(len(p), seg)]
	var n int
	switch {
	case len(c.buf) > 0:
		n = copy(p, c.buf)
		if c.buf = c.buf[n:]; len(c.buf) == 0 {
			c.release()
		}
	case inBody: // straight into crypto/tls's buffer, up to the record's end
		var err error
		if n, err = c.Conn.Read(p); n <= 0 {
			return 0, err
		}
	default: // a header: read what the socket has, hand out the header
		b := h1Bufs.Get().(*[4096]byte)[:]
		k, err := c.Conn.Read(b)
		if k <= 0 {
			h1PutBuf(b)
			return 0, err
		}
		c.pooled, c.buf = b, b[:k]
		n = copy(p, c.buf)
		if c.buf = c.buf[n:]; len(c.buf) == 0 {
			c.release()
		}
	}
	if inBody {
		if c.left -= n; c.left == 0 {
			c.hn = 0
		}
		return n, nil
	}
	copy(c.hdr[c.hn:], p[:n])
	if c.hn += n; c.hn == len(c.hdr) {
		c.left = int(c.hdr[3])<<8 | int(c.hdr[4])
		if c.left == 0 {
			c.hn = 0
		}
	}
	return n, nil
}

// release gives the pooled buffer back (the hello's bytes are not kept).
func (c *recConn) release() {
	c.buf = nil
	if c.pooled != nil {
		h1PutBuf(c.pooled)
		c.pooled = nil
	}
}

// idle reports whether crypto/tls has been handed every byte read from the
// socket and is at a record's boundary: then what it has not returned to
// its reader is plaintext of records already read (none, once a Read of it
// came back short).
func (c *recConn) idle() bool { return len(c.buf) == 0 && c.hn == 0 }

// NetConn is the socket under the record reader (upIdleClosed looks there).
func (c *recConn) NetConn() net.Conn { return c.Conn }
