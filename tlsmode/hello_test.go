package tlsmode

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"golang.org/x/crypto/cryptobyte"
)

// ---- generating real hellos ----

// helloRecConn is a net.Conn that records what a tls.Client writes until the
// client first reads, and then fails every read, so the handshake stops right
// after the ClientHello.
type helloRecConn struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	read bool
}

var errHelloRecDone = errors.New("helloRecConn: recording done")

func (c *helloRecConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.read {
		c.buf.Write(p)
	}
	return len(p), nil
}

func (c *helloRecConn) Read([]byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.read = true
	return 0, errHelloRecDone
}

func (c *helloRecConn) Close() error                     { return nil }
func (c *helloRecConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *helloRecConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *helloRecConn) SetDeadline(time.Time) error      { return nil }
func (c *helloRecConn) SetReadDeadline(time.Time) error  { return nil }
func (c *helloRecConn) SetWriteDeadline(time.Time) error { return nil }

// helloGenerate returns the bytes a real crypto/tls client sends as its
// ClientHello for cfg.
func helloGenerate(tb testing.TB, cfg *tls.Config) []byte {
	tb.Helper()
	rc := &helloRecConn{}
	if err := tls.Client(rc, cfg).Handshake(); !errors.Is(err, errHelloRecDone) {
		tb.Fatalf("client handshake: got %v; want the recorder's error", err)
	}
	if rc.buf.Len() == 0 {
		tb.Fatal("client wrote nothing")
	}
	return bytes.Clone(rc.buf.Bytes())
}

type helloGenCase struct {
	name     string
	cfg      *tls.Config
	wantSNI  string // "" means ErrNoSNI expected
	wantALPN []string
}

func helloGenCases() []helloGenCase {
	return []helloGenCase{
		{"mixed-case-sni-h2", &tls.Config{ServerName: "Example.COM", NextProtos: []string{"h2", "http/1.1"}}, "example.com", []string{"h2", "http/1.1"}},
		{"tls12-only", &tls.Config{ServerName: "api.example.org", MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12}, "api.example.org", nil},
		{"tls13-only", &tls.Config{ServerName: "x.y", MinVersion: tls.VersionTLS13, NextProtos: []string{"h2"}}, "x.y", []string{"h2"}},
		{"tls10-12", &tls.Config{ServerName: "old.example", MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}, "old.example", []string{"http/1.1"}},
		{"typical-x25519", &tls.Config{ServerName: "www.Example.com", NextProtos: []string{"h2", "http/1.1"}, CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256}}, "www.example.com", []string{"h2", "http/1.1"}},
		{"pq-x25519mlkem768", &tls.Config{ServerName: "PQ.example.net", NextProtos: []string{"h2", "http/1.1"}, CurvePreferences: []tls.CurveID{tls.X25519MLKEM768, tls.X25519}}, "pq.example.net", []string{"h2", "http/1.1"}},
		{"pq-default-curves", &tls.Config{ServerName: "default.example"}, "default.example", nil},
		{"many-alpn", &tls.Config{ServerName: "alpn.example", NextProtos: []string{"h3", "h2", "http/1.1", "acme-tls/1", "x"}}, "alpn.example", []string{"h3", "h2", "http/1.1", "acme-tls/1", "x"}},
		{"trailing-dot-stripped-by-client", &tls.Config{ServerName: "dot.example."}, "dot.example", nil},
		{"long-sni", &tls.Config{ServerName: strings.Repeat("abcdefghij.", 20) + "example"}, strings.Repeat("abcdefghij.", 20) + "example", nil},
		{"no-sni", &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}}, "", []string{"h2"}},
		{"ip-not-sent", &tls.Config{ServerName: "192.0.2.7", NextProtos: []string{"h2"}}, "", []string{"h2"}},
	}
}

// helloServerView feeds b to a real tls.Server and returns the
// ClientHelloInfo crypto/tls parsed from it.
func helloServerView(tb testing.TB, b []byte) *tls.ClientHelloInfo {
	tb.Helper()
	var info *tls.ClientHelloInfo
	stop := errors.New("stop")
	conn := &helloReplayConn{r: bytes.NewReader(b)}
	err := tls.Server(conn, &tls.Config{GetConfigForClient: func(chi *tls.ClientHelloInfo) (*tls.Config, error) {
		info = chi
		return nil, stop
	}}).Handshake()
	if info == nil {
		tb.Fatalf("crypto/tls did not accept the hello: %v", err)
	}
	return info
}

// helloReplayConn reads from r and discards writes.
type helloReplayConn struct {
	helloRecConn
	r io.Reader
}

