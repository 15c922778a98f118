package tlsmode

// The HTTP/1.x side of a terminated connection, served by tlsedge itself
// instead of a net/http.Server per connection: one goroutine (the
// connection's own) reads a request head (readRequestHead: parsed in place
// when plain, else http.ReadRequest; behind the smuggling guard,
// h1guard.go), calls the route's handler (ServeHTTP) with
// h1Response (h1response.go), and waits for the next request holding no
// buffer: the bufio reader and writer are pooled and taken only while a
// request is in progress, and the wait is a 1-byte read into the
// connection's state. Semantics follow net/http's server (its conn.serve,
// readRequest, finishRequest, Shutdown): the same timeouts, answers to
// unreadable requests, Expect: 100-continue, keep-alive rules, background
// read (a client that goes away cancels its request), hijacking for
// upgrades, and a drain that closes a connection once idle (a new one gets
// 5 s for its first request).

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// h1 connection states, as net/http's StateNew, StateActive, StateIdle.
const (
	h1New = iota
	h1Active
	h1Idle
	h1Done
)

// h1NewGrace is how long a connection that has not sent its first request
// is spared by a drain (net/http's Shutdown: 5 s).
const h1NewGrace = 5 * time.Second

// aLongTimeAgo is the read deadline that aborts a pending read (the
// guard knows it: an aborted read is no client timeout).
var aLongTimeAgo = time.Unix(1, 0)

// h1Conn is one HTTP/1.x client connection.
type h1Conn struct {
	p       *HTTPProxy   // its limits and error log
	handler http.Handler // p, but for tests
	cs      *connState
	g       *h1Guard
	base    context.Context // requests' parent: not cancelled by a drain, carries cs; nil: made again from parent (dropped while parked)
	parent  context.Context // the connection's context (a drain cancels it)
	remote  string
	start   time.Time

	br  *bufio.Reader // nil while no request is in progress and nothing is buffered
	bw  *bufio.Writer // nil while idle
	one [1]byte       // the wait for the next request reads here
	// rec is the record reader under crypto/tls and idleWait waits for the
	// socket to become readable (h1idle.go); nil when not known.
	rec      *recConn
	idleWait func() error
	// Parking while idle (h1park.go): pw is the waiter (nil: never
	// parks), parkRun runs the serving again as the detached goroutine
	// does, parkBy is the idle deadline of the wait parked, parkT kicks
	// the waiter then.
	pw      *upPark
	parkRun func(body func() error)
	parkBy  time.Time
	parkT   *time.Timer
	parkGen atomic.Uint64 // counts parks and resumes: a timer kicks only the park it was set for
	end     func()        // undoes startH1's registrations (run)
	hasOne  bool          // one[0] is the first byte of the next read
	remain  int64         // bytes a head may still take (net/http's read limit)
	last    string        // the previous request's method

	mu       sync.Mutex
	state    int
	shutdown bool // drain: close when idle, no keep-alive after the request in flight
	forced   bool // closed from outside
	hijacked bool

	// The background read: while a request is handled with its body
	// read, a goroutine reads the next byte, so that a client that goes
	// away cancels the request (net/http's connReader.backgroundRead).
	bgMu     sync.Mutex
	bgTimer  *time.Timer // starts the background read of the request in flight
	bgArmed  bool        // a request is past its body: the read may start
	bgOn     bool
	bgDone   chan struct{}
	bgByte   [1]byte
	bgCancel *h1Response // the request a client that goes away cancels
	bgFor    *h1Response // the request in flight, until its background read is aborted
	gone     bool        // the background read saw the client go away
}

// h1Src is what the bufio reader reads: the byte of the wait or of the
// background read, then the guard, within the head's read limit.
type h1Src struct{ h *h1Conn }

func (s h1Src) Read(p []byte) (int, error) {
	h := s.h
	if len(p) == 0 {
		return 0, nil
	}
	if h.hasOne {
		h.hasOne = false
		p[0] = h.one[0]
		h.remain--
		n := 1
		// The bytes the guard holds checked come along (no wait for
		// them): a head in one read is whole in the reader's buffer,
		// for readRequestHead's fast path.
		if q := p[1:]; h.g.ready > 0 && len(q) > 0 && h.remain > 0 {
			if int64(len(q)) > h.remain {
				q = q[:h.remain]
			}
			k, _ := h.g.Read(q)
			h.remain -= int64(k)
			n += k
		}
		return n, nil
	}
	if h.remain <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > h.remain {
		p = p[:h.remain]
	}
	n, err := h.g.Read(p)
	h.remain -= int64(n)
	return n, err
}

const h1NoLimit = 1 << 62

