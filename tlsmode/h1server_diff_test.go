package tlsmode

// A differential test of h1Conn (h1server.go, h1response.go, h1body.go)
// against net/http's server: the same raw request bytes go to each over a
// loopback TCP pair, both behind the smuggling guard (newH1Guard), with the
// same handler. The client reads the answers raw, then sends a probe request
// (GET /hd-probe with Connection: close) to see whether the connection was
// kept; the two transcripts must be equal once normalised: the Date value is
// replaced and the header and trailer lines of each answer are sorted (the
// two servers order their own fields differently); chunked bodies are
// compared decoded (where chunks end follows each server's buffering).

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// hdWait bounds every client read and every wait for a server to stop.
const hdWait = 30 * time.Second

// hdProbe asks a kept connection for one more answer and its close.
const hdProbe = "GET /hd-probe HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n"

// The transcript's markers: the probe was answered (the connection was kept)
// or not (it was closed after the answers).
const (
	hdKept   = "== probe sent\nHTTP/1.1 200 OK"
	hdClosed = "== probe sent\n== closed"
)

// hdNotes records what a handler saw (errors of its writes and reads).
type hdNotes struct {
	mu sync.Mutex
	l  []string
}

func (n *hdNotes) add(format string, a ...any) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.l = append(n.l, fmt.Sprintf(format, a...))
}

func (n *hdNotes) list() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.l)
}

// hdWrite writes s and notes an error.
func hdWrite(n *hdNotes, w http.ResponseWriter, s string) {
	if _, err := io.WriteString(w, s); err != nil {
		n.add("write %d bytes: %v", len(s), err)
	}
}

