package tlsmode

// The lean forward: a request with no body or a buffered one (the usual
// API call) goes to its server without httputil.ReverseProxy and
// http.Transport: the rewritten head is written straight to a pooled
// HTTP/1.1 connection (h1upstream.go), the response head is read
// (h1resphead.go) and relayed, the body copied with its framing kept by
// the ResponseWriter. Everything else (upgrades, streamed request bodies,
// Expect: 100-continue, request trailers) goes through ReverseProxy as
// before. The rules are ReverseProxy's and the transport's: hop-by-hop
// fields removed both ways (and those the Connection field names), the
// route's rewrite (identity, X-Forwarded-*), 1xx relayed, trailers
// announced and relayed, a copy that fails half way aborts the answer
// (http.ErrAbortHandler), a reused connection the server had closed is
// retried for idempotent requests, response_header_timeout and
// max_response_header_bytes bound the answer.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tlsedge/tlsedge/affinity"
)

// hopHeaders are removed from forwarded requests and responses
// (ReverseProxy's list).
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

func removeHopByHop(h http.Header) {
	for _, f := range h["Connection"] {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = textproto.TrimString(sf); sf != "" {
				h.Del(sf)
			}
		}
	}
	for _, f := range hopHeaders {
		delete(h, f)
	}
}

// leanOK reports whether r can take the lean forward: an upgrade only
// with no body, on an HTTP/1 connection tlsedge serves (its socket is
// handed to the lean relay, upgrade_lean.go).
func (p *HTTPProxy) leanOK(w http.ResponseWriter, r *http.Request, rs *reqState) bool {
	if r.Method == http.MethodConnect || r.Trailer != nil {
		return false
	}
	if _, ok := r.Header["Expect"]; ok {
		return false
	}
	if upgradeType(r.Header) != "" {
		return r.ProtoMajor == 1 && (r.Body == nil || r.Body == http.NoBody) && h1ResponseOf(w) != nil
	}
	return r.Body == nil || r.Body == http.NoBody || rs.buffered != nil
}

// forward sends r to a server of the pool and relays the answer to w.
func (p *HTTPProxy) forward(w http.ResponseWriter, r *http.Request, cs *connState, rs *reqState) {
	ctx := r.Context()
	// The outgoing request: r's header rewritten in place (r is ours and
	// is not read again but by the access log: method, path, proto).
	out := *r
	outURL := *r.URL
	outURL.RawQuery = cleanQueryParams(outURL.RawQuery) // as ReverseProxy
	out.URL = &outURL
	// The rewrite reads the client's X-Forwarded-* (removed below from
	// the shared header) only from a trusted proxy: a copy of them then.
	in := r
	if cs.c.PeerTrusted {
		in = (&http.Request{Host: r.Host, Header: http.Header{}}).WithContext(ctx)
		for _, k := range []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded"} {
			if v, ok := r.Header[k]; ok {
				in.Header[k] = slices.Clone(v)
			}
		}
	}
	h := out.Header
	te := httpTrailersWanted(h)
	upType := upgradeType(h)
	removeHopByHop(h)
	if te {
		h.Set("Te", "trailers")
	}
	if upType != "" {
		// Back after the hop-by-hop fields went (ReverseProxy's order).
		h.Set("Connection", "Upgrade")
		h.Set("Upgrade", upType)
	}
	for _, k := range []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
		delete(h, k)
	}
	p.rewrite(&httputil.ProxyRequest{In: in, Out: &out})

	c := cs.c
	sni := ""
	if c.Hello != nil {
		sni = c.Hello.ServerName
	}
	var resp *http.Response
	var uc *upConn
	var srv *affinity.Server
	var flight *inflight
	var abort *upAbort
	err := p.tryServers(&out, c, p.opt.Retries+1, nil, func(s *affinity.Server) (bool, error) {
		// A cancelled request (the client went away: ctx; a drain's
		// CancelRequest: ab.drain) unblocks whatever waits on its server
		// connection, the answer's body included.
		ab := &upAbort{}
		fl := p.startRequest(s.Address, ab.drain, nil)
		c.live.last.Store(s)
		rs.server = s
		key := transportKey{addr: s.Address}
		if p.opt.Upstream != nil && p.opt.Upstream.ServerName == "" {
			key.sni = sni
		}
		if hr := h1ResponseOf(w); hr != nil {
			ab.h1 = hr
			hr.onCancel(ab) // ctx is the h1 request's, with values only (ServeHTTP)
		} else {
			ab.after = context.AfterFunc(ctx, ab.fire)
		}
		res, u, err := p.roundTrip(ctx, w, &out, rs.buffered, key, ab, upType != "")
		if err == nil {
			resp, uc, abort, srv, flight = res, u, ab, s, fl
			return false, nil
		}
		ab.stop()
		if ab.wasDrained() { // the client's own going away, if it came too, says more
			if err = ctx.Err(); err == nil {
				err = errDrainCancelled
			}
		}
		s.Release()
		p.endRequest(fl)
		return isConnectError(err) && ctx.Err() == nil && !ab.wasDrained() && len(rs.buffered) == 0, err
	})
	if err != nil {
		p.errorHandler(w, &out, err)
		return
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		p.switchProtocols(w, r, cs, rs, resp, uc, abort, srv, flight)
		return
	}
	p.relay(w, rs, resp, uc, abort, func() { srv.Release(); p.endRequest(flight) })
}

