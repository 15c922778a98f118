package tlsmode

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
	"github.com/tlsedge/tlsedge/internal/idtest"
)

// pp2Header formats a whole PROXY v2 header carrying tlvs, as a server would
// receive it.
func pp2Header(t *testing.T, tlvs []proxyproto.TLV) []byte {
	t.Helper()
	h := proxyproto.HeaderProxyFromAddrs(2,
		&net.TCPAddr{IP: net.ParseIP("203.0.113.7"), Port: 4242},
		&net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 443})
	if err := h.SetTLVs(tlvs); err != nil {
		t.Fatal(err)
	}
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pp2ReadBack parses a header the way a server using go-proxyproto does.
func pp2ReadBack(t *testing.T, b []byte) (*proxyproto.Header, tlvparse.PP2SSL) {
	t.Helper()
	h, err := proxyproto.Read(bufio.NewReader(bytes.NewReader(b)))
	if err != nil {
		t.Fatal(err)
	}
	tlvs, err := h.TLVs()
	if err != nil {
		t.Fatal(err)
	}
	ssl, ok := tlvparse.FindSSL(tlvs)
	if !ok {
		t.Fatalf("no well-formed PP2_TYPE_SSL in %x", b)
	}
	return h, ssl
}

func pp2TLV(t *testing.T, h *proxyproto.Header, typ proxyproto.PP2Type) (string, bool) {
	t.Helper()
	tlvs, err := h.TLVs()
	if err != nil {
		t.Fatal(err)
	}
	for _, tlv := range tlvs {
		if tlv.Type == typ {
			return string(tlv.Value), true
		}
	}
	return "", false
}

// The PROXY v2 header for a terminated connection is a stable wire format.
func TestSSLTLVGolden(t *testing.T) {
	p := idtest.MakePKI(t)
	for _, state := range append(idtest.States, "nil") {
		t.Run(state, func(t *testing.T) {
			var cs *tls.ConnectionState
			if state != "nil" {
				cs = idtest.State(p, state)
			}
			tlvs, err := SSLTLVs(cs)
			if err != nil {
				t.Fatal(err)
			}
			idtest.Golden(t, "pp2-"+state, hex.Dump(pp2Header(t, tlvs)), true)
		})
	}
}

func TestSSLTLVFields(t *testing.T) {
	p := idtest.MakePKI(t)
	tests := []struct {
		state          string
		client         uint8
		verify         uint32
		cn             string // "" = absent
		cert           *x509.Certificate
		conn, sess, ok bool
	}{
		{"verified", 0x07, 0, "client-1", p.Leaf, true, true, true},
		{"tricky", 0x07, 0, "Eve \"the hacker\", Jr.; x=1%0D%0AX-Injected: 1\\", p.Tricky, true, true, true}, // control bytes escaped
		{"unverified", 0x07, 1, "", nil, true, true, false},
		{"nocert", 0x01, 1, "", nil, false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.state, func(t *testing.T) {
			tlvs, err := SSLTLVs(idtest.State(p, tt.state))
			if err != nil {
				t.Fatal(err)
			}
			h, ssl := pp2ReadBack(t, pp2Header(t, tlvs))
			if ssl.Client != tt.client || ssl.Verify != tt.verify || ssl.Verified() != tt.ok ||
				ssl.ClientCertConn() != tt.conn || ssl.ClientCertSess() != tt.sess || !ssl.ClientSSL() {
				t.Errorf("client 0x%02x verify %d; want client 0x%02x verify %d", ssl.Client, ssl.Verify, tt.client, tt.verify)
			}
			if v, _ := ssl.SSLVersion(); v != "TLSv1.3" {
				t.Errorf("version: got %q; want TLSv1.3", v)
			}
			if c, _ := ssl.SSLCipher(); c != "TLS_AES_128_GCM_SHA256" {
				t.Errorf("cipher: got %q; want TLS_AES_128_GCM_SHA256", c)
			}
			if g, _ := ssl.SSLGroup(); g != "X25519" {
				t.Errorf("group: got %q; want X25519", g)
			}
			if cn, ok := ssl.ClientCN(); cn != tt.cn || ok != (tt.cn != "") {
				t.Errorf("CN: got %q, %v; want %q", cn, ok, tt.cn)
			}
			der, ok := ssl.ClientCert()
			switch {
			case tt.cert == nil && ok:
				t.Errorf("client cert sent for a certificate tlsedge did not verify")
			case tt.cert != nil && !bytes.Equal(der, tt.cert.Raw):
				t.Errorf("client cert: got %d bytes; want the leaf's %d", len(der), len(tt.cert.Raw))
			}
			if _, ok := ssl.SSLSigAlg(); ok {
				t.Error("SIG_ALG sent: it describes tlsedge's own certificate, unknown here")
			}
			if a, _ := pp2TLV(t, h, proxyproto.PP2_TYPE_AUTHORITY); a != "api.example.com" {
				t.Errorf("authority: got %q; want api.example.com", a)
			}
			if a, _ := pp2TLV(t, h, proxyproto.PP2_TYPE_ALPN); a != "h2" {
				t.Errorf("ALPN: got %q; want h2", a)
			}
		})
	}

	// No SNI, no ALPN: no TLV for them.
	cs := idtest.State(p, "nocert")
	cs.ServerName, cs.NegotiatedProtocol = "", ""
	tlvs, err := SSLTLVs(cs)
	if err != nil {
		t.Fatal(err)
	}
	if len(tlvs) != 1 || tlvs[0].Type != proxyproto.PP2_TYPE_SSL {
		t.Errorf("got %d TLVs; want only PP2_TYPE_SSL", len(tlvs))
	}
	// A resumed session: the certificate came in an earlier handshake.
	cs = idtest.State(p, "verified")
	cs.DidResume = true
	tlvs, _ = SSLTLVs(cs)
	if _, ssl := pp2ReadBack(t, pp2Header(t, tlvs)); ssl.Client != 0x05 {
		t.Errorf("resumed: client 0x%02x; want 0x05 (SSL|CERT_SESS, no CERT_CONN)", ssl.Client)
	}
	// Not TLS at all.
	tlvs, _ = SSLTLVs(nil)
	if _, ssl := pp2ReadBack(t, pp2Header(t, tlvs)); ssl.Client != 0 || ssl.Verified() {
		t.Errorf("nil state: client 0x%02x verify %d; want 0, non-zero", ssl.Client, ssl.Verify)
	}
}

