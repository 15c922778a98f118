package tlsmode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// statusWriter records the status and body size for the access log. It
// keeps Flush and Hijack reachable (streaming and WebSocket upgrades)
// through http.ResponseController's Unwrap.
type statusWriter struct {
	http.ResponseWriter
	status int
	n      int64
	// writeTimeout, when set (HTTP/2 streams), bounds each write: a
	// client that grants no window for that long loses the stream.
	writeTimeout time.Duration
	timedOut     bool
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.status = code // a 1xx relayed before the answer is not its status
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.writeTimeout > 0 {
		_ = http.NewResponseController(w.ResponseWriter).SetWriteDeadline(time.Now().Add(w.writeTimeout))
	}
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	if err != nil && w.writeTimeout > 0 && errors.Is(err, os.ErrDeadlineExceeded) {
		w.timedOut = true
	}
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) Flush() {
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// oneConnListener hands one connection to http.Server, then says it is
// closed: Serve returns (its goroutine ends, an idle connection keeps no
// goroutine blocked in Accept) while the connection goes on being served
// (and tracked by the server: Shutdown and Close still reach it).
type oneConnListener struct {
	conn  net.Conn
	mu    sync.Mutex
	given bool
}

func newOneConnListener(c net.Conn) *oneConnListener {
	return &oneConnListener{conn: c}
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if !l.given {
		l.given = true
		l.mu.Unlock()
		return l.conn, nil
	}
	l.mu.Unlock()
	return nil, net.ErrClosed
}

// handedOut reports whether Accept gave the connection to the server.
func (l *oneConnListener) handedOut() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.given
}

// Close does nothing: the connection is the server's once handed out.
func (l *oneConnListener) Close() error { return nil }

func (l *oneConnListener) Addr() net.Addr { return l.conn.LocalAddr() }

// zerologWriter sends net/http's own error lines (TLS and protocol errors
// of clients) to the debug log.
type zerologWriter struct{ log zerolog.Logger }

func (w zerologWriter) Write(b []byte) (int, error) {
	if e := w.log.Debug(); e.Enabled() {
		e.Str("source", "net/http").Msg(strings.TrimSpace(string(b)))
	}
	return len(b), nil
}

// connErrorLog is the ErrorLog of one connection's http.Server: each line
// goes to the debug log as zerologWriter sends it, and the first one
// (HTTP/2 connection errors: a rapid reset, a CONTINUATION flood, a
// protocol error) becomes the connection's reason when nothing else ended
// it.
type connErrorLog struct {
	zerologWriter
	cs *connState
}

func (w connErrorLog) Write(b []byte) (int, error) {
	msg := strings.TrimSpace(string(b))
	if strings.HasPrefix(msg, "http2: server connection error") || strings.HasPrefix(msg, "http2: server: error") {
		w.cs.errLine.CompareAndSwap(nil, &msg)
	}
	return w.zerologWriter.Write(b)
}

// copyBuffers are ReverseProxy's body copy buffers, reused across requests
// (without a pool it allocates 32 KiB per request: 59 % of the bytes a
// request allocated, measured).
var copyBuffers = &bufferPool{}

type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[32 << 10]byte); ok {
		return v[:]
	}
	return new([32 << 10]byte)[:]
}

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) >= 32<<10 {
		b.p.Put((*[32 << 10]byte)(buf[:32<<10]))
	}
}

// bufferBody is the largest request body with a declared length that is
// read whole before a server is picked, within read_body_timeout in all:
// a client that trickles its body holds its own connection, never a server
// slot. For HTTP/2 the DATA must also add up to the content-length (RFC
// 9113 §8.1.1: a malformed request is not forwarded), so a mismatch (the
// content-length: 0 plus DATA of an HTTP/2-to-1 downgrade attack) never
// reaches a server. Larger or chunked bodies are streamed, each wait for
// bytes bounded by read_body_timeout; net/http still refuses an HTTP/2
// mismatch, but the server has seen the head by then and sees the request
// aborted.
const bufferBody = 64 << 10

// timedBody is a request body whose every wait for bytes is bounded by
// read_body_timeout: the read deadline is set before each Read (HTTP/1:
// the connection's; HTTP/2: the stream's). It records why a read failed:
// the deadline, or (HTTP/1) the guard refusing the body's framing.
type timedBody struct {
	io.ReadCloser
	rc       *http.ResponseController
	timeout  time.Duration
	guard    *h1Guard // HTTP/1; nil for HTTP/2
	timedOut atomic.Bool
	refused  atomic.Pointer[string]
	ended    bool      // Read returned an error (EOF included): no more deadlines
	by       time.Time // when set, the whole body must have arrived by then
}

