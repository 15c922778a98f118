package tlsmode

// Alert 49 (access_denied) for a client certificate that verified but is
// not on the route's allow list.
//
// crypto/tls answers any error of VerifyConnection with alert 42
// (bad_certificate) and has no way to send another. A client must be able
// to tell "your certificate is bad" from "your certificate is fine but not
// allowed here", so the connection's writer rewrites that one alert record:
// in TLS 1.2 it is plaintext (the client certificate is checked before the
// server's ChangeCipherSpec); in TLS 1.3 it is encrypted under the server's
// application traffic secret, which crypto/tls hands to the connection's
// KeyLogWriter (kept in memory for this connection only, never written
// anywhere). The record is decrypted to check that it is exactly the
// bad_certificate alert, then sealed again with 49 at the same sequence
// number. Anything unexpected is written as it is (the client gets 42).

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net"
	"sync"

	"github.com/tlsedge/tlsedge/tlsmode/identity"
	"golang.org/x/crypto/chacha20poly1305"
)

// AlertAccessDenied is the TLS alert for a verified certificate that the
// route does not admit (RFC 8446 §6.2).
const AlertAccessDenied uint8 = 49

const alertBadCertificate uint8 = 42

// ErrAccessDenied is the handshake error of a verified client certificate
// that no allow entry admits.
var ErrAccessDenied = errors.New("client certificate not allowed on this route")

// denyConn is the net.Conn under a terminate route's tls.Server when the
// route has an allow list. Go's handshake writes one record per Write once
// the handshake flight is flushed, so the alert is one Write.
type denyConn struct {
	net.Conn
	mu     sync.Mutex
	denied bool   // the allow list refused the certificate
	suite  uint16 // the TLS 1.3 cipher suite when denied
	client string // the denied certificate's subject (RFC 2253)
	// release gives back the client's slot of client_limits.connections.
	release func()
	secret  []byte // SERVER_TRAFFIC_SECRET_0 of this connection (TLS 1.3)
}

// CloseWrite sends a FIN (see endStream).
func (d *denyConn) CloseWrite() error { return closeWrite(d.Conn) }

// keyLog receives crypto/tls's key log lines for this connection and keeps
// the server's first application traffic secret.
type keyLog struct{ d *denyConn }

func (k keyLog) Write(p []byte) (int, error) {
	label, rest, _ := bytes.Cut(bytes.TrimSpace(p), []byte(" "))
	if string(label) == "SERVER_TRAFFIC_SECRET_0" {
		_, sec, _ := bytes.Cut(rest, []byte(" "))
		if b, err := hex.DecodeString(string(sec)); err == nil {
			k.d.mu.Lock()
			k.d.secret = b
			k.d.mu.Unlock()
		}
	}
	return len(p), nil
}

// deny marks the connection refused: its next alert record becomes 49.
func (d *denyConn) deny(cs *tls.ConnectionState) {
	d.mu.Lock()
	d.denied, d.suite = true, cs.CipherSuite
	d.client = identity.DN(cs.PeerCertificates[0].RawSubject)
	d.mu.Unlock()
}