// upHeaderTimeout: no response head within response_header_timeout (a
// timeout: 504), in http.Transport's words.
type upHeaderTimeout struct{}

func (upHeaderTimeout) Error() string   { return "net/http: timeout awaiting response headers" }
func (upHeaderTimeout) Timeout() bool   { return true }
func (upHeaderTimeout) Temporary() bool { return true }

// cleanQueryParams is ReverseProxy's (CVE-2022-2880): a query with a
// semicolon or a bad escape is re-encoded from what Go parses of it, so
// the server reads the same parameters tlsedge would.
func cleanQueryParams(s string) string {
	reencode := func(s string) string {
		v, _ := url.ParseQuery(s)
		return v.Encode()
	}
	for i := 0; i < len(s); {
		switch s[i] {
		case ';':
			return reencode(s)
		case '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return reencode(s)
			}
			i += 3
		default:
			i++
		}
	}
	return s
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// httpTrailersWanted: the client said "TE: trailers" (kept, as ReverseProxy).
func httpTrailersWanted(h http.Header) bool {
	for _, v := range h["Te"] {
		if hasToken(v, "trailers") {
			return true
		}
	}
	return false
}

// roundTrip writes out to a connection to key's server and reads the
// response head; 1xx answers are relayed to w. A reused connection that
// the server had closed is replaced once for a request that may be sent
// again. An upgrade (fresh) goes on a new connection, which it keeps.
func (p *HTTPProxy) roundTrip(ctx context.Context, w http.ResponseWriter, out *http.Request, body []byte, key transportKey, ab *upAbort, fresh bool) (*http.Response, *upConn, error) {
	for attempt := 0; ; attempt++ {
		var uc *upConn
		if ab.cancelled() { // a drain came before a server connection was taken
			if err := ctx.Err(); err != nil {
				return nil, nil, err
			}
			return nil, nil, errDrainCancelled
		}
		if !fresh {
			uc = p.up.get(key)
		}
		if uc == nil {
			// A drain ends the dial too (the only wait with no
			// connection for ab to close).
			dctx, cancel := context.WithCancel(ctx)
			ab.setDial(cancel)
			var err error
			uc, err = p.dialUp(dctx, key, fresh)
			ab.setDial(nil)
			cancel()
			if err != nil {
				return nil, nil, err
			}
		}
		ab.set(uc.c)
		resp, started, err := p.exchange(w, out, body, uc, ab)
		if err == nil {
			return resp, uc, nil
		}
		uc.c.Close()
		if uc.br != nil {
			uc.br.Reset(nil)
			uc.br = nil
		}
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		if ab.cancelled() { // a drain's CancelRequest
			return nil, nil, errDrainCancelled
		}
		if uc.reused && !started && attempt < 2 && replayable(out) {
			continue // the server closed it while it was idle
		}
		return nil, nil, err
	}
}