func (c *helloReplayConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// ---- re-framing and hand-building ----

// helloRecords splits a byte stream into TLS records.
func helloRecords(tb testing.TB, b []byte) (recs [][]byte) {
	tb.Helper()
	for len(b) > 0 {
		if len(b) < 5 {
			tb.Fatalf("short record header: %x", b)
		}
		n := int(b[3])<<8 | int(b[4])
		if len(b) < 5+n {
			tb.Fatalf("short record body")
		}
		recs = append(recs, b[:5+n])
		b = b[5+n:]
	}
	return recs
}

// helloHandshakeBytes returns the handshake bytes carried by hello's records.
func helloHandshakeBytes(tb testing.TB, hello []byte) []byte {
	tb.Helper()
	var hs []byte
	for _, r := range helloRecords(tb, hello) {
		if r[0] != 22 {
			tb.Fatalf("record type %d", r[0])
		}
		hs = append(hs, r[5:]...)
	}
	return hs
}

// helloReframe re-frames the handshake bytes of hello into records of at most
// frag bytes, keeping the first record's version.
func helloReframe(tb testing.TB, hello []byte, frag int) []byte {
	tb.Helper()
	return helloFrame(hello[1], hello[2], helloHandshakeBytes(tb, hello), frag)
}

func helloFrame(vmaj, vmin byte, hs []byte, frag int) []byte {
	var out []byte
	for len(hs) > 0 {
		n := min(frag, len(hs))
		out = append(out, 22, vmaj, vmin, byte(n>>8), byte(n))
		out = append(out, hs[:n]...)
		hs = hs[n:]
	}
	return out
}

// helloSpec describes a hand-built ClientHello body.
type helloSpec struct {
	version     uint16
	sessionID   []byte
	suites      []byte // raw cipher_suites vector content
	comp        []byte // raw compression methods vector content
	noExts      bool   // omit the extensions block
	exts        []helloExt
	afterExts   []byte // junk after the extensions block, inside the message
	extsLenSkew int    // added to the extensions block length
}

type helloExt struct {
	typ  uint16
	data []byte
}

func helloDefaultSpec() helloSpec {
	return helloSpec{
		version:   0x0303,
		sessionID: bytes.Repeat([]byte{7}, 32),
		suites:    []byte{0x13, 0x01, 0x13, 0x02, 0xc0, 0x2f},
		comp:      []byte{0},
		exts: []helloExt{
			helloSNI("Host.Example"),
			helloALPNExt("h2", "http/1.1"),
			helloVersionsExt(0x0304, 0x0303),
			{0x000a, []byte{0, 2, 0, 0x1d}}, // supported_groups
		},
	}
}

// body returns the ClientHello body (without the handshake header).
func (s helloSpec) body() []byte {
	var b cryptobyte.Builder
	b.AddUint16(s.version)
	b.AddBytes(bytes.Repeat([]byte{0xab}, 32))
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(s.sessionID) })
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(s.suites) })
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(s.comp) })
	out := b.BytesOrPanic()
	if s.noExts {
		return append(out, s.afterExts...)
	}
	var e []byte
	for _, x := range s.exts {
		e = append(e, byte(x.typ>>8), byte(x.typ), byte(len(x.data)>>8), byte(len(x.data)))
		e = append(e, x.data...)
	}
	n := len(e) + s.extsLenSkew
	out = append(out, byte(n>>8), byte(n))
	out = append(out, e...)
	return append(out, s.afterExts...)
}

// hello returns the spec as one handshake record.
func (s helloSpec) hello() []byte { return helloRecord(22, 0x0301, helloHandshake(1, s.body())) }

func helloHandshake(typ byte, body []byte) []byte {
	n := len(body)
	return append([]byte{typ, byte(n >> 16), byte(n >> 8), byte(n)}, body...)
}

func helloRecord(typ byte, vers uint16, body []byte) []byte {
	n := len(body)
	return append([]byte{typ, byte(vers >> 8), byte(vers), byte(n >> 8), byte(n)}, body...)
}

// helloSNIEntries builds a server_name extension from raw (type, name) entries.
func helloSNIEntries(entries ...any) helloExt {
	var b cryptobyte.Builder
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		for i := 0; i < len(entries); i += 2 {
			b.AddUint8(entries[i].(uint8))
			name := entries[i+1].(string)
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(name)) })
		}
	})
	return helloExt{0, b.BytesOrPanic()}
}

func helloSNI(name string) helloExt { return helloSNIEntries(uint8(0), name) }

func helloALPNExt(names ...string) helloExt {
	var b cryptobyte.Builder
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, n := range names {
			b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(n)) })
		}
	})
	return helloExt{16, b.BytesOrPanic()}
}

func helloVersionsExt(vs ...uint16) helloExt {
	var b cryptobyte.Builder
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, v := range vs {
			b.AddUint16(v)
		}
	})
	return helloExt{43, b.BytesOrPanic()}
}

func (s helloSpec) withExts(exts ...helloExt) helloSpec {
	s.exts = exts
	return s
}

// helloCountingReader counts the bytes handed out.
type helloCountingReader struct {
	r io.Reader
	n int
}

