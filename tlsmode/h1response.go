package tlsmode

// h1Response is the http.ResponseWriter of one HTTP/1.x request served by
// h1Conn, with net/http's framing rules: a declared Content-Length is sent
// as is; without one, a body of at most h1Pending bytes written before the
// handler returns gets a Content-Length, a longer or flushed one is chunked
// (HTTP/1.0: delimited by the close); HEAD, 1xx, 204 and 304 carry none.
// 1xx answers go out at once; a 101 is written when the handler hijacks.
// Trailers: the keys announced in a Trailer field and those with
// http.TrailerPrefix, after a chunked body. Content-Type is sniffed when the
// handler set none. Date is added.

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// h1Pending is how many body bytes are held back before the framing is
// chosen (net/http's bufferBeforeChunkingSize).
const h1Pending = 2048

// h1MaxPostHandlerRead is how much of an unread request body is read and
// dropped after the answer so the connection can be kept (net/http's
// maxPostHandlerReadBytes).
const h1MaxPostHandlerRead = 256 << 10

type h1Response struct {
	h        *h1Conn
	req      *http.Request
	cancel   context.CancelFunc // cancels req's context (see cancelRequest)
	body     *h1ReqBody         // nil for none
	header   http.Header
	sent     http.Header // the header as of WriteHeader, when changed after it: what the head carries (net/http's cw.header)
	wants10  bool        // an HTTP/1.0 request asked for keep-alive (read before the handler runs)
	overflow bool        // a write past the declared Content-Length was refused: close after

	status      int   // the final status once written, 0 before
	committed   bool  // the head is in the writer
	declared    int64 // Content-Length set by the handler, -1 for none
	written     int64 // body bytes written
	chunked     bool
	noBody      bool // HEAD, 1xx, 204, 304: no body bytes go out
	closeAfter  bool
	keepAlive10 bool // an HTTP/1.0 keep-alive answer
	pending     []byte
	// upgradeAsked: the request had an Upgrade field or was a CONNECT (the
	// guard checks nothing after its head).
	upgradeAsked bool
	trailers     []string // announced in Trailer
	handlerDone  bool
	werr         error // a write to the client failed

	wmu       sync.Mutex  // the 100 Continue vs the head
	continued atomic.Bool // 100 Continue was sent

	amu       sync.Mutex // the two below
	cancelled bool       // cancel was called
	abort     *upAbort   // fired by cancel (onCancel), until stopCancel
}

func newH1Response(h *h1Conn, req *http.Request, cancel context.CancelFunc) *h1Response {
	w := &h1Response{h: h, req: req, cancel: cancel, header: make(http.Header), declared: -1}
	// As net/http, decided by the request's header as sent: HTTP/1.1
	// closes on a close token; HTTP/1.0 keeps the connection only when it
	// asked for keep-alive.
	if req.ProtoAtLeast(1, 1) {
		w.closeAfter = req.Close || hasToken(req.Header.Get("Connection"), "close")
	} else {
		w.wants10 = hasToken(req.Header.Get("Connection"), "keep-alive")
	}
	_, up := req.Header["Upgrade"]
	w.upgradeAsked = up || req.Method == http.MethodConnect
	if req.Body != nil && req.Body != http.NoBody {
		w.body = &h1ReqBody{rc: req.Body, w: w}
		req.Body = w.body
	}
	return w
}

