package tlsmode

import (
	"errors"
	"io"
	"sync"
	"time"
)

// The copy loops of upgraded streams. ReverseProxy copies an upgraded
// stream with io.Copy each way, which uses these methods of the server
// side (upgradedConn) when they exist instead of allocating 32 KiB per
// direction for the stream's whole life; the lean relay (upgrade_lean.go)
// uses WriteTo too.
//
//   - server -> client (WriteTo): where the server's socket can be waited
//     on without reading (u.wait: a plain TCP connection, or TLS over a
//     record reader, on Linux), the loop waits until it is readable and
//     only then takes a pooled 16 KiB buffer, so an idle stream holds
//     none. A first read that may find bytes read already (u.buffered:
//     the transport's reader) reads into a 4 KiB buffer held until they
//     come.
//   - client -> server (ReadFrom, ReverseProxy's), and from a TLS server
//     read without a record reader: the read blocks in a 4 KiB buffer
//     taken for the stream (crypto/tls may hold a record already read
//     from the socket, so readiness of the socket says nothing).

// upCopyBuf is the size of the pooled buffers of WriteTo.
const upCopyBuf = 16 << 10

// upHeldBuf is the size of the buffer a blocked read holds.
const upHeldBuf = 4 << 10

var upCopyBufs = sync.Pool{New: func() any { return new([upCopyBuf]byte) }}

// WriteTo copies what the server sends (through Read: close frames and
// deadlines as for any reader) to w until EOF or an error.
func (u *upgradedConn) WriteTo(w io.Writer) (int64, error) {
	d := newUpDown(u, w)
	for {
		if _, done, err := d.step(u.wait); done {
			return d.total, err
		}
	}
}

// upDown is the server -> client copy of an upgraded stream, one read at a
// time (step), so that the lean relay can leave it between two reads while
// its server is quiet (upgrade_park_linux.go).
type upDown struct {
	u     *upgradedConn
	w     io.Writer
	total int64
	held  []byte
	first bool
	// drained: nothing read from the server's socket waits above it. For
	// a plain socket always; for TLS when a read that reached crypto/tls
	// came back short of its buffer, or one that could not wait (the
	// probe: a deadline in the past) found nothing. Not after a read of
	// the response reader's copy: crypto/tls may hold the rest of the
	// record the 101 came in.
	drained bool
}

func newUpDown(u *upgradedConn, w io.Writer) *upDown {
	return &upDown{u: u, w: w, first: true, drained: u.quiet == nil}
}

// errUpParked: the wait given to step parked the stream; the caller's
// goroutine returns and the parker resumes the copy.
var errUpParked = errors.New("parked")

// step waits (wait, when the server is quiet), reads once and writes what
// came; parked: wait parked the stream (nothing was read); done: the copy
// is over, err nil at the server's EOF.
func (d *upDown) step(wait func() error) (parked, done bool, err error) {
	u := d.u
	first := d.first
	d.first = false
	var buf []byte
	var pooled *[upCopyBuf]byte
	probe := false
	if u.wait != nil && !(first && u.buffered) {
		quiet := (u.quiet == nil || u.quiet()) && !u.eof && len(u.inject) == 0 && !u.closing.Load()
		if quiet && d.drained {
			// An error (a deadline: shutdown wakes us) is Read's to report.
			if wait() == errUpParked {
				return true, false, nil
			}
		}
		probe = quiet && !d.drained
		pooled = upCopyBufs.Get().(*[upCopyBuf]byte)
		buf = pooled[:]
	} else {
		if d.held == nil {
			d.held = make([]byte, upHeldBuf)
		}
		buf = d.held
	}
	if probe {
		_ = u.server.SetReadDeadline(aLongTimeAgo)
	}
	n, rerr := u.Read(buf)
	if probe {
		u.setReadDeadline(time.Time{})
		if n == 0 && isTimeout(rerr) {
			upPut(pooled)
			d.drained = true
			return false, false, nil
		}
	}
	d.drained = u.quiet == nil || n < len(buf) && !(first && u.buffered)
	if n > 0 {
		m, werr := d.w.Write(buf[:n])
		d.total += int64(m)
		if werr == nil && m < n {
			werr = io.ErrShortWrite
		}
		if werr != nil {
			upPut(pooled)
			return false, true, werr
		}
	}
	upPut(pooled)
	if u.wait != nil {
		d.held = nil // only the first read used it: an idle stream holds no buffer
	}
	if rerr != nil {
		if errors.Is(rerr, io.EOF) {
			return false, true, nil
		}
		return false, true, rerr
	}
	return false, false, nil
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