// hdHandlers are the handlers run by both servers, by name.
var hdHandlers = map[string]func(n *hdNotes, w http.ResponseWriter, r *http.Request){
	"small": func(n *hdNotes, w http.ResponseWriter, r *http.Request) { hdWrite(n, w, "hello "+r.URL.Path) },
	"empty": func(n *hdNotes, w http.ResponseWriter, r *http.Request) {},
	"big":   func(n *hdNotes, w http.ResponseWriter, r *http.Request) { hdWrite(n, w, strings.Repeat("a", 3000)) },
	"big-pieces": func(n *hdNotes, w http.ResponseWriter, r *http.Request) {
		hdWrite(n, w, strings.Repeat("a", 1000))
		hdWrite(n, w, strings.Repeat("b", 2000))
	},
	"cl-exact": func(n *hdNotes, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5")
		hdWrite(n, w, "hello")
	},
	"cl-short": func(n *hdNotes, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10")
		hdWrite(n, w, "hello")
	},
	"cl-long": func(n *hdNotes, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5")
		hdWrite(n, w, "hello")
		hdWrite(n, w, " world")
	},
	"flush": func(n *hdNotes, w http.ResponseWriter, r *http.Request) {
		hdWrite(n, w, "a")
		w.(http.Flusher).Flush()
		hdWrite(n, w, "b")
	},
	"204": func(n *hdNotes, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1")
		w.WriteHeader(http.StatusNoContent)
		hdWrite(n, w, "x")
	},
	"304": func(n *hdNotes, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Content-Length", "10")
		w.Header().Set("Etag", `"v1"`)
		w.WriteHeader(http.StatusNotModified)
	},
	"103": func(n *hdNotes, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</a.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		hdWrite(n, w, "ok")
	},
	// 100-explicit sends its own 100 Continue with a header field.
	"100-explicit": func(n *hdNotes, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Info", "1")
		w.WriteHeader(http.StatusContinue)
		hdWrite(n, w, "ok")
	},
	"trailers": func(n *hdNotes, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		hdWrite(n, w, "data")
		w.Header().Set("X-Sum", "42")
		w.Header().Set(http.TrailerPrefix+"X-Late", "late")
	},
	// prefix-trailer has a TrailerPrefix key (and no Trailer field) when
	// it writes: the answer is chunked to carry the trailer. One set after
	// the first write is too late for the head: it gets a length and
	// no trailer (net/http).
	"prefix-trailer": func(n *hdNotes, w http.ResponseWriter, r *http.Request) {
		w.Header().Set(http.TrailerPrefix+"X-P", "early")
		hdWrite(n, w, "data")
		w.Header().Set(http.TrailerPrefix+"X-P", "v")
	},
	"prefix-trailer-late": func(n *hdNotes, w http.ResponseWriter, r *http.Request) {
		hdWrite(n, w, "data")
		w.Header().Set(http.TrailerPrefix+"X-P", "v")
	},
	"conn-close": func(n *hdNotes, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		hdWrite(n, w, "bye")
	},
	"echo": func(n *hdNotes, w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			n.add("read body: %v", err)
		}
		hdWrite(n, w, "got "+string(b))
	},
	"noread": func(n *hdNotes, w http.ResponseWriter, r *http.Request) { hdWrite(n, w, "ok") },
	"panic":  func(n *hdNotes, w http.ResponseWriter, r *http.Request) { panic("hd: boom") },
	"abort-flushed": func(n *hdNotes, w http.ResponseWriter, r *http.Request) {
		hdWrite(n, w, "partial")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	},
	// abort-buffered commits its head and a 3000-byte chunk that are
	// still in the connection's buffer when it panics (one Write of a
	// []byte: net/http passes it on whole).
	"abort-buffered": func(n *hdNotes, w http.ResponseWriter, r *http.Request) {
		if _, err := w.Write([]byte(strings.Repeat("p", 3000))); err != nil {
			n.add("write: %v", err)
		}
		panic(http.ErrAbortHandler)
	},
	// header-after-write changes the header after its first write: too
	// late for the head (net/http's WriteHeader takes a copy).
	"header-after-write": func(n *hdNotes, w http.ResponseWriter, r *http.Request) {
		hdWrite(n, w, "x")
		w.Header().Set("X-After", "1")
	},
	// reqinfo answers with what the handler sees of its request.
	"reqinfo": func(n *hdNotes, w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			n.add("read body: %v", err)
		}
		keys := slices.Sorted(maps.Keys(r.Header))
		var fields []string
		for _, k := range keys {
			fields = append(fields, k+"="+strings.Join(r.Header[k], "|"))
		}
		hdWrite(n, w, fmt.Sprintf("method=%q host=%q uri=%q url=%q proto=%q len=%d te=%q close=%v tls=%v header=%q body=%q",
			r.Method, r.Host, r.RequestURI, r.URL, r.Proto, r.ContentLength, r.TransferEncoding, r.Close, r.TLS != nil, fields, b))
	},
	// mutate-req changes its request's header (as a handler may) before it
	// answers: the connection's fate was decided by the header as sent.
	"mutate-req": func(n *hdNotes, w http.ResponseWriter, r *http.Request) {
		r.Header.Del("Connection")
		r.Header.Set("Connection", "close")
		hdWrite(n, w, "ok")
	},
	// te-identity sets Transfer-Encoding: identity: net/http ends the body
	// with the close.
	"te-identity": func(n *hdNotes, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Transfer-Encoding", "identity")
		hdWrite(n, w, "body")
	},
	"te-chunked": func(n *hdNotes, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Transfer-Encoding", "chunked")
		hdWrite(n, w, "body")
	},
	// bad-fields sets header fields no server may send as they are.
	"bad-fields": func(n *hdNotes, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Newline", "a\r\nInjected: 1")
		w.Header()["X-Bad Name"] = []string{"1"}
		w.Header()["X-Split\r\nInjected-Name"] = []string{"2"}
		hdWrite(n, w, "ok")
	},
	// close-body closes the request body unread, then reads it.
	"close-body": func(n *hdNotes, w http.ResponseWriter, r *http.Request) {
		if err := r.Body.Close(); err != nil {
			n.add("close body: %v", err)
		}
		_, err := r.Body.Read(make([]byte, 8))
		n.add("read after close: %v (ErrBodyReadAfterClose: %v)", err, errors.Is(err, http.ErrBodyReadAfterClose))
		hdWrite(n, w, "closed")
	},
	// hijack takes the connection and answers on it itself.
	"hijack": func(n *hdNotes, w http.ResponseWriter, r *http.Request) {
		c, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			n.add("hijack: %v", err)
			return
		}
		defer c.Close()
		n.add("hijack: %d bytes buffered", brw.Reader.Buffered())
		_, _ = brw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nhij")
		_ = brw.Flush()
	},
	// upgrade answers 101 and speaks another protocol after it.
	"upgrade": func(n *hdNotes, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Upgrade", "hd")
		w.WriteHeader(http.StatusSwitchingProtocols)
		c, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			n.add("hijack: %v", err)
			return
		}
		defer c.Close()
		_, _ = brw.WriteString("upgraded\n")
		_ = brw.Flush()
	},
	// content-encoding: an encoded body is not sniffed.
	"content-encoding": func(n *hdNotes, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Encoding", "gzip")
		hdWrite(n, w, "\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")
	},
	// cl-and-te declares both a length and chunked: net/http drops the length.
	"cl-and-te": func(n *hdNotes, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "4")
		w.Header().Set("Transfer-Encoding", "chunked")
		hdWrite(n, w, "body")
	},
	"sniff": func(n *hdNotes, w http.ResponseWriter, r *http.Request) {
		hdWrite(n, w, "<html><body>hi</body></html>")
	},
	// ctxwait answers once its request's context is done: a client that
	// half-closes its side cancels it (both servers' background read).
	"ctxwait": func(n *hdNotes, w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
			hdWrite(n, w, "ctx done "+r.URL.Path)
		case <-time.After(hdWait / 2):
			hdWrite(n, w, "ctx alive "+r.URL.Path)
		}
	},
}

// hdHandler is handler name with the probe's answer in front.
func hdHandler(name string, n *hdNotes) http.Handler {
	f := hdHandlers[name]
	if f == nil {
		panic("hd: no handler " + name)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hd-probe" {
			hdWrite(n, w, "probe-ok")
			return
		}
		f(n, w, r)
	})
}

// hdPair is a loopback TCP connection: the client's end and the server's.
func hdPair(t *testing.T) (client, server net.Conn, err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return nil, nil, err
	}
	t.Cleanup(func() { hdClose(client) })
	select {
	case server = <-accepted:
	case <-time.After(hdWait):
	}
	if server == nil {
		return nil, nil, errors.New("accept failed")
	}
	t.Cleanup(func() { server.Close() })
	return client, server, nil
}