// h1Server is what requests served by h1Conn find under
// http.ServerContextKey (only its presence matters).
var h1Server = &http.Server{}

var (
	h1Readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}
	h1Writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4096) }}
)

// shutdownNow makes the connection close once idle (at once if idle now,
// after h1NewGrace for one that has sent nothing yet).
func (h *h1Conn) shutdownNow() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.shutdown = true
	switch h.state {
	case h1Idle:
		h.closeAsyncLocked()
		h.kickParked()
	case h1New:
		wait := h1NewGrace - time.Since(h.start)
		if wait <= 0 {
			h.closeAsyncLocked()
			return
		}
		time.AfterFunc(wait, h.shutdownNow)
	}
}

// closeAsyncLocked closes the connection on a goroutine of its own: the
// close_notify to a client that does not read may take crypto/tls's 5 s,
// and the caller may be a reload going through many connections. The
// loop's read fails at once.
func (h *h1Conn) closeAsyncLocked() {
	if !h.forced {
		h.forced = true
		go h.g.Close()
	}
}

// forceClose closes the connection whatever it is doing.
func (h *h1Conn) forceClose() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.state != h1Done && !h.hijacked {
		h.closeAsyncLocked()
		h.kickParked() // a safeguard: shutdownNow, which comes first, has kicked it already
	}
}

func (h *h1Conn) closeLocked() {
	if !h.forced {
		h.forced = true
		_ = h.g.Close()
	}
}

// setState moves to state s; false when a drain wants the connection
// closed instead (it was idle).
func (h *h1Conn) setState(s int) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.forced {
		return false
	}
	if s == h1Idle && h.shutdown {
		return false
	}
	h.state = s
	return true
}

// serve is the request loop (net/http's conn.serve for HTTP/1.x); resumed:
// the connection parked while idle and goes on waiting for its next
// request. parked: it parked (again), and nothing is undone.
func (h *h1Conn) serve(resumed bool) (parked bool) {
	var inFlight *h1Response
	defer func() {
		if parked {
			return
		}
		if err := recover(); err != nil && err != http.ErrAbortHandler {
			const size = 64 << 10
			buf := make([]byte, size)
			buf = buf[:runtime.Stack(buf, false)]
			h.p.errorLog.Printf("http: panic serving %v: %v\n%s", h.remote, err, buf)
		}
		if inFlight != nil {
			inFlight.cancelRequest()
			h.abortBackgroundRead()
		}
		if inFlight != nil && inFlight.committed && h.bw != nil && !h.isHijacked() {
			// A handler that panicked after its head went out: what is
			// buffered goes out before the close (net/http's finalFlush).
			_ = h.bw.Flush()
		}
		h.mu.Lock()
		hijacked := h.hijacked
		h.state = h1Done
		if !hijacked {
			h.closeLocked()
		}
		h.mu.Unlock()
		if !hijacked && inFlight == nil {
			// Between requests nothing else reads or writes the buffers.
			// A request that ended the connection may still have its
			// body read by the transport: its buffers are left to the GC.
			h.release()
		}
	}()
	if d := h.p.limits.ReadHeaderTimeout; d > 0 && !resumed {
		_ = h.g.SetReadDeadline(time.Now().Add(d))
	}
	for first := !resumed; ; first = false {
		var idleBy time.Time // the idle timeout's deadline; zero: none (or the first request)
		if resumed {
			// Idle still, its deadline set: the wait goes on.
			idleBy, resumed = h.parkBy, false
		} else if !first {
			if !h.setState(h1Idle) {
				return
			}
			if d := h.p.limits.IdleTimeout; d > 0 {
				idleBy = time.Now().Add(d)
			}
			_ = h.g.SetReadDeadline(idleBy)
		}
		// Wait for the next request holding no buffer of our own.
		if !h.hasOne && (h.br == nil || h.br.Buffered() == 0) {
			if err := h.readOne(!first, idleBy); err != nil {
				return err == errH1Parked
			}
			h.hasOne = true
		}
		if !h.setState(h1Active) {
			return
		}
		if !first {
			if d := h.p.limits.ReadHeaderTimeout; d > 0 {
				_ = h.g.SetReadDeadline(time.Now().Add(d))
			} else {
				_ = h.g.SetReadDeadline(time.Time{})
			}
		}
		w, err := h.readRequest()
		if err != nil {
			h.answerUnreadable(err)
			return
		}
		inFlight = w
		if !w.serve() {
			return
		}
		inFlight = nil
		h.mu.Lock()
		shutdown := h.shutdown
		h.mu.Unlock()
		if shutdown {
			return
		}
	}
}

