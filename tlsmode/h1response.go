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
	"slices"
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
	h      *h1Conn
	req    *http.Request
	cancel context.CancelFunc
	body   *h1ReqBody // nil for none
	header http.Header

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
}

func newH1Response(h *h1Conn, req *http.Request, cancel context.CancelFunc) *h1Response {
	w := &h1Response{h: h, req: req, cancel: cancel, header: make(http.Header), declared: -1}
	w.closeAfter = req.Close
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
			_, _ = io.WriteString(h.g, "HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			w.cancel()
			return false
		}
	}
	if h.bw == nil {
		h.bw = h1Writers.Get().(*bufio.Writer)
		h.bw.Reset(h.g)
	}
	if w.body == nil {
		h.startBackgroundRead(w.cancel)
	}
	h.handler.ServeHTTP(w, req)
	w.handlerDone = true
	w.cancel()
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

func (w *h1Response) Header() http.Header { return w.header }

func (w *h1Response) WriteHeader(code int) {
	if w.status != 0 || w.h.isHijacked() {
		return
	}
	if code < 100 || code > 999 {
		panic("invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		w.informational(code)
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

// informational writes a 1xx answer with the handler's header now (103
// Early Hints; 100 Continue after the body was asked for is ours).
func (w *h1Response) informational(code int) {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if w.committed {
		return // the final answer is on its way: no 1xx after it
	}
	if code == http.StatusContinue {
		if w.continued.Load() {
			return
		}
		w.continued.Store(true)
	}
	bw := w.h.bw
	w.statusLine(bw, code)
	if code != http.StatusContinue {
		w.writeFields(bw)
	}
	_, _ = bw.WriteString("\r\n")
	w.flushErr(bw.Flush())
}

func (w *h1Response) statusLine(bw *bufio.Writer, code int) {
	if w.req.ProtoAtLeast(1, 1) {
		_, _ = bw.WriteString("HTTP/1.1 ")
	} else {
		_, _ = bw.WriteString("HTTP/1.0 ")
	}
	var b [3]byte
	_, _ = bw.Write(strconv.AppendInt(b[:0], int64(code), 10))
	_ = bw.WriteByte(' ')
	if text := http.StatusText(code); text != "" {
		_, _ = bw.WriteString(text)
	} else {
		_, _ = bw.WriteString("status code " + strconv.Itoa(code))
	}
	_, _ = bw.WriteString("\r\n")
}

// writeFields writes the handler's header fields but the framing ones and
// the trailers, sorted by name as net/http does.
func (w *h1Response) writeFields(bw *bufio.Writer) {
	var keyBuf [24]string
	keys := keyBuf[:0]
	for k := range w.header {
		switch k {
		case "Content-Length", "Transfer-Encoding", "Connection", "Trailer":
			continue
		}
		if strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range w.header[k] {
			_, _ = bw.WriteString(k)
			_, _ = bw.WriteString(": ")
			_, _ = bw.WriteString(headerValue(v))
			_, _ = bw.WriteString("\r\n")
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
	if w.body != nil && w.body.expect && !w.body.sawEOF.Load() {
		w.closeAfter = true // the client may or may not send the body now
	}
	bodyAllowed := code >= 200 && code != http.StatusNoContent && code != http.StatusNotModified
	head := w.req.Method == http.MethodHead
	w.noBody = head || !bodyAllowed
	w.trailers = w.trailers[:0]
	for _, v := range w.header["Trailer"] {
		for k := range strings.SplitSeq(v, ",") {
			if k = http.CanonicalHeaderKey(strings.TrimSpace(k)); k != "" && httpguts.ValidTrailerHeader(k) && httpguts.ValidHeaderFieldName(k) {
				w.trailers = append(w.trailers, k)
			}
		}
	}
	te := w.header.Get("Transfer-Encoding") != ""
	if !bodyAllowed {
		// net/http's suppressedHeaders.
		w.header.Del("Transfer-Encoding")
		w.header.Del("Content-Length")
		w.declared = -1
		if code == http.StatusNotModified {
			w.header.Del("Content-Type")
		}
	} else if _, ok := w.header["Content-Type"]; !ok && !te && len(first) > 0 && w.header.Get("Content-Encoding") == "" {
		w.header.Set("Content-Type", http.DetectContentType(first))
	}
	cl := w.declared
	if cl < 0 && length >= 0 && bodyAllowed && len(w.trailers) == 0 && !te && (!head || length > 0) {
		cl = length
	}
	if hasToken(w.header.Get("Connection"), "close") {
		w.closeAfter = true
	}
	switch {
	case w.noBody || cl >= 0:
	case w.req.ProtoAtLeast(1, 1):
		w.chunked = true
	default:
		w.closeAfter = true // HTTP/1.0: the body ends with the connection
	}
	if !w.req.ProtoAtLeast(1, 1) {
		if !w.closeAfter && cl >= 0 && hasToken(w.req.Header.Get("Connection"), "keep-alive") {
			w.keepAlive10 = true
		} else {
			w.closeAfter = true
		}
	}
	bw := h.bw
	w.statusLine(bw, code)
	w.writeFields(bw)
	if _, ok := w.header["Date"]; !ok {
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
		if len(w.trailers) > 0 {
			_, _ = bw.WriteString("Trailer: ")
			_, _ = bw.WriteString(strings.Join(w.trailers, ", "))
			_, _ = bw.WriteString("\r\n")
		}
	}
	switch {
	case w.keepAlive10:
		_, _ = bw.WriteString("Connection: keep-alive\r\n")
	case w.closeAfter && w.req.ProtoAtLeast(1, 1) && code != http.StatusSwitchingProtocols:
		_, _ = bw.WriteString("Connection: close\r\n")
	default:
		for _, v := range w.header["Connection"] {
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
		w.cancel() // as net/http: a client that cannot be written to cancels its request
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
	if w.declared >= 0 && w.written != w.declared && !w.noBody {
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
