package tlsmode

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// The HTTP/1.x request guard's parser: the states of h1Guard (see
// h1guard.go) that check request heads, Content-Length and chunked bodies
// and trailers on the raw bytes, and the RFC 9110 character classes they
// use.

// step checks what is buffered in the current state. It reports whether
// it released bytes or changed state, or the violation found.
func (g *h1Guard) step() (bool, *h1Violation) {
	in := g.buf[g.r:g.w]
	switch g.st {
	case h1Head:
		return g.stepHead(in)
	case h1Body, h1ChunkData:
		n := int(min(int64(len(in)), g.left))
		if n == 0 {
			return false, nil
		}
		g.release(n)
		g.passed(int64(n))
		return true, nil
	case h1Pass:
		if len(in) == 0 {
			return false, nil
		}
		g.release(len(in))
		return true, nil
	case h1ChunkEnd:
		if len(in) < 2 {
			if len(in) == 1 && in[0] != '\r' {
				return false, h1Bad("chunk data not followed by CRLF")
			}
			return false, nil
		}
		if in[0] != '\r' || in[1] != '\n' {
			return false, h1Bad("chunk data not followed by CRLF")
		}
		g.release(2)
		g.st = h1ChunkLine
		return true, nil
	case h1ChunkLine:
		return g.stepChunkLine(in)
	case h1Trailer:
		return g.stepTrailer(in)
	}
	return false, nil
}

func h1Bad(reason string) *h1Violation {
	return &h1Violation{status: 400, reason: "bad request: " + reason}
}

// nextLine finds the next CRLF-terminated line of in from g.scan, at most
// max bytes from in's start. It returns the line without CRLF and the
// offset after it; end == 0 when the line is not complete yet. tooLong
// makes the violation of a line past max (only then: it allocates).
func (g *h1Guard) nextLine(in []byte, max int, tooLong func() *h1Violation, where string) (line []byte, end int, v *h1Violation) {
	i := bytes.IndexByte(in[g.scan:], '\n')
	if i < 0 {
		if len(in) > max {
			return nil, 0, tooLong()
		}
		return nil, 0, nil
	}
	end = g.scan + i + 1
	if end > max {
		return nil, 0, tooLong()
	}
	if i == 0 || in[end-2] != '\r' {
		return nil, 0, h1Bad("bare LF line ending in " + where)
	}
	return in[g.scan : end-2], end, nil
}

// headTooLarge is the violation of a request head over max_header_bytes.
func (g *h1Guard) headTooLarge() *h1Violation {
	return &h1Violation{status: 431, reason: fmt.Sprintf("request head too large: over max_header_bytes %d", g.maxHead-4096+4)}
}

// chunkLineTooLong and trailerTooLarge are the violations of a chunk size
// line and a trailer section past their caps.
func chunkLineTooLong() *h1Violation { return h1Bad("chunk size line too long") }
func trailerTooLarge() *h1Violation  { return h1Bad("trailer section too large") }

func (g *h1Guard) stepHead(in []byte) (bool, *h1Violation) {
	if len(in) == 0 {
		return false, nil
	}
	g.setHeadClock(true)
	if g.head.lines == 0 && g.scan == 0 && g.afterPOST && g.skipped < 4 && in[0] == '\r' {
		if len(in) < 2 {
			return false, nil
		}
		if in[1] == '\n' {
			g.skipped += 2
			g.release(2)
			return true, nil
		}
	}
	for {
		line, end, v := g.nextLine(in, g.maxHead, g.headTooLarge, "the request head")
		if v != nil || end == 0 {
			return false, v
		}
		g.scan = end
		if len(line) == 0 {
			if g.head.lines == 0 {
				return false, h1Bad("empty line before the request line")
			}
			if v := g.finishHead(); v != nil {
				return false, v
			}
			g.release(end)
			return true, nil
		}
		g.head.lines++
		if g.head.lines == 1 {
			v = g.requestLine(line)
		} else {
			v = g.fieldLine(line, &g.head)
		}
		if v != nil {
			return false, v
		}
	}
}

// requestLine checks method SP request-target SP HTTP-version (RFC 9112 §3).
func (g *h1Guard) requestLine(line []byte) *h1Violation {
	for _, c := range line {
		if c < ' ' || c == 0x7f {
			return h1Bad(fmt.Sprintf("control byte 0x%02x in the request line", c))
		}
	}
	method, rest, ok1 := bytes.Cut(line, []byte{' '})
	target, version, ok2 := bytes.Cut(rest, []byte{' '})
	if !ok1 || !ok2 || len(target) == 0 || !h1Token(method) || bytes.IndexByte(version, ' ') >= 0 {
		return h1Bad("malformed request line")
	}
	switch string(version) {
	case "HTTP/1.1":
	case "HTTP/1.0":
		g.head.http10 = true
	default:
		return h1Bad("unsupported HTTP version " + h1Quote(version))
	}
	g.head.method = string(method)
	return nil
}

// fieldLine checks one field line of a head or trailer (RFC 9112 §5) and
// records the framing fields in h.
func (g *h1Guard) fieldLine(line []byte, h *h1HeadInfo) *h1Violation {
	if line[0] == ' ' || line[0] == '\t' {
		return h1Bad("obs-fold (a field line starting with whitespace)")
	}
	for _, c := range line {
		switch {
		case c == '\r':
			return h1Bad("bare CR in the request head")
		case c < ' ' && c != '\t', c == 0x7f:
			return h1Bad(fmt.Sprintf("control byte 0x%02x in the request head", c))
		}
	}
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 || !h1Token(line[:colon]) {
		return h1Bad("invalid field name")
	}
	name := line[:colon]
	value := bytes.Trim(line[colon+1:], " \t")
	switch {
	case h1Is(name, "content-length"):
		if len(value) == 0 || len(value) > 18 || !h1Digits(value) {
			return h1Bad("invalid Content-Length " + h1Quote(value))
		}
		if h.cl != "" && h.cl != string(value) {
			return h1Bad("several differing Content-Length")
		}
		h.cl = string(value)
	case h1Is(name, "transfer-encoding"):
		h.te++
		h.teValue = string(value)
	case h1Is(name, "upgrade"):
		h.upgrade = true
	case h1Is(name, "host"):
		h.hosts++
		h.host = string(value)
	}
	return nil
}

