package tlsmode

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
)

// PROXY v2 headers tlsedge sends to servers: the SSL TLVs of a terminated
// connection (SSLTLVs, through proxyHeaderTLVs as terminate.go sends them)
// and the SNI and ALPN TLVs of a passthrough one (proxyHeader).

var (
	fzSrcAddr = netip.MustParseAddrPort("203.0.113.7:4242")
	fzDstAddr = netip.MustParseAddrPort("192.0.2.1:443")
)

// fzSplitV2 reads a v2 header by the spec, with no size cap (go-proxyproto
// refuses more than proxyproto.MaxV2HeaderSize by default): TCP over IPv4
// from fzSrcAddr to fzDstAddr, and its TLVs.
func fzSplitV2(t *testing.T, b []byte) []proxyproto.TLV {
	t.Helper()
	if len(b) < 28 || !bytes.Equal(b[:12], proxyproto.SIGV2) || b[12] != 0x21 || b[13] != 0x11 {
		t.Fatalf("not a v2 PROXY TCPv4 header: %x", b[:min(len(b), 28)])
	}
	if n := int(binary.BigEndian.Uint16(b[14:16])); n != len(b)-16 {
		t.Fatalf("v2 length field %d; the header holds %d bytes after it", n, len(b)-16)
	}
	src := netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[16:20])), binary.BigEndian.Uint16(b[24:26]))
	dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[20:24])), binary.BigEndian.Uint16(b[26:28]))
	if src != fzSrcAddr || dst != fzDstAddr {
		t.Fatalf("addresses %v %v; want %v %v", src, dst, fzSrcAddr, fzDstAddr)
	}
	tlvs, err := proxyproto.SplitTLVs(b[28:])
	if err != nil {
		t.Fatalf("TLVs of %x: %v", b, err)
	}
	return tlvs
}

// fzCheckTLVText: a TLV value holding text has no C0 control byte and no
// DEL, whatever the text; when the text is valid UTF-8 the value is too,
// holds no C1 control either, and percent-decodes to the text exactly.
func fzCheckTLVText(t *testing.T, what string, v []byte, text string) {
	t.Helper()
	for i, c := range v {
		if c < 0x20 || c == 0x7f {
			t.Fatalf("%s: raw control byte %#02x at %d in %q (from %q)", what, c, i, v, text)
		}
	}
	if !utf8.ValidString(text) {
		return
	}
	if !utf8.Valid(v) {
		t.Fatalf("%s: %q is not UTF-8 (from %q)", what, v, text)
	}
	for _, r := range string(v) {
		if r >= 0x80 && r <= 0x9f {
			t.Fatalf("%s: C1 control %U in %q (from %q)", what, r, v, text)
		}
	}
	if back, err := url.PathUnescape(string(v)); err != nil || back != text {
		t.Fatalf("%s: %q decodes to %q, %v; want %q", what, v, back, err, text)
	}
}