func (b *timedBody) Read(p []byte) (int, error) {
	if !b.ended {
		// Not after the end: net/http (HTTP/1) clears the connection's
		// read deadline when the body ends, for its wait on the next
		// request, which must not inherit ours.
		d := time.Now().Add(b.timeout)
		if !b.by.IsZero() && b.by.Before(d) {
			d = b.by
		}
		_ = b.rc.SetReadDeadline(d)
	}
	n, err := b.ReadCloser.Read(p)
	b.ended = b.ended || err != nil
	if err != nil && err != io.EOF {
		// While this body is read, the guard checks this body: a refusal
		// seen now is its own.
		if b.guard != nil {
			if v := b.guard.Violation(); v != "" {
				b.refused.CompareAndSwap(nil, &v)
				return n, err
			}
		}
		if isTimeout(err) {
			b.timedOut.Store(true)
		}
	}
	return n, err
}

// bodyFailed answers a request whose body failed: 400 when the HTTP/1
// guard refused its framing, 408 when the client sent nothing for
// read_body_timeout. HTTP/1 connections close after either (the body's
// end is unknown). It reports whether it answered.
func (p *HTTPProxy) bodyFailed(w http.ResponseWriter, r *http.Request, rs *reqState) bool {
	cs := connStateOf(r.Context())
	h1 := r.ProtoMajor == 1 && cs != nil && cs.guard != nil
	if v := rs.body.refused.Load(); v != nil {
		rs.err = errors.New(*v)
		if h1 {
			w.Header().Set("Connection", "close")
		}
		http.Error(w, "400 bad request: malformed request body", http.StatusBadRequest)
		return true
	}
	if rs.body.timedOut.Load() {
		why := fmt.Sprintf("client timeout: no request body byte for read_body_timeout %v", p.limits.ReadBodyTimeout)
		if !rs.body.by.IsZero() {
			why = fmt.Sprintf("client timeout: request body of %d bytes not complete within read_body_timeout %v", r.ContentLength, p.limits.ReadBodyTimeout)
		}
		rs.err = errors.New(why)
		if h1 {
			w.Header().Set("Connection", "close")
			cs.endWith(why)
			cs.guard.LingerOnClose()
		}
		http.Error(w, "408 request timeout: no request body byte for read_body_timeout", http.StatusRequestTimeout)
		return true
	}
	return false
}

// readBody reads a request body of a declared length (at most bufferBody)
// whole, within read_body_timeout, and checks that it ends there; the
// request then goes on with the buffered body. The buffer grows as bytes
// arrive (a declared length alone allocates nothing). On a failure it
// answers (400 for a length mismatch, 408 for a timeout; nothing for a
// client gone) and reports false.
func (p *HTTPProxy) readBody(w http.ResponseWriter, r *http.Request, rs *reqState) bool {
	rs.body.by = time.Now().Add(p.limits.ReadBodyTimeout)
	var buf bytes.Buffer
	_, err := buf.ReadFrom(io.LimitReader(r.Body, r.ContentLength+1))
	switch {
	case err != nil:
	case int64(buf.Len()) < r.ContentLength:
		err = io.ErrUnexpectedEOF
	case int64(buf.Len()) > r.ContentLength:
		err = errors.New("more DATA than its content-length")
	}
	if err == nil {
		rs.buffered = buf.Bytes()
		r.Body = io.NopCloser(bytes.NewReader(rs.buffered))
		return true
	}
	rs.err = err
	if r.ProtoMajor == 1 {
		w.Header().Set("Connection", "close") // where the body ends is unknown
	}
	switch {
	case p.bodyFailed(w, r, rs):
	case strings.Contains(err.Error(), "Content-Length") || strings.Contains(err.Error(), "content-length") || errors.Is(err, io.ErrUnexpectedEOF):
		rs.err = fmt.Errorf("bad request: request body does not match its content-length: %w", err)
		http.Error(w, "400 bad request: the request body does not match its content-length", http.StatusBadRequest)
	case r.Context().Err() != nil:
		rs.err = context.Canceled // the client reset the stream: logged as 499
	default:
		rs.err = fmt.Errorf("reading the request body: %w", err)
		http.Error(w, "400 bad request: reading the request body failed", http.StatusBadRequest)
	}
	return false
}
