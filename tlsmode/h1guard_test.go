package tlsmode

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// feedConn is the client side as the guard sees it: data arrives step bytes
// at a time (0 = as much as asked), then EOF.
type feedConn struct {
	net.Conn // nil: other methods are not used
	data     []byte
	step     int
}

func (c *feedConn) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	if c.step > 0 && len(p) > c.step {
		p = p[:c.step]
	}
	n := copy(p, c.data)
	c.data = c.data[n:]
	return n, nil
}

func (c *feedConn) SetReadDeadline(time.Time) error  { return nil }
func (c *feedConn) SetWriteDeadline(time.Time) error { return nil }
func (c *feedConn) Close() error                     { return nil }

const guardTestMaxHeader = 1024 // MaxHeaderBytes of the unit tests: heads up to 5116 bytes

// guardRun feeds in through a guard, arriving step bytes at a time and read
// rsize bytes at a time, and returns what net/http would read up to EOF
// (at most len(in)+200 bytes: the 431 substitute is endless) and the
// violation.
func guardRun(in string, step, rsize int) (out string, violation string) {
	g := newH1Guard(&feedConn{data: []byte(in), step: step}, guardTestMaxHeader, 0)
	var b bytes.Buffer
	p := make([]byte, rsize)
	for b.Len() <= len(in)+200 {
		n, err := g.Read(p)
		b.Write(p[:n])
		if err != nil {
			break
		}
	}
	return b.String(), g.Violation()
}

// What net/http reads in place of a refused request.
const (
	sub400  = "BAD\r\n\r\n"
	sub501  = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"
	sub431  = "GET / HTTP/1.1\r\nX: aaaa"
	subBody = "X\r\n"
)

const (
	getA  = "GET /a HTTP/1.1\r\nHost: a.example.com\r\n\r\n"
	postB = "POST /b HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: 5\r\n\r\nhello"
	postC = "POST /c HTTP/1.1\r\nHost: a.example.com\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n"
	headX = "POST /x HTTP/1.1\r\nHost: a.example.com\r\n"
)

// guardCase is one request stream and what the guard makes of it: the
// bytes net/http reads (pass: the first pass bytes of in, then sub) and the
// reason; status is what net/http answers to the substitute (0: nothing
// refused).
type guardCase struct {
	name   string
	in     string
	pass   int // bytes of in let through; -1 = all
	sub    string
	status int
	reason string
}

