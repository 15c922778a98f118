// Package idtest is the test PKI of tlsmode's and tlsmode/identity's
// tests: byte-stable certificates (a root, an intermediate, a client leaf
// and a "tricky" leaf whose subject and SANs hold every character a header
// must not carry), the connection states crypto/tls fills with them, real
// handshakes over loopback, and golden files.
package idtest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"flag"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/certs"
)

// Update rewrites the golden files (go test ... -update-identity).
var Update = flag.Bool("update-identity", false, "rewrite the golden files in testdata/identity")

// Test certificates are byte-stable: Ed25519 keys from fixed seeds (Ed25519
// signatures are deterministic), fixed serials, times and key IDs, so golden
// files hold whole header values.
var (
	testNotBefore = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	testNotAfter  = time.Date(2099, 12, 31, 23, 59, 59, 0, time.UTC)
)

type PKI struct {
	Root, Inter, Leaf, Tricky *x509.Certificate
	LeafKey                   ed25519.PrivateKey
}

func key(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

func create(tb testing.TB, tmpl, parent *x509.Certificate, pub ed25519.PublicKey, signer ed25519.PrivateKey) *x509.Certificate {
	tb.Helper()
	tmpl.NotBefore, tmpl.NotAfter = testNotBefore, testNotAfter
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(nil, tmpl, parent, pub, signer)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// trickySubject is hand-built DER so the string types are chosen: every
// character RFC 2253 escapes, CR LF, a backslash, non-ASCII, a multi-valued
// RDN and an attribute type with no name.
func trickySubject(tb testing.TB) []byte {
	tb.Helper()
	utf8 := func(s string) asn1.RawValue {
		return asn1.RawValue{Tag: asn1.TagUTF8String, Bytes: []byte(s)}
	}
	raw, err := asn1.Marshal([]pkix.RelativeDistinguishedNameSET{
		{{Type: asn1.ObjectIdentifier{2, 5, 4, 6}, Value: "US"}},
		{{Type: asn1.ObjectIdentifier{2, 5, 4, 10}, Value: utf8("Ünïcödé + <corp>")}},
		{
			{Type: asn1.ObjectIdentifier{2, 5, 4, 11}, Value: utf8(" #lead;trail ")},
			{Type: asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}, Value: utf8("uid=1")},
		},
		{{Type: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 55555, 1}, Value: utf8("x")}},
		{{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: utf8("Eve \"the hacker\", Jr.; x=1\r\nX-Injected: 1\\")}},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return raw
}

func MakePKI(tb testing.TB) *PKI {
	tb.Helper()
	rootKey, interKey, leafKey, trickyKey := key(1), key(2), key(3), key(4)
	p := &PKI{LeafKey: leafKey}
	p.Root = create(tb, &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "tlsedge test root", Organization: []string{"tlsedge"}},
		SubjectKeyId:          []byte{1, 1, 1, 1},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}, nil, rootKey.Public().(ed25519.PublicKey), rootKey)
	p.Inter = create(tb, &x509.Certificate{
		SerialNumber:          big.NewInt(2),
		Subject:               pkix.Name{CommonName: "tlsedge test intermediate", Organization: []string{"tlsedge"}},
		SubjectKeyId:          []byte{2, 2, 2, 2},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}, p.Root, interKey.Public().(ed25519.PublicKey), rootKey)
	serial, _ := new(big.Int).SetString("0123456789abcdef", 16)
	p.Leaf = create(tb, &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{CommonName: "client-1", Organization: []string{"Example, Inc."},
			OrganizationalUnit: []string{"payments"}, Country: []string{"US"}},
		SubjectKeyId:   []byte{3, 3, 3, 3},
		DNSNames:       []string{"client.example.com", "alt.example.com"},
		URIs:           []*url.URL{{Scheme: "spiffe", Host: "example.org", Path: "/ns/default/sa/client"}},
		EmailAddresses: []string{"client@example.com"},
		KeyUsage:       x509.KeyUsageDigitalSignature,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, p.Inter, leafKey.Public().(ed25519.PublicKey), interKey)
	trickyURI, err := url.Parse("https://x.example/p;a=b,c")
	if err != nil {
		tb.Fatal(err)
	}
	p.Tricky = create(tb, &x509.Certificate{
		SerialNumber:   big.NewInt(0xbad),
		RawSubject:     trickySubject(tb),
		SubjectKeyId:   []byte{4, 4, 4, 4},
		DNSNames:       []string{"evil.example\r\nX-Injected: 1", "a.example,b.example"},
		URIs:           []*url.URL{trickyURI},
		EmailAddresses: []string{"eve\r\n@example.com"},
		KeyUsage:       x509.KeyUsageDigitalSignature,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, p.Inter, trickyKey.Public().(ed25519.PublicKey), interKey)
	return p
}

// State is a connection state as crypto/tls fills it on the server.
func State(p *PKI, state string) *tls.ConnectionState {
	cs := &tls.ConnectionState{
		Version: tls.VersionTLS13, HandshakeComplete: true, CipherSuite: tls.TLS_AES_128_GCM_SHA256,
		CurveID: tls.X25519, ServerName: "api.example.com", NegotiatedProtocol: "h2",
	}
	switch state {
	case "verified":
		cs.PeerCertificates = []*x509.Certificate{p.Leaf, p.Inter}
		cs.VerifiedChains = [][]*x509.Certificate{{p.Leaf, p.Inter, p.Root}}
	case "tricky":
		cs.PeerCertificates = []*x509.Certificate{p.Tricky, p.Inter}
		cs.VerifiedChains = [][]*x509.Certificate{{p.Tricky, p.Inter, p.Root}}
	case "unverified":
		cs.PeerCertificates = []*x509.Certificate{p.Leaf, p.Inter}
	case "nocert":
	default:
		panic(state)
	}
	return cs
}

var States = []string{"verified", "tricky", "unverified", "nocert"}

// Golden compares got with testdata/identity/<name>.golden, rewriting it
// first under -update-identity when write is true.
func Golden(t *testing.T, name, got string, write bool) {
	t.Helper()
	path := filepath.Join("testdata", "identity", name+".golden")
	if *Update && write {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./tlsmode/identity ./tlsmode -run 'Identity|SSLTLV' -update-identity)", err)
	}
	if got != string(want) {
		t.Errorf("%s: got:\n%s\nwant:\n%s", name, got, want)
	}
}

