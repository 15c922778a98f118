package tlsmode

import (
	"crypto/tls"
	"encoding/asn1"
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
)

// ErrSSLTLVTooLarge means the PROXY v2 TLVs for a connection (in practice a
// huge client certificate) do not fit the 16-bit length fields of the
// header.
var ErrSSLTLVTooLarge = errors.New("tlsmode: PROXY v2 SSL TLVs too large")

// PP2_TYPE_SSL client bits and the verify value sent when the client
// certificate was not verified or there was none (PROXY protocol spec
// §2.2.5: verify is zero only when a certificate was presented and
// verified).
const (
	pp2ClientSSL      = 0x01
	pp2ClientCertConn = 0x02
	pp2ClientCertSess = 0x04
	pp2NotVerified    = 1 // X509_V_ERR_UNSPECIFIED
)

// pp2MaxTLVs is the room for TLVs in a v2 header: its 16-bit length covers
// the address block too (36 bytes for TCP over IPv6).
const pp2MaxTLVs = math.MaxUint16 - 36

// SSLTLVs builds the PROXY v2 TLVs that describe a TLS connection tlsedge
// terminated (HAProxy's send-proxy-v2-ssl-cn, PROXY protocol spec §2.2.5),
// in this order:
//
//   - PP2_TYPE_ALPN: cs.NegotiatedProtocol, when not empty.
//   - PP2_TYPE_AUTHORITY: cs.ServerName (the SNI), when not empty.
//
// Every value that holds a peer's text (ALPN, SNI, CN) goes through
// pp2Text: control characters and "%" are percent-encoded, so no raw
// control byte reaches a receiver that logs or splits the value, and
// percent-decoding gives the exact text back. The SNI and the protocol
// never need it (ReadHello refuses a server name with a control byte; the
// protocol is one of the route's); a CN may.
//   - PP2_TYPE_SSL, described below.
//
// PP2_TYPE_SSL's client bits are PP2_CLIENT_SSL, plus PP2_CLIENT_CERT_SESS
// when the client presented a certificate on this TLS session and
// PP2_CLIENT_CERT_CONN too unless the session was resumed (then the
// certificate came in an earlier handshake). Its verify is 0 only when a
// certificate was presented and tlsedge verified its chain
// (cs.VerifiedChains non-empty), else 1 — also when there was no
// certificate, as the spec says (HAProxy sends 0 there). Its sub-TLVs:
//
//   - PP2_SUBTYPE_SSL_VERSION: OpenSSL's name, as HAProxy sends it
//     ("TLSv1.3", "TLSv1.2", "TLSv1").
//   - PP2_SUBTYPE_SSL_CN: the first CN of the client certificate's subject
//     in UTF-8 (invalid bytes replaced by U+FFFD), when it has one, with
//     control characters (C0, DEL, C1) and "%" percent-encoded (%HH per
//     UTF-8 byte): "a\r\nb%" is sent as "a%0D%0Ab%25".
//   - PP2_SUBTYPE_SSL_CIPHER: OpenSSL's name of the cipher suite, as HAProxy
//     sends it ("ECDHE-RSA-AES128-GCM-SHA256", "TLS_AES_128_GCM_SHA256");
//     Go's name for a suite OpenSSL does not name.
//   - PP2_SUBTYPE_SSL_GROUP: the key exchange group by its OpenSSL/IANA name
//     ("X25519", "secp256r1", "X25519MLKEM768"), when known.
//   - PP2_SUBTYPE_SSL_CLIENT_CERT: the leaf certificate's DER.
//
// As with the identity headers, the CN and the certificate are sent only
// when the certificate was verified: for an unverified one (client_auth
// request) the client bits and verify say a certificate came, and nothing
// from it is forwarded. PP2_SUBTYPE_SSL_SIG_ALG and _KEY_ALG describe the
// certificate tlsedge itself presented, which a tls.ConnectionState does not
// hold, and crypto/tls does not expose the signature scheme
// (PP2_SUBTYPE_SSL_SIG_SCHEME): none of them is sent.
//
// A nil cs describes a connection that was not TLS: PP2_TYPE_SSL with no
// client bits and verify 1. The error wraps ErrSSLTLVTooLarge when the TLVs
// cannot fit a v2 header. Receivers using go-proxyproto accept only 4 KiB
// headers by default (proxyproto.MaxV2HeaderSize); a typical client
// certificate is 0.5 to 2 KiB.
func SSLTLVs(cs *tls.ConnectionState) ([]proxyproto.TLV, error) {
	if cs == nil {
		return []proxyproto.TLV{{Type: proxyproto.PP2_TYPE_SSL, Value: []byte{0, 0, 0, 0, pp2NotVerified}}}, nil
	}
	var tlvs []proxyproto.TLV
	if cs.NegotiatedProtocol != "" {
		tlvs = append(tlvs, proxyproto.TLV{Type: proxyproto.PP2_TYPE_ALPN, Value: []byte(pp2Text(cs.NegotiatedProtocol))})
	}
	if cs.ServerName != "" {
		tlvs = append(tlvs, proxyproto.TLV{Type: proxyproto.PP2_TYPE_AUTHORITY, Value: []byte(pp2Text(cs.ServerName))})
	}

	client := byte(pp2ClientSSL)
	verify := uint32(pp2NotVerified)
	if len(cs.PeerCertificates) > 0 {
		client |= pp2ClientCertSess
		if !cs.DidResume {
			client |= pp2ClientCertConn
		}
		if len(cs.VerifiedChains) > 0 {
			verify = 0
		}
	}
	sub := []proxyproto.TLV{{Type: proxyproto.PP2_SUBTYPE_SSL_VERSION, Value: []byte(pp2VersionName(cs.Version))}}
	if verify == 0 {
		if cn := pp2CommonName(cs); cn != "" {
			sub = append(sub, proxyproto.TLV{Type: proxyproto.PP2_SUBTYPE_SSL_CN, Value: []byte(pp2Text(cn))})
		}
	}
	sub = append(sub, proxyproto.TLV{Type: proxyproto.PP2_SUBTYPE_SSL_CIPHER, Value: []byte(pp2CipherName(cs.CipherSuite))})
	if g := pp2GroupName(cs.CurveID); g != "" {
		sub = append(sub, proxyproto.TLV{Type: proxyproto.PP2_SUBTYPE_SSL_GROUP, Value: []byte(g)})
	}
	if verify == 0 {
		sub = append(sub, proxyproto.TLV{Type: proxyproto.PP2_SUBTYPE_SSL_CLIENT_CERT, Value: cs.PeerCertificates[0].Raw})
	}

	// struct pp2_tlv_ssl { uint8_t client; uint32_t verify; struct pp2_tlv sub_tlv[0]; }
	for _, t := range sub {
		if len(t.Value) > math.MaxUint16 {
			return nil, fmt.Errorf("building PROXY v2 SSL TLV: sub-TLV 0x%02x is %d bytes: %w", byte(t.Type), len(t.Value), ErrSSLTLVTooLarge)
		}
	}
	ssl, err := tlvparse.PP2SSL{Client: client, Verify: verify, TLV: sub}.Marshal()
	if err != nil {
		return nil, fmt.Errorf("building PROXY v2 SSL TLV: %v: %w", err, ErrSSLTLVTooLarge)
	}
	value := ssl.Value
	tlvs = append(tlvs, proxyproto.TLV{Type: proxyproto.PP2_TYPE_SSL, Value: value})
	if n := pp2TLVsLen(tlvs); len(value) > math.MaxUint16 || n > pp2MaxTLVs {
		return nil, fmt.Errorf("building PROXY v2 SSL TLV: %d bytes of TLVs: %w", n, ErrSSLTLVTooLarge)
	}
	return tlvs, nil
}

