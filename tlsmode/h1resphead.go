package tlsmode

// How the lean forward reads a server's response head. When the whole head
// is in the reader's buffer and is plain (HTTP/1.0 or 1.1, every line ended
// by CRLF, field names that are tokens, values of visible characters, no
// obs-fold, no Transfer-Encoding or Trailer field, at most one
// Content-Length and made of digits), it is parsed where it lies: one
// string for the head, the names and values cut from it, the header's
// value slices from one array. Anything else goes to http.ReadResponse,
// which reads it as it always did. What the fast path returns is what
// http.ReadResponse returns for the same bytes: status, protocol, header,
// length, Close, body and what is left after it (FuzzLeanResponseHead).

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/textproto"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// readUpResponse reads a response head from br, as http.ReadResponse.
func readUpResponse(br *bufio.Reader, req *http.Request) (*http.Response, error) {
	if _, err := br.Peek(1); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF // http.ReadResponse's
		}
		return nil, err
	}
	if resp := leanResponseHead(br, req); resp != nil {
		return resp, nil
	}
	return http.ReadResponse(br, req)
}

// leanResponseHead parses a plain head that br holds whole and takes it
// from br; nil (and br as it was) for any other.
func leanResponseHead(br *bufio.Reader, req *http.Request) *http.Response {
	s, line, end, ok := bufferedHead(br)
	if !ok {
		return nil
	}
	if len(line) < 12 || line[:7] != "HTTP/1." || (line[7] != '0' && line[7] != '1') || line[8] != ' ' {
		return nil
	}
	for i := 9; i < len(line); i++ {
		if !h1ValueByte[line[i]] {
			return nil
		}
	}
	status := strings.TrimLeft(line[9:], " ")
	if len(status) < 3 || (len(status) > 3 && status[3] != ' ') {
		return nil
	}
	code := 0
	for _, c := range []byte(status[:3]) {
		if c < '0' || c > '9' {
			return nil
		}
		code = code*10 + int(c-'0')
	}
	h, ok := leanFields(s[len(line)+2:])
	if !ok {
		return nil
	}
	if _, te := h["Transfer-Encoding"]; te {
		return nil
	}
	if _, tr := h["Trailer"]; tr {
		return nil
	}
	cl := int64(-1)
	if v, ok := h["Content-Length"]; ok {
		if cl = leanLength(v); cl < 0 {
			return nil
		}
	}
	resp := &http.Response{
		Status: status, StatusCode: code, Proto: line[:8], ProtoMajor: 1, ProtoMinor: int(line[7] - '0'),
		Header: h, Request: req,
	}
	// net/http's shouldClose (the Connection field goes with its close).
	conn := h["Connection"]
	hasClose := httpguts.HeaderValuesContainsToken(conn, "close")
	if resp.ProtoMinor == 0 {
		resp.Close = hasClose || !httpguts.HeaderValuesContainsToken(conn, "keep-alive")
	} else if hasClose {
		resp.Close = true
		delete(h, "Connection")
	}
	// net/http's fixLength and readTransfer, with no chunked coding.
	switch {
	case req != nil && req.Method == http.MethodHead:
		resp.ContentLength, resp.Body = cl, http.NoBody
	case code/100 == 1 || code == http.StatusNoContent || code == http.StatusNotModified:
		resp.Body = http.NoBody
	case cl == 0:
		resp.Body = http.NoBody
	case cl > 0:
		resp.ContentLength, resp.Body = cl, &leanBody{r: br, n: cl}
	default: // to the connection's end
		resp.ContentLength, resp.Body, resp.Close = -1, &leanBody{r: br, n: -1}, true
	}
	_, _ = br.Discard(end)
	return resp
}

// bufferedHead returns the head br holds whole, as one string: its lines
// with their CRLFs but the empty one's; the first line; the head's length
// in br with the empty line. Not ok when the empty line is not buffered.
func bufferedHead(br *bufio.Reader) (s, first string, end int, ok bool) {
	buf, _ := br.Peek(br.Buffered())
	end = bytes.Index(buf, []byte("\r\n\r\n")) + 4
	if end < 4 {
		return "", "", 0, false
	}
	s = string(buf[:end-2])
	return s, s[:strings.Index(s, "\r\n")], end, true
}

// leanFields parses a head's field lines (each ended by CRLF) as
// textproto.ReadMIMEHeader and net/http's fixPragmaCacheControl do; not ok
// when a line is not plain (a name that is no token, a value byte
// textproto refuses, obs-fold). The values are cut from fields, and their
// slices from one array.
func leanFields(fields string) (http.Header, bool) {
	n := strings.Count(fields, "\r\n")
	h := make(http.Header, n)
	strs := make([]string, n)
	for len(fields) > 0 {
		eol := strings.Index(fields, "\r\n")
		l := fields[:eol]
		fields = fields[eol+2:]
		colon := strings.IndexByte(l, ':')
		if colon <= 0 {
			return nil, false
		}
		for i := range colon {
			if !h1TokenByte[l[i]] {
				return nil, false
			}
		}
		for i := colon + 1; i < len(l); i++ {
			if !h1ValueByte[l[i]] {
				return nil, false
			}
		}
		key := textproto.CanonicalMIMEHeaderKey(l[:colon]) // l[:colon] itself when canonical
		v := strings.Trim(l[colon+1:], " \t")
		if vv, ok := h[key]; ok {
			h[key] = append(vv, v)
		} else {
			vv, strs = strs[:1:1], strs[1:]
			vv[0] = v
			h[key] = vv
		}
	}
	if hp := h["Pragma"]; len(hp) > 0 && hp[0] == "no-cache" {
		if _, ok := h["Cache-Control"]; !ok {
			h["Cache-Control"] = []string{"no-cache"}
		}
	}
	return h, true
}

// leanLength is the length of one Content-Length field of digits (up to
// 18), -1 for any other.
func leanLength(v []string) int64 {
	if len(v) != 1 || len(v[0]) == 0 || len(v[0]) > 18 {
		return -1
	}
	n := int64(0)
	for _, c := range []byte(v[0]) {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

// leanBody is a response body as net/http's body reads it: n bytes
// (Content-Length; io.ErrUnexpectedEOF when the connection ends before),
// or to the connection's end (n < 0). io.EOF comes with the last bytes.
type leanBody struct {
	r   *bufio.Reader
	n   int64
	eof bool
}

func (b *leanBody) Read(p []byte) (int, error) {
	if b.eof {
		return 0, io.EOF
	}
	if b.n >= 0 && int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.r.Read(p)
	if b.n >= 0 {
		b.n -= int64(n)
		switch {
		case b.n == 0 && (err == nil || err == io.EOF):
			err = io.EOF // the last bytes, with or without the conn's end
		case err == io.EOF:
			err = io.ErrUnexpectedEOF // before its length
		}
	}
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		b.eof = true
	}
	return n, err
}

// Close does not read the rest, and a Read after it is not refused (net/
// http's body does both): the lean forward reads a body to its end or
// closes the connection before Close, and reads nothing after.
func (b *leanBody) Close() error { return nil }

// h1TokenByte: the bytes of an RFC 9110 token (a field name); h1ValueByte:
// those textproto takes in a field value (VCHAR, SP, HTAB, obs-text).
var h1TokenByte, h1ValueByte = func() (t, v [256]bool) {
	for c := range 256 {
		b := byte(c)
		t[c] = 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0
		v[c] = b == ' ' || b == '\t' || (b > 0x20 && b != 0x7f)
	}
	return
}()
