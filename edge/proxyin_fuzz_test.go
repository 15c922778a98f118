package edge

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	proxyproto "github.com/pires/go-proxyproto"
)

// The PROXY header a trusted peer sends before the ClientHello, read by
// readProxyHeader (proxyin.go) as serveConn does.

// fzSrc hands out data at most chunk bytes per Read (0: all at once) and
// counts what was read.
type fzSrc struct {
	data  []byte
	chunk int
	n     int
}

func (s *fzSrc) Read(p []byte) (int, error) {
	if s.n >= len(s.data) {
		return 0, io.EOF
	}
	if s.chunk > 0 && len(p) > s.chunk {
		p = p[:s.chunk]
	}
	n := copy(p, s.data[s.n:])
	s.n += n
	return n, nil
}

// fzProxyResult is what serveConn gets from readProxyHeader: the header,
// the error, what a ClientHello parser reads next (rest then the socket)
// and how many bytes were taken from the socket.
type fzProxyResult struct {
	h    *proxyproto.Header
	err  error
	next []byte // nil after a refusing error
	read int
}

func fzProxyRead(t *testing.T, data []byte, chunk int) fzProxyResult {
	t.Helper()
	src := &fzSrc{data: data, chunk: chunk}
	h, rest, err := readProxyHeader(src)
	res := fzProxyResult{h: h, err: err, read: src.n}
	switch {
	case err == nil:
		if h == nil || rest == nil {
			t.Fatalf("no error but header %v, rest %v", h, rest)
		}
	case errors.Is(err, proxyproto.ErrNoProxyProtocol):
		if h != nil || rest == nil {
			t.Fatalf("%v with header %+v, rest %v", err, h, rest)
		}
	default:
		if h != nil || rest != nil {
			t.Fatalf("%v with header %+v, rest %v", err, h, rest)
		}
		return res
	}
	next, err2 := io.ReadAll(io.MultiReader(rest, src))
	if err2 != nil {
		t.Fatal(err2)
	}
	res.next = next
	return res
}

// fzProxyExtent is the length of the header data starts with, by the
// PROXY protocol spec alone: a v2 preamble and its length field, or a v1
// line up to its LF; -1 when data does not hold one whole.
func fzProxyExtent(data []byte) int {
	switch {
	case len(data) >= 16 && bytes.Equal(data[:12], proxyproto.SIGV2):
		if n := 16 + int(binary.BigEndian.Uint16(data[14:16])); n <= len(data) {
			return n
		}
	case bytes.HasPrefix(data, []byte("PROXY")):
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			return i + 1
		}
	}
	return -1
}

// fzCheckAddrs checks the addresses serveConn takes from a PROXY command:
// a TCP header names two valid addresses of its family.
func fzCheckAddrs(t *testing.T, h *proxyproto.Header) {
	t.Helper()
	for _, a := range []net.Addr{h.SourceAddr, h.DestinationAddr} {
		if a != nil {
			_ = a.String() // logged; must not panic
		}
	}
	if !h.Command.IsProxy() {
		return
	}
	s, d, ok := h.TCPAddrs()
	tcp := h.TransportProtocol == proxyproto.TCPv4 || h.TransportProtocol == proxyproto.TCPv6
	if ok != tcp {
		t.Fatalf("transport %#x: TCPAddrs ok = %v", byte(h.TransportProtocol), ok)
	}
	if !ok {
		return
	}
	for _, a := range []*net.TCPAddr{s, d} {
		ap := unmap(a.AddrPort())
		if !ap.Addr().IsValid() || ap.Addr().Zone() != "" {
			t.Fatalf("PROXY header address %v: not a usable client address", a)
		}
		if h.TransportProtocol == proxyproto.TCPv4 && !ap.Addr().Is4() {
			t.Fatalf("TCPv4 header with address %v", a)
		}
	}
}

// fzCheckReason: the refusal reason of a bad header goes into the log line;
// it is short, valid UTF-8 and holds no control character.
func fzCheckReason(t *testing.T, err error) {
	t.Helper()
	reason := "bad PROXY header: " + readErrReason(err)
	if len(reason) > 400 || !utf8.ValidString(reason) {
		t.Fatalf("reason %q: too long or not UTF-8", reason)
	}
	for _, r := range reason {
		if unicode.IsControl(r) {
			t.Fatalf("reason %q holds control character %U", reason, r)
		}
	}
}