func (c *helloCountingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// helloErrClass names the single error class of err, failing on ambiguity.
func helloErrClass(tb testing.TB, err error) string {
	tb.Helper()
	classes := []struct {
		name string
		err  error
	}{
		{"not-tls", ErrNotTLS}, {"malformed", ErrMalformedHello}, {"too-large", ErrHelloTooLarge},
		{"no-sni", ErrNoSNI}, {"unexpected-eof", io.ErrUnexpectedEOF}, {"eof", io.EOF},
		{"deadline", os.ErrDeadlineExceeded},
	}
	got := ""
	for _, c := range classes {
		if errors.Is(err, c.err) {
			if got != "" {
				tb.Fatalf("error %v is both %s and %s", err, got, c.name)
			}
			got = c.name
		}
	}
	if err == nil {
		return "ok"
	}
	if got == "" {
		return "other: " + err.Error()
	}
	return got
}

// ---- tests ----

func TestReadHelloGenerated(t *testing.T) {
	for _, tc := range helloGenCases() {
		t.Run(tc.name, func(t *testing.T) {
			in := helloGenerate(t, tc.cfg)
			extra := []byte("\x14\x03\x03\x00\x01\x01") // a CCS record after the hello stays unread
			r := bytes.NewReader(append(bytes.Clone(in), extra...))
			h, err := ReadHello(r, 0)
			if tc.wantSNI == "" {
				if !errors.Is(err, ErrNoSNI) {
					t.Fatalf("err: got %v; want ErrNoSNI", err)
				}
			} else if err != nil {
				t.Fatalf("err: got %v; want nil", err)
			}
			if h == nil {
				t.Fatal("got nil *Hello")
			}
			if h.ServerName != tc.wantSNI {
				t.Errorf("ServerName: got %q; want %q", h.ServerName, tc.wantSNI)
			}
			if !slices.Equal(h.ALPN, tc.wantALPN) {
				t.Errorf("ALPN: got %q; want %q", h.ALPN, tc.wantALPN)
			}
			if !bytes.Equal(h.Raw, in) {
				t.Errorf("Raw: got %d bytes; want the %d input bytes", len(h.Raw), len(in))
			}
			if r.Len() != len(extra) {
				t.Errorf("unread: got %d bytes; want %d", r.Len(), len(extra))
			}
			helloCompareWithCryptoTLS(t, h, in)
			t.Logf("%d bytes in %d records", len(in), len(helloRecords(t, in)))
		})
	}
}

// helloCompareWithCryptoTLS checks h against what crypto/tls parses from b.
func helloCompareWithCryptoTLS(t *testing.T, h *Hello, b []byte) {
	t.Helper()
	info := helloServerView(t, b)
	// crypto/tls passes an IP literal through; ReadHello reports no name.
	if got, want := h.ServerName, strings.ToLower(info.ServerName); got != want && (got != "" || net.ParseIP(want) == nil) {
		t.Errorf("ServerName: got %q; crypto/tls %q", got, want)
	}
	if !slices.Equal(h.ALPN, info.SupportedProtos) {
		t.Errorf("ALPN: got %q; crypto/tls %q", h.ALPN, info.SupportedProtos)
	}
	// crypto/tls expands a missing supported_versions extension to every
	// version up to legacy_version; ours is just legacy_version.
	want := info.SupportedVersions
	if !slices.Contains(info.Extensions, 43) {
		want = want[:1]
	}
	if !slices.Equal(h.Versions, want) {
		t.Errorf("Versions: got %x; crypto/tls %x", h.Versions, want)
	}
}

func TestReadHelloFragmented(t *testing.T) {
	for _, tc := range helloGenCases() {
		in := helloGenerate(t, tc.cfg)
		want, wantErr := ReadHello(bytes.NewReader(in), 0)
		for _, frag := range []int{1, 2, 3, 4, 5, 7, 100, 512, 1 << 14} {
			t.Run(fmt.Sprintf("%s/frag=%d", tc.name, frag), func(t *testing.T) {
				framed := helloReframe(t, in, frag)
				if frag == 1<<14 && !bytes.Equal(framed, in) {
					t.Fatal("re-framing a single-record hello changed it")
				}
				h, err := ReadHello(iotest.OneByteReader(bytes.NewReader(framed)), len(framed))
				if !errors.Is(err, wantErr) || (err == nil) != (wantErr == nil) {
					t.Fatalf("err: got %v; want %v", err, wantErr)
				}
				if h == nil {
					t.Fatal("got nil *Hello")
				}
				if h.ServerName != want.ServerName || !slices.Equal(h.ALPN, want.ALPN) || !slices.Equal(h.Versions, want.Versions) {
					t.Errorf("got %q %q %x; want %q %q %x", h.ServerName, h.ALPN, h.Versions, want.ServerName, want.ALPN, want.Versions)
				}
				if !bytes.Equal(h.Raw, framed) {
					t.Errorf("Raw: got %d bytes; want the %d input bytes", len(h.Raw), len(framed))
				}
				if frag == 7 || frag == 512 {
					helloCompareWithCryptoTLS(t, h, framed)
				}
				// One byte less than needed is too large.
				if _, err := ReadHello(bytes.NewReader(framed), len(framed)-1); !errors.Is(err, ErrHelloTooLarge) {
					t.Errorf("max=len-1: got %v; want ErrHelloTooLarge", err)
				}
			})
		}
	}
}

// TestReadHelloOpenSSL captures a real hello that OpenSSL splits into 512-byte
// records (-max_send_frag 512, an 8192-bit FFDHE key share makes it ~1.2 KB).
func TestReadHelloOpenSSL(t *testing.T) {
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "s_client", "-connect", ln.Addr().String(),
		"-servername", "Split.Example.COM", "-alpn", "h2,http/1.1", "-max_send_frag", "512",
		"-groups", "ffdhe8192:x25519", "-tls1_3", "-ign_eof")
	cmd.Stdin = strings.NewReader("")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	if tl, ok := ln.(*net.TCPListener); ok {
		_ = tl.SetDeadline(time.Now().Add(10 * time.Second))
	}
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	h, err := ReadHello(c, 0)
	if err != nil {
		t.Fatalf("ReadHello: %v", err)
	}
	if recs := helloRecords(t, h.Raw); len(recs) < 2 {
		t.Errorf("records: got %d; want a split hello", len(recs))
	}
	if h.ServerName != "split.example.com" || !slices.Equal(h.ALPN, []string{"h2", "http/1.1"}) || !slices.Equal(h.Versions, []uint16{0x0304}) {
		t.Errorf("got %q %q %x; want split.example.com [h2 http/1.1] [304]", h.ServerName, h.ALPN, h.Versions)
	}
	helloCompareWithCryptoTLS(t, h, h.Raw)
}