// hdClose closes a client's end with a reset, after the server's close was
// read: no TIME_WAIT on either end, so that thousands of fuzzed runs do not
// use up the machine's ephemeral ports.
func hdClose(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// hdLimits are both servers' limits.
func hdLimits() HTTPLimits {
	return HTTPLimits{MaxHeaderBytes: 1 << 20, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second,
		ReadBodyTimeout: 5 * time.Second}.WithDefaults()
}

// hdAwait waits (bounded) for a server's goroutine to end.
func hdAwait(t *testing.T, done <-chan struct{}, what string) {
	select {
	case <-done:
	case <-time.After(hdWait):
		t.Errorf("%s did not return within %v of the client's close", what, hdWait)
	}
}

// hdServeH1 serves sc with an h1Conn until the client closes.
func hdServeH1(t *testing.T, sc net.Conn, hd http.Handler) {
	p := &HTTPProxy{limits: hdLimits(), errorLog: log.New(io.Discard, "", 0)}
	g := newH1Guard(sc, p.limits.MaxHeaderBytes, p.limits.ReadHeaderTimeout)
	h := &h1Conn{p: p, handler: hd, cs: &connState{}, g: g, start: time.Now(), remain: h1NoLimit,
		base: context.Background(), remote: sc.RemoteAddr().String()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.serve(false)
	}()
	t.Cleanup(func() { hdAwait(t, done, "h1Conn.serve") })
}

// hdOneListener hands out one connection, then blocks until closed.
type hdOneListener struct {
	mu        sync.Mutex
	c         net.Conn
	addr      net.Addr
	done      chan struct{}
	closeOnce sync.Once
}

func (l *hdOneListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	c := l.c
	l.c = nil
	l.mu.Unlock()
	if c != nil {
		return c, nil
	}
	<-l.done
	return nil, net.ErrClosed
}

func (l *hdOneListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return nil
}

func (l *hdOneListener) Addr() net.Addr { return l.addr }

// hdServeStd serves sc with a net/http.Server behind the same guard (what
// production did before h1Conn).
func hdServeStd(t *testing.T, sc net.Conn, hd http.Handler) {
	lim := hdLimits()
	g := newH1Guard(sc, lim.MaxHeaderBytes, lim.ReadHeaderTimeout)
	srv := &http.Server{Handler: hd, ReadHeaderTimeout: lim.ReadHeaderTimeout, IdleTimeout: lim.IdleTimeout,
		MaxHeaderBytes: lim.MaxHeaderBytes, ErrorLog: log.New(io.Discard, "", 0)}
	ln := &hdOneListener{c: g, addr: sc.LocalAddr(), done: make(chan struct{})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		hdAwait(t, done, "http.Server.Serve")
	})
}

// hdResult is what one server answered.
type hdResult struct {
	text  string   // the normalised transcript
	raw   string   // every byte received, as received
	notes []string // what the handler saw
}

// hdRun sends req to a server of kind "h1" (h1Conn) or "std" (net/http)
// running handler, reads n final answers (n < 0: answers until the close;
// req then ends with hdProbe), sends the probe (unless half or n < 0) and
// reads until the server closes. half: the client half-closes after req.
// It runs on its own goroutine: it reports with t.Errorf, never t.Fatal.
func hdRun(t *testing.T, kind, handler, req string, n int, half bool) hdResult {
	cc, sc, err := hdPair(t)
	if err != nil {
		t.Errorf("%s: loopback connection: %v", kind, err)
		return hdResult{text: "== no connection: " + err.Error()}
	}
	notes := &hdNotes{}
	if kind == "h1" {
		hdServeH1(t, sc, hdHandler(handler, notes))
	} else {
		hdServeStd(t, sc, hdHandler(handler, notes))
	}
	_ = cc.SetDeadline(time.Now().Add(hdWait))
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		_, _ = io.WriteString(cc, req) // a server that closes early may refuse the rest
		if half {
			_ = cc.(*net.TCPConn).CloseWrite()
		}
	}()
	rec := &hdRecorder{r: cc}
	br := bufio.NewReader(rec)
	methods := hdMethods(req)
	var out strings.Builder
	finals, end := 0, ""
	for n < 0 || finals < n {
		method := "GET"
		if finals < len(methods) {
			method = methods[finals]
		}
		code, text, err := hdReadResponse(br, method)
		out.WriteString(text)
		if err != nil {
			end = hdEnd(err)
			break
		}
		if code >= 200 || code == http.StatusSwitchingProtocols {
			finals++
		}
	}
	if end == "" && !half && n >= 0 {
		select {
		case <-wrote:
		case <-time.After(hdWait): // the write's deadline ends it first
			t.Errorf("%s: the request was not written within %v", kind, hdWait)
		}
		out.WriteString("== probe sent\n")
		_, _ = io.WriteString(cc, hdProbe)
		_, text, err := hdReadResponse(br, "GET")
		out.WriteString(text)
		if err != nil {
			end = hdEnd(err)
		}
	}
	if end == "" {
		// Anything after the last answer is shown; then the close.
		rest, err := io.ReadAll(br)
		if len(rest) > 0 {
			fmt.Fprintf(&out, "extra bytes %q\n", rest)
		}
		if err == nil {
			err = io.EOF // ReadAll's nil: the close
		}
		end = hdEnd(err)
	}
	out.WriteString(end)
	// The client's close ends the servers' lingering reads at once.
	hdClose(cc)
	return hdResult{text: out.String(), raw: rec.String(), notes: notes.list()}
}

// hdEnd names how the connection ended: a close (FIN or reset: which one
// depends on what the server had not read), a timeout, or an error.
func hdEnd(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "== closed\n"
	case errors.As(err, &ne) && ne.Timeout():
		return "== timeout: no close within the client's deadline\n"
	}
	return "== error " + err.Error() + "\n"
}

// hdRecorder keeps every byte read through it.
type hdRecorder struct {
	r   io.Reader
	mu  sync.Mutex
	buf strings.Builder
}

func (h *hdRecorder) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.mu.Lock()
	h.buf.Write(p[:n])
	h.mu.Unlock()
	return n, err
}

func (h *hdRecorder) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.buf.String()
}

// hdMethods are the methods of the requests in raw, as far as they parse.
func hdMethods(raw string) []string {
	var m []string
	br := bufio.NewReader(strings.NewReader(raw))
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return m
		}
		m = append(m, req.Method)
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return m
		}
	}
}