func pp2TLVsLen(tlvs []proxyproto.TLV) int {
	n := 0
	for _, t := range tlvs {
		n += 3 + len(t.Value)
	}
	return n
}

// pp2CommonName is the first CN in the client certificate's subject, in
// DER order (as HAProxy's ssl_sock_get_remote_common_name takes it), valid UTF-8.
func pp2CommonName(cs *tls.ConnectionState) string {
	for _, atv := range cs.PeerCertificates[0].Subject.Names {
		if atv.Type.Equal(pp2OIDCommonName) {
			if s, ok := atv.Value.(string); ok {
				return strings.ToValidUTF8(s, "\uFFFD")
			}
		}
	}
	return ""
}

var pp2OIDCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}

// pp2Text percent-encodes the control characters (C0, DEL and the C1
// range U+0080-U+009F, each UTF-8 byte as %HH, uppercase) and "%" of a
// peer's text for a TLV; other characters, non-ASCII ones included, are
// kept. Text with none of them is returned as is.
func pp2Text(s string) string {
	enc := func(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == '%' }
	if strings.IndexFunc(s, enc) < 0 {
		return s
	}
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) + 8)
	for _, r := range s {
		if !enc(r) {
			b.WriteRune(r)
			continue
		}
		var u [4]byte
		for _, c := range u[:utf8.EncodeRune(u[:], r)] {
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&15])
		}
	}
	return b.String()
}