func TestReadHelloHandBuilt(t *testing.T) {
	def := helloDefaultSpec()
	ok := def.hello()
	recs := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	hs := helloHandshake(1, def.body())
	half := len(hs) / 2
	tests := []struct {
		name      string
		in        []byte
		max       int
		class     string
		sni       string
		versions  []uint16
		alpn      []string
		checkHelo bool
	}{
		{name: "valid", in: ok, class: "ok", sni: "host.example", versions: []uint16{0x0304, 0x0303}, alpn: []string{"h2", "http/1.1"}, checkHelo: true},
		{name: "record-version-0x0300", in: helloRecord(22, 0x0300, hs), class: "ok", sni: "host.example"},
		{name: "record-version-0x0304", in: helloRecord(22, 0x0304, hs), class: "ok", sni: "host.example"},
		{name: "split-two-records", in: recs(helloRecord(22, 0x0301, hs[:half]), helloRecord(22, 0x0303, hs[half:])), class: "ok", sni: "host.example"},
		{name: "grease-versions", in: def.withExts(helloSNI("g.example"), helloVersionsExt(0x1a1a, 0x0304, 0xfafa, 0x0303)).hello(), class: "ok", sni: "g.example", versions: []uint16{0x0304, 0x0303}},
		{name: "only-grease-versions", in: def.withExts(helloSNI("g.example"), helloVersionsExt(0x2a2a)).hello(), class: "ok", sni: "g.example", versions: []uint16{}},
		{name: "no-versions-ext", in: def.withExts(helloSNI("v.example")).hello(), class: "ok", sni: "v.example", versions: []uint16{0x0303}, checkHelo: true},
		{name: "other-name-type-then-host", in: def.withExts(helloSNIEntries(uint8(1), "opaque", uint8(0), "Mixed.Example")).hello(), class: "ok", sni: "mixed.example"},
		{name: "underscore-and-star", in: def.withExts(helloSNI("_srv.*.example")).hello(), class: "ok", sni: "_srv.*.example"},
		{name: "unknown-extensions", in: def.withExts(helloExt{0xfe0d, bytes.Repeat([]byte{1}, 200)}, helloExt{0x3a3a, nil}, helloSNI("u.example")).hello(), class: "ok", sni: "u.example"},
		{name: "empty-session-id", in: func() []byte { s := def; s.sessionID = nil; return s.hello() }(), class: "ok", sni: "host.example"},

		{name: "ipv4-literal", in: def.withExts(helloSNI("192.168.1.1")).hello(), class: "no-sni", checkHelo: true, versions: []uint16{0x0303}},
		{name: "ipv6-literal", in: def.withExts(helloSNI("2001:DB8::1")).hello(), class: "no-sni"},
		{name: "no-extensions", in: func() []byte { s := def; s.noExts = true; return s.hello() }(), class: "no-sni", versions: []uint16{0x0303}, checkHelo: true},
		{name: "empty-extensions", in: def.withExts().hello(), class: "no-sni", versions: []uint16{0x0303}},
		{name: "only-other-name-type", in: def.withExts(helloSNIEntries(uint8(1), "opaque")).hello(), class: "no-sni"},

		{name: "http-get", in: []byte("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"), class: "not-tls"},
		{name: "http2-preface", in: []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), class: "not-tls"},
		{name: "ssh", in: []byte("SSH-2.0-OpenSSH_9.6\r\n"), class: "not-tls"},
		{name: "sslv2-hello", in: append([]byte{0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10}, make([]byte, 37)...), class: "not-tls"},
		{name: "short-non-tls", in: []byte("GE"), class: "not-tls"},
		{name: "short-bad-version", in: []byte{22, 2}, class: "not-tls"},
		{name: "alert-first", in: []byte{21, 3, 3, 0, 2, 2, 40}, class: "not-tls"},
		{name: "application-data-first", in: helloRecord(23, 0x0303, []byte("data")), class: "not-tls"},
		{name: "server-hello-first", in: helloRecord(22, 0x0303, helloHandshake(2, def.body())), class: "not-tls"},
		{name: "record-version-0x0305", in: helloRecord(22, 0x0305, hs), class: "not-tls"},
		{name: "record-version-0x0200", in: helloRecord(22, 0x0200, hs), class: "not-tls"},
		{name: "dtls-version", in: helloRecord(22, 0xfefd, hs), class: "not-tls"},

		{name: "duplicate-alpn", in: def.withExts(helloSNI("d.example"), helloALPNExt("h2"), helloALPNExt("h2")).hello(), class: "malformed"},
		{name: "duplicate-sni", in: def.withExts(helloSNI("d.example"), helloSNI("d.example")).hello(), class: "malformed"},
		{name: "duplicate-unknown", in: def.withExts(helloSNI("d.example"), helloExt{0xff01, []byte{0}}, helloExt{0xff01, []byte{0}}).hello(), class: "malformed"},
		{name: "sni-list-too-long", in: def.withExts(helloExt{0, []byte{0, 9, 0, 0, 3, 'a', '.', 'b'}}).hello(), class: "malformed"},
		{name: "sni-list-too-short", in: def.withExts(helloExt{0, []byte{0, 5, 0, 0, 3, 'a', '.', 'b'}}).hello(), class: "malformed"},
		{name: "sni-name-too-long", in: def.withExts(helloExt{0, []byte{0, 6, 0, 0, 9, 'a', '.', 'b'}}).hello(), class: "malformed"},
		{name: "sni-extra-bytes-in-ext", in: def.withExts(helloExt{0, []byte{0, 6, 0, 0, 3, 'a', '.', 'b', 0}}).hello(), class: "malformed"},
		{name: "sni-empty-list", in: def.withExts(helloExt{0, []byte{0, 0}}).hello(), class: "malformed"},
		{name: "sni-empty-ext", in: def.withExts(helloExt{0, nil}).hello(), class: "malformed"},
		{name: "sni-empty-name", in: def.withExts(helloSNI("")).hello(), class: "malformed"},
		{name: "sni-two-host-names", in: def.withExts(helloSNIEntries(uint8(0), "a.example", uint8(0), "b.example")).hello(), class: "malformed"},
		{name: "sni-trailing-dot", in: def.withExts(helloSNI("example.com.")).hello(), class: "malformed"},
		{name: "sni-only-dot", in: def.withExts(helloSNI(".")).hello(), class: "malformed"},
		{name: "sni-leading-dot", in: def.withExts(helloSNI(".example.com")).hello(), class: "malformed"},
		{name: "sni-empty-label", in: def.withExts(helloSNI("a..example")).hello(), class: "malformed"},
		{name: "sni-nul", in: def.withExts(helloSNI("a\x00.example")).hello(), class: "malformed"},
		{name: "sni-control", in: def.withExts(helloSNI("a\x01b.example")).hello(), class: "malformed"},
		{name: "sni-newline", in: def.withExts(helloSNI("a.example\r\nx")).hello(), class: "malformed"},
		{name: "sni-space", in: def.withExts(helloSNI("a b.example")).hello(), class: "malformed"},
		{name: "sni-del", in: def.withExts(helloSNI("a\x7f.example")).hello(), class: "malformed"},
		{name: "sni-utf8", in: def.withExts(helloSNI("bücher.example")).hello(), class: "malformed"},
		{name: "alpn-empty-list", in: def.withExts(helloSNI("a.example"), helloExt{16, []byte{0, 0}}).hello(), class: "malformed"},
		{name: "alpn-empty-name", in: def.withExts(helloSNI("a.example"), helloALPNExt("h2", "")).hello(), class: "malformed"},
		{name: "alpn-name-overruns", in: def.withExts(helloSNI("a.example"), helloExt{16, []byte{0, 3, 5, 'h', '2'}}).hello(), class: "malformed"},
		{name: "alpn-extra-bytes", in: def.withExts(helloSNI("a.example"), helloExt{16, []byte{0, 3, 2, 'h', '2', 0}}).hello(), class: "malformed"},
		{name: "versions-odd", in: def.withExts(helloSNI("a.example"), helloExt{43, []byte{3, 3, 4, 3}}).hello(), class: "malformed"},
		{name: "versions-empty", in: def.withExts(helloSNI("a.example"), helloExt{43, []byte{0}}).hello(), class: "malformed"},
		{name: "versions-extra-bytes", in: def.withExts(helloSNI("a.example"), helloExt{43, []byte{2, 3, 4, 0}}).hello(), class: "malformed"},
		{name: "session-id-33", in: func() []byte { s := def; s.sessionID = make([]byte, 33); return s.hello() }(), class: "malformed"},
		{name: "suites-empty", in: func() []byte { s := def; s.suites = nil; return s.hello() }(), class: "malformed"},
		{name: "suites-odd", in: func() []byte { s := def; s.suites = []byte{0x13, 0x01, 0x13}; return s.hello() }(), class: "malformed"},
		{name: "compression-empty", in: func() []byte { s := def; s.comp = nil; return s.hello() }(), class: "malformed"},
		{name: "data-after-extensions", in: func() []byte { s := def; s.afterExts = []byte{0}; return s.hello() }(), class: "malformed"},
		{name: "data-after-no-extensions", in: func() []byte { s := def; s.noExts = true; s.afterExts = []byte{0}; return s.hello() }(), class: "malformed"},
		{name: "extensions-length-long", in: func() []byte { s := def; s.extsLenSkew = 1; return s.hello() }(), class: "malformed"},
		{name: "extensions-length-short", in: func() []byte { s := def; s.extsLenSkew = -1; return s.hello() }(), class: "malformed"},
		{name: "truncated-extension-header", in: helloRecord(22, 0x0301, helloHandshake(1, append(func() []byte { s := def; s.exts = nil; s.noExts = true; return s.body() }(), 0, 2, 0, 0))), class: "malformed"},
		{name: "empty-message", in: helloRecord(22, 0x0301, helloHandshake(1, nil)), class: "malformed"},
		{name: "short-random", in: helloRecord(22, 0x0301, helloHandshake(1, make([]byte, 20))), class: "malformed"},
		{name: "bytes-after-hello-in-record", in: helloRecord(22, 0x0301, append(bytes.Clone(hs), 0)), class: "malformed"},
		{name: "second-message-in-record", in: helloRecord(22, 0x0301, append(bytes.Clone(hs), helloHandshake(1, def.body())...)), class: "malformed"},
		{name: "split-header-then-bytes-after-hello", in: recs([]byte{22, 3, 1, 0, 1, 1}, helloRecord(22, 0x0301, append([]byte{0, 0, 1, 0xff}, bytes.Repeat([]byte{'0'}, 40)...))), class: "malformed"},
		{name: "alert-in-middle", in: recs(helloRecord(22, 0x0301, hs[:half]), []byte{21, 3, 1, 0, 2, 2, 40}, helloRecord(22, 0x0301, hs[half:])), class: "malformed"},
		{name: "ccs-in-middle", in: recs(helloRecord(22, 0x0301, hs[:half]), []byte{20, 3, 1, 0, 1, 1}, helloRecord(22, 0x0301, hs[half:])), class: "malformed"},
		{name: "zero-length-first-record", in: recs([]byte{22, 3, 1, 0, 0}, ok), class: "malformed"},
		{name: "zero-length-middle-record", in: recs(helloRecord(22, 0x0301, hs[:half]), []byte{22, 3, 1, 0, 0}, helloRecord(22, 0x0301, hs[half:])), class: "malformed"},
		{name: "bad-version-middle-record", in: recs(helloRecord(22, 0x0301, hs[:half]), helloRecord(22, 0x0200, hs[half:])), class: "malformed"},
		{name: "record-over-2^14", in: []byte{22, 3, 1, 0x40, 0x01, 1}, class: "malformed"},
		{name: "record-over-2^14-middle", in: recs(helloRecord(22, 0x0301, hs[:half]), []byte{22, 3, 1, 0x40, 0x01}), class: "malformed"},

		{name: "huge-handshake-length", in: []byte{22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff}, class: "too-large"},
		{name: "over-max", in: ok, max: len(ok) - 1, class: "too-large"},
		{name: "max-below-header", in: ok, max: 4, class: "too-large"},
		{name: "exactly-max", in: ok, max: len(ok), class: "ok", sni: "host.example"},
		{name: "record-over-max", in: helloFrame(3, 1, helloHandshake(1, make([]byte, 3000)), 3000), max: 1000, class: "too-large"},
		{name: "many-records-over-max", in: helloFrame(3, 1, helloHandshake(1, make([]byte, 3000)), 10), max: 1000, class: "too-large"},
		{name: "split-header-huge-length", in: helloFrame(3, 1, []byte{1, 0x10, 0, 0}, 1), class: "too-large"},
		{name: "over-default-max", in: helloFrame(3, 1, helloHandshake(1, make([]byte, DefaultMaxHello)), 1<<14), class: "too-large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cr := &helloCountingReader{r: bytes.NewReader(tt.in)}
			h, err := ReadHello(cr, tt.max)
			if got := helloErrClass(t, err); got != tt.class {
				t.Fatalf("class: got %q (%v); want %q", got, err, tt.class)
			}
			max := tt.max
			if max <= 0 {
				max = DefaultMaxHello
			}
			if cr.n > max {
				t.Errorf("read %d bytes; want <= max %d", cr.n, max)
			}
			if tt.class != "ok" && tt.class != "no-sni" {
				if h != nil {
					t.Errorf("got a *Hello with %v; want nil", err)
				}
				return
			}
			if h == nil {
				t.Fatal("got nil *Hello")
			}
			if h.ServerName != tt.sni {
				t.Errorf("ServerName: got %q; want %q", h.ServerName, tt.sni)
			}
			if tt.versions != nil && !slices.Equal(h.Versions, tt.versions) {
				t.Errorf("Versions: got %x; want %x", h.Versions, tt.versions)
			}
			if tt.alpn != nil && !slices.Equal(h.ALPN, tt.alpn) {
				t.Errorf("ALPN: got %q; want %q", h.ALPN, tt.alpn)
			}
			if !bytes.Equal(h.Raw, tt.in[:cr.n]) || cr.n != len(tt.in) {
				t.Errorf("Raw: got %d bytes, read %d; want all %d", len(h.Raw), cr.n, len(tt.in))
			}
			if tt.checkHelo {
				helloCompareWithCryptoTLS(t, h, tt.in)
			}
		})
	}
}