func TestSSLTLVTooLarge(t *testing.T) {
	cs := &tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256}
	big := &x509.Certificate{Raw: make([]byte, 70000)}
	cs.PeerCertificates = []*x509.Certificate{big}
	cs.VerifiedChains = [][]*x509.Certificate{{big}}
	if _, err := SSLTLVs(cs); !errors.Is(err, ErrSSLTLVTooLarge) {
		t.Errorf("got %v; want ErrSSLTLVTooLarge", err)
	}
	big.Raw = make([]byte, 65500) // each sub-TLV fits, PP2_TYPE_SSL does not
	if _, err := SSLTLVs(cs); !errors.Is(err, ErrSSLTLVTooLarge) {
		t.Errorf("got %v; want ErrSSLTLVTooLarge", err)
	}
	big.Raw = make([]byte, 65480) // PP2_TYPE_SSL fits, an IPv6 header would not
	if _, err := SSLTLVs(cs); !errors.Is(err, ErrSSLTLVTooLarge) {
		t.Errorf("got %v; want ErrSSLTLVTooLarge", err)
	}
	big.Raw = make([]byte, 60000)
	tlvs, err := SSLTLVs(cs)
	if err != nil {
		t.Fatal(err)
	}
	pp2Header(t, tlvs) // formats
}

// Real handshakes, read back with go-proxyproto and tlvparse.
func TestSSLTLVRoundTrip(t *testing.T) {
	x := idtest.NewTLS(t)
	for _, tt := range []struct {
		name        string
		auth        tls.ClientAuthType
		withCert    bool
		max         uint16
		version     string
		verified    bool
		client      uint8
		cipherMatch string
	}{
		{"tls13 verified", tls.RequireAndVerifyClientCert, true, 0, "TLSv1.3", true, 0x07, "TLS_"},
		{"tls12 verified", tls.RequireAndVerifyClientCert, true, tls.VersionTLS12, "TLSv1.2", true, 0x07, "ECDHE-ECDSA-"},
		{"tls13 unverified", tls.RequestClientCert, true, 0, "TLSv1.3", false, 0x07, "TLS_"},
		{"tls13 no cert", tls.VerifyClientCertIfGiven, false, 0, "TLSv1.3", false, 0x01, "TLS_"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			scfg, ccfg := x.Configs(tt.auth, tt.withCert, tt.max)
			cs := idtest.Handshake(t, scfg, ccfg)
			tlvs, err := SSLTLVs(&cs)
			if err != nil {
				t.Fatal(err)
			}
			h, ssl := pp2ReadBack(t, pp2Header(t, tlvs))
			if ssl.Client != tt.client || ssl.Verified() != tt.verified {
				t.Errorf("client 0x%02x verify %d; want client 0x%02x verified %v", ssl.Client, ssl.Verify, tt.client, tt.verified)
			}
			if v, _ := ssl.SSLVersion(); v != tt.version {
				t.Errorf("version: got %q; want %q", v, tt.version)
			}
			if c, _ := ssl.SSLCipher(); !strings.HasPrefix(c, tt.cipherMatch) || c != pp2CipherNames[cs.CipherSuite] {
				t.Errorf("cipher: got %q for %s", c, tls.CipherSuiteName(cs.CipherSuite))
			}
			cn, _ := ssl.ClientCN()
			der, _ := ssl.ClientCert()
			if tt.verified {
				if cn != "client-1" || !bytes.Equal(der, x.P.Leaf.Raw) {
					t.Errorf("CN %q, cert %d bytes; want client-1 and the leaf", cn, len(der))
				}
			} else if cn != "" || der != nil {
				t.Errorf("CN %q, cert %d bytes from an unverified connection", cn, len(der))
			}
			if a, _ := pp2TLV(t, h, proxyproto.PP2_TYPE_AUTHORITY); a != "server.test" {
				t.Errorf("authority: got %q; want server.test", a)
			}
			if a, _ := pp2TLV(t, h, proxyproto.PP2_TYPE_ALPN); a != "h2" {
				t.Errorf("ALPN: got %q; want h2", a)
			}
		})
	}
}