// pp2VersionName is OpenSSL's SSL_get_version name, which HAProxy sends.
func pp2VersionName(v uint16) string {
	switch v {
	case tls.VersionTLS13:
		return "TLSv1.3"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS10:
		return "TLSv1"
	case 0x0300: // SSL 3.0: crypto/tls never negotiates it
		return "SSLv3"
	}
	return fmt.Sprintf("0x%04X", v)
}

// pp2CipherNames maps the suites crypto/tls implements to OpenSSL's names
// (`openssl ciphers -V`). TLS 1.3 names are the same in both.
var pp2CipherNames = map[uint16]string{
	tls.TLS_AES_128_GCM_SHA256:                        "TLS_AES_128_GCM_SHA256",
	tls.TLS_AES_256_GCM_SHA384:                        "TLS_AES_256_GCM_SHA384",
	tls.TLS_CHACHA20_POLY1305_SHA256:                  "TLS_CHACHA20_POLY1305_SHA256",
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256:       "ECDHE-ECDSA-AES128-GCM-SHA256",
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384:       "ECDHE-ECDSA-AES256-GCM-SHA384",
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256: "ECDHE-ECDSA-CHACHA20-POLY1305",
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256:         "ECDHE-RSA-AES128-GCM-SHA256",
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384:         "ECDHE-RSA-AES256-GCM-SHA384",
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256:   "ECDHE-RSA-CHACHA20-POLY1305",
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256:       "ECDHE-ECDSA-AES128-SHA256",
	tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256:         "ECDHE-RSA-AES128-SHA256",
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA:          "ECDHE-ECDSA-AES128-SHA",
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA:          "ECDHE-ECDSA-AES256-SHA",
	tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA:            "ECDHE-RSA-AES128-SHA",
	tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA:            "ECDHE-RSA-AES256-SHA",
	tls.TLS_RSA_WITH_AES_128_GCM_SHA256:               "AES128-GCM-SHA256",
	tls.TLS_RSA_WITH_AES_256_GCM_SHA384:               "AES256-GCM-SHA384",
	tls.TLS_RSA_WITH_AES_128_CBC_SHA256:               "AES128-SHA256",
	tls.TLS_RSA_WITH_AES_128_CBC_SHA:                  "AES128-SHA",
	tls.TLS_RSA_WITH_AES_256_CBC_SHA:                  "AES256-SHA",
	tls.TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA:           "ECDHE-RSA-DES-CBC3-SHA",
	tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA:                 "DES-CBC3-SHA",
	tls.TLS_ECDHE_ECDSA_WITH_RC4_128_SHA:              "ECDHE-ECDSA-RC4-SHA",
	tls.TLS_ECDHE_RSA_WITH_RC4_128_SHA:                "ECDHE-RSA-RC4-SHA",
	tls.TLS_RSA_WITH_RC4_128_SHA:                      "RC4-SHA",
}

func pp2CipherName(id uint16) string {
	if s, ok := pp2CipherNames[id]; ok {
		return s
	}
	return tls.CipherSuiteName(id) // Go's name, or "0xXXXX"
}

// pp2GroupName is the TLS group name OpenSSL reports (SSL_get0_group_name),
// "" when unknown.
func pp2GroupName(id tls.CurveID) string {
	switch id {
	case tls.X25519:
		return "X25519"
	case tls.CurveP256:
		return "secp256r1"
	case tls.CurveP384:
		return "secp384r1"
	case tls.CurveP521:
		return "secp521r1"
	case tls.X25519MLKEM768:
		return "X25519MLKEM768"
	case tls.SecP256r1MLKEM768:
		return "SecP256r1MLKEM768"
	case tls.SecP384r1MLKEM1024:
		return "SecP384r1MLKEM1024"
	}
	return ""
}