// TestReadHelloMalformedCryptoTLSAgrees: crypto/tls also rejects the
// structural errors that both parsers check.
func TestReadHelloMalformedCryptoTLSAgrees(t *testing.T) {
	def := helloDefaultSpec()
	hs := helloHandshake(1, def.body())
	for name, in := range map[string][]byte{
		"duplicate-extension": def.withExts(helloSNI("a.example"), helloALPNExt("h2"), helloALPNExt("h2")).hello(),
		"sni-trailing-dot":    def.withExts(helloSNI("a.example.")).hello(),
		"sni-two-host-names":  def.withExts(helloSNIEntries(uint8(0), "a.example", uint8(0), "b.example")).hello(),
		"alpn-empty-name":     def.withExts(helloALPNExt("h2", "")).hello(),
		"alert-in-middle":     append(helloRecord(22, 0x0301, hs[:10]), append([]byte{21, 3, 1, 0, 2, 2, 40}, helloRecord(22, 0x0301, hs[10:])...)...),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ReadHello(bytes.NewReader(in), 0); !errors.Is(err, ErrMalformedHello) {
				t.Errorf("ReadHello: got %v; want ErrMalformedHello", err)
			}
			var called bool
			err := tls.Server(&helloReplayConn{r: bytes.NewReader(in)}, &tls.Config{
				GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { called = true; return nil, errors.New("stop") },
			}).Handshake()
			if called || err == nil {
				t.Errorf("crypto/tls accepted it: called=%v err=%v", called, err)
			}
		})
	}
}

