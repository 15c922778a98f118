package tlsmode

// The HTTP/1.x request guard: request smuggling defence.
//
// net/http's server is lenient where RFC 9112 lets a server be lenient, and
// a few places further: it accepts bare LF line endings and obs-fold
// continuation lines, keeps a connection alive after a request that had both
// Transfer-Encoding and Content-Length (RFC 9112 §6.1: a server MUST close
// after answering it), and ignores Transfer-Encoding in HTTP/1.0 requests.
// Each is a way for two parsers of the same bytes to disagree on where a
// request ends. The guard sits between the client's *tls.Conn and
// http.Server and checks every request head on the raw bytes before
// net/http reads a byte of it; it follows each body's framing to find the
// next head, so a pipelined request is checked too.
//
// Rules (each refusal is 400 and a closed connection unless noted; no
// server is contacted):
//   - Lines end in CRLF (RFC 9112 §2.2: bare LF is refused, bare CR too).
//   - No control byte other than HTAB in a head (RFC 9110 §5.5), none at
//     all in the request line; no obs-fold (a line starting with SP or
//     HTAB, RFC 9112 §5.2); a field name is a token directly followed by
//     ":" (RFC 9112 §5.1: no whitespace before the colon).
//   - The request line is method SP target SP "HTTP/1.1" or "HTTP/1.0"
//     (RFC 9112 §3); after a POST, up to two empty lines before it are let
//     through (RFC 9112 §2.2 robustness; net/http skips them there, and
//     only there); any other empty line before it is refused.
//   - Transfer-Encoding with Content-Length is refused (RFC 9112 §6.1), as
//     is Transfer-Encoding in an HTTP/1.0 request (§6.1), on several field
//     lines, or not ending in chunked (§6.3). Codings before a final
//     chunked (gzip, chunked) get 501 Not Implemented (§6.1 SHOULD).
//   - Content-Length is digits only; several field lines must be identical
//     (RFC 9110 §8.6).
//   - An HTTP/1.1 request has exactly one Host field line (RFC 9112 §3.2),
//     CONNECT aside.
//   - A head larger than max_header_bytes (+4 KiB, net/http's own bound)
//     gets 431.
//   - Chunked bodies (RFC 9112 §7.1): hex size (15 digits at most, so it
//     fits an int64; net/http takes 16), extensions after ";" (no
//     whitespace before it, no control bytes in them), CRLF
//     after the size line and after the data, no more than net/http's
//     allowance of non-data bytes; trailer lines as strict as head lines,
//     without framing fields (Content-Length, Transfer-Encoding, Trailer,
//     Host), 4 KiB at most (net/http refuses longer ones). A violation in a
//     body cuts the body: net/http's own chunked reader fails, the request
//     fails with 400 and the connection closes (the server, which already
//     got the head, sees the request aborted).
//   - After a request with an Upgrade field or a CONNECT, the guard stops
//     checking: the bytes after it belong to another protocol if the server
//     switches. The proxy closes the connection after any answer to such a
//     request that is not a 101, so nothing after it is read as HTTP.
//
// On a violation net/http gets, in place of the refused bytes, a request it
// is sure to refuse with the wanted status ("BAD" as a request line: 400;
// an endless head: 431; Transfer-Encoding gzip: 501; "X" as a chunk size
// line inside a body), then EOF; it writes its error answer with
// "Connection: close" and closes. The guard keeps the reason for the log.
// When closed after a violation it lingers as net/http does for its own
// refusals (close_notify and FIN, then it reads and drops what the client
// still sends, for at most h1Linger), so the answer is not lost to a TCP
// reset.
//
// A head in progress must be complete within read_header_timeout of its
// first byte: net/http bounds only the first head that way (it waits for
// the next ones with the idle timeout, and the guard releases no byte
// before the whole head is there).