// serve runs the handler for the request and finishes the answer; false
// when the connection must close (or was hijacked).
func (w *h1Response) serve() bool {
	h := w.h
	req := w.req
	if exp := req.Header.Get("Expect"); exp != "" {
		if hasToken(exp, "100-continue") {
			if w.body != nil && req.ProtoAtLeast(1, 1) {
				w.body.expect = true
			}
		} else {
			// net/http: 417, and the connection closes.
			proto := "HTTP/1.1"
			if !req.ProtoAtLeast(1, 1) {
				proto = "HTTP/1.0"
			}
			_, _ = io.WriteString(h.g, proto+" 417 Expectation Failed\r\nConnection: close\r\nDate: "+httpDate()+"\r\nContent-Length: 0\r\n\r\n")
			w.cancelRequest()
			return false
		}
	}
	if h.bw == nil {
		h.bw = h1Writers.Get().(*bufio.Writer)
		h.bw.Reset(h.g)
	}
	h.beginRequest(w, w.body == nil)
	if req.RequestURI == "*" && req.Method == http.MethodOptions {
		h1OptionsStar(w, req) // net/http's globalOptionsHandler: the handler never sees it
	} else {
		h.handler.ServeHTTP(w, req)
	}
	w.handlerDone = true
	w.cancelRequest()
	h.abortBackgroundRead()
	h.mu.Lock()
	hijacked := h.hijacked
	h.mu.Unlock()
	if hijacked {
		return false
	}
	w.finish()
	h.bgMu.Lock()
	gone := h.gone
	h.bgMu.Unlock()
	if w.werr != nil || gone || w.closeAfter {
		if w.body != nil && w.body.earlyClosed.Load() {
			h.closeWriteAndWait()
		}
		return false
	}
	h.release()
	return true
}

// Header is the handler's header. Once the status is written, changes no
// longer reach the head (net/http): the first call after WriteHeader and
// before the head goes out keeps a copy of it for the head (the later
// changes are for the trailers).
func (w *h1Response) Header() http.Header {
	if w.status != 0 && !w.committed && w.sent == nil {
		w.sent = w.header.Clone()
	}
	return w.header
}