// TestReadHelloTruncated: every strict prefix of a valid hello is a read
// error (io.ErrUnexpectedEOF; io.EOF for the empty stream), never "no SNI",
// never malformed, never a success.
func TestReadHelloTruncated(t *testing.T) {
	typical := helloGenerate(t, &tls.Config{ServerName: "t.example", NextProtos: []string{"h2"}, CurvePreferences: []tls.CurveID{tls.X25519}})
	pq := helloGenerate(t, &tls.Config{ServerName: "t.example", CurvePreferences: []tls.CurveID{tls.X25519MLKEM768}})
	noSNI := helloGenerate(t, &tls.Config{InsecureSkipVerify: true, CurvePreferences: []tls.CurveID{tls.X25519}})
	inputs := map[string][]byte{
		"typical":        typical,
		"typical-frag-7": helloReframe(t, typical, 7),
		"typical-frag-1": helloReframe(t, typical, 1),
		"pq-frag-512":    helloReframe(t, pq, 512),
		"no-sni":         noSNI,
		"no-sni-frag-3":  helloReframe(t, noSNI, 3),
		"hand-built":     helloDefaultSpec().hello(),
	}
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			for i := 0; i < len(in); i++ {
				h, err := ReadHello(bytes.NewReader(in[:i]), 0)
				want := io.ErrUnexpectedEOF
				if i == 0 {
					want = io.EOF
				}
				if h != nil || !errors.Is(err, want) || errors.Is(err, ErrNoSNI) || errors.Is(err, ErrMalformedHello) || errors.Is(err, ErrNotTLS) || errors.Is(err, ErrHelloTooLarge) {
					t.Fatalf("prefix %d/%d: got %v, %v; want %v", i, len(in), h, err, want)
				}
				if !strings.HasPrefix(err.Error(), "reading client hello: ") {
					t.Fatalf("prefix %d: got %q; want the reading-client-hello context", i, err)
				}
			}
		})
	}
}

