package tlsmode

// How tlsedge's HTTP/1.x server reads a request head it serves. A plain
// head with no body (origin-form target, HTTP/1.0 or 1.1, CRLF lines,
// fields as leanFields takes them, no Content-Length, Transfer-Encoding or
// Trailer field, one Host field at most) that the reader holds whole is
// parsed where it lies, as the guard (h1guard.go) checked it already:
// one string for the head, no textproto reader. Anything else goes to
// http.ReadRequest. What the fast path returns is what http.ReadRequest
// returns for the same bytes (FuzzLeanRequestHead).

import (
	"bufio"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// readRequestHead reads a request head from br, as http.ReadRequest.
func readRequestHead(br *bufio.Reader) (*http.Request, error) {
	if _, err := br.Peek(1); err == nil {
		if req := leanRequestHead(br); req != nil {
			return req, nil
		}
	}
	return http.ReadRequest(br)
}

// leanRequestHead parses a plain head with no body that br holds whole
// and takes it from br; nil (and br as it was) for any other.
func leanRequestHead(br *bufio.Reader) *http.Request {
	s, line, end, ok := bufferedHead(br)
	if !ok {
		return nil
	}
	for i := range len(line) {
		if c := line[i]; c <= ' ' && c != ' ' || c == 0x7f {
			return nil
		}
	}
	method, rest, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || method == "" || target == "" || target[0] != '/' || (proto != "HTTP/1.1" && proto != "HTTP/1.0") {
		return nil
	}
	for i := range len(method) {
		if !h1TokenByte[method[i]] {
			return nil
		}
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil
	}
	h, ok := leanFields(s[len(line)+2:])
	if !ok {
		return nil
	}
	for _, k := range []string{"Content-Length", "Transfer-Encoding", "Trailer"} {
		if _, ok := h[k]; ok {
			return nil
		}
	}
	hv := h["Host"]
	if len(hv) > 1 {
		return nil
	}
	host := u.Host
	if host == "" && len(hv) == 1 {
		host = hv[0]
	}
	delete(h, "Host")
	req := &http.Request{
		Method: method, URL: u, Proto: proto, ProtoMajor: 1, ProtoMinor: int(proto[7] - '0'),
		Header: h, Body: http.NoBody, Host: host, RequestURI: target,
	}
	// net/http's shouldClose, for a request (its Connection field stays).
	conn := h["Connection"]
	if req.ProtoMinor == 0 {
		req.Close = !httpguts.HeaderValuesContainsToken(conn, "keep-alive") || httpguts.HeaderValuesContainsToken(conn, "close")
	} else {
		req.Close = httpguts.HeaderValuesContainsToken(conn, "close")
	}
	_, _ = br.Discard(end)
	return req
}