// Handshake runs a real TLS handshake over loopback TCP and returns the
// server's connection state. The server's reply byte lets the client read
// TLS 1.3 session tickets.
func Handshake(t *testing.T, scfg, ccfg *tls.Config) tls.ConnectionState {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		cs  tls.ConnectionState
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		s := tls.Server(c, scfg)
		if err := s.Handshake(); err != nil {
			done <- result{err: err}
			return
		}
		_, err = s.Write([]byte{1})
		done <- result{cs: s.ConnectionState(), err: err}
	}()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	cl := tls.Client(c, ccfg)
	if err := cl.Handshake(); err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	if _, err := cl.Read(make([]byte, 1)); err != nil {
		t.Fatalf("client read: %v", err)
	}
	r := <-done
	if r.err != nil {
		t.Fatalf("server: %v", r.err)
	}
	return r.cs
}

type TLS struct {
	P      *PKI
	Server *certs.Issued
	CA     *certs.Authority
	Client tls.Certificate
}

func NewTLS(t *testing.T) *TLS {
	t.Helper()
	ca, err := certs.NewAuthority("identity test server CA")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.Issue(certs.Leaf{CommonName: "server.test", DNSNames: []string{"server.test"}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	p := MakePKI(t)
	return &TLS{P: p, Server: srv, CA: ca, Client: tls.Certificate{
		Certificate: [][]byte{p.Leaf.Raw, p.Inter.Raw}, PrivateKey: p.LeafKey, Leaf: p.Leaf,
	}}
}

func (x *TLS) Configs(auth tls.ClientAuthType, withCert bool, maxVersion uint16) (*tls.Config, *tls.Config) {
	pool := x509.NewCertPool()
	pool.AddCert(x.P.Root)
	s := &tls.Config{
		Certificates: []tls.Certificate{x.Server.TLS}, ClientAuth: auth, ClientCAs: pool,
		NextProtos: []string{"h2", "http/1.1"}, SessionTicketsDisabled: true,
	}
	c := &tls.Config{RootCAs: x.CA.Pool(), ServerName: "server.test", NextProtos: []string{"h2"}, MaxVersion: maxVersion}
	if withCert {
		c.Certificates = []tls.Certificate{x.Client}
	}
	return s, c
}

// AllFields maps a header to each field identity forwarding knows, for the
// "map" golden files.
var AllFields = map[string]string{
	"X-Client-Subject": "subject", "X-Client-Issuer": "issuer", "X-Client-Serial": "serial",
	"X-Client-Sha256": "sha256", "X-Client-Cert": "cert", "X-Client-Chain": "chain",
	"X-Client-Uri": "uri", "X-Client-Dns": "dns", "X-Client-Email": "email",
	"X-Client-Not-Before": "not_before", "X-Client-Not-After": "not_after", "X-Client-Verify": "verify",
}