// TestReadHelloBoundedMemory: lengths on the wire never make ReadHello
// allocate beyond its cap (a split handshake header claiming 16 MB once did).
func TestReadHelloBoundedMemory(t *testing.T) {
	inputs := map[string][]byte{
		"first-record-claims-16MB":  {22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff},
		"split-header-claims-16MB":  helloFrame(3, 1, []byte{1, 0xff, 0xff, 0xff}, 1),
		"split-header-claims-max":   helloFrame(3, 1, []byte{1, 0, 0x3f, 0xf0}, 2),
		"second-record-claims-16KB": append(helloRecord(22, 0x0301, []byte{1, 0, 0x3f}), 22, 3, 1, 0x40, 0),
		"many-one-byte-records":     helloFrame(3, 1, helloHandshake(1, make([]byte, 5000)), 1),
	}
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := ReadHello(bytes.NewReader(in), 0)
			runtime.ReadMemStats(&after)
			if err == nil || errors.Is(err, ErrNoSNI) {
				t.Fatalf("got %v; want an error", err)
			}
			if got := after.TotalAlloc - before.TotalAlloc; got > 8*DefaultMaxHello {
				t.Errorf("allocated %d bytes; want <= %d", got, 8*DefaultMaxHello)
			}
		})
	}
}