var guardCases = []guardCase{
	// Let through, byte for byte.
	{"one GET", getA, -1, "", 0, ""},
	{"pipelined GET, CL POST, chunked POST with extension and trailer", getA + postB + postC + getA, -1, "", 0, ""},
	{"request smuggled inside a Content-Length body is body", "POST /s HTTP/1.1\r\nHost: a\r\nContent-Length: 41\r\n\r\n" + getA, -1, "", 0, ""},
	{"identical Content-Length twice", headX + "Content-Length: 1\r\nContent-Length: 1\r\n\r\nx" + getA, -1, "", 0, ""},
	{"Transfer-Encoding Chunked in any case, with OWS", headX + "Transfer-Encoding:  ChUnKeD \r\n\r\n0\r\n\r\n" + getA, -1, "", 0, ""},
	{"HTAB and obs-text in a field value", "GET / HTTP/1.1\r\nHost: a\r\nX-V: a\tb \xe9\r\n\r\n", -1, "", 0, ""},
	{"HTTP/1.0", "GET / HTTP/1.0\r\n\r\n", -1, "", 0, ""},
	{"HEAD with a Content-Length body", "HEAD /h HTTP/1.1\r\nHost: a\r\nContent-Length: 005\r\n\r\nhello" + getA, -1, "", 0, ""},
	{"two empty lines after a POST body", postB + "\r\n\r\n" + getA, -1, "", 0, ""},
	{"websocket upgrade: frames after the head pass unchecked", "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x85\x00\x00\x00\x00hello\nGET /x\n\n", -1, "", 0, ""},
	{"CONNECT: what follows passes unchecked", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n\x16\x03\x01\x00\x00", -1, "", 0, ""},

	// Refused heads: 400 (501, 431) and nothing of them reaches net/http.
	{"TE and CL", headX + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0, sub400, 400, "bad request: Transfer-Encoding with Content-Length"},
	{"CL and TE, then a pipelined request", headX + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n" + getA, 0, sub400, 400, "bad request: Transfer-Encoding with Content-Length"},
	{"TE and CL on the second request", getA + headX + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", len(getA), sub400, 400, "bad request: Transfer-Encoding with Content-Length"},
	{"bare LF line endings", "GET / HTTP/1.1\nHost: a\n\n", 0, sub400, 400, "bad request: bare LF line ending in the request head"},
	{"bare LF in one field line", "GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n", 0, sub400, 400, "bad request: bare LF line ending in the request head"},
	{"bare LF ending the head", "GET / HTTP/1.1\r\nHost: a\r\n\n", 0, sub400, 400, "bad request: bare LF line ending in the request head"},
	{"bare CR in a field value", "GET / HTTP/1.1\r\nHost: a\r\nX: 1\r2\r\n\r\n", 0, sub400, 400, "bad request: bare CR in the request head"},
	{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n", 0, sub400, 400, "bad request: obs-fold (a field line starting with whitespace)"},
	{"obs-fold with HTAB hiding a Transfer-Encoding", headX + "X: 1\r\n\tTransfer-Encoding: chunked\r\n\r\n", 0, sub400, 400, "bad request: obs-fold (a field line starting with whitespace)"},
	{"whitespace before the colon", headX + "Transfer-Encoding : chunked\r\n\r\n", 0, sub400, 400, "bad request: invalid field name"},
	{"field line without a colon", "GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", 0, sub400, 400, "bad request: invalid field name"},
	{"NUL in a field value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 0, sub400, 400, "bad request: control byte 0x00 in the request head"},
	{"DEL in a field value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", 0, sub400, 400, "bad request: control byte 0x7f in the request head"},
	{"vertical tab in a field value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x0bb\r\n\r\n", 0, sub400, 400, "bad request: control byte 0x0b in the request head"},
	{"HTAB in the request line", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 0, sub400, 400, "bad request: control byte 0x09 in the request line"},
	{"two spaces in the request line", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 0, sub400, 400, "bad request: malformed request line"},
	{"HTTP/2 preface on an HTTP/1 connection", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 0, sub400, 400, `bad request: unsupported HTTP version "HTTP/2.0"`},
	{"empty line before the request line", "\r\n" + getA, 0, sub400, 400, "bad request: empty line before the request line"},
	{"three empty lines after a POST", postB + "\r\n\r\n\r\n" + getA, len(postB) + 4, sub400, 400, "bad request: empty line before the request line"},
	{"TE gzip, chunked: 501", headX + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 0, sub501, 501, `not implemented: transfer coding "gzip, chunked"`},
	{"TE identity", headX + "Transfer-Encoding: identity\r\n\r\n", 0, sub400, 400, `bad request: Transfer-Encoding "identity" is not chunked alone`},
	{"TE chunked, gzip", headX + "Transfer-Encoding: chunked, gzip\r\n\r\n", 0, sub400, 400, `bad request: Transfer-Encoding "chunked, gzip" is not chunked alone`},
	{"TE chunked twice in one line", headX + "Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 0, sub400, 400, `bad request: Transfer-Encoding "chunked, chunked" is not chunked alone`},
	{"TE on two lines", headX + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0, sub400, 400, "bad request: several Transfer-Encoding field lines"},
	{"TE xchunked", headX + "Transfer-Encoding: xchunked\r\n\r\n", 0, sub400, 400, `bad request: Transfer-Encoding "xchunked" is not chunked alone`},
	{"TE in an HTTP/1.0 request", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0, sub400, 400, "bad request: Transfer-Encoding in an HTTP/1.0 request"},
	{"differing Content-Length", headX + "Content-Length: 1\r\nContent-Length: 2\r\n\r\nxx", 0, sub400, 400, "bad request: several differing Content-Length"},
	{"Content-Length 1 and 01", headX + "Content-Length: 1\r\nContent-Length: 01\r\n\r\nx", 0, sub400, 400, "bad request: several differing Content-Length"},
	{"Content-Length list", headX + "Content-Length: 1, 1\r\n\r\nx", 0, sub400, 400, `bad request: invalid Content-Length "1, 1"`},
	{"Content-Length +5", headX + "Content-Length: +5\r\n\r\nhello", 0, sub400, 400, `bad request: invalid Content-Length "+5"`},
	{"Content-Length hex", headX + "Content-Length: 0x5\r\n\r\nhello", 0, sub400, 400, `bad request: invalid Content-Length "0x5"`},
	{"Content-Length empty", headX + "Content-Length:\r\n\r\n", 0, sub400, 400, `bad request: invalid Content-Length ""`},
	{"head too large: 431", "GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("a", 6000) + "\r\n\r\n", 0, sub431, 431, "request head too large: over max_header_bytes 1024"},

	// Refused inside a chunked body: the head went on; net/http's chunked
	// reader gets a line it refuses.
	{"bare LF after a chunk size", headX + "Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", len(headX) + 30, subBody, 400, "bad request: bare LF line ending in a chunk size line"},
	{"chunk data longer than its size, smuggling a request", headX + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc" + getA + "0\r\n\r\n", len(headX) + 36, subBody, 400, "bad request: chunk data not followed by CRLF"},
	{"chunk size with trailing space", headX + "Transfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n", len(headX) + 30, subBody, 400, `bad request: malformed chunk size "5 "`},
	{"chunk size 0x5", headX + "Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", len(headX) + 30, subBody, 400, `bad request: malformed chunk size "0x5"`},
	{"chunk size too large", headX + "Transfer-Encoding: chunked\r\n\r\n10000000000000000\r\n", len(headX) + 30, subBody, 400, `bad request: malformed chunk size "10000000000000000"`},
	{"NUL in a chunk extension", headX + "Transfer-Encoding: chunked\r\n\r\n5;a=\x00\r\nhello\r\n0\r\n\r\n", len(headX) + 30, subBody, 400, "bad request: control byte 0x00 in a chunk size line"},
	{"Content-Length in the trailer", headX + "Transfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 5\r\n\r\n" + getA, len(headX) + 33, subBody, 400, `bad request: framing field "Content-Length" in the trailer section`},
	{"obs-fold in the trailer", headX + "Transfer-Encoding: chunked\r\n\r\n0\r\nX: 1\r\n 2\r\n\r\n", len(headX) + 33, subBody, 400, "bad request: obs-fold (a field line starting with whitespace)"},
	{"bare LF ending the trailer", headX + "Transfer-Encoding: chunked\r\n\r\n0\r\n\n", len(headX) + 33, subBody, 400, "bad request: bare LF line ending in the trailer section"},
	{"chunk size line too long", headX + "Transfer-Encoding: chunked\r\n\r\n1;" + strings.Repeat("x", 4001) + "\r\nX\r\n0\r\n\r\n", len(headX) + 30, subBody, 400, "bad request: chunk size line too long"},
	{"trailer section too large", headX + "Transfer-Encoding: chunked\r\n\r\n0\r\nX: " + strings.Repeat("a", 5000) + "\r\n\r\n", len(headX) + 33, subBody, 400, "bad request: trailer section too large"},
	{"chunked body with too many non-data bytes", headX + "Transfer-Encoding: chunked\r\n\r\n" + strings.Repeat("1;"+strings.Repeat("x", 900)+"\r\nX\r\n", 20), len(headX) + 30 + 18*(904+3), subBody, 400, "bad request: chunked body with too many non-data bytes"},
}

func (tc guardCase) want() string {
	pass := tc.pass
	if pass < 0 {
		pass = len(tc.in)
	}
	return tc.in[:pass] + tc.sub
}

// Each stream, delivered and read in pieces of several sizes, comes out
// exactly as the table says.
func TestH1GuardTable(t *testing.T) {
	for _, tc := range guardCases {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.want()
			for _, step := range []int{0, 1, 2, 7, 64} {
				for _, rsize := range []int{1, 3, 4096} {
					out, v := guardRun(tc.in, step, rsize)
					if tc.sub == sub431 && strings.HasPrefix(out, want) {
						out = want // the rest is more of the endless head
					}
					if out != want || v != tc.reason {
						t.Fatalf("arriving %d, read %d at a time: got %.200q, reason %q; want %.200q, reason %q", step, rsize, out, v, want, tc.reason)
					}
				}
			}
		})
	}
}

// The same streams against net/http itself, over TCP: a refused stream is
// answered with the table's status and the connection closed, and no
// handler sees the refused request or anything after it.
func TestH1GuardWithNetHTTP(t *testing.T) {
	for _, tc := range guardCases {
		if tc.status == 0 {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a, b := tcpPair(t)
			g := newH1Guard(a, guardTestMaxHeader, 0)
			var mu sync.Mutex
			var seen []string
			srv := &http.Server{
				MaxHeaderBytes: guardTestMaxHeader,
				Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					mu.Lock()
					seen = append(seen, r.URL.Path)
					mu.Unlock()
					if _, err := io.Copy(io.Discard, r.Body); err != nil {
						// As the proxy answers a body the guard cut.
						w.Header().Set("Connection", "close")
						http.Error(w, "bad body", http.StatusBadRequest)
					}
				}),
			}
			ln := newOneConnListener(g)
			defer ln.Close()
			go func() { _ = srv.Serve(ln) }()
			defer srv.Close()
			go func() { _, _ = b.Write([]byte(tc.in)) }()
			_ = b.SetDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(b)
			var statuses []int
			for {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					break
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				statuses = append(statuses, resp.StatusCode)
				if resp.Close {
					break
				}
			}
			if len(statuses) == 0 || statuses[len(statuses)-1] != tc.status {
				t.Fatalf("statuses %v; want the last one %d", statuses, tc.status)
			}
			for _, s := range statuses[:len(statuses)-1] {
				if s != 200 {
					t.Errorf("statuses %v; want 200 before the refusal", statuses)
				}
			}
			if _, err := br.ReadByte(); err == nil {
				t.Errorf("read more after the %d; want the connection closed", tc.status)
			}
			b.Close() // the client goes: the guard's linger ends
			mu.Lock()
			defer mu.Unlock()
			if want := letThrough(tc.in[:tc.pass]); strings.Join(seen, " ") != strings.Join(want, " ") {
				t.Errorf("handled %q; want %q (nothing from the refused request on)", seen, want)
			}
			if g.Violation() != tc.reason {
				t.Errorf("reason %q; want %q", g.Violation(), tc.reason)
			}
		})
	}
}

// letThrough lists the paths of the requests whose heads are in s (the
// last one's body may be cut), as net/http reads them.
func letThrough(s string) []string {
	var paths []string
	br := bufio.NewReader(strings.NewReader(s))
	for {
		if b, _ := br.Peek(2); string(b) == "\r\n" {
			_, _ = br.Discard(2)
			continue
		}
		req, err := http.ReadRequest(br)
		if err != nil {
			return paths
		}
		paths = append(paths, req.URL.Path)
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return paths
		}
	}
}

// ---------------------------------------------------------------- fuzzing

var (
	refToken   = "[!#$%&'*+.^_`|~0-9A-Za-z-]+"
	refReqLine = regexp.MustCompile("^" + refToken + " [^\x00-\x20\x7f]+ HTTP/1\\.[01]$")
	refField   = regexp.MustCompile("^(" + refToken + "):[^\x00-\x08\x0a-\x1f\x7f]*$") // HTAB, printable ASCII, obs-text
)

// refHead is an independent strict check of one head (RFC 9112 §2-§6),
// written differently from the guard: the head (with its final CRLF CRLF)
// must be CRLF lines of printable bytes, a request line, field lines, and
// unambiguous framing. It returns the method, whether the guard stops after
// it (Upgrade, CONNECT), and an error for a head a strict server refuses.
func refHead(head string) (method string, stop bool, err error) {
	if !strings.HasSuffix(head, "\r\n\r\n") {
		return "", false, fmt.Errorf("no CRLF CRLF at the end")
	}
	body := head[:len(head)-4]
	if strings.Count(head, "\n") != strings.Count(head, "\r\n") || strings.Count(head, "\r") != strings.Count(head, "\r\n") {
		return "", false, fmt.Errorf("bare LF or CR")
	}
	lines := strings.Split(body, "\r\n")
	if !refReqLine.MatchString(lines[0]) {
		return "", false, fmt.Errorf("request line %q", lines[0])
	}
	method = lines[0][:strings.IndexByte(lines[0], ' ')]
	http10 := strings.HasSuffix(lines[0], "HTTP/1.0")
	var cls, tes []string
	for _, l := range lines[1:] {
		m := refField.FindStringSubmatch(l)
		if m == nil {
			return "", false, fmt.Errorf("field line %q", l)
		}
		v := strings.Trim(l[len(m[1])+1:], " \t")
		switch strings.ToLower(m[1]) {
		case "content-length":
			if !regexp.MustCompile(`^[0-9]{1,18}$`).MatchString(v) || (len(cls) > 0 && cls[0] != v) {
				return "", false, fmt.Errorf("content-length %q", v)
			}
			cls = append(cls, v)
		case "transfer-encoding":
			tes = append(tes, v)
		case "upgrade":
			stop = true
		}
	}
	if len(tes) > 0 && (len(tes) > 1 || len(cls) > 0 || http10 || !strings.EqualFold(tes[0], "chunked")) {
		return "", false, fmt.Errorf("transfer-encoding %q with content-length %q", tes, cls)
	}
	return method, stop || method == "CONNECT", nil
}

// FuzzH1Guard: for any bytes, the guard never panics; what it lets through
// is a prefix of the input followed by at most one substitute; every head
// in that prefix passes the strict reference check; and net/http's own
// parser reads that prefix as whole requests ending exactly where the
// guard's view of them ends (no desync), up to an Upgrade or CONNECT.
func FuzzH1Guard(f *testing.F) {
	for _, tc := range guardCases {
		f.Add([]byte(tc.in), uint8(0))
		f.Add([]byte(tc.in), uint8(3))
	}
	f.Fuzz(func(t *testing.T, in []byte, step uint8) {
		if len(in) > 1<<16 {
			return
		}
		// A hang is a finding too: crash with the input.
		wd := time.AfterFunc(5*time.Second, func() { panic(fmt.Sprintf("HANG step %d in %q", step, in)) })
		defer wd.Stop()
		out, v := guardRun(string(in), int(step), 4096)
		pass := out
		if v != "" {
			var found bool
			for _, sub := range []string{sub400, sub501, subBody} {
				if strings.HasSuffix(out, sub) {
					pass, found = strings.TrimSuffix(out, sub), true
					break
				}
			}
			if i := strings.LastIndex(out, sub431); !found && i >= 0 && strings.Trim(out[i+len(sub431):], "a") == "" {
				pass, found = out[:i], true
			}
			if !found {
				t.Fatalf("refused (%s) but the output does not end in a substitute: %q", v, out)
			}
		}
		if !strings.HasPrefix(string(in), pass) {
			t.Fatalf("output is not a prefix of the input:\nin  %q\nout %q", in, pass)
		}
		// Walk the let-through bytes as net/http does.
		rest := pass
		afterPOST := false
		for len(rest) > 0 {
			if afterPOST {
				for i := 0; i < 2 && strings.HasPrefix(rest, "\r\n"); i++ {
					rest = rest[2:]
				}
				if rest == "" {
					break
				}
			}
			end := strings.Index(rest, "\r\n\r\n")
			if end < 0 {
				t.Fatalf("let through a partial head %q (reason %q)", rest, v)
			}
			method, stop, err := refHead(rest[:end+4])
			if err != nil {
				t.Fatalf("let through a head a strict parser refuses (%v): %q", err, rest[:end+4])
			}
			if stop {
				return // the rest is another protocol's
			}
			r := strings.NewReader(rest)
			br := bufio.NewReader(r)
			req, err := http.ReadRequest(br)
			if err != nil {
				return // net/http refuses the head itself (400) and closes: nothing after it is read
			}
			_, err = io.Copy(io.Discard, req.Body)
			consumed := len(rest) - r.Len() - br.Buffered()
			if err != nil {
				if consumed != len(rest) {
					t.Fatalf("net/http stopped in a body (%v) before the let-through bytes end: %d of %q", err, consumed, rest)
				}
				return // the body was cut: by a violation or by the input's end
			}
			rest = rest[consumed:]
			afterPOST = method == "POST"
		}
	})
}

// Slowloris on a keep-alive connection: net/http bounds only the first
// head by read_header_timeout (it waits for the next with the idle
// timeout); the guard bounds every head from its first byte, and says so.
func TestH1GuardHeadTimeout(t *testing.T) {
	a, b := tcpPair(t)
	g := newH1Guard(a, guardTestMaxHeader, 200*time.Millisecond)
	if _, err := io.WriteString(b, getA+"GET /slow HTTP/1.1\r\nHo"); err != nil {
		t.Fatal(err)
	}
	// The first request passes; the partial second one is cut.
	got := make([]byte, len(getA))
	if _, err := io.ReadFull(g, got); err != nil || string(got) != getA {
		t.Fatalf("first request: got %q, %v; want it whole", got, err)
	}
	_ = g.SetReadDeadline(time.Now().Add(10 * time.Second)) // net/http's idle timeout, much later
	start := time.Now()
	n, err := g.Read(make([]byte, 10))
	if took := time.Since(start); n != 0 || !isTimeout(err) || took > 5*time.Second {
		t.Errorf("partial head: got %d bytes, %v after %v; want a timeout after read_header_timeout 200ms", n, err, took)
	}
	const want = "client timeout: request head incomplete after read_header_timeout 200ms"
	if g.Reason() != want || g.Violation() != "" {
		t.Errorf("reason %q, violation %q; want %q and no violation", g.Reason(), g.Violation(), want)
	}
	// net/http's own deadline, when sooner, still applies and is not ours.
	a2, b2 := tcpPair(t)
	g2 := newH1Guard(a2, guardTestMaxHeader, 10*time.Second)
	_, _ = io.WriteString(b2, "GET / HTTP/1.1\r\nHo")
	_ = g2.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	start = time.Now()
	if _, err := g2.Read(make([]byte, 10)); !isTimeout(err) || time.Since(start) > 5*time.Second {
		t.Errorf("net/http's deadline: got %v after %v; want a timeout at 100ms", err, time.Since(start))
	}
	if g2.Reason() != "client timeout: incomplete request" {
		t.Errorf("reason %q; want %q", g2.Reason(), "client timeout: incomplete request")
	}
}