// hdScan reports whether raw is whole requests (no head or body cut short:
// a server would wait for the rest; bytes that do not parse count as
// whole, the servers refuse them) and whether one of them is a CONNECT or
// has an Upgrade field (h1Conn closes after those unless it switches).
func hdScan(raw []byte) (complete, upgrade bool) {
	br := bufio.NewReader(strings.NewReader(string(raw)))
	for {
		req, err := http.ReadRequest(br)
		switch {
		case err == io.EOF:
			return true, upgrade
		case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
			return false, upgrade
		case err != nil:
			return true, upgrade
		}
		_, up := req.Header["Upgrade"]
		upgrade = upgrade || up || req.Method == http.MethodConnect
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF), upgrade
		}
	}
}

// hdReadResponse reads one answer raw and returns its status and its
// normalised text: status line, header lines sorted with the Date value
// replaced, the body (with its chunk sizes), sorted trailer lines, and how
// the answer was cut if it was. code 0: nothing came. err: the connection
// ended (io.EOF also after a body delimited by the close).
func hdReadResponse(br *bufio.Reader, method string) (code int, text string, err error) {
	status, err := br.ReadString('\n')
	if err != nil {
		if status != "" {
			return 0, fmt.Sprintf("partial line %q\n", status), err
		}
		return 0, "", err
	}
	var b strings.Builder
	b.WriteString(strings.TrimRight(status, "\r\n") + "\n")
	if len(status) >= 12 {
		code, _ = strconv.Atoi(status[9:12])
	}
	head, err := hdReadLines(br)
	hdWriteSorted(&b, head)
	if err != nil {
		return code, b.String() + "cut in the head\n", err
	}
	field := func(name string) string {
		for _, l := range head {
			if k, v, _ := strings.Cut(l, ":"); strings.EqualFold(k, name) {
				return strings.TrimSpace(v)
			}
		}
		return ""
	}
	if method == http.MethodHead || code < 200 || code == http.StatusNoContent || code == http.StatusNotModified {
		return code, b.String(), nil
	}
	var body []byte
	var trailer []string
	closeDelimited := false
	switch {
	case strings.EqualFold(field("Transfer-Encoding"), "chunked"):
		body, trailer, err = hdReadChunked(br)
	case field("Content-Length") != "":
		cl, perr := strconv.Atoi(field("Content-Length"))
		if perr != nil || cl < 0 {
			return code, b.String() + "bad Content-Length\n", fmt.Errorf("bad Content-Length")
		}
		body = make([]byte, cl)
		var got int
		got, err = io.ReadFull(br, body)
		body = body[:got]
	default:
		closeDelimited = true
		body, err = io.ReadAll(br)
		if err == nil {
			err = io.EOF
		}
	}
	b.WriteString("body " + hdShow(body) + "\n")
	if trailer != nil {
		b.WriteString("trailer\n")
		hdWriteSorted(&b, trailer)
	}
	if closeDelimited {
		b.WriteString("(body delimited by the close)\n")
	} else if err != nil {
		fmt.Fprintf(&b, "cut: %v\n", err)
	}
	return code, b.String(), err
}

// hdReadChunked reads a chunked body: its data and the trailer lines
// (non-nil once the last chunk came). Chunk boundaries are not kept: they
// follow each server's buffering (net/http cuts at 2048 bytes), not HTTP.
func hdReadChunked(br *bufio.Reader) (body []byte, trailer []string, err error) {
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return body, nil, err
		}
		sz, _, _ := strings.Cut(strings.TrimRight(line, "\r\n"), ";")
		size, err := strconv.ParseInt(sz, 16, 32)
		if err != nil {
			return body, nil, fmt.Errorf("bad chunk line %q", line)
		}
		if size == 0 {
			trailer, err = hdReadLines(br)
			if trailer == nil {
				trailer = []string{}
			}
			return body, trailer, err
		}
		p := make([]byte, size+2)
		got, err := io.ReadFull(br, p)
		body = append(body, p[:min(got, int(size))]...)
		if err != nil {
			return body, nil, err
		}
		if string(p[size:]) != "\r\n" {
			return body, nil, fmt.Errorf("chunk data not followed by CRLF")
		}
	}
}

// hdReadLines reads header or trailer lines up to the empty line.
func hdReadLines(br *bufio.Reader) ([]string, error) {
	var lines []string
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			if l != "" {
				lines = append(lines, fmt.Sprintf("partial %q", l))
			}
			return lines, err
		}
		l = strings.TrimRight(l, "\r\n")
		if l == "" {
			return lines, nil
		}
		lines = append(lines, l)
	}
}

// hdWriteSorted writes lines sorted by field name (lines of one name keep
// their order), each Date value replaced when it is a valid HTTP date.
func hdWriteSorted(b *strings.Builder, lines []string) {
	lines = slices.Clone(lines)
	slices.SortStableFunc(lines, func(x, y string) int {
		kx, _, _ := strings.Cut(x, ":")
		ky, _, _ := strings.Cut(y, ":")
		return strings.Compare(strings.ToLower(kx), strings.ToLower(ky))
	})
	for _, l := range lines {
		if k, v, _ := strings.Cut(l, ":"); strings.EqualFold(k, "Date") {
			if _, err := time.Parse(http.TimeFormat, strings.TrimSpace(v)); err == nil {
				l = k + ": <date>"
			}
		}
		b.WriteString(l + "\n")
	}
}