// helloErrAfterReader hands out the first n bytes of b, then fails with err.
type helloErrAfterReader struct {
	b   []byte
	err error
}

func (r *helloErrAfterReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, r.err
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

func TestReadHelloTimeout(t *testing.T) {
	in := helloReframe(t, helloDefaultSpec().hello(), 50)
	for _, n := range []int{0, 1, 3, 5, 6, 9, 54, 55, 60, len(in) - 1} {
		t.Run(fmt.Sprintf("after-%d", n), func(t *testing.T) {
			h, err := ReadHello(&helloErrAfterReader{b: in[:n], err: os.ErrDeadlineExceeded}, 0)
			if h != nil || !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("got %v, %v; want os.ErrDeadlineExceeded", h, err)
			}
			if c := helloErrClass(t, err); c != "deadline" {
				t.Errorf("class: got %q; want deadline", c)
			}
		})
	}
	t.Run("net.Pipe-deadline", func(t *testing.T) {
		client, server := net.Pipe()
		defer client.Close()
		defer server.Close()
		go func() { _, _ = client.Write(in[:len(in)/2]) }()
		_ = server.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		_, err := ReadHello(server, 0)
		var ne net.Error
		if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("got %v; want a timeout wrapping os.ErrDeadlineExceeded", err)
		}
	})
	t.Run("other-read-error", func(t *testing.T) {
		boom := errors.New("boom")
		_, err := ReadHello(&helloErrAfterReader{b: in[:10], err: boom}, 0)
		if !errors.Is(err, boom) || errors.Is(err, ErrMalformedHello) {
			t.Fatalf("got %v; want boom", err)
		}
	})
}

// TestReadHelloExactReads: ReadHello never reads past the hello, even from a
// reader that would hand out more, so the next bytes stay on the conn.
func TestReadHelloExactReads(t *testing.T) {
	in := helloGenerate(t, &tls.Config{ServerName: "e.example", CurvePreferences: []tls.CurveID{tls.X25519MLKEM768}})
	for _, frag := range []int{1, 100, 1 << 14} {
		t.Run(fmt.Sprint(frag), func(t *testing.T) {
			framed := helloReframe(t, in, frag)
			client, server := net.Pipe()
			defer client.Close()
			defer server.Close()
			after := []byte("\x17\x03\x03\x00\x05early")
			go func() { _, _ = client.Write(append(bytes.Clone(framed), after...)) }()
			_ = server.SetDeadline(time.Now().Add(5 * time.Second))
			h, err := ReadHello(server, 0)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(h.Raw, framed) {
				t.Fatalf("Raw: got %d bytes; want %d", len(h.Raw), len(framed))
			}
			rest := make([]byte, len(after))
			if _, err := io.ReadFull(server, rest); err != nil || !bytes.Equal(rest, after) {
				t.Fatalf("next bytes: got %q, %v; want %q", rest, err, after)
			}
		})
	}
}

func BenchmarkReadHello(b *testing.B) {
	for _, bc := range []struct {
		name string
		cfg  *tls.Config
	}{
		{"typical", &tls.Config{ServerName: "www.example.com", NextProtos: []string{"h2", "http/1.1"}, CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256}}},
		{"pq", &tls.Config{ServerName: "www.example.com", NextProtos: []string{"h2", "http/1.1"}, CurvePreferences: []tls.CurveID{tls.X25519MLKEM768, tls.X25519}}},
		{"pq-frag-512", &tls.Config{ServerName: "www.example.com", NextProtos: []string{"h2", "http/1.1"}, CurvePreferences: []tls.CurveID{tls.X25519MLKEM768, tls.X25519}}},
	} {
		in := helloGenerate(b, bc.cfg)
		if strings.HasSuffix(bc.name, "frag-512") {
			in = helloReframe(b, in, 512)
		}
		b.Run(fmt.Sprintf("%s-%dB", bc.name, len(in)), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(in)))
			r := bytes.NewReader(in)
			for b.Loop() {
				r.Reset(in)
				if _, err := ReadHello(r, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