// FuzzProxyHeaderIn: for any bytes from a trusted peer (delivered whole or
// in chunks), readProxyHeader never panics; takes from the socket at most
// its 256-byte buffer past the header (with no header: at most 256 bytes,
// none consumed; after a bad one: at most a maximal v2 header plus the
// buffer); returns a header, "no header" or a refusal, never two; a header
// is exactly the spec's extent of the input (v2 length field, v1 line), and
// what follows it reaches the ClientHello parser intact; a TCP PROXY
// command names valid addresses; a refusal's log reason is clean; and
// chunked delivery gives the same answer, except that a v1 line split
// across reads is refused (go-proxyproto reads it from one read only).
func FuzzProxyHeaderIn(f *testing.F) {
	hello := []byte{0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00}
	for _, s := range fzProxySeeds() {
		f.Add(s, uint8(0))
		f.Add(append(slices.Clone(s), hello...), uint8(0))
		f.Add(append(slices.Clone(s), hello...), uint8(7))
		f.Add(s[:len(s)/2], uint8(0))
	}
	f.Add(hello, uint8(0))
	f.Add([]byte("PROX"), uint8(0))
	f.Add(append(slices.Clone(proxyproto.SIGV2[:11]), hello...), uint8(1))
	f.Add([]byte("PROXY TCP4 1.2.3.4 5.6.7.8 80 443\n"), uint8(0))
	f.Add([]byte("PROXY TCP4 1.2.3.4 5.6.7.8 080 443\r\n"), uint8(0))
	f.Add([]byte("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n"), uint8(0))
	f.Add([]byte("PROXY "+strings.Repeat("A", 200)+"\r\n"), uint8(0))

	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		if len(data) > 1<<13 { // past a maximal v2 header and the buffer, more bytes add nothing
			return
		}
		whole := fzProxyRead(t, data, 0)
		fzProxyCheck(t, data, whole)
		if chunk == 0 {
			return
		}
		parts := fzProxyRead(t, data, int(chunk))
		fzProxyCheck(t, data, parts)
		v1 := bytes.HasPrefix(data, []byte("PROXY"))
		switch {
		case parts.err == nil && whole.err == nil:
			if !parts.h.EqualsTo(whole.h) || !bytes.Equal(parts.next, whole.next) {
				t.Fatalf("chunks of %d: header %+v, next %q; whole: %+v, %q", chunk, parts.h, parts.next, whole.h, whole.next)
			}
		case v1 && whole.err == nil && errors.Is(parts.err, proxyproto.ErrCantReadVersion1Header):
			if ext := fzProxyExtent(data); ext <= int(chunk) {
				t.Fatalf("v1 line of %d bytes refused with reads of %d: %v", ext, chunk, parts.err)
			}
		case errors.Is(parts.err, proxyproto.ErrNoProxyProtocol) != errors.Is(whole.err, proxyproto.ErrNoProxyProtocol),
			(parts.err == nil) != (whole.err == nil):
			t.Fatalf("chunks of %d: %v; whole: %v", chunk, parts.err, whole.err)
		}
	})
}

func fzProxyCheck(t *testing.T, data []byte, res fzProxyResult) {
	t.Helper()
	switch {
	case res.err == nil:
		ext := fzProxyExtent(data)
		if ext < 0 {
			t.Fatalf("header %+v accepted from %q, which holds no whole header", res.h, data)
		}
		if res.read > ext+proxyReadBuffer {
			t.Fatalf("read %d bytes for a %d-byte header", res.read, ext)
		}
		if !bytes.Equal(res.next, data[ext:]) {
			t.Fatalf("after a %d-byte header the hello parser gets %q; want %q", ext, res.next, data[ext:])
		}
		// The header alone parses the same.
		again := fzProxyRead(t, data[:ext], 0)
		if again.err != nil || !again.h.EqualsTo(res.h) || len(again.next) != 0 {
			t.Fatalf("header bytes alone: %+v, %v, next %q; want %+v", again.h, again.err, again.next, res.h)
		}
		fzCheckAddrs(t, res.h)
		if _, err := res.h.TLVs(); err != nil && !errors.Is(err, proxyproto.ErrTruncatedTLV) && !errors.Is(err, proxyproto.ErrMalformedTLV) {
			t.Fatalf("TLVs: %v", err)
		}
	case errors.Is(res.err, proxyproto.ErrNoProxyProtocol):
		if res.read > proxyReadBuffer {
			t.Fatalf("read %d bytes to find no PROXY header", res.read)
		}
		if !bytes.Equal(res.next, data) {
			t.Fatalf("no PROXY header, but the hello parser gets %q; want all of %q", res.next, data)
		}
	default:
		if max := 16 + int(proxyproto.MaxV2HeaderSize) + proxyReadBuffer; res.read > max {
			t.Fatalf("read %d bytes (> %d) to refuse: %v", res.read, max, res.err)
		}
		fzCheckReason(t, res.err)
	}
}