import (
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// h1Linger bounds how long a connection closed after a refused request
// keeps reading, so the client receives the answer before the close.
const h1Linger = 500 * time.Millisecond

// h1MaxChunkLine bounds a chunk size line with its extensions; net/http
// refuses lines that do not fit its 4 KiB buffer.
const h1MaxChunkLine = 4000

// h1MaxTrailer bounds the trailer section after a chunked body: net/http
// refuses a trailer whose end it cannot see in its 4 KiB buffer.
const h1MaxTrailer = 4096

// h1MaxExcess is net/http's allowance of non-data bytes in a chunked body
// (net/http/internal's chunkedReader): the guard counts the same way, so
// it refuses where net/http would stop reading.
const h1MaxExcess = 16 << 10

type h1State uint8

const (
	h1Head      h1State = iota // a request head (or the empty lines before one)
	h1Body                     // Content-Length body bytes
	h1ChunkLine                // a chunk size line
	h1ChunkData                // chunk data
	h1ChunkEnd                 // the CRLF after chunk data
	h1Trailer                  // the trailer section after the last chunk
	h1Pass                     // after an Upgrade or CONNECT request: unchecked
	h1Refused                  // after a violation: the substitute, then EOF
)

// h1Violation is a refused request: the status net/http is made to answer
// and the reason for the log.
type h1Violation struct {
	status int
	reason string
}

// h1HeadInfo is what a head read so far says.
type h1HeadInfo struct {
	lines   int    // lines checked (the request line is line 1)
	method  string // as sent
	http10  bool
	cl      string // the Content-Length value, "" = none
	te      int    // Transfer-Encoding field lines
	teValue string
	upgrade bool   // an Upgrade field
	hosts   int    // Host field lines
	host    string // the Host field's value
}

// h1Guard wraps the *tls.Conn of an HTTP/1.x client for http.Server (see
// the top of this file). Writes, deadlines, CloseWrite and Close reach the
// wrapped conn; Close lingers after a violation. Read is called by one
// goroutine at a time (net/http's reader, then a hijacker's copier); the
// other methods may be called concurrently with it.
type h1Guard struct {
	net.Conn // the client's *tls.Conn

	maxHead     int           // bytes a head may take
	headTimeout time.Duration // a head, from its first byte; 0 = unbounded

	// Read side.
	buf       []byte
	r, w      int // buf[r:w]: read from Conn, not handed out yet
	ready     int // buf[r:r+ready] is checked and may be handed out
	scan      int // offset from r up to which the current unit's lines are checked
	st        h1State
	head      h1HeadInfo
	left      int64  // body or chunk data bytes still to pass
	excess    int64  // non-data bytes of the current chunked body, as net/http counts them
	afterPOST bool   // the previous request was a POST
	lastHost  string // the Host value of the last complete head (h1Conn checks it)
	skipped   int    // empty-line bytes let through before this head
	sub       []byte
	subFill   bool // after sub, an endless header value (431)

	refused atomic.Pointer[string] // the violation
	timeout atomic.Pointer[string] // a head or chunk line that did not complete in time
	linger  atomic.Bool            // Close lingers (a refused request, a 408)

	dmu      sync.Mutex
	userRead time.Time // the read deadline net/http (or a hijacker) set
	headBy   time.Time // the head in progress must be complete by then; zero = none
	// clockMoved: headBy changed since the conn's read deadline was set
	// (setHeadClock sets it on the conn only before a read waits).
	clockMoved atomic.Bool
}

// newH1Guard guards c, whose heads may take maxHeaderBytes (net/http's
// MaxHeaderBytes) and must arrive within headTimeout of their first byte.
func newH1Guard(c net.Conn, maxHeaderBytes int, headTimeout time.Duration) *h1Guard {
	// net/http reads a head through a limit of MaxHeaderBytes + 4096; the
	// guard's is 4 bytes less, the empty lines it may skip after a POST.
	return &h1Guard{Conn: c, maxHead: maxHeaderBytes + 4096 - 4, headTimeout: headTimeout}
}

// Violation is why the guard refused a request, "" when it did not.
func (g *h1Guard) Violation() string {
	if r := g.refused.Load(); r != nil {
		return *r
	}
	return ""
}

// Reason is why the guard ended the connection: the violation, or a head
// that did not complete in time; "" for neither.
func (g *h1Guard) Reason() string {
	if r := g.Violation(); r != "" {
		return r
	}
	if r := g.timeout.Load(); r != nil {
		return *r
	}
	return ""
}

// LingerOnClose makes Close linger (see h1Linger): the connection is closed
// with an answer while the client may still be sending (a 408).
func (g *h1Guard) LingerOnClose() { g.linger.Store(true) }

func (g *h1Guard) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if g.st == h1Refused {
			return g.readSub(p)
		}
		if g.ready > 0 {
			n := copy(p, g.buf[g.r:g.r+g.ready])
			g.r += n
			g.ready -= n
			return n, nil
		}
		if g.r == g.w {
			// Nothing buffered: give the buffer back, so that an idle
			// connection (a keep-alive client between requests, a
			// WebSocket that lives for days) holds none of the guard's.
			g.r, g.w = 0, 0
			h1PutBuf(g.buf)
			g.buf = nil
			switch g.st {
			case h1Body, h1ChunkData, h1Pass:
				// Nothing buffered: body bytes go straight to the caller.
				q := p
				if g.st != h1Pass && int64(len(q)) > g.left {
					q = q[:g.left]
				}
				n, err := g.connRead(q)
				if g.st != h1Pass {
					g.passed(int64(n))
				}
				return n, err
			}
		}
		progress, v := g.step()
		if v != nil {
			g.refuse(v)
			continue
		}
		if progress {
			continue
		}
		if err := g.fill(p); err != nil {
			return 0, err
		}
	}
}

