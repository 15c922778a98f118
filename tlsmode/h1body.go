package tlsmode

// The request body of an HTTP/1.x request as h1Conn hands it to the
// handler, and small helpers of h1Response.

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// hasToken reports whether the comma-separated list v holds token t
// (ASCII case folding only, as sameToken).
func hasToken(v, t string) bool {
	for part := range strings.SplitSeq(v, ",") {
		if sameToken(strings.Trim(part, " \t"), t) {
			return true
		}
	}
	return false
}

// h1ReqBody is a request body as the handler reads it: its first read sends
// 100 Continue when the client asked for it; its end starts the
// background read; Close does not read the rest (settle decides).
type h1ReqBody struct {
	rc          io.ReadCloser // http.ReadRequest's
	w           *h1Response
	mu          sync.Mutex
	expect      bool
	closed      atomic.Bool
	reading     atomic.Bool
	sawEOF      atomic.Bool
	earlyClosed atomic.Bool // left unread: the connection must close
}

var errBodyReadAfterClose = errors.New("http: invalid Read on closed Body")

func (b *h1ReqBody) Read(p []byte) (int, error) {
	if b.closed.Load() {
		return 0, errBodyReadAfterClose
	}
	b.reading.Store(true)
	defer b.reading.Store(false)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed.Load() {
		return 0, errBodyReadAfterClose
	}
	if b.expect && !b.w.continued.Load() {
		b.w.informational(http.StatusContinue)
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		if !b.sawEOF.Swap(true) {
			b.w.h.startBackgroundRead(b.w.cancel)
		}
	}
	return n, err
}

func (b *h1ReqBody) Close() error {
	b.closed.Store(true)
	if b.reading.Load() {
		// Another goroutine is in Read (the transport sending the body):
		// it ends with the connection.
		b.earlyClosed.Store(true)
	}
	return nil
}

// settle reads and drops the rest of an unread body, up to
// h1MaxPostHandlerRead, so the connection can be kept; more, a body being
// read by another goroutine, or one whose client was never told to send
// it (Expect: 100-continue) closes the connection instead.
func (b *h1ReqBody) settle() {
	if b.sawEOF.Load() || b.earlyClosed.Load() {
		return
	}
	if b.reading.Load() || (b.expect && !b.w.continued.Load()) {
		b.earlyClosed.Store(true)
		return
	}
	if cl := b.w.req.ContentLength; cl > h1MaxPostHandlerRead {
		b.earlyClosed.Store(true)
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	_ = b.w.h.g.SetReadDeadline(time.Now().Add(b.w.h.p.limits.ReadBodyTimeout))
	n, err := io.CopyN(io.Discard, b.rc, h1MaxPostHandlerRead+1)
	_ = b.w.h.g.SetReadDeadline(time.Time{})
	if err == io.EOF {
		b.sawEOF.Store(true)
		return
	}
	_ = n
	b.earlyClosed.Store(true)
}

// httpDate is the Date header value, formatted once per second.
func httpDate() string {
	now := time.Now().Unix()
	if d := dateCache.Load(); d != nil && d.sec == now {
		return d.s
	}
	d := &cachedDate{sec: now, s: time.Unix(now, 0).UTC().Format(http.TimeFormat)}
	dateCache.Store(d)
	return d.s
}

type cachedDate struct {
	sec int64
	s   string
}

var dateCache atomic.Pointer[cachedDate]