// fzV2 builds a v2 header: preamble, command, family and transport, the
// length of block, block.
func fzV2(cmd, fam byte, block []byte) []byte {
	b := append(slices.Clone(proxyproto.SIGV2), cmd, fam, byte(len(block)>>8), byte(len(block)))
	return append(b, block...)
}

// fzTLV is one type-length-value.
func fzTLV(typ byte, v []byte) []byte {
	return append([]byte{typ, byte(len(v) >> 8), byte(len(v))}, v...)
}

func fzProxySeeds() [][]byte {
	v4 := []byte{203, 0, 113, 7, 192, 0, 2, 1, 0x10, 0x92, 0x01, 0xbb}
	v6 := append(netip.MustParseAddr("2001:db8::1").AsSlice(), netip.MustParseAddr("::ffff:192.0.2.1").AsSlice()...)
	v6 = append(v6, 0x10, 0x92, 0x01, 0xbb)
	tlvs := slices.Concat(fzTLV(0x01, []byte("h2")), fzTLV(0x02, []byte("app.example.com")),
		fzTLV(0x20, []byte{0x07, 0, 0, 0, 0}), fzTLV(0x04, nil))
	return [][]byte{
		[]byte("PROXY TCP4 203.0.113.7 192.0.2.1 4242 443\r\n"),
		[]byte("PROXY TCP6 2001:db8::1 ::1 65535 1\r\n"),
		[]byte("PROXY UNKNOWN\r\n"),
		[]byte("PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
		fzV2(0x21, 0x11, v4),
		fzV2(0x21, 0x21, v6),
		fzV2(0x21, 0x11, append(slices.Clone(v4), tlvs...)),
		fzV2(0x21, 0x11, append(slices.Clone(v4), 0x01, 0x00)), // truncated TLV
		fzV2(0x20, 0x00, nil),                                  // LOCAL
		fzV2(0x20, 0x11, nil),                                  // LOCAL, short block skipped
		fzV2(0x21, 0x12, v4),                                   // UDP
		fzV2(0x21, 0x31, make([]byte, 216)),                    // unix
		fzV2(0x21, 0x13, v4),                                   // undefined transport
		fzV2(0x22, 0x11, v4),                                   // undefined command
		fzV2(0x21, 0x11, append(slices.Clone(v4), fzTLV(0xe0, make([]byte, 4000))...)),
		fzV2(0x21, 0x11, append(slices.Clone(v4), fzTLV(0xe0, make([]byte, 4100))...)), // over MaxV2HeaderSize
		fzV2(0x21, 0x11, v4[:8]), // short address block
	}
}

// FuzzProxyHeaderInRoundTrip: a valid header (v1 or v2, TCP over IPv4 or
// IPv6, with any TLV bytes in v2) followed by any bytes is read as exactly
// that header, and the bytes after it reach the ClientHello parser
// unchanged, whole or in chunks of any size (v1: chunks holding the whole
// line).
func FuzzProxyHeaderInRoundTrip(f *testing.F) {
	f.Add(uint8(2), []byte{203, 0, 113, 7}, []byte{192, 0, 2, 1}, uint16(4242), uint16(443), []byte{}, []byte("\x16\x03\x01rest"), uint8(0))
	f.Add(uint8(2), netip.MustParseAddr("2001:db8::1").AsSlice(), netip.MustParseAddr("::1").AsSlice(), uint16(1), uint16(65535),
		slices.Concat(fzTLV(0x02, []byte("a.example")), fzTLV(0x20, []byte{1, 0, 0, 0, 0})), []byte("\x16\x03\x01"), uint8(3))
	f.Add(uint8(1), []byte{10, 0, 0, 1}, []byte{10, 0, 0, 2}, uint16(0), uint16(443), []byte{}, []byte("\x16\x03\x01\x00"), uint8(0))
	f.Add(uint8(1), netip.MustParseAddr("::ffff:10.0.0.1").AsSlice(), netip.MustParseAddr("fe80::1").AsSlice(), uint16(80), uint16(8443), []byte{}, []byte{}, uint8(200))
	f.Add(uint8(2), []byte{1, 2, 3, 4}, []byte{5, 6, 7, 8}, uint16(1), uint16(2), []byte{0x01, 0xff}, bytes.Repeat([]byte{0x16}, 600), uint8(1))

	f.Fuzz(func(t *testing.T, version uint8, srcIP, dstIP []byte, sport, dport uint16, tlvs, rest []byte, chunk uint8) {
		if len(rest) > 1<<13 {
			return
		}
		s, ok1 := netip.AddrFromSlice(srcIP)
		d, ok2 := netip.AddrFromSlice(dstIP)
		if !ok1 || !ok2 {
			return
		}
		v4 := s.Is4() && d.Is4()
		if !v4 {
			s, d = netip.AddrFrom16(s.As16()), netip.AddrFrom16(d.As16())
		}
		var hdr []byte
		if version%2 == 1 {
			proto := "TCP4"
			if !v4 {
				proto = "TCP6"
			}
			hdr = fmt.Appendf(nil, "PROXY %s %s %s %d %d\r\n", proto, s, d, sport, dport)
		} else {
			fam := byte(0x11)
			block := slices.Concat(s.AsSlice(), d.AsSlice(), binary.BigEndian.AppendUint16(nil, sport), binary.BigEndian.AppendUint16(nil, dport))
			if !v4 {
				fam = 0x21
			}
			if len(block)+len(tlvs) > int(proxyproto.MaxV2HeaderSize) {
				tlvs = tlvs[:int(proxyproto.MaxV2HeaderSize)-len(block)]
			}
			hdr = fzV2(0x21, fam, append(block, tlvs...))
		}
		data := append(slices.Clone(hdr), rest...)
		c := int(chunk)
		if version%2 == 1 && c > 0 && c < len(hdr) {
			c = len(hdr) // v1 is read from one read only
		}
		res := fzProxyRead(t, data, c)
		if res.err != nil {
			t.Fatalf("valid header %q refused: %v", hdr, res.err)
		}
		if !bytes.Equal(res.next, rest) {
			t.Fatalf("after header %q the hello parser gets %q; want %q", hdr, res.next, rest)
		}
		fzProxyCheck(t, data, res)
		src, dst, ok := res.h.TCPAddrs()
		if !ok || !res.h.Command.IsProxy() {
			t.Fatalf("header %q: command %#x, TCPAddrs ok %v", hdr, byte(res.h.Command), ok)
		}
		gs, gd := unmap(src.AddrPort()), unmap(dst.AddrPort())
		if gs != netip.AddrPortFrom(s.Unmap(), sport) || gd != netip.AddrPortFrom(d.Unmap(), dport) {
			t.Fatalf("header %q: addresses %v %v; want %v:%d %v:%d", hdr, gs, gd, s, sport, d, dport)
		}
		if version%2 == 0 {
			got, errGot := res.h.TLVs()
			want, errWant := proxyproto.SplitTLVs(tlvs)
			if (errGot == nil) != (errWant == nil) || (errGot == nil && !fzSameTLVs(got, want)) {
				t.Fatalf("TLVs %x: got %v, %v; want %v, %v", tlvs, got, errGot, want, errWant)
			}
		}
	})
}

func fzSameTLVs(a, b []proxyproto.TLV) bool {
	return slices.EqualFunc(a, b, func(x, y proxyproto.TLV) bool { return x.Type == y.Type && bytes.Equal(x.Value, y.Value) })
}