// holds reports whether the guard has bytes read from the connection and
// not handed out yet.
func (g *h1Guard) holds() bool { return g.r != g.w }

// h1Bufs are the guard's 4 KiB buffers, taken while bytes wait to be
// checked or handed out and given back when none do.
var h1Bufs = sync.Pool{New: func() any { return new([4096]byte) }}

// h1PutBuf gives buf back to h1Bufs if it came from there (a buffer a
// large head grew is left to the GC).
func h1PutBuf(buf []byte) {
	if cap(buf) == 4096 {
		h1Bufs.Put((*[4096]byte)(buf[:4096]))
	}
}

// passed accounts for n body or chunk data bytes handed out.
func (g *h1Guard) passed(n int64) {
	g.left -= n
	if g.left > 0 {
		return
	}
	switch g.st {
	case h1Body:
		g.st = h1Head
	case h1ChunkData:
		g.st = h1ChunkEnd
	}
}

// release marks the next n bytes checked and starts the next unit.
func (g *h1Guard) release(n int) {
	g.ready = n
	g.scan = 0
}

// fill reads more from the client. A head in progress is read under its
// own deadline too (see setHeadClock). With nothing buffered it waits in
// the caller's p (net/http's own buffer) and copies what came into a
// pooled buffer to check it, so the wait for the next request holds no
// buffer of the guard's.
func (g *h1Guard) fill(p []byte) error {
	if g.r == g.w {
		g.r, g.w = 0, 0
		h1PutBuf(g.buf)
		g.buf = nil
		n, err := g.connRead(p)
		if n > 0 {
			if n <= 4096 {
				g.buf = h1Bufs.Get().(*[4096]byte)[:]
			} else {
				g.buf = make([]byte, n)
			}
			g.w = copy(g.buf, p[:n])
			return nil
		}
		return err // nothing of a head buffered: no head timeout to name
	}
	if g.w == len(g.buf) {
		switch {
		case g.r > 0:
			g.w = copy(g.buf, g.buf[g.r:g.w])
			g.r = 0
		case len(g.buf) == 0:
			g.buf = h1Bufs.Get().(*[4096]byte)[:]
		default:
			nb := make([]byte, 2*len(g.buf))
			g.w = copy(nb, g.buf[g.r:g.w])
			g.r = 0
			g.buf = nb
		}
	}
	n, err := g.connRead(g.buf[g.w:])
	g.w += n
	if n > 0 || err == nil {
		return nil
	}
	if isTimeout(err) && (g.st == h1Head || g.st == h1Trailer || g.st == h1ChunkLine) && g.r < g.w {
		g.dmu.Lock()
		ours := !g.headBy.IsZero() && !time.Now().Before(g.headBy) &&
			(g.userRead.IsZero() || g.userRead.After(g.headBy))
		aborted := !g.userRead.IsZero() && g.userRead.Before(time.Unix(1e9, 0)) // net/http's abortPendingRead
		g.dmu.Unlock()
		switch {
		case ours:
			g.setTimeout(fmt.Sprintf("client timeout: request head incomplete after read_header_timeout %v", g.headTimeout))
		case !aborted:
			g.setTimeout("client timeout: incomplete request")
		}
	}
	return err
}