// FuzzSSLTLVs builds the SSL TLVs of a terminated connection from a
// fuzzed state (certificate presented or not, verified or not, resumed or
// not, CN, ALPN and SNI text, version, cipher and group numbers, a leaf
// DER of up to 64 KiB and more) and checks: SSLTLVs fails only with
// ErrSSLTLVTooLarge and only when the TLVs cannot fit; otherwise the header
// proxyHeaderTLVs formats has a length field matching its size, its TLVs
// split back to exactly SSLTLVs' (and, within go-proxyproto's 4 KiB cap,
// go-proxyproto reads the same header back); tlvparse finds a well-formed
// PP2_TYPE_SSL whose client bits and verify match the state, with the CN
// and the DER only when verified; text TLVs (ALPN, authority, version, CN,
// cipher, group) hold no raw control byte and decode to their text.
func FuzzSSLTLVs(f *testing.F) {
	f.Add("client-1", "h2", "api.example.com", uint16(tls.VersionTLS13), uint16(tls.TLS_AES_128_GCM_SHA256), uint16(tls.X25519), uint8(3), []byte("DER"), uint16(0))
	f.Add("a\r\nb%\x00\u0085é", "http/1.1", "x", uint16(tls.VersionTLS12), uint16(tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256), uint16(tls.CurveP256), uint8(7), []byte{0x30}, uint16(0))
	f.Add("\xff\xfe", "h2\x7f", "", uint16(0x7f1c), uint16(0x1234), uint16(0x9999), uint8(3), []byte{}, uint16(0))
	f.Add("big", "h2", "a.example", uint16(tls.VersionTLS13), uint16(tls.TLS_AES_256_GCM_SHA384), uint16(tls.X25519MLKEM768), uint8(3), []byte{1}, uint16(65400))
	f.Add("big", "", "", uint16(tls.VersionTLS13), uint16(tls.TLS_AES_256_GCM_SHA384), uint16(0), uint8(3), []byte{1}, uint16(65535-36-60))
	f.Add("", "", "", uint16(0), uint16(0), uint16(0), uint8(1), []byte{}, uint16(0))
	f.Add("", "", "", uint16(0), uint16(0), uint16(0), uint8(8), []byte{}, uint16(0))

	f.Fuzz(func(t *testing.T, cn, alpn, sni string, version, cipher, curve uint16, flags uint8, der []byte, pad uint16) {
		if len(cn) > 2000 || len(alpn) > 2000 || len(sni) > 2000 || len(der) > 4096 { // pad makes certificates of any size
			return
		}
		withCert, verified, resumed := flags&1 != 0, flags&3 == 3, flags&4 != 0
		var cs *tls.ConnectionState
		if flags&8 == 0 {
			leaf := &x509.Certificate{
				Raw: append(slices.Clone(der), make([]byte, pad)...),
				Subject: pkix.Name{Names: []pkix.AttributeTypeAndValue{
					{Type: []int{2, 5, 4, 10}, Value: "org"}, {Type: pp2OIDCommonName, Value: cn}, {Type: pp2OIDCommonName, Value: "second"},
				}},
			}
			cs = &tls.ConnectionState{
				Version: version, CipherSuite: cipher, CurveID: tls.CurveID(curve), DidResume: resumed,
				NegotiatedProtocol: alpn, ServerName: sni, HandshakeComplete: true,
			}
			if withCert {
				cs.PeerCertificates = []*x509.Certificate{leaf}
				if verified {
					cs.VerifiedChains = [][]*x509.Certificate{{leaf}}
				}
			}
		}
		tlvs, err := SSLTLVs(cs)
		if err != nil {
			// The values other than the DER hold at most 3*2000 bytes of
			// text, 8 TLV headers and names of a few dozen bytes.
			room := pp2MaxTLVs - 3*(len(cn)+len(alpn)+len(sni)) - 200
			if !errors.Is(err, ErrSSLTLVTooLarge) || !verified || cs == nil || len(cs.PeerCertificates[0].Raw) <= room {
				t.Fatalf("SSLTLVs: %v (DER %d bytes, verified %v)", err, len(der)+int(pad), verified)
			}
			return
		}
		b, err := proxyHeaderTLVs(2, &Conn{Source: fzSrcAddr, Dest: fzDstAddr}, tlvs)
		if err != nil {
			t.Fatalf("SSLTLVs accepted TLVs the header cannot carry: %v", err)
		}
		got := fzSplitV2(t, b)
		if !slices.EqualFunc(got, tlvs, func(a, b proxyproto.TLV) bool { return a.Type == b.Type && bytes.Equal(a.Value, b.Value) }) {
			t.Fatalf("TLVs read back differ from SSLTLVs'")
		}
		if len(b)-16 <= int(proxyproto.MaxV2HeaderSize) {
			h, err := proxyproto.Read(bufio.NewReader(bytes.NewReader(b)))
			if err != nil {
				t.Fatalf("go-proxyproto refuses the header: %v", err)
			}
			if back, err := h.TLVs(); err != nil || len(back) != len(tlvs) {
				t.Fatalf("go-proxyproto TLVs: %d, %v; want %d", len(back), err, len(tlvs))
			}
		}
		ssl, ok := tlvparse.FindSSL(got)
		if !ok {
			t.Fatalf("no well-formed PP2_TYPE_SSL in %q", got)
		}
		wantClient := uint8(0)
		if cs != nil {
			wantClient = 0x01
			if withCert {
				wantClient |= 0x04
				if !resumed {
					wantClient |= 0x02
				}
			}
		}
		if ssl.Client != wantClient || ssl.Verified() != (cs != nil && verified) || (!ssl.Verified() && ssl.Verify != 1) {
			t.Fatalf("client %#02x verify %d; want client %#02x, verified %v", ssl.Client, ssl.Verify, wantClient, verified)
		}
		gotCN, hasCN := ssl.ClientCN()
		gotDER, hasDER := ssl.ClientCert()
		if cs == nil || !verified {
			if hasCN || hasDER {
				t.Fatalf("CN %q, DER %d bytes sent without a verified certificate", gotCN, len(gotDER))
			}
		} else {
			if hasCN != (cn != "") || !hasDER || !bytes.Equal(gotDER, cs.PeerCertificates[0].Raw) {
				t.Fatalf("CN %q (%v), DER %d bytes (%v); want CN %q and the leaf", gotCN, hasCN, len(gotDER), hasDER, cn)
			}
		}
		for _, tlv := range got {
			switch tlv.Type {
			case proxyproto.PP2_TYPE_ALPN:
				fzCheckTLVText(t, "ALPN", tlv.Value, alpn)
			case proxyproto.PP2_TYPE_AUTHORITY:
				fzCheckTLVText(t, "authority", tlv.Value, sni)
			case proxyproto.PP2_TYPE_SSL:
			default:
				t.Fatalf("unexpected TLV %#02x", byte(tlv.Type))
			}
		}
		for _, sub := range ssl.TLV {
			switch sub.Type {
			case proxyproto.PP2_SUBTYPE_SSL_CN:
				fzCheckTLVText(t, "SSL_CN", sub.Value, strings.ToValidUTF8(cn, "\uFFFD"))
			case proxyproto.PP2_SUBTYPE_SSL_VERSION, proxyproto.PP2_SUBTYPE_SSL_CIPHER, proxyproto.PP2_SUBTYPE_SSL_GROUP:
				fzCheckTLVText(t, "SSL sub-TLV", sub.Value, string(sub.Value))
				if len(sub.Value) == 0 {
					t.Fatalf("empty sub-TLV %#02x", byte(sub.Type))
				}
			case proxyproto.PP2_SUBTYPE_SSL_CLIENT_CERT:
			default:
				t.Fatalf("unexpected SSL sub-TLV %#02x", byte(sub.Type))
			}
		}
	})
}