// finishHead decides the body's framing once the head is complete.
func (g *h1Guard) finishHead() *h1Violation {
	h := g.head
	g.head = h1HeadInfo{}
	g.skipped = 0
	g.setHeadClock(false)
	g.afterPOST = h.method == "POST"
	g.lastHost = h.host
	var chunked bool
	switch {
	case h.hosts == 0 && !h.http10 && h.method != "CONNECT":
		// RFC 9112 §3.2: an HTTP/1.1 request without a Host field gets
		// 400, whatever its target (net/http's "missing required Host").
		return h1Bad("no Host field")
	case h.hosts > 1:
		return h1Bad("several Host field lines")
	case h.te > 0 && h.cl != "":
		return h1Bad("Transfer-Encoding with Content-Length")
	case h.te > 1:
		return h1Bad("several Transfer-Encoding field lines")
	case h.te == 1 && h.http10:
		return h1Bad("Transfer-Encoding in an HTTP/1.0 request")
	case h.te == 1:
		codings := strings.Split(h.teValue, ",")
		for i := range codings {
			codings[i] = strings.ToLower(strings.Trim(codings[i], " \t"))
		}
		last := len(codings) - 1
		if last == 0 && codings[0] == "chunked" {
			chunked = true
			break
		}
		if codings[last] == "chunked" {
			other := true
			for _, c := range codings[:last] {
				other = other && c != "chunked" && h1Token([]byte(c))
			}
			if other {
				return &h1Violation{status: 501, reason: "not implemented: transfer coding " + h1Quote([]byte(h.teValue))}
			}
		}
		return h1Bad("Transfer-Encoding " + h1Quote([]byte(h.teValue)) + " is not chunked alone")
	}
	switch {
	case h.upgrade || h.method == "CONNECT":
		g.st = h1Pass
	case chunked:
		g.st, g.excess = h1ChunkLine, 0
	case h.cl != "":
		n, _ := strconv.ParseInt(h.cl, 10, 64) // 18 digits at most: fits
		if n > 0 {
			g.st, g.left = h1Body, n
		}
	}
	return nil
}

// stepChunkLine checks chunk-size [ chunk-ext ] CRLF (RFC 9112 §7.1).
func (g *h1Guard) stepChunkLine(in []byte) (bool, *h1Violation) {
	line, end, v := g.nextLine(in, h1MaxChunkLine+2, chunkLineTooLong, "a chunk size line")
	if v != nil || end == 0 {
		return false, v
	}
	for _, c := range line {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false, h1Bad(fmt.Sprintf("control byte 0x%02x in a chunk size line", c))
		}
	}
	// Extensions after ";" are ignored, as net/http does (they hold no
	// control byte: checked above). No whitespace before the ";": net/http
	// refuses it too.
	size, _, _ := bytes.Cut(line, []byte{';'})
	if len(size) == 0 || len(size) > 15 || !h1Hex(size) {
		return false, h1Bad("malformed chunk size " + h1Quote(size))
	}
	n, _ := strconv.ParseInt(string(size), 16, 64) // 15 hex digits at most: fits
	// net/http's overhead accounting: the line and the CRLF after the data,
	// minus 16 bytes plus twice the data per chunk.
	g.excess += int64(len(line)) + 2
	g.excess = max(g.excess-(16+2*n), 0)
	if g.excess > h1MaxExcess {
		return false, h1Bad("chunked body with too many non-data bytes")
	}
	g.release(end)
	if n == 0 {
		g.st = h1Trailer
	} else {
		g.st, g.left = h1ChunkData, n
	}
	return true, nil
}

// stepTrailer checks the trailer section and releases it whole.
func (g *h1Guard) stepTrailer(in []byte) (bool, *h1Violation) {
	for {
		line, end, v := g.nextLine(in, h1MaxTrailer, trailerTooLarge, "the trailer section")
		if v != nil || end == 0 {
			return false, v
		}
		g.scan = end
		if len(line) == 0 {
			g.release(end)
			g.st = h1Head
			return true, nil
		}
		var t h1HeadInfo
		if v := g.fieldLine(line, &t); v != nil {
			return false, v
		}
		name, _, _ := bytes.Cut(line, []byte{':'})
		if t.cl != "" || t.te > 0 || h1Is(name, "trailer") || h1Is(name, "host") {
			return false, h1Bad("framing field " + h1Quote(name) + " in the trailer section")
		}
	}
}

// h1Token reports whether b is an RFC 9110 token.
func h1Token(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !h1TokenByte[c] {
			return false
		}
	}
	return true
}

func h1Digits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func h1Hex(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// h1Is compares a field name with a lowercase one, ASCII case-insensitively.
func h1Is(name []byte, lower string) bool {
	if len(name) != len(lower) {
		return false
	}
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// h1Quote quotes a client's bytes for a log reason: printable ASCII, cut
// at 40 bytes.
func h1Quote(b []byte) string {
	if len(b) > 40 {
		return strconv.QuoteToASCII(string(b[:40])) + "..."
	}
	return strconv.QuoteToASCII(string(b))
}