func (g *h1Guard) setTimeout(s string) { g.timeout.CompareAndSwap(nil, &s) }

// refuse records v and switches to the substitute: a refused head becomes
// one net/http answers with v.status; inside a body, a chunk line it
// cannot parse. Buffered input is dropped.
func (g *h1Guard) refuse(v *h1Violation) {
	g.refused.Store(&v.reason)
	g.linger.Store(true)
	g.setHeadClock(false)
	switch {
	case g.st != h1Head:
		g.sub = []byte("X\r\n")
	case v.status == 431:
		g.sub, g.subFill = []byte("GET / HTTP/1.1\r\nX: "), true
	case v.status == 501:
		g.sub = []byte("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n")
	default:
		g.sub = []byte("BAD\r\n\r\n")
	}
	g.st = h1Refused
	g.r, g.w, g.ready, g.buf = 0, 0, 0, nil
}

func (g *h1Guard) readSub(p []byte) (int, error) {
	if len(g.sub) > 0 {
		n := copy(p, g.sub)
		g.sub = g.sub[n:]
		return n, nil
	}
	if g.subFill {
		for i := range p {
			p[i] = 'a'
		}
		return len(p), nil
	}
	return 0, io.EOF
}

// setHeadClock starts (on) or stops the head deadline. The conn's read
// deadline follows at the next read from it (connRead): a head that comes
// whole in one read sets no deadline of its own, on or off.
func (g *h1Guard) setHeadClock(on bool) {
	if g.headTimeout <= 0 {
		return
	}
	g.dmu.Lock()
	defer g.dmu.Unlock()
	switch {
	case on && g.headBy.IsZero():
		g.headBy = time.Now().Add(g.headTimeout)
	case !on && !g.headBy.IsZero():
		g.headBy = time.Time{}
	default:
		return
	}
	g.clockMoved.Store(true)
}

// connRead reads from the conn, under the head clock's deadline when it
// moved since the conn's deadline was last set.
func (g *h1Guard) connRead(p []byte) (int, error) {
	if g.clockMoved.Load() {
		g.dmu.Lock()
		if g.clockMoved.Load() {
			g.clockMoved.Store(false)
			_ = g.Conn.SetReadDeadline(g.readDeadlineLocked())
		}
		g.dmu.Unlock()
	}
	return g.Conn.Read(p)
}

// setConnReadDeadline sets the conn's read deadline to t, whatever the
// guard's (h1idle.go's quiet wait): the head clock, if it moved, is set
// at the next read only if it moves again.
func (g *h1Guard) setConnReadDeadline(t time.Time) {
	g.dmu.Lock()
	g.clockMoved.Store(false)
	_ = g.Conn.SetReadDeadline(t)
	g.dmu.Unlock()
}

func (g *h1Guard) readDeadlineLocked() time.Time {
	if g.headBy.IsZero() || (!g.userRead.IsZero() && g.userRead.Before(g.headBy)) {
		return g.userRead
	}
	return g.headBy
}

func (g *h1Guard) SetReadDeadline(t time.Time) error {
	g.dmu.Lock()
	defer g.dmu.Unlock()
	g.userRead = t
	g.clockMoved.Store(false)
	return g.Conn.SetReadDeadline(g.readDeadlineLocked())
}

func (g *h1Guard) SetDeadline(t time.Time) error {
	if err := g.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return g.SetReadDeadline(t)
}

// CloseWrite ends the stream to the client: close_notify (and, below the
// TLS, nothing more: the socket stays open for reading).
func (g *h1Guard) CloseWrite() error { return closeWrite(g.Conn) }

// Close closes the client's connection; after a violation or a 408 it
// first sends close_notify and a FIN and drops what the client still
// sends, for at most h1Linger.
func (g *h1Guard) Close() error {
	if g.linger.Load() {
		raw := g.Conn
		type netConner interface{ NetConn() net.Conn }
		if nc, ok := raw.(netConner); ok {
			raw = nc.NetConn()
		}
		halfClose(g.Conn)
		_ = raw.SetReadDeadline(time.Now().Add(h1Linger))
		var drop [4096]byte
		for total := 0; total < 1<<20; {
			n, err := raw.Read(drop[:])
			total += n
			if err != nil {
				break
			}
		}
	}
	return g.Conn.Close()
}