// readRequest reads the next request head (net/http's conn.readRequest).
func (h *h1Conn) readRequest() (*h1Response, error) {
	if h.br == nil {
		h.br = h1Readers.Get().(*bufio.Reader)
		h.br.Reset(h1Src{h})
	}
	h.remain = int64(h.p.limits.MaxHeaderBytes) + 4096
	if h.last == http.MethodPost {
		// RFC 9112 §2.2 tolerance for old clients, as net/http.
		peek, _ := h.br.Peek(4)
		n := 0
		for n < len(peek) && (peek[n] == '\r' || peek[n] == '\n') {
			n++
		}
		_, _ = h.br.Discard(n)
	}
	req, err := readRequestHead(h.br)
	if err != nil {
		if h.remain <= 0 {
			return nil, errH1TooLarge
		}
		return nil, err
	}
	h.remain = h1NoLimit
	h.last = req.Method
	if req.ProtoMajor != 1 {
		return nil, h1StatusError{http.StatusHTTPVersionNotSupported, "unsupported protocol version"}
	}
	// net/http checks the Host field as sent (for an absolute-form target
	// req.Host is the target's); http.ReadRequest drops the field, the
	// guard kept it. After an Upgrade or CONNECT the guard reads no heads.
	host := req.Host
	if req.URL.Host != "" && h.g.st != h1Pass {
		host = h.g.lastHost // an absolute-form target: req.Host is the target's
	}
	if !httpguts.ValidHostHeader(host) {
		return nil, h1StatusError{http.StatusBadRequest, "malformed Host header"}
	}
	// Field names and values need no second look here: the guard refused
	// bad names and control bytes, and readRequestHead (its fast path, or
	// http.ReadRequest's textproto) checks both again.
	req.RemoteAddr = h.remote
	if h.base == nil {
		h.base = h.newBase()
	}
	ctx, cancel := context.WithCancel(h.base)
	req = req.WithContext(ctx)
	// The head is read: no deadline until the handler sets one (net/http
	// without ReadTimeout).
	_ = h.g.SetReadDeadline(time.Time{})
	return newH1Response(h, req, cancel), nil
}

var errH1TooLarge = errors.New("http: request too large")

// h1StatusError is a request refused with its status and the reason
// net/http gives.
type h1StatusError struct {
	code int
	text string
}

func (e h1StatusError) Error() string { return fmt.Sprintf("%d %s", e.code, e.text) }

// answerUnreadable answers a request that could not be read, as net/http
// does, and the connection closes.
func (h *h1Conn) answerUnreadable(err error) {
	const errorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
	var se h1StatusError
	switch {
	case err == errH1TooLarge:
		const publicErr = "431 Request Header Fields Too Large"
		_, _ = io.WriteString(h.g, "HTTP/1.1 "+publicErr+errorHeaders+publicErr)
		h.closeWriteAndWait()
	case strings.Contains(err.Error(), "unsupported transfer encoding"):
		_, _ = io.WriteString(h.g, "HTTP/1.1 501 Not Implemented"+errorHeaders+"Unsupported transfer encoding")
	case isCommonNetReadError(err):
	case errors.As(err, &se):
		_, _ = fmt.Fprintf(h.g, "HTTP/1.1 %d %s: %s%s%d %s: %s", se.code, http.StatusText(se.code), se.text, errorHeaders, se.code, http.StatusText(se.code), se.text)
	default:
		const publicErr = "400 Bad Request"
		_, _ = io.WriteString(h.g, "HTTP/1.1 "+publicErr+errorHeaders+publicErr)
	}
}

// isCommonNetReadError: the client went away or timed out while a head
// was awaited: no answer (net/http's rule).
func isCommonNetReadError(err error) bool {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "read"
}

// closeWriteAndWait ends the stream to the client and gives it time to
// read the answer before the close (net/http's rstAvoidanceDelay).
func (h *h1Conn) closeWriteAndWait() {
	if h.bw != nil {
		_ = h.bw.Flush()
	}
	_ = h.g.CloseWrite()
	time.Sleep(500 * time.Millisecond)
}

// release gives the request buffers back when nothing is buffered in them.
func (h *h1Conn) release() {
	if h.bw != nil {
		h.bw.Reset(nil)
		h1Writers.Put(h.bw)
		h.bw = nil
	}
	if h.br != nil && h.br.Buffered() == 0 {
		h.br.Reset(nil)
		h1Readers.Put(h.br)
		h.br = nil
	}
}

// trackH1 registers a connection with the proxy (its Close drains it);
// false when the proxy is closed.
func (p *HTTPProxy) trackH1(h *h1Conn, add bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add {
		p.h1conns[h] = struct{}{}
	} else {
		delete(p.h1conns, h)
	}
	return !p.closed
}