// On a resumed session crypto/tls restores the verified chain: the identity
// is still forwarded, and PP2_CLIENT_CERT_CONN is off.
func TestSSLTLVResumption(t *testing.T) {
	x := idtest.NewTLS(t)
	scfg, ccfg := x.Configs(tls.RequireAndVerifyClientCert, true, 0)
	scfg.SessionTicketsDisabled = false
	ccfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	first := idtest.Handshake(t, scfg, ccfg)
	second := idtest.Handshake(t, scfg, ccfg)
	if first.DidResume || !second.DidResume {
		t.Fatalf("DidResume %v, %v; want false, true", first.DidResume, second.DidResume)
	}
	tlvs, err := SSLTLVs(&second)
	if err != nil {
		t.Fatal(err)
	}
	_, ssl := pp2ReadBack(t, pp2Header(t, tlvs))
	if ssl.Client != 0x05 || !ssl.Verified() {
		t.Errorf("client 0x%02x verify %d; want 0x05 and verified", ssl.Client, ssl.Verify)
	}
	h := make(map[string][]string)
	idParse(t, "ssl").Set(h, &second)
	if got := h["X-Ssl-Client-Verify"]; len(got) != 1 || got[0] != "SUCCESS" {
		t.Errorf("X-SSL-Client-Verify on resumption: got %q; want SUCCESS", got)
	}
}

func TestSSLTLVNames(t *testing.T) {
	for _, s := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		if _, ok := pp2CipherNames[s.ID]; !ok {
			t.Errorf("no OpenSSL name for %s", s.Name)
		}
	}
	if got := pp2CipherName(0x1234); got != "0x1234" {
		t.Errorf("unknown suite: got %q; want 0x1234", got)
	}
	for v, want := range map[uint16]string{tls.VersionTLS13: "TLSv1.3", tls.VersionTLS12: "TLSv1.2", tls.VersionTLS11: "TLSv1.1", tls.VersionTLS10: "TLSv1", 0x7f1c: "0x7F1C"} {
		if got := pp2VersionName(v); got != want {
			t.Errorf("version 0x%04x: got %q; want %q", v, got, want)
		}
	}
	// Cross-check the names with the local OpenSSL, for the suites it knows.
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("no openssl")
	}
	out, err := exec.Command("openssl", "ciphers", "-V", "ALL:COMPLEMENTOFALL:@SECLEVEL=0").Output()
	if err != nil {
		t.Skipf("openssl ciphers: %v", err)
	}
	checked := 0
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || len(f[0]) != 9 {
			continue
		}
		hi, err1 := strconv.ParseUint(f[0][2:4], 16, 8)
		lo, err2 := strconv.ParseUint(f[0][7:9], 16, 8)
		if err1 != nil || err2 != nil {
			continue
		}
		id := binary.BigEndian.Uint16([]byte{byte(hi), byte(lo)})
		if name, ok := pp2CipherNames[id]; ok {
			checked++
			if name != f[2] {
				t.Errorf("0x%04x: got %q; want %q (openssl)", id, name, f[2])
			}
		}
	}
	if checked < 10 {
		t.Errorf("only %d suites cross-checked with openssl", checked)
	}
}

// A peer's text in a TLV carries no raw control byte: C0, DEL, C1 and "%"
// are percent-encoded, everything else (non-ASCII letters too) is kept, and
// percent-decoding gives the text back.
func TestPP2Text(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"client-1", "client-1"},
		{"Jürgen Ørsted", "Jürgen Ørsted"},
		{"a\r\nX-Injected: 1", "a%0D%0AX-Injected: 1"},
		{"nul\x00tab\tesc\x1bdel\x7f", "nul%00tab%09esc%1Bdel%7F"},
		{"next line\u0085csi\u009b", "next line%C2%85csi%C2%9B"},
		{"100% sure", "100%25 sure"},
	} {
		got := pp2Text(tc.in)
		if got != tc.want {
			t.Errorf("pp2Text(%q): got %q; want %q", tc.in, got, tc.want)
		}
		if back, err := url.PathUnescape(got); err != nil || back != tc.in {
			t.Errorf("percent-decoding %q: got %q, %v; want %q", got, back, err, tc.in)
		}
	}
}
