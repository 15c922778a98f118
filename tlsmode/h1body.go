package tlsmode

// The request body of an HTTP/1.x request as h1Conn hands it to the
// handler, and small helpers of h1Response.

import (
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// hasToken reports whether token appears in v between spaces, tabs or
// commas (net/http's hasToken: "Connection: close x" holds close), with
// ASCII case folding only (sameToken).
func hasToken(v, token string) bool {
	for sp := 0; sp+len(token) <= len(v); sp++ {
		if sp > 0 && !h1TokenBoundary(v[sp-1]) {
			continue
		}
		if end := sp + len(token); end != len(v) && !h1TokenBoundary(v[end]) {
			continue
		}
		if sameToken(v[sp:sp+len(token)], token) {
			return true
		}
	}
	return false
}

func h1TokenBoundary(b byte) bool { return b == ' ' || b == ',' || b == '\t' }

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

func (b *h1ReqBody) Read(p []byte) (int, error) {
	if b.closed.Load() {
		return 0, http.ErrBodyReadAfterClose
	}
	b.reading.Store(true)
	defer b.reading.Store(false)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed.Load() {
		return 0, http.ErrBodyReadAfterClose
	}
	if b.expect && !b.w.continued.Load() {
		b.w.informational(http.StatusContinue, false)
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		if !b.sawEOF.Swap(true) {
			b.w.h.startBackgroundRead(b.w)
		}
	}
	return n, err
}

func (b *h1ReqBody) Close() error {
	if b.reading.Load() {
		// Another goroutine is in Read (the transport sending the body):
		// it ends with the connection.
		b.closed.Store(true)
		b.earlyClosed.Store(true)
		return nil
	}
	// As net/http's body.Close in a server: what is left of a small body is
	// read now (so the connection can be kept) and its error returned.
	err := b.settle()
	b.closed.Store(true)
	return err
}

// settle reads and drops the rest of an unread body, up to
// h1MaxPostHandlerRead, so the connection can be kept; more, a body being
// read by another goroutine, or one whose client was never told to send
// it (Expect: 100-continue) closes the connection instead.
func (b *h1ReqBody) settle() error {
	if b.sawEOF.Load() || b.earlyClosed.Load() || b.closed.Load() {
		return nil
	}
	if b.reading.Load() || (b.expect && !b.w.continued.Load()) {
		b.earlyClosed.Store(true)
		return nil
	}
	if cl := b.w.req.ContentLength; cl > h1MaxPostHandlerRead {
		b.earlyClosed.Store(true)
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	_ = b.w.h.g.SetReadDeadline(time.Now().Add(b.w.h.p.limits.ReadBodyTimeout))
	n, err := io.CopyN(io.Discard, b.rc, h1MaxPostHandlerRead+1)
	_ = b.w.h.g.SetReadDeadline(time.Time{})
	if err == io.EOF {
		b.sawEOF.Store(true)
		return nil
	}
	_ = n
	b.earlyClosed.Store(true)
	return err
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
