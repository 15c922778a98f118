package tlsmode

import (
	"bytes"
	"crypto/tls"
	"hash/fnv"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

// FuzzReadHello checks ReadHello's invariants on arbitrary input and caps:
// no panic; never more than max bytes read; exactly one error class; on
// success Raw is the consumed prefix of the input and ServerName is
// normalized; every strict prefix of an accepted input is a read error (so a
// truncated hello can never pass as complete or as "no SNI"); reading one byte
// at a time gives the same answer.
//
// With frag == 0, data is the byte stream itself (record layer included);
// with frag > 0, data is handshake bytes that the target frames into records
// of frag bytes, so the fuzzer explores reassembly without paying for record
// headers. Seeds are generated hellos with classic (X25519) key shares: the
// minimizer is quadratic in input size, and a 1.2 KB post-quantum key share
// is opaque to the parser (the unit tests cover PQ hellos at every split).
func FuzzReadHello(f *testing.F) {
	for _, tc := range helloGenCases() {
		cfg := tc.cfg.Clone()
		cfg.CurvePreferences = []tls.CurveID{tls.X25519}
		in := helloGenerate(f, cfg)
		f.Add(in, uint8(0), uint16(0))
		f.Add(in, uint8(0), uint16(len(in)))
		f.Add(in, uint8(0), uint16(len(in)-1))
		hs := helloHandshakeBytes(f, in)
		for _, frag := range []uint8{1, 7, 100, 255} {
			f.Add(hs, frag, uint16(0))
		}
	}
	def := helloDefaultSpec()
	for _, in := range [][]byte{
		def.hello(),
		def.withExts(helloSNI("192.0.2.1")).hello(),
		def.withExts(helloSNI("a.example."), helloALPNExt("h2")).hello(),
		def.withExts(helloSNI("A.example"), helloALPNExt("h2"), helloALPNExt("h2")).hello(),
		def.withExts(helloSNIEntries(uint8(1), "x", uint8(0), "B.example"), helloVersionsExt(0x0a0a, 0x0304)).hello(),
		func() []byte { s := def; s.noExts = true; return s.hello() }(),
	} {
		f.Add(in, uint8(0), uint16(0))
		f.Add(helloReframe(f, in, 3), uint8(0), uint16(0))
		f.Add(helloHandshakeBytes(f, in), uint8(2), uint16(0))
	}
	for _, in := range [][]byte{
		helloFrame(3, 1, []byte{1, 0x10, 0, 0}, 1),
		[]byte("GET / HTTP/1.1\r\n\r\n"),
		{0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15},
		{22, 3, 1, 0, 0},
	} {
		f.Add(in, uint8(0), uint16(0))
	}

	f.Fuzz(func(t *testing.T, in []byte, frag uint8, maxSeed uint16) {
		data := in
		if frag > 0 {
			data = helloFrame(3, 1, in, int(frag))
		}
		max := int(maxSeed)
		eff := max
		if eff <= 0 {
			eff = DefaultMaxHello
		}
		cr := &helloCountingReader{r: bytes.NewReader(data)}
		h, err := ReadHello(cr, max)
		if cr.n > eff {
			t.Fatalf("read %d bytes; want <= %d", cr.n, eff)
		}
		class := helloErrClass(t, err)
		switch class {
		case "ok", "no-sni", "not-tls", "malformed", "too-large":
		case "eof":
			if len(data) != 0 {
				t.Fatalf("io.EOF on %d bytes of input", len(data))
			}
		case "unexpected-eof":
			if cr.n != len(data) {
				t.Fatalf("unexpected EOF after %d of %d bytes", cr.n, len(data))
			}
		default:
			t.Fatalf("unclassified error %v", err)
		}
		if class != "ok" && class != "no-sni" {
			if h != nil {
				t.Fatalf("got a *Hello with %v", err)
			}
			return
		}
		if h == nil {
			t.Fatalf("nil *Hello with %v", err)
		}
		if len(h.Raw) > eff || len(h.Raw) != cr.n || !bytes.Equal(h.Raw, data[:cr.n]) {
			t.Fatalf("Raw: %d bytes, read %d, max %d; want the consumed prefix", len(h.Raw), cr.n, eff)
		}
		helloCheckName(t, h.ServerName, class)

		// Same answer one byte per Read.
		h1, err1 := ReadHello(iotest.OneByteReader(bytes.NewReader(data)), max)
		if helloErrClass(t, err1) != class || h1 == nil || h1.ServerName != h.ServerName ||
			!slices.Equal(h1.ALPN, h.ALPN) || !slices.Equal(h1.Versions, h.Versions) || !bytes.Equal(h1.Raw, h.Raw) {
			t.Fatalf("one byte per Read: got %+v, %v; want %+v, %v", h1, err1, h, err)
		}

		// No strict prefix parses: the last byte cut, the first header
		// only, and a few pseudo-random cuts.
		sum := fnv.New64a()
		sum.Write(data)
		seed := sum.Sum64()
		cuts := []int{len(h.Raw) - 1, min(5, len(h.Raw)-1), 0}
		for range 4 {
			seed = seed*6364136223846793005 + 1442695040888963407
			cuts = append(cuts, int(seed>>33)%len(h.Raw))
		}
		for _, n := range cuts {
			hp, errp := ReadHello(bytes.NewReader(h.Raw[:n]), max)
			want := "unexpected-eof"
			if n == 0 {
				want = "eof"
			}
			if got := helloErrClass(t, errp); hp != nil || got != want {
				t.Fatalf("prefix %d of %d: got %v, %q (%v); want %q", n, len(h.Raw), hp, got, errp, want)
			}
		}
	})
}

// helloCheckName checks a parsed ServerName is normalized.
func helloCheckName(t *testing.T, name, class string) {
	t.Helper()
	if class == "no-sni" {
		if name != "" {
			t.Fatalf("ServerName %q with ErrNoSNI", name)
		}
		return
	}
	if name == "" {
		t.Fatal("empty ServerName without ErrNoSNI")
	}
	if name != strings.ToLower(name) || strings.HasSuffix(name, ".") || strings.HasPrefix(name, ".") || strings.Contains(name, "..") {
		t.Fatalf("ServerName %q not normalized", name)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c > '~' {
			t.Fatalf("ServerName %q has byte %#02x", name, c)
		}
	}
	if _, err := netip.ParseAddr(name); err == nil {
		t.Fatalf("ServerName %q is an IP literal", name)
	}
}