func (w *h1Response) WriteHeader(code int) {
	if w.status != 0 || w.h.isHijacked() {
		return
	}
	if code < 100 || code > 999 {
		panic("invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		w.informational(code, true)
		return
	}
	w.status = code
	if cl := w.header.Get("Content-Length"); cl != "" {
		if v, err := strconv.ParseInt(cl, 10, 64); err == nil && v >= 0 {
			w.declared = v
		} else {
			w.header.Del("Content-Length")
		}
	}
}

// commit writes the final head. length is the Content-Length to send when
// the handler declared none (-1: chunked or close-delimited); first is the
// body's first bytes, for sniffing a missing Content-Type.
func (w *h1Response) commit(length int64, first []byte) {
	if w.committed {
		return
	}
	h := w.h
	code := w.status
	hdr := w.sent
	if hdr == nil {
		hdr = w.header // not touched since WriteHeader
	}
	if w.body != nil && w.body.expect && !w.body.sawEOF.Load() {
		// net/http: a body announced with Expect: 100-continue and not
		// read whole by the handler (even after a 100 it wrote itself)
		// closes the connection; it is not read here.
		w.closeAfter = true
	}
	// An unread body: read what is left now if small, or close after.
	if w.body != nil && !w.closeAfter && w.req.ContentLength != 0 {
		w.body.settle()
	}
	if w.body != nil && w.body.earlyClosed.Load() {
		w.closeAfter = true
	}
	if w.upgradeAsked && code != http.StatusSwitchingProtocols {
		// The guard stopped checking after this head (what follows could
		// be another protocol): unless the server switched, nothing more
		// is read on this connection, whatever the handler's fields say
		// (a 1xx relayed before may have cleared them).
		w.closeAfter = true
	}
	h.mu.Lock()
	if h.shutdown {
		w.closeAfter = true
	}
	h.mu.Unlock()
	w.wmu.Lock()
	defer w.wmu.Unlock()
	w.committed = true
	bodyAllowed := code >= 200 && code != http.StatusNoContent && code != http.StatusNotModified
	head := w.req.Method == http.MethodHead
	w.noBody = head || !bodyAllowed
	w.trailers = w.trailers[:0]
	for _, v := range hdr["Trailer"] {
		for k := range strings.SplitSeq(v, ",") {
			if k = http.CanonicalHeaderKey(strings.TrimSpace(k)); k != "" && httpguts.ValidTrailerHeader(k) && httpguts.ValidHeaderFieldName(k) {
				w.trailers = append(w.trailers, k)
			}
		}
	}
	prefixed := false // TrailerPrefix keys: trailers too (net/http)
	for k := range hdr {
		prefixed = prefixed || strings.HasPrefix(k, http.TrailerPrefix)
	}
	te := hdr.Get("Transfer-Encoding")
	if !bodyAllowed {
		// net/http's suppressedHeaders.
		hdr.Del("Transfer-Encoding")
		hdr.Del("Content-Length")
		te = ""
		w.declared = -1
		if code == http.StatusNotModified {
			hdr.Del("Content-Type")
		}
	} else if _, ok := hdr["Content-Type"]; !ok && te == "" && len(first) > 0 && hdr.Get("Content-Encoding") == "" {
		hdr.Set("Content-Type", http.DetectContentType(first))
	}
	cl := w.declared
	if cl >= 0 && te != "" && te != "identity" {
		cl = -1 // net/http: a Transfer-Encoding wins over a declared length
	}
	if cl < 0 && length >= 0 && bodyAllowed && len(w.trailers) == 0 && !prefixed && te == "" && (!head || length > 0) {
		cl = length
	}
	if hasToken(hdr.Get("Connection"), "close") {
		w.closeAfter = true
	}
	switch {
	case w.noBody || cl >= 0:
	case w.req.ProtoAtLeast(1, 1) && te != "identity":
		w.chunked = true
	default:
		// HTTP/1.0, or identity asked: the body ends with the connection.
		w.closeAfter = true
	}
	if !w.req.ProtoAtLeast(1, 1) {
		// net/http: keep-alive when asked and the end of the answer is
		// known (a length, HEAD, or no body).
		if !w.closeAfter && w.wants10 && (cl >= 0 || head || !bodyAllowed) {
			w.keepAlive10 = true
		} else {
			w.closeAfter = true
		}
	}
	bw := h.bw
	w.statusLine(bw, code)
	h1WriteFields(bw, hdr, h1ExcludeFinal)
	if _, ok := hdr["Date"]; !ok {
		_, _ = bw.WriteString("Date: ")
		_, _ = bw.WriteString(httpDate())
		_, _ = bw.WriteString("\r\n")
	}
	if cl >= 0 {
		_, _ = bw.WriteString("Content-Length: ")
		var b [20]byte
		_, _ = bw.Write(strconv.AppendInt(b[:0], cl, 10))
		_, _ = bw.WriteString("\r\n")
	}
	if w.chunked {
		_, _ = bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	switch {
	case w.keepAlive10:
		_, _ = bw.WriteString("Connection: keep-alive\r\n")
	case w.closeAfter && w.req.ProtoAtLeast(1, 1) && code != http.StatusSwitchingProtocols:
		_, _ = bw.WriteString("Connection: close\r\n")
	default:
		for _, v := range hdr["Connection"] {
			_, _ = bw.WriteString("Connection: ")
			_, _ = bw.WriteString(v)
			_, _ = bw.WriteString("\r\n")
		}
	}
	_, _ = bw.WriteString("\r\n")
}

func (w *h1Response) Write(p []byte) (int, error) {
	if w.h.isHijacked() {
		return 0, http.ErrHijacked
	}
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.status == http.StatusNoContent || w.status == http.StatusNotModified || w.status < 200 {
		return 0, http.ErrBodyNotAllowed
	}
	if w.werr != nil {
		return 0, w.werr
	}
	if w.declared >= 0 && w.written+int64(len(p)) > w.declared {
		w.overflow = true // net/http counts the refused bytes: the connection closes
		return 0, http.ErrContentLength
	}
	if !w.committed {
		if w.declared < 0 && len(w.pending)+len(p) <= h1Pending {
			if w.pending == nil {
				w.pending = make([]byte, 0, max(len(p), 512))
			}
			w.pending = append(w.pending, p...)
			w.written += int64(len(p))
			return len(p), nil
		}
		w.flushPending(p)
	}
	w.written += int64(len(p))
	w.out(p)
	return len(p), w.werr
}

// flushPending commits the head with the framing still open (chunked) and
// writes the body bytes held back.
func (w *h1Response) flushPending(next []byte) {
	first := w.pending
	if len(first) == 0 {
		first = next
	}
	w.commit(-1, first)
	w.out(w.pending)
	w.pending = nil
}

// out writes body bytes with the framing chosen.
func (w *h1Response) out(p []byte) {
	if len(p) == 0 || w.noBody || w.werr != nil {
		return
	}
	bw := w.h.bw
	if w.chunked {
		var b [16]byte
		_, _ = bw.Write(strconv.AppendInt(b[:0], int64(len(p)), 16))
		_, _ = bw.WriteString("\r\n")
		_, _ = bw.Write(p)
		_, err := bw.WriteString("\r\n")
		w.flushErr(err)
		return
	}
	_, err := bw.Write(p)
	w.flushErr(err)
}

func (w *h1Response) flushErr(err error) {
	if err != nil && w.werr == nil {
		w.werr = err
		w.cancelRequest() // as net/http: a client that cannot be written to cancels its request
	}
}

// FlushError sends what is buffered; a body whose length is not known is
// chunked from then on.
func (w *h1Response) FlushError() error {
	if w.h.isHijacked() {
		return http.ErrHijacked
	}
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !w.committed {
		w.flushPending(nil)
	}
	if w.werr == nil {
		w.flushErr(w.h.bw.Flush())
	}
	return w.werr
}

func (w *h1Response) Flush() { _ = w.FlushError() }

// finish completes the answer after the handler returned.
func (w *h1Response) finish() {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !w.committed {
		w.commit(int64(len(w.pending)), w.pending)
		w.out(w.pending)
		w.pending = nil
	}
	if w.chunked && !w.noBody {
		bw := w.h.bw
		_, _ = bw.WriteString("0\r\n")
		for _, k := range w.trailers {
			for _, v := range w.header[k] {
				_, _ = bw.WriteString(k + ": " + headerValue(v) + "\r\n")
			}
		}
		for k, vv := range w.header {
			if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
				name = http.CanonicalHeaderKey(name)
				if !httpguts.ValidTrailerHeader(name) || !httpguts.ValidHeaderFieldName(name) {
					continue
				}
				for _, v := range vv {
					_, _ = bw.WriteString(name + ": " + headerValue(v) + "\r\n")
				}
			}
		}
		_, err := bw.WriteString("\r\n")
		w.flushErr(err)
	}
	if w.declared >= 0 && (w.written != w.declared || w.overflow) && !w.noBody {
		w.closeAfter = true // the client cannot tell where this answer ends
	}
	if w.werr == nil {
		w.flushErr(w.h.bw.Flush())
	}
	if w.body != nil && !w.body.sawEOF.Load() && !w.closeAfter {
		w.body.settle()
	}
	if w.body != nil && (w.body.earlyClosed.Load() || !w.body.sawEOF.Load()) {
		w.closeAfter = true
	}
}

// SetReadDeadline is http.ResponseController's: the connection's.
func (w *h1Response) SetReadDeadline(t time.Time) error { return w.h.g.SetReadDeadline(t) }

// SetWriteDeadline is http.ResponseController's: the connection's.
func (w *h1Response) SetWriteDeadline(t time.Time) error { return w.h.g.SetWriteDeadline(t) }

// Hijack hands the connection to the handler (an upgrade): a 101 written
// with WriteHeader goes out first; the reader may hold bytes the client
// sent after its head.
func (w *h1Response) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h := w.h
	if h.isHijacked() {
		return nil, nil, http.ErrHijacked
	}
	// The background read ends before the 101 goes out: what the client
	// sends after it is the hijacker's.
	h.abortBackgroundRead()
	if w.status != 0 && !w.committed {
		w.commit(-1, nil)
	}
	if err := h.bw.Flush(); err != nil {
		return nil, nil, err
	}
	if h.hasOne {
		// A byte the background read got joins the reader's buffer, where
		// a hijacker that reads the connection itself looks (net/http).
		_, _ = h.br.Peek(h.br.Buffered() + 1)
	}
	h.mu.Lock()
	h.hijacked = true
	h.mu.Unlock()
	_ = h.g.SetDeadline(time.Time{})
	return h.g, bufio.NewReadWriter(h.br, h.bw), nil
}

func (h *h1Conn) isHijacked() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hijacked
}
