package tlsmode

import (
	"errors"
	"io"
	"sync"
)

// The copy loops of upgraded streams. ReverseProxy copies an upgraded
// stream with io.Copy each way, which uses these methods of the server
// side (upgradedConn) when they exist instead of allocating 32 KiB per
// direction for the stream's whole life.
//
//   - server -> client (WriteTo): where the server's socket can be waited
//     on without reading (a plain TCP connection, on Linux), the loop waits
//     until it is readable and only then takes a pooled 16 KiB buffer, so
//     an idle stream holds none once the server has sent something (its
//     first read, which takes what the transport holds of the server's
//     first bytes, holds a 4 KiB buffer until they come).
//   - client -> server (ReadFrom), and from a TLS server (reencrypt): the
//     read blocks in a 4 KiB buffer taken for the stream (crypto/tls may
//     hold a record already read from the socket, so readiness of the
//     socket says nothing).

// upCopyBuf is the size of the pooled buffers of WriteTo.
const upCopyBuf = 16 << 10

// upHeldBuf is the size of the buffer a blocked read holds.
const upHeldBuf = 4 << 10

var upCopyBufs = sync.Pool{New: func() any { return new([upCopyBuf]byte) }}

// WriteTo copies what the server sends (through Read: close frames and
// deadlines as for any reader) to w until EOF or an error.
func (u *upgradedConn) WriteTo(w io.Writer) (int64, error) {
	var total int64
	var held []byte
	wait := upReadWaiter(u.server)
	for first := true; ; first = false {
		var buf []byte
		var pooled *[upCopyBuf]byte
		if wait != nil && !first {
			// Wait for the server's bytes before taking a buffer. (The
			// first read, below, took what the transport's 4 KiB reader
			// held of what the server sent right after its 101, which
			// readiness of the socket cannot see.)
			if !u.eof && len(u.inject) == 0 && !u.closing.Load() {
				_ = wait() // an error (a deadline: shutdown wakes us) is Read's to report
			}
			pooled = upCopyBufs.Get().(*[upCopyBuf]byte)
			buf = pooled[:]
		} else {
			if held == nil {
				held = make([]byte, upHeldBuf)
			}
			buf = held
		}
		n, err := u.Read(buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			total += int64(m)
			if werr == nil && m < n {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				upPut(pooled)
				return total, werr
			}
		}
		upPut(pooled)
		if wait != nil {
			held = nil // only the first read used it: an idle stream holds no buffer
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return total, nil
			}
			return total, err
		}
	}
}

// ReadFrom copies what the client sends (r: its connection) to the server
// through Write until EOF or an error.
func (u *upgradedConn) ReadFrom(r io.Reader) (int64, error) {
	var total int64
	buf := make([]byte, upHeldBuf)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			m, werr := u.Write(buf[:n])
			total += int64(m)
			if werr == nil && m < n {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				return total, werr
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return total, nil
			}
			return total, err
		}
	}
}

func upPut(b *[upCopyBuf]byte) {
	if b != nil {
		upCopyBufs.Put(b)
	}
}
