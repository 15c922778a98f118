package tlsmode

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/internal/idtest"
)

// A verified certificate that the allow list refuses gets alert 49 in TLS
// 1.2 and 1.3 (crypto/tls itself would send 42); one it admits gets
// through; a certificate from another CA still gets crypto/tls's own
// alert.
func TestAllowListAlert(t *testing.T) {
	p := idtest.MakePKI(t)
	roots := x509.NewCertPool()
	roots.AddCert(p.Root)
	serverCert := tls.Certificate{Certificate: [][]byte{p.Leaf.Raw, p.Inter.Raw}, PrivateKey: p.LeafKey, Leaf: p.Leaf}
	clientCert := serverCert // the leaf is a client certificate too (and a server one for this test)
	base := &tls.Config{
		Certificates: []tls.Certificate{serverCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    roots,
	}
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		for _, tt := range []struct {
			name    string
			allow   AllowList
			wantErr string
		}{
			{"admitted", AllowList{{CN: "client-*"}}, ""},
			{"refused", AllowList{{CN: "someone-else"}}, "access denied"},
		} {
			t.Run(tls.VersionName(version)+"/"+tt.name, func(t *testing.T) {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				srvErr := make(chan error, 1)
				go func() {
					c, err := ln.Accept()
					if err != nil {
						srvErr <- err
						return
					}
					defer c.Close()
					d := &denyConn{Conn: c}
					tc := tls.Server(d, allowTLS(base, tt.allow, nil, d))
					_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
					err = tc.Handshake()
					if err == nil {
						_, err = tc.Write([]byte("ok"))
					}
					srvErr <- err
				}()
				tc, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{
					InsecureSkipVerify: true, // the test's server certificate is a client one; not what is tested
					Certificates:       []tls.Certificate{clientCert},
					MinVersion:         version, MaxVersion: version,
				})
				if err == nil {
					_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
					buf := make([]byte, 2)
					_, err = tc.Read(buf) // TLS 1.3: the alert comes after the client's Finished
					tc.Close()
				}
				serr := <-srvErr
				if tt.wantErr == "" {
					if err != nil || serr != nil {
						t.Fatalf("client: %v, server: %v", err, serr)
					}
					return
				}
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("client error %v, want %q (alert 49)", err, tt.wantErr)
				}
				if !errors.Is(serr, ErrAccessDenied) {
					t.Fatalf("server error %v, want ErrAccessDenied", serr)
				}
			})
		}
	}
}

// resealAlert turns a sealed bad_certificate into access_denied for each
// TLS 1.3 suite and any of the first sequence numbers, and leaves any other
// record alone.
func TestResealAlert(t *testing.T) {
	secret := []byte(strings.Repeat("s", 48))
	for _, suite := range []uint16{tls.TLS_AES_128_GCM_SHA256, tls.TLS_AES_256_GCM_SHA384, tls.TLS_CHACHA20_POLY1305_SHA256} {
		aead, iv := trafficAEAD(suite, secret)
		if aead == nil {
			t.Fatalf("%s: no AEAD", tls.CipherSuiteName(suite))
		}
		sealed := func(seq uint64, plain []byte) []byte {
			nonce := append([]byte(nil), iv...)
			for i := 0; i < 8; i++ {
				nonce[len(nonce)-1-i] ^= byte(seq >> (8 * i))
			}
			hdr := []byte{23, 3, 3, 0, byte(len(plain) + aead.Overhead())}
			return aead.Seal(hdr, nonce, plain, hdr)
		}
		sec := secret
		for seq := uint64(0); seq < 4; seq++ {
			got := resealAlert(sealed(seq, []byte{2, 42, 21}), suite, sec)
			if string(got) != string(sealed(seq, []byte{2, 49, 21})) {
				t.Fatalf("%s seq %d: not resealed as 49", tls.CipherSuiteName(suite), seq)
			}
		}
		if resealAlert(sealed(0, []byte("hello")), suite, sec) != nil {
			t.Fatalf("%s: application data resealed", tls.CipherSuiteName(suite))
		}
		if resealAlert(sealed(9, []byte{2, 42, 21}), suite, sec) != nil {
			t.Fatalf("%s: a late sequence number resealed", tls.CipherSuiteName(suite))
		}
	}
}

// plainAlert finds the alert after the ServerHello a TLS 1.2 resumption
// flushes with it, and never looks past a ChangeCipherSpec.
func TestPlainAlert(t *testing.T) {
	hello := []byte{22, 3, 3, 0, 4, 2, 0, 0, 0}
	alert := []byte{21, 3, 3, 0, 2, 2, 42}
	got := plainAlert(append(append([]byte(nil), hello...), alert...))
	if want := append(append([]byte(nil), hello...), 21, 3, 3, 0, 2, 2, 49); string(got) != string(want) {
		t.Fatalf("ServerHello + alert: got % x, want % x", got, want)
	}
	if got := plainAlert(alert); string(got) != string([]byte{21, 3, 3, 0, 2, 2, 49}) {
		t.Fatalf("alert alone: got % x", got)
	}
	ccs := []byte{20, 3, 3, 0, 1, 1}
	if got := plainAlert(append(append([]byte(nil), ccs...), alert...)); got != nil {
		t.Fatalf("an alert after a ChangeCipherSpec was rewritten: % x", got)
	}
	if got := plainAlert([]byte{21, 3, 3, 0, 2, 2, 40}); got != nil {
		t.Fatalf("another alert was rewritten: % x", got)
	}
}