// hdShow is a body for the transcript: quoted, or its length and checksum.
func hdShow(body []byte) string {
	if len(body) <= 512 {
		return strconv.Quote(string(body))
	}
	return fmt.Sprintf("%d bytes %q... crc32 %08x", len(body), body[:16], crc32.ChecksumIEEE(body))
}

// hdCase is one request sequence, the handler that answers it, and what
// net/http's answer must hold (want: in this order; not: nowhere).
type hdCase struct {
	name, handler, req string
	n                  int  // final answers before the probe
	half               bool // the client half-closes after req (no probe)
	want, not          []string
	// h1want, when set, is what h1Conn must answer where it departs from
	// net/http on purpose (the case says why); the transcripts then differ.
	h1want []string
}

const hdGet = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"

var hdBigBody = strings.Repeat("z", 300<<10)

var hdCases = []hdCase{
	{name: "small body gets Content-Length", handler: "small", req: hdGet, n: 1,
		want: []string{"HTTP/1.1 200 OK\nContent-Length: 8\nContent-Type: text/plain; charset=utf-8\nDate: <date>\nbody \"hello /a\"", hdKept}},
	{name: "empty body gets Content-Length 0", handler: "empty", req: hdGet, n: 1,
		want: []string{"HTTP/1.1 200 OK\nContent-Length: 0\nDate: <date>\n", hdKept}, not: []string{"Content-Type"}},
	{name: "body over 2048 bytes is chunked", handler: "big", req: hdGet, n: 1,
		want: []string{"Transfer-Encoding: chunked", "body 3000 bytes", "trailer\n" + hdKept}, not: []string{"Content-Length"}},
	{name: "body over 2048 bytes in two writes", handler: "big-pieces", req: hdGet, n: 1,
		want: []string{"Transfer-Encoding: chunked", "body 3000 bytes", hdKept}},
	{name: "declared Content-Length exact", handler: "cl-exact", req: hdGet, n: 1,
		want: []string{"Content-Length: 5\n", "body \"hello\"", hdKept}},
	{name: "declared Content-Length not reached closes", handler: "cl-short", req: hdGet, n: 1,
		want: []string{"Content-Length: 10\n", "body \"hello\"\ncut: unexpected EOF\n== closed"}},
	{name: "write past declared Content-Length fails", handler: "cl-long", req: hdGet, n: 1,
		want: []string{"Content-Length: 5\n", "body \"hello\"", hdClosed}},
	{name: "flush then write is chunked", handler: "flush", req: hdGet, n: 1,
		want: []string{"Transfer-Encoding: chunked", "body \"ab\"\ntrailer\n", hdKept}},
	{name: "HEAD with a written body", handler: "small", req: "HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n", n: 1,
		want: []string{"HTTP/1.1 200 OK\nContent-Length: 8\nContent-Type: text/plain; charset=utf-8\nDate: <date>\n" + hdKept}},
	{name: "HEAD without a body", handler: "empty", req: "HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n", n: 1,
		want: []string{"HTTP/1.1 200 OK\nDate: <date>\n" + hdKept}},
	{name: "204 has no body and no length", handler: "204", req: hdGet, n: 1,
		want: []string{"HTTP/1.1 204 No Content\nDate: <date>\n" + hdKept}},
	{name: "304 drops Content-Type and Content-Length", handler: "304", req: hdGet, n: 1,
		want: []string{"HTTP/1.1 304 Not Modified\nDate: <date>\nEtag: \"v1\"\n" + hdKept}},
	{name: "103 Early Hints then 200", handler: "103", req: hdGet, n: 1,
		want: []string{"HTTP/1.1 103 Early Hints\nLink: </a.css>; rel=preload\n", "HTTP/1.1 200 OK\n", "Link: </a.css>; rel=preload\n", "body \"ok\"", hdKept}},
	{name: "100 Continue written by the handler", handler: "100-explicit", req: hdGet, n: 1,
		want: []string{"HTTP/1.1 100 Continue\nX-Info: 1\nHTTP/1.1 200 OK\n", "X-Info: 1\nbody \"ok\"", hdKept}},
	{name: "trailers announced and prefixed", handler: "trailers", req: hdGet, n: 1,
		want: []string{"Trailer: X-Sum\nTransfer-Encoding: chunked\nbody \"data\"\ntrailer\nX-Late: late\nX-Sum: 42\n", hdKept}},
	{name: "trailer by TrailerPrefix only", handler: "prefix-trailer", req: hdGet, n: 1,
		want: []string{"Transfer-Encoding: chunked\nbody \"data\"\ntrailer\nX-P: v\n", hdKept}, not: []string{"Content-Length", "early"}},
	{name: "TrailerPrefix key set after the first write", handler: "prefix-trailer-late", req: hdGet, n: 1,
		want: []string{"Content-Length: 4\n", "body \"data\"\n" + hdKept}, not: []string{"X-P"}},
	{name: "handler sets Connection close", handler: "conn-close", req: hdGet, n: 1,
		want: []string{"Connection: close\n", "body \"bye\"", hdClosed}},
	{name: "request with Connection close", handler: "small", req: "GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", n: 1,
		want: []string{"Connection: close\n", "body \"hello /c\"", hdClosed}},
	{name: "request with a close token separated by a space", handler: "small", req: "GET /c HTTP/1.1\r\nHost: x\r\nConnection: close x\r\n\r\n", n: 1,
		want: []string{"Connection: close\n", "body \"hello /c\"", hdClosed}},
	{name: "HTTP 1.0 without keep-alive", handler: "small", req: "GET /o HTTP/1.0\r\n\r\n", n: 1,
		want: []string{"HTTP/1.0 200 OK\nContent-Length: 8\n", "body \"hello /o\"", hdClosed}, not: []string{"Connection"}},
	{name: "HTTP 1.0 keep-alive", handler: "small", req: "GET /k HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", n: 1,
		want: []string{"HTTP/1.0 200 OK\nConnection: keep-alive\nContent-Length: 8\n", "body \"hello /k\"", hdKept}},
	{name: "HTTP 1.0 keep-alive with a long body closes", handler: "big", req: "GET /k HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", n: 1,
		want: []string{"HTTP/1.0 200 OK\n", "body 3000 bytes", "(body delimited by the close)\n== closed"}},
	{name: "two pipelined requests", handler: "small", req: "GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n", n: 2,
		want: []string{"body \"hello /1\"", "body \"hello /2\"", hdKept}},
	{name: "three pipelined requests with HEAD and POST", handler: "echo",
		req: "GET /1 HTTP/1.1\r\nHost: x\r\n\r\nHEAD /2 HTTP/1.1\r\nHost: x\r\n\r\nPOST /3 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", n: 3,
		want: []string{"body \"got \"", "HTTP/1.1 200 OK\nContent-Length: 4\n", "body \"got abc\"", hdKept}},
	{name: "pipelined requests then client half-close", handler: "small", half: true, n: 2,
		req:  "GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n",
		want: []string{"body \"hello /1\"", "body \"hello /2\"\n== closed"}},
	{name: "client half-close cancels the request context", handler: "ctxwait", half: true, n: 1, req: hdGet,
		want: []string{"body \"ctx done /a\"\n== closed"}},
	{name: "header changed after the first write", handler: "header-after-write", req: hdGet, n: 1,
		want: []string{"HTTP/1.1 200 OK\nContent-Length: 1\nContent-Type: text/plain; charset=utf-8\nDate: <date>\nbody \"x\"", hdKept},
		not:  []string{"X-After"}},
	{name: "small unread POST body keeps the connection", handler: "noread", n: 1,
		req:  "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world",
		want: []string{"body \"ok\"", hdKept}},
	{name: "large unread POST body closes", handler: "noread", n: 1,
		req:  "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: " + strconv.Itoa(len(hdBigBody)) + "\r\n\r\n" + hdBigBody,
		want: []string{"Connection: close\n", "body \"ok\"", hdClosed}},
	{name: "chunked request body echoed", handler: "echo", n: 1,
		req:  "POST /e HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
		want: []string{"Content-Length: 15\n", "body \"got hello world\"", hdKept}},
	{name: "Expect 100-continue, body read", handler: "echo", n: 1,
		req:  "POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello",
		want: []string{"HTTP/1.1 100 Continue\n", "HTTP/1.1 200 OK\n", "body \"got hello\"", hdKept}},
	{name: "Expect 100-continue, body not read", handler: "noread", n: 1,
		req:  "POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
		want: []string{"HTTP/1.1 200 OK\nConnection: close\n", "body \"ok\"", hdClosed}, not: []string{"100 Continue"}},
	{name: "Expect 100-continue, the handler writes 100 and does not read", handler: "100-explicit", n: 1,
		req:  "POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello",
		want: []string{"HTTP/1.1 100 Continue\nX-Info: 1\nHTTP/1.1 200 OK\nConnection: close\n", "body \"ok\"", hdClosed}},
	{name: "unknown Expect", handler: "echo", n: 1,
		req:  "POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: bogus\r\n\r\nhello",
		want: []string{"HTTP/1.1 417 Expectation Failed\n", "Connection: close\n", "== closed"}},
	{name: "unknown Expect on HTTP 1.0", handler: "small", req: "GET /x HTTP/1.0\r\nExpect: bogus\r\n\r\n", n: 1,
		want: []string{"HTTP/1.0 417 Expectation Failed\nConnection: close\nContent-Length: 0\nDate: <date>\n", "== closed"}},
	{name: "missing Host", handler: "small", req: "GET / HTTP/1.1\r\n\r\n", n: 1,
		want: []string{"HTTP/1.1 400 Bad Request\nConnection: close\n", "body \"400 Bad Request\"", "== closed"}},
	{name: "two Host fields", handler: "small", req: "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", n: 1,
		want: []string{"HTTP/1.1 400 Bad Request\nConnection: close\n", "body \"400 Bad Request\"", "== closed"}},
	{name: "invalid Host", handler: "small", req: "GET / HTTP/1.1\r\nHost: exa mple\r\n\r\n", n: 1,
		want: []string{"HTTP/1.1 400 Bad Request: malformed Host header\n", "== closed"}},
	{name: "header too large", handler: "small", n: 1,
		req:  "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("b", 1<<20+8192) + "\r\n\r\n",
		want: []string{"HTTP/1.1 431 Request Header Fields Too Large\n", "== closed"}},
	{name: "handler panics", handler: "panic", req: hdGet, n: 1, want: []string{"== closed"}, not: []string{"HTTP/1.1"}},
	{name: "ErrAbortHandler after a flushed part", handler: "abort-flushed", req: hdGet, n: 1,
		want: []string{"Transfer-Encoding: chunked", "body \"partial\"\ncut: EOF\n== closed"}},
	{name: "ErrAbortHandler after a buffered part", handler: "abort-buffered", req: hdGet, n: 1,
		want: []string{"Transfer-Encoding: chunked\nbody 3000 bytes", "cut: EOF\n== closed"}},
	{name: "empty Host is valid", handler: "reqinfo", req: "GET / HTTP/1.1\r\nHost: \r\n\r\n", n: 1,
		want: []string{"HTTP/1.1 200 OK\n", `host=\"\"`, hdKept}},
	{name: "absolute-form without Host", handler: "reqinfo", req: "GET http://a.example/x HTTP/1.1\r\n\r\n", n: 1,
		want: []string{"HTTP/1.1 400 Bad Request\nConnection: close\n", "== closed"}},
	{name: "absolute-form with Host", handler: "reqinfo", req: "GET http://a.example/x HTTP/1.1\r\nHost: b.example\r\n\r\n", n: 1,
		want: []string{"HTTP/1.1 200 OK\n", `host=\"a.example\"`, `header=[]`, hdKept}},
	{name: "absolute-form with an invalid Host field", handler: "reqinfo", req: "GET http://a.example/x HTTP/1.1\r\nHost: b c\r\n\r\n", n: 1,
		want: []string{"HTTP/1.1 400 Bad Request: malformed Host header\n", "== closed"}},
	{name: "request as the handler sees it", handler: "reqinfo", n: 1,
		req:  "POST /r?q=1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\nX-A: 2\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		want: []string{`method=\"POST\" host=\"x\" uri=\"/r?q=1\"`, `te=[\"chunked\"]`, `X-A=1|2`, `body=\"abc\"`, hdKept}},
	{name: "OPTIONS *", handler: "reqinfo", req: "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", n: 1,
		want: []string{"HTTP/1.1 200 OK\nContent-Length: 0\nDate: <date>\nbody \"\"", hdKept}},
	// After a CONNECT or a request with Upgrade the guard checks nothing
	// (the bytes may be another protocol): net/http reads them as HTTP
	// when the answer is not a 101, h1Conn closes instead (safer).
	{name: "CONNECT answered 200 closes", handler: "reqinfo", req: "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n", n: 1,
		want:   []string{"HTTP/1.1 200 OK\n", `method=\"CONNECT\" host=\"a.example:443\"`, hdKept},
		h1want: []string{"HTTP/1.1 200 OK\nConnection: close\n", `method=\"CONNECT\" host=\"a.example:443\"`, hdClosed}},
	{name: "Upgrade answered 200 closes", handler: "small", req: "GET /u HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: hd\r\n\r\n", n: 1,
		want:   []string{"HTTP/1.1 200 OK\n", "body \"hello /u\"", hdKept},
		h1want: []string{"HTTP/1.1 200 OK\nConnection: close\n", "body \"hello /u\"", hdClosed}},
	{name: "Expect with 100-continue among other tokens", handler: "echo", n: 1,
		req:  "POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue, x-other\r\n\r\nhello",
		want: []string{"HTTP/1.1 100 Continue\n", "HTTP/1.1 200 OK\n", "body \"got hello\"", hdKept}},
	{name: "Expect token separated by a space", handler: "echo", n: 1,
		req:  "POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-Continue x\r\n\r\nhello",
		want: []string{"HTTP/1.1 100 Continue\n", "HTTP/1.1 200 OK\n", "body \"got hello\"", hdKept}},
	{name: "HTTP 1.0 keep-alive token separated by a space", handler: "small", n: 1,
		req:  "GET /k HTTP/1.0\r\nConnection: keep-alive x\r\n\r\n",
		want: []string{"HTTP/1.0 200 OK\nConnection: keep-alive\n", hdKept}},
	{name: "HTTP 1.0 keep-alive decided by the header as sent", handler: "mutate-req", n: 1,
		req:  "GET /k HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
		want: []string{"HTTP/1.0 200 OK\nConnection: keep-alive\n", hdKept}},
	{name: "Transfer-Encoding identity set by the handler", handler: "te-identity", req: hdGet, n: 1,
		want: []string{"HTTP/1.1 200 OK\nConnection: close\n", "body \"body\"\n(body delimited by the close)\n== closed"}, not: []string{"Transfer-Encoding"}},
	{name: "Transfer-Encoding chunked set by the handler", handler: "te-chunked", req: hdGet, n: 1,
		want: []string{"Transfer-Encoding: chunked\nbody \"body\"\ntrailer\n", hdKept}},
	{name: "header fields with CR LF or bad names", handler: "bad-fields", req: hdGet, n: 1,
		want: []string{"X-Newline: a  Injected: 1\n", "body \"ok\"", hdKept}, not: []string{"X-Bad Name", "X-Split", "\nInjected"}},
	{name: "request body closed by the handler", handler: "close-body", n: 1,
		req:  "POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
		want: []string{"body \"closed\"", hdKept}},
	{name: "request body closed by the handler with a broken chunk", handler: "close-body", n: 1,
		req:  "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nB\r\nhello\r\nN\r\n world\r\n0\r\n\r\n",
		want: []string{"HTTP/1.1 200 OK\nConnection: close\n", "body \"closed\"", "== closed"}},
	{name: "hijack", handler: "hijack", req: hdGet, n: 1,
		want: []string{"HTTP/1.1 200 OK\nConnection: close\nContent-Length: 3\nbody \"hij\"", hdClosed}},
	{name: "101 then another protocol", handler: "upgrade", n: 1,
		req:  "GET /u HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: hd\r\n\r\n",
		want: []string{"HTTP/1.1 101 Switching Protocols\nConnection: Upgrade\nDate: <date>\nUpgrade: hd\n== probe sent\nupgraded\ncut in the head\n== closed"}},
	{name: "Content-Encoding set: no sniffing", handler: "content-encoding", req: hdGet, n: 1,
		want: []string{"HTTP/1.1 200 OK\nContent-Encoding: gzip\nContent-Length: 10\nDate: <date>\nbody", hdKept}, not: []string{"Content-Type"}},
	{name: "Content-Length and chunked both set by the handler", handler: "cl-and-te", req: hdGet, n: 1,
		want: []string{"HTTP/1.1 200 OK\n", "Transfer-Encoding: chunked\nbody \"body\"\ntrailer\n", hdKept}, not: []string{"Content-Length"}},
	// net/http announces keep-alive here, then drops the length (chunked
	// is set) and ends the body with the close: a client that trusts the
	// keep-alive cannot find the end. h1Conn announces nothing.
	{name: "HTTP 1.0 keep-alive with Content-Length and chunked set by the handler", handler: "cl-and-te", n: 1,
		req:    "GET /k HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
		want:   []string{"HTTP/1.0 200 OK\nConnection: keep-alive\nDate: <date>\nbody \"body\"\n(body delimited by the close)\n== closed"},
		h1want: []string{"HTTP/1.0 200 OK\nDate: <date>\nbody \"body\"\n(body delimited by the close)\n== closed"}},
	{name: "HTTP 1.0 keep-alive HEAD without a length", handler: "empty", req: "HEAD /k HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", n: 1,
		want: []string{"HTTP/1.0 200 OK\nConnection: keep-alive\nDate: <date>\n" + hdKept}},
	{name: "HTTP 1.0 keep-alive 204", handler: "204", req: "GET /k HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", n: 1,
		want: []string{"HTTP/1.0 204 No Content\nConnection: keep-alive\nDate: <date>\n" + hdKept}},
	{name: "Content-Type sniffed", handler: "sniff", req: hdGet, n: 1,
		want: []string{"Content-Type: text/html; charset=utf-8\n", hdKept}},
}

// hdInOrder reports the first of want not found in s after the previous one.
func hdInOrder(s string, want []string) (string, bool) {
	for _, w := range want {
		i := strings.Index(s, w)
		if i < 0 {
			return w, false
		}
		s = s[i+len(w):]
	}
	return "", true
}

// hdCompare runs req on both servers and reports every difference.
func hdCompare(t *testing.T, handler, req string, n int, half, same bool) (std, h1 hdResult) {
	t.Helper()
	var wg sync.WaitGroup
	wg.Go(func() { std = hdRun(t, "std", handler, req, n, half) })
	wg.Go(func() { h1 = hdRun(t, "h1", handler, req, n, half) })
	wg.Wait()
	if same && std.text != h1.text {
		t.Errorf("handler %s: h1Conn answered differently from net/http\n--- net/http:\n%s--- h1Conn:\n%s--- raw net/http: %q\n--- raw h1Conn: %q",
			handler, std.text, h1.text, hdCut(std.raw), hdCut(h1.raw))
	}
	if !slices.Equal(std.notes, h1.notes) {
		t.Errorf("handler %s: the handler saw different things\nnet/http: %q\nh1Conn:   %q", handler, std.notes, h1.notes)
	}
	return std, h1
}

func hdCut(s string) string {
	if len(s) > 600 {
		return s[:600] + "..."
	}
	return s
}

// TestHdH1ServerMatchesNetHTTP: h1Conn answers each case byte for byte as
// net/http does (after normalisation), and net/http's answer is the one
// expected.
func TestHdH1ServerMatchesNetHTTP(t *testing.T) {
	t.Parallel()
	for _, c := range hdCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			std, h1 := hdCompare(t, c.handler, c.req, c.n, c.half, c.h1want == nil)
			h1want := c.want
			if c.h1want != nil {
				h1want = c.h1want
			}
			for _, r := range []struct {
				who  string
				res  hdResult
				want []string
			}{{"net/http", std, c.want}, {"h1Conn", h1, h1want}} {
				if miss, ok := hdInOrder(r.res.text, r.want); !ok {
					t.Errorf("%s: want %q (in order) in\n%s", r.who, miss, r.res.text)
				}
				ours, _, _ := strings.Cut(r.res.text, "== probe sent")
				for _, no := range c.not {
					if strings.Contains(ours, no) {
						t.Errorf("%s: %q must not be in\n%s", r.who, no, r.res.text)
					}
				}
			}
		})
	}
}