// FuzzPassthroughProxyHeader: the PROXY header of a passthrough connection
// carries the client's SNI and first ALPN offer, both the client's own
// text. For any ClientHello ReadHello accepts: the v1 and v2 headers format
// and read back with the connection's addresses; v2 carries exactly the
// authority (the SNI, when there is one) and the ALPN (the first offer,
// when there is one), and, as SECURITY.md says of every PROXY v2 TLV,
// neither holds a raw control byte (the ALPN decodes to the offer, and a
// printable offer without "%" is sent as it is).
func FuzzPassthroughProxyHeader(f *testing.F) {
	f.Add("app.example.com", "h2\xffhttp/1.1")
	f.Add("app.example.com", "")
	f.Add("", "h2")
	f.Add("x", "a\r\nX-Injected: 1\xffh2")
	f.Add("x", "\x00")
	f.Add("x", "100%\x7f\u0085")
	f.Add("x", "\xc3")

	f.Fuzz(func(t *testing.T, sni, alpns string) {
		if len(sni) > 1000 || len(alpns) > 4000 {
			return
		}
		var exts []helloExt
		if sni != "" {
			exts = append(exts, helloSNI(sni))
		}
		if alpns != "" {
			names := strings.Split(alpns, "\xff")
			for i := range names {
				names[i] = names[i][:min(len(names[i]), 255)]
			}
			exts = append(exts, helloALPNExt(names...))
		}
		in := helloDefaultSpec().withExts(exts...).hello()
		h, err := ReadHello(bytes.NewReader(in), 0)
		if h == nil {
			return // refused: never routed
		}
		_ = err // ErrNoSNI: routed to the default route
		c := &Conn{Hello: h, Source: fzSrcAddr, Dest: fzDstAddr}
		for _, v := range []byte{1, 2} {
			b, err := proxyHeader(v, c)
			if err != nil {
				t.Fatalf("v%d: %v", v, err)
			}
			ph, err := proxyproto.Read(bufio.NewReader(bytes.NewReader(b)))
			if err != nil {
				t.Fatalf("v%d: go-proxyproto refuses %q: %v", v, b, err)
			}
			s, d, ok := ph.TCPAddrs()
			if !ok || s.AddrPort() != fzSrcAddr || d.AddrPort() != fzDstAddr {
				t.Fatalf("v%d: addresses %v %v", v, s, d)
			}
			if v == 1 {
				continue
			}
			tlvs := fzSplitV2(t, b)
			var sawSNI, sawALPN bool
			for _, tlv := range tlvs {
				switch tlv.Type {
				case proxyproto.PP2_TYPE_AUTHORITY:
					sawSNI = true
					fzCheckTLVText(t, "authority", tlv.Value, h.ServerName)
				case proxyproto.PP2_TYPE_ALPN:
					sawALPN = true
					fzCheckTLVText(t, "ALPN", tlv.Value, h.ALPN[0])
					plain := !strings.Contains(h.ALPN[0], "%")
					for i := 0; i < len(h.ALPN[0]); i++ {
						plain = plain && h.ALPN[0][i] >= 0x20 && h.ALPN[0][i] < 0x7f
					}
					if plain && string(tlv.Value) != h.ALPN[0] {
						t.Fatalf("ALPN %q sent as %q", h.ALPN[0], tlv.Value)
					}
				default:
					t.Fatalf("unexpected TLV %#02x", byte(tlv.Type))
				}
			}
			if sawSNI != (h.ServerName != "") || sawALPN != (len(h.ALPN) > 0) {
				t.Fatalf("TLVs %q for SNI %q, ALPN %q", tlvs, h.ServerName, h.ALPN)
			}
		}
	})
}