func (d *denyConn) Write(p []byte) (int, error) {
	d.mu.Lock()
	denied, suite, secret := d.denied, d.suite, d.secret
	d.mu.Unlock()
	if !denied {
		return d.Conn.Write(p)
	}
	out := p
	if r := plainAlert(p); r != nil {
		out = r
	} else if secret != nil {
		if r := resealAlert(p, suite, secret); r != nil {
			out = r
		}
	}
	if _, err := d.Conn.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// plainAlert returns p with its plaintext fatal bad_certificate alert
// record made access_denied, nil when it has none. p may start with other
// plaintext records written in the same flush (a TLS 1.2 resumption sends
// its ServerHello with the alert); a ChangeCipherSpec ends the search, as
// what follows it is encrypted.
func plainAlert(p []byte) []byte {
	const recordTypeHandshake = 22 // a ChangeCipherSpec (20) or anything else stops the walk
	for i := 0; i+5 <= len(p); {
		typ, n := p[i], int(binary.BigEndian.Uint16(p[i+3:i+5]))
		if i+5+n > len(p) || (typ != recordTypeHandshake && typ != recordTypeAlert) {
			return nil
		}
		if typ == recordTypeAlert && n == 2 && p[i+5] == alertLevelFatal && p[i+6] == alertBadCertificate {
			out := append([]byte(nil), p...)
			out[i+6] = AlertAccessDenied
			return out
		}
		i += 5 + n
	}
	return nil
}

// resealAlert returns the TLS 1.3 record rec, which must hold exactly the
// fatal bad_certificate alert sealed under secret, sealed again as
// access_denied; nil when rec is anything else.
func resealAlert(rec []byte, suite uint16, secret []byte) []byte {
	const recordTypeAppData = 23
	if len(rec) < 5 || rec[0] != recordTypeAppData || int(binary.BigEndian.Uint16(rec[3:5])) != len(rec)-5 {
		return nil
	}
	aead, iv := trafficAEAD(suite, secret)
	if aead == nil {
		return nil
	}
	hdr := rec[:5]
	// The alert is the first records sealed under this secret, or close:
	// try the first sequence numbers.
	for seq := uint64(0); seq < 4; seq++ {
		nonce := make([]byte, len(iv))
		copy(nonce, iv)
		for i := 0; i < 8; i++ {
			nonce[len(nonce)-1-i] ^= byte(seq >> (8 * i))
		}
		plain, err := aead.Open(nil, nonce, rec[5:], hdr)
		if err != nil {
			continue
		}
		if !bytes.Equal(plain, []byte{alertLevelFatal, alertBadCertificate, recordTypeAlert}) {
			return nil
		}
		out := append([]byte(nil), hdr...)
		return aead.Seal(out, nonce, []byte{alertLevelFatal, AlertAccessDenied, recordTypeAlert}, hdr)
	}
	return nil
}

// trafficAEAD derives a TLS 1.3 record key and IV from a traffic secret
// (RFC 8446 §7.3).
func trafficAEAD(suite uint16, secret []byte) (cipher.AEAD, []byte) {
	var h func() hash.Hash
	keyLen := 16
	switch suite {
	case tls.TLS_AES_128_GCM_SHA256:
		h = sha256.New
	case tls.TLS_AES_256_GCM_SHA384:
		h, keyLen = sha512.New384, 32
	case tls.TLS_CHACHA20_POLY1305_SHA256:
		h, keyLen = sha256.New, 32
	default:
		return nil, nil
	}
	key, err1 := hkdf.Expand(h, secret, hkdfLabel("key", keyLen), keyLen)
	iv, err2 := hkdf.Expand(h, secret, hkdfLabel("iv", 12), 12)
	if err1 != nil || err2 != nil {
		return nil, nil
	}
	if suite == tls.TLS_CHACHA20_POLY1305_SHA256 {
		a, err := chacha20poly1305.New(key)
		if err != nil {
			return nil, nil
		}
		return a, iv
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, nil
	}
	a, err := cipher.NewGCM(block)
	if err != nil {
		return nil, nil
	}
	return a, iv
}

// hkdfLabel is the HkdfLabel of RFC 8446 §7.1 with an empty context.
func hkdfLabel(label string, length int) string {
	full := "tls13 " + label
	b := []byte{byte(length >> 8), byte(length), byte(len(full))}
	b = append(b, full...)
	return string(append(b, 0))
}

// ErrClientConnections is the handshake error of a verified client that
// already has its route's client_limits.connections open.
var ErrClientConnections = fmt.Errorf("%w: client_limits.connections reached", ErrAccessDenied)

// allowTLS is the per-connection server config of a route with an allow
// list or client limits: base's, with a VerifyConnection that also checks
// the list and counts the connection against its client's limit (the slot
// is d's until d.releaseSlot), and a key log feeding d.
func allowTLS(base *tls.Config, allow AllowList, limits *ClientLimiter, d *denyConn) *tls.Config {
	cfg := base.Clone()
	verify := base.VerifyConnection
	cfg.KeyLogWriter = keyLog{d}
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if verify != nil {
			if err := verify(cs); err != nil {
				return err
			}
		}
		if len(cs.VerifiedChains) == 0 {
			return nil
		}
		if allow != nil && !allow.Admits(&cs) {
			d.deny(&cs)
			return ErrAccessDenied
		}
		// Only a check here: VerifyConnection runs before the client has
		// proven it holds the key (CertificateVerify), so whoever has a copy
		// of a certificate must not take its owner's slots. The slot is
		// taken once the handshake is done (takeSlot).
		if limits != nil && limits.Full(limits.ClientKey(cs.PeerCertificates[0])) {
			d.deny(&cs)
			return ErrClientConnections
		}
		return nil
	}
	return cfg
}

// takeSlot counts the connection of the verified client of cs against
// limits (even with no connection limit: a reload may set one); false when
// the client reached its limit meanwhile.
func (d *denyConn) takeSlot(limits *ClientLimiter, cs *tls.ConnectionState) bool {
	if limits == nil || len(cs.VerifiedChains) == 0 {
		return true
	}
	release, ok := limits.Open(limits.ClientKey(cs.PeerCertificates[0]))
	if !ok {
		return false
	}
	d.mu.Lock()
	d.release = release
	d.secret = nil // the alert rewriting is over: no secret kept for the connection's life
	d.mu.Unlock()
	return true
}

// releaseSlot gives back the client's connection slot, if it took one.
func (d *denyConn) releaseSlot() {
	d.mu.Lock()
	release := d.release
	d.release = nil
	d.mu.Unlock()
	if release != nil {
		release()
	}
}