// hdFuzzHandlers are the handlers a fuzzed byte picks from.
var hdFuzzHandlers = []string{"small", "empty", "big", "cl-exact", "cl-short", "flush", "204", "304", "103",
	"trailers", "conn-close", "echo", "noread", "sniff", "cl-long", "header-after-write", "reqinfo", "mutate-req",
	"te-identity", "bad-fields", "close-body", "100-explicit", "content-encoding", "abort-buffered", "prefix-trailer",
	"prefix-trailer-late"}

// FuzzH1ServerMatchesNetHTTP sends fuzzed request bytes, then the probe,
// to both servers with a handler chosen by a fuzzed byte, and compares
// everything they answer until they close. Inputs that end inside a head
// or a body are skipped (a server would wait for the rest), as are those
// with a CONNECT or an Upgrade field (h1Conn closes after them on purpose:
// see the table's cases).
func FuzzH1ServerMatchesNetHTTP(f *testing.F) {
	for _, c := range hdCases {
		k := slices.Index(hdFuzzHandlers, c.handler)
		if complete, up := hdScan([]byte(c.req)); !c.half && k >= 0 && len(c.req) < 64<<10 && complete && !up {
			f.Add(byte(k), []byte(c.req))
		}
	}
	f.Fuzz(func(t *testing.T, which byte, req []byte) {
		if complete, up := hdScan(req); len(req) > 64<<10 || !complete || up {
			return
		}
		handler := hdFuzzHandlers[int(which)%len(hdFuzzHandlers)]
		hdCompare(t, handler, string(req)+hdProbe, -1, false, true)
	})
}