// replayable: http.Transport's rule for sending a request again.
func replayable(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, a := r.Header["Idempotency-Key"]
	_, b := r.Header["X-Idempotency-Key"]
	return a || b
}

// exchange sends the request on uc and reads the final response head;
// started: the server sent some of an answer (no retry then).
func (p *HTTPProxy) exchange(w http.ResponseWriter, out *http.Request, body []byte, uc *upConn, ab *upAbort) (resp *http.Response, started bool, err error) {
	bw := h1Writers.Get().(*bufio.Writer)
	bw.Reset(uc.c)
	writeRequestHead(bw, out, len(body))
	_, _ = bw.Write(body)
	err = bw.Flush()
	bw.Reset(nil)
	h1Writers.Put(bw)
	if err != nil {
		return nil, false, err
	}
	if d := p.limits.ResponseHeaderTimeout; d > 0 {
		ab.readDeadline(time.Now().Add(d))
		uc.deadlineLeft = true
	} else if uc.deadlineLeft {
		ab.readDeadline(time.Time{})
		uc.deadlineLeft = false
	}
	br := uc.reader(p.limits.MaxResponseHeader)
	limit := uc.remain
	for n1xx := 0; ; n1xx++ {
		resp, err = readUpResponse(br, out)
		if err != nil {
			started = started || uc.remain < limit
			switch {
			case errors.Is(err, errUpHeadTooLarge):
				err = fmt.Errorf("net/http: server response headers exceeded %d bytes; aborted", p.limits.MaxResponseHeader)
			case isTimeout(err):
				err = upHeaderTimeout{}
			}
			return nil, started, err
		}
		started = true
		if resp.StatusCode < 100 {
			return nil, true, fmt.Errorf("the server answered status %d", resp.StatusCode)
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		if n1xx >= 5 {
			return nil, true, errors.New("too many 1xx informational responses")
		}
		if resp.StatusCode != http.StatusContinue {
			hd := w.Header()
			for k, vv := range resp.Header {
				hd[k] = append(hd[k], vv...)
			}
			w.WriteHeader(resp.StatusCode)
			clear(hd)
		}
	}
	uc.remain = h1NoLimit
	if uc.deadlineLeft && (resp.StatusCode == http.StatusSwitchingProtocols || !answerBuffered(resp, br)) {
		// The answer's body is still to come (or a stream): no deadline
		// on it. An answer read whole leaves the deadline on the idle
		// connection (a read of it sets its own first): one call less.
		ab.readDeadline(time.Time{})
		uc.deadlineLeft = false
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// Only to the protocol asked for (ReverseProxy's check).
		if asked := upgradeType(out.Header); asked == "" || !sameToken(asked, upgradeType(resp.Header)) {
			resp.Body.Close()
			return nil, true, errUpgradeMismatch
		}
	}
	return resp, true, nil
}

// answerBuffered reports whether resp's body, if any, is in br whole.
func answerBuffered(resp *http.Response, br *bufio.Reader) bool {
	if resp.Body == http.NoBody {
		return true
	}
	lb, ok := resp.Body.(*leanBody)
	return ok && lb.n >= 0 && lb.n <= int64(br.Buffered())
}

// writeRequestHead writes out's head as http.Transport does: request
// line, Host, the fields sorted, Content-Length for a body (and 0 for a
// POST, PUT or PATCH without one).
func writeRequestHead(bw *bufio.Writer, out *http.Request, bodyLen int) {
	_, _ = bw.WriteString(out.Method)
	_ = bw.WriteByte(' ')
	_, _ = bw.WriteString(out.URL.RequestURI())
	_, _ = bw.WriteString(" HTTP/1.1\r\nHost: ")
	_, _ = bw.WriteString(headerValue(out.Host))
	_, _ = bw.WriteString("\r\n")
	var keyBuf [32]string
	keys := keyBuf[:0]
	for k := range out.Header {
		switch k {
		case "Host", "Content-Length", "Transfer-Encoding", "Trailer":
			continue
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for i, v := range out.Header[k] {
			if k == "User-Agent" && (v == "" || i > 0) {
				continue // as http.Transport: the first one, when not empty
			}
			_, _ = bw.WriteString(k)
			_, _ = bw.WriteString(": ")
			_, _ = bw.WriteString(headerValue(v))
			_, _ = bw.WriteString("\r\n")
		}
	}
	if bodyLen > 0 || out.Method == http.MethodPost || out.Method == http.MethodPut || out.Method == http.MethodPatch {
		_, _ = bw.WriteString("Content-Length: ")
		var b [20]byte
		_, _ = bw.Write(strconv.AppendInt(b[:0], int64(bodyLen), 10))
		_, _ = bw.WriteString("\r\n")
	}
	_, _ = bw.WriteString("\r\n")
}

// headerValue is v trimmed, with CR and LF as spaces (net/http's writing).
func headerValue(v string) string {
	v = textproto.TrimString(v)
	for i := range len(v) { // a byte loop: strings.ContainsAny was 1 % of a forwarded request
		if v[i] == '\r' || v[i] == '\n' {
			return strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
		}
	}
	return v
}

// relay writes the server's answer to w: head (hop-by-hop fields removed,
// the affinity cookie, trailers announced), body, trailers; uc goes back
// to the pool when the answer was read whole and the server keeps it.
func (p *HTTPProxy) relay(w http.ResponseWriter, rs *reqState, resp *http.Response, uc *upConn, ab *upAbort, release func()) {
	keep := false
	defer func() {
		if !ab.stop() {
			keep = false // cancelled: its deadline may be set on uc
		}
		if !keep {
			uc.c.Close() // first: Close would read the rest of the body
		}
		resp.Body.Close()
		if keep {
			p.up.put(uc)
		}
		release()
	}()
	rs.status = resp.StatusCode
	removeHopByHop(resp.Header)
	p.cookieResponse(resp, rs)
	hd := w.Header()
	for k, vv := range resp.Header {
		if old, ok := hd[k]; ok {
			hd[k] = append(old, vv...)
		} else {
			hd[k] = vv // shared: resp.Header is only read from here on (trailer appends go past its lengths)
		}
	}
	announced := len(resp.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		hd.Add("Trailer", strings.Join(keys, ", "))
	}
	w.WriteHeader(resp.StatusCode)
	flush := resp.ContentLength == -1
	if eventStream(resp.Header.Get("Content-Type")) {
		flush = true
	}
	if flush {
		// A stream: its head goes now, whenever its body comes
		// (ReverseProxy's first flush).
		_ = http.NewResponseController(w).Flush()
	}
	if err := copyBody(w, resp.Body, flush); err != nil {
		if !errors.Is(err, context.Canceled) {
			p.errorLog.Printf("httputil: ReverseProxy read error during body copy: %v", err)
		}
		panic(http.ErrAbortHandler) // the client must not take a cut answer for a whole one
	}
	keep = !resp.Close && resp.ProtoAtLeast(1, 1)
	if len(resp.Trailer) > 0 {
		_ = http.NewResponseController(w).Flush()
		if len(resp.Trailer) == announced {
			for k, vv := range resp.Trailer {
				hd[k] = append(hd[k], vv...)
			}
		} else {
			for k, vv := range resp.Trailer {
				for _, v := range vv {
					hd.Add(http.TrailerPrefix+k, v)
				}
			}
		}
	}
}
