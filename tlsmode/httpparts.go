package tlsmode

import (
	"errors"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
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
	if w.status == 0 {
		w.status = code
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

// oneConnListener hands one connection to http.Server, then blocks until
// closed.
type oneConnListener struct {
	conn   net.Conn
	once   sync.Once
	closed chan struct{}
	mu     sync.Mutex
	given  bool
}

func newOneConnListener(c net.Conn) *oneConnListener {
	return &oneConnListener{conn: c, closed: make(chan struct{})}
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if !l.given {
		l.given = true
		l.mu.Unlock()
		return l.conn, nil
	}
	l.mu.Unlock()
	<-l.closed
	return nil, net.ErrClosed
}

// handedOut reports whether Accept gave the connection to the server.
func (l *oneConnListener) handedOut() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.given
}

func (l *oneConnListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

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
