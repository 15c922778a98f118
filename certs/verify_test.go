package certs

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// hsResult is what one real TLS handshake over TCP showed each side.
type hsResult struct {
	handshake error // the client's Handshake
	read      error // the client's first Read, after a successful Handshake
	server    error // the server's Handshake
	resumed   bool  // the client resumed a session
}

// handshake runs one TLS connection over loopback TCP: the server handshakes
// and writes "ok\n"; the client handshakes and reads that line.
func handshake(t *testing.T, srvCfg, cliCfg *tls.Config) hsResult {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	serverErr := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			serverErr <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		tc := tls.Server(c, srvCfg)
		err = tc.Handshake()
		serverErr <- err
		if err == nil {
			_, _ = tc.Write([]byte("ok\n"))
			return
		}
		// Read what the client still sends (in TLS 1.3 its Finished is
		// unread when the certificate is refused) until it hangs up: closing
		// with unread bytes would send a TCP reset, which may reach the
		// client before the alert does.
		_, _ = io.Copy(io.Discard, c)
	}()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(c, cliCfg)
	_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
	var r hsResult
	if r.handshake = tc.Handshake(); r.handshake == nil {
		r.resumed = tc.ConnectionState().DidResume
		line, err := bufio.NewReader(tc).ReadString('\n')
		if err == nil && line != "ok\n" {
			err = fmt.Errorf("read %q; want \"ok\\n\"", line)
		}
		r.read = err
	}
	_ = tc.Close()
	r.server = <-serverErr
	return r
}

// alertOf returns the TLS alert the peer sent, from a crypto/tls error
// ("remote error: tls: ..."): net.OpError{Op: "remote error"} around
// crypto/tls's unexported alert type, a uint8.
func alertOf(err error) (uint8, bool) {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "remote error" {
		return 0, false
	}
	v := reflect.ValueOf(op.Err)
	if v.Kind() != reflect.Uint8 {
		return 0, false
	}
	return uint8(v.Uint()), true
}

// testPKI is a server CA and certificate, and a client PKI: root, an
// intermediate (in client_ca), a second intermediate the root revoked (not in
// client_ca; clients send it), and CRLs for the root and the intermediate.
type testPKI struct {
	serverCA              *Authority
	server                *Issued
	root, inter, inter2   *Authority
	clientCAs             *x509.CertPool
	cas                   []*x509.Certificate
	crls                  *RevocationLists
	revokedLeaf, interBad *Issued // on the root's CRL; on the intermediate's CRL
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	p := &testPKI{serverCA: mustCA(t, "server CA"), root: mustCA(t, "client root")}
	p.server = mustIssue(t, p.serverCA, Leaf{CommonName: "edge.test", DNSNames: []string{"edge.test"}, Server: true})
	p.inter = mustIntermediate(t, p.root, "client intermediate")
	p.inter2 = mustIntermediate(t, p.root, "revoked intermediate")
	var err error
	if p.clientCAs, p.cas, err = LoadCAPool([]string{writeFile(t, "client-ca.pem", p.inter.PEMChain())}); err != nil {
		t.Fatal(err)
	}
	p.revokedLeaf = mustIssue(t, p.root, Leaf{CommonName: "revoked by root", Client: true})
	p.interBad = mustIssue(t, p.inter, Leaf{CommonName: "revoked by intermediate", Client: true})
	rootCRL := mustCRL(t, p.root, []*big.Int{leafCert(t, p.revokedLeaf).SerialNumber, p.inter2.Cert.SerialNumber}, time.Time{}, time.Time{})
	interCRL := mustCRL(t, p.inter, []*big.Int{leafCert(t, p.interBad).SerialNumber}, time.Time{}, time.Time{})
	if p.crls, err = LoadCRLs([]string{writeFile(t, "root.crl", crlPEM(rootCRL)), writeFile(t, "inter.crl", interCRL)}, p.cas); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *testPKI) serverConfig(auth tls.ClientAuthType, v *ClientVerifier, calls *atomic.Int32, version uint16) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{p.server.TLS},
		ClientAuth:   auth,
		ClientCAs:    p.clientCAs,
		MinVersion:   version,
		MaxVersion:   version,
		VerifyConnection: func(cs tls.ConnectionState) error {
			calls.Add(1)
			return v.VerifyConnection(cs)
		},
	}
}

// clientConfig sends cert whatever the server asks for, as curl and openssl
// s_client do. (Given tls.Config.Certificates instead, a Go client sends no
// certificate when none matches the server's acceptable CAs: see the
// "unknown CA, Go client" case.)
func (p *testPKI) clientConfig(cert *Issued, version uint16) *tls.Config {
	c := &tls.Config{RootCAs: p.serverCA.Pool(), ServerName: "edge.test", MinVersion: version, MaxVersion: version}
	if cert != nil {
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert.TLS, nil }
	}
	return c
}

// Alerts, as crypto/tls numbers them (RFC 8446 section 6).
const (
	alertHandshakeFailure    = 40
	alertBadCertificate      = 42
	alertCertificateExpired  = 45
	alertUnknownCA           = 48
	alertCertificateRequired = 116
)

func isInvalid(reason x509.InvalidReason) func(error) bool {
	return func(err error) bool {
		var cve *tls.CertificateVerificationError
		var inv x509.CertificateInvalidError
		return errors.As(err, &cve) && errors.As(err, &inv) && inv.Reason == reason
	}
}

func is(target error) func(error) bool { return func(err error) bool { return errors.Is(err, target) } }

func TestClientVerifierTLS(t *testing.T) {
	p := newTestPKI(t)
	now := time.Now()
	ocspCA := p.root
	resp := newResponder(t, ocspCA)
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()

	good := mustIssue(t, p.root, Leaf{CommonName: "good", Client: true})
	viaInter := mustIssue(t, p.inter, Leaf{CommonName: "via intermediate", Client: true})
	underRevokedInter := mustIssue(t, p.inter2, Leaf{CommonName: "under a revoked intermediate", Client: true})
	serverOnly := mustIssue(t, p.root, Leaf{CommonName: "server only", Server: true})
	noEKU := mustIssue(t, p.root, Leaf{CommonName: "no EKU"})
	expired := mustIssue(t, p.root, Leaf{CommonName: "expired", Client: true, NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-24 * time.Hour)})
	stranger := mustIssue(t, mustCA(t, "unknown CA"), Leaf{CommonName: "stranger", Client: true})
	ocspGood := mustIssue(t, ocspCA, Leaf{CommonName: "ocsp good", Client: true, OCSPServer: []string{resp.srv.URL}})
	ocspRevoked := mustIssue(t, ocspCA, Leaf{CommonName: "ocsp revoked", Client: true, OCSPServer: []string{resp.srv.URL}})
	resp.set(leafCert(t, ocspRevoked).SerialNumber, ocsp.Revoked)
	ocspDown := mustIssue(t, ocspCA, Leaf{CommonName: "ocsp down", Client: true, OCSPServer: []string{down.URL}})

	base := &ClientVerifier{CRL: p.crls}
	strict := &ClientVerifier{CRL: p.crls, StrictEKU: true}
	hard := &ClientVerifier{CRL: p.crls, OCSP: &OCSPChecker{Mode: OCSPHard}}
	soft := &ClientVerifier{CRL: p.crls, OCSP: &OCSPChecker{Mode: OCSPSoft}}
	later := &ClientVerifier{CRL: p.crls, Now: func() time.Time { return now.Add(48 * time.Hour) }}

	tests := []struct {
		name      string
		auth      tls.ClientAuthType
		v         *ClientVerifier
		cert      *Issued
		alert     uint8            // 0: the connection works
		server    func(error) bool // the server's handshake error, when alert != 0
		noVerConn bool             // Go refused before VerifyConnection
	}{
		{"good", tls.RequireAndVerifyClientCert, base, good, 0, nil, false},
		{"good via intermediate", tls.RequireAndVerifyClientCert, base, viaInter, 0, nil, false},
		{"revoked on root CRL", tls.RequireAndVerifyClientCert, base, p.revokedLeaf, alertBadCertificate, is(ErrRevoked), false},
		{"revoked on intermediate CRL", tls.RequireAndVerifyClientCert, base, p.interBad, alertBadCertificate, is(ErrRevoked), false},
		{"intermediate revoked", tls.RequireAndVerifyClientCert, base, underRevokedInter, alertBadCertificate, is(ErrRevoked), false},
		{"CRL expired since load", tls.RequireAndVerifyClientCert, later, good, alertBadCertificate, is(ErrCRLExpired), false},
		// Go's verifier enforces clientAuth itself: bad_certificate, and our
		// check never runs.
		{"serverAuth only, require", tls.RequireAndVerifyClientCert, base, serverOnly, alertBadCertificate, isInvalid(x509.IncompatibleUsage), true},
		{"serverAuth only, verify if given", tls.VerifyClientCertIfGiven, base, serverOnly, alertBadCertificate, isInvalid(x509.IncompatibleUsage), true},
		// Request mode: Go checks nothing, ours does.
		{"serverAuth only, request", tls.RequestClientCert, base, serverOnly, alertBadCertificate, is(ErrNoClientAuthEKU), false},
		{"no EKU", tls.RequireAndVerifyClientCert, base, noEKU, 0, nil, false},
		{"no EKU, strict", tls.RequireAndVerifyClientCert, strict, noEKU, alertBadCertificate, is(ErrNoClientAuthEKU), false},
		{"expired", tls.RequireAndVerifyClientCert, base, expired, alertCertificateExpired, isInvalid(x509.Expired), true},
		{"unknown CA", tls.RequireAndVerifyClientCert, base, stranger, alertUnknownCA, func(err error) bool {
			var u x509.UnknownAuthorityError
			return errors.As(err, &u)
		}, true},
		{"no certificate, verify if given", tls.VerifyClientCertIfGiven, base, nil, 0, nil, false},
		{"no certificate, request", tls.RequestClientCert, strict, nil, 0, nil, false},
		{"OCSP good", tls.RequireAndVerifyClientCert, hard, ocspGood, 0, nil, false},
		{"OCSP revoked, soft", tls.RequireAndVerifyClientCert, soft, ocspRevoked, alertBadCertificate, is(ErrRevoked), false},
		{"OCSP revoked, hard", tls.RequireAndVerifyClientCert, hard, ocspRevoked, alertBadCertificate, is(ErrRevoked), false},
		{"OCSP down, soft", tls.RequireAndVerifyClientCert, soft, ocspDown, 0, nil, false},
		{"OCSP down, hard", tls.RequireAndVerifyClientCert, hard, ocspDown, alertBadCertificate, is(ErrOCSP), false},
	}
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		for _, tt := range tests {
			t.Run(tls.VersionName(version)+"/"+tt.name, func(t *testing.T) {
				var calls atomic.Int32
				r := handshake(t, p.serverConfig(tt.auth, tt.v, &calls, version), p.clientConfig(tt.cert, version))
				if tt.alert == 0 {
					if r.handshake != nil || r.read != nil || r.server != nil {
						t.Fatalf("got client handshake %v, read %v, server %v; want a working connection", r.handshake, r.read, r.server)
					}
					return
				}
				checkAlert(t, r, version, tt.alert)
				if !tt.server(r.server) {
					t.Errorf("server error: got %v (%T); want the expected kind", r.server, r.server)
				}
				if got := calls.Load(); (got == 0) != tt.noVerConn {
					t.Errorf("VerifyConnection called %d times; want called=%v", got, !tt.noVerConn)
				}
			})
		}
	}
}

// checkAlert asserts the client got exactly alert a: in TLS 1.2 from its
// Handshake, in TLS 1.3 (where the server checks the client's certificate
// after the client's Handshake returned) from its first Read.
func checkAlert(t *testing.T, r hsResult, version uint16, a uint8) {
	t.Helper()
	err := r.handshake
	if version == tls.VersionTLS13 {
		if r.handshake != nil {
			t.Fatalf("TLS 1.3 client handshake: got %v; want nil (the alert comes on the first Read)", r.handshake)
		}
		err = r.read
	}
	got, ok := alertOf(err)
	if !ok || got != a {
		t.Fatalf("client error: got %v (alert %d, %v); want alert %d", err, got, ok, a)
	}
	if want := "remote error: tls: " + map[uint8]string{
		alertHandshakeFailure: "handshake failure", alertBadCertificate: "bad certificate",
		alertCertificateExpired: "expired certificate", alertUnknownCA: "unknown certificate authority",
		alertCertificateRequired: "certificate required",
	}[a]; !strings.Contains(err.Error(), want) {
		t.Errorf("client error: got %q; want it to contain %q", err, want)
	}
}

// TestNoClientCertRequired pins what Go sends when a required certificate is
// missing (VerifyConnection does not run: Go stops first). A Go client whose
// only certificate comes from a CA the server does not list among its
// acceptable CAs (the ClientCAs subjects) sends none, so it gets this alert
// rather than unknown_ca.
func TestNoClientCertRequired(t *testing.T) {
	p := newTestPKI(t)
	stranger := mustIssue(t, mustCA(t, "unknown CA"), Leaf{CommonName: "stranger", Client: true})
	for version, alert := range map[uint16]uint8{tls.VersionTLS12: alertHandshakeFailure, tls.VersionTLS13: alertCertificateRequired} {
		for _, goClientWithStranger := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/go client with unknown-CA cert=%v", tls.VersionName(version), goClientWithStranger), func(t *testing.T) {
				var calls atomic.Int32
				cli := p.clientConfig(nil, version)
				if goClientWithStranger {
					cli.Certificates = []tls.Certificate{stranger.TLS}
				}
				r := handshake(t, p.serverConfig(tls.RequireAndVerifyClientCert, &ClientVerifier{}, &calls, version), cli)
				checkAlert(t, r, version, alert)
				if r.server == nil || !strings.Contains(r.server.Error(), "didn't provide a certificate") {
					t.Errorf("server error: got %v", r.server)
				}
				if calls.Load() != 0 {
					t.Errorf("VerifyConnection ran; want Go to stop first")
				}
			})
		}
	}
}

// TestClientVerifierResumption: Go runs VerifyConnection again on a resumed
// session, with the stored chains, so a certificate revoked after the first
// connection cannot come back on its session ticket.
func TestClientVerifierResumption(t *testing.T) {
	p := newTestPKI(t)
	cert := mustIssue(t, p.root, Leaf{CommonName: "soon revoked", Client: true})
	revoking := mustCRL(t, p.root, []*big.Int{leafCert(t, cert).SerialNumber}, time.Time{}, time.Time{})
	crls, err := LoadCRLs([]string{writeFile(t, "new.crl", revoking)}, p.cas)
	if err != nil {
		t.Fatal(err)
	}
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			var current atomic.Pointer[ClientVerifier]
			current.Store(&ClientVerifier{})
			var resumedSeen atomic.Bool
			var calls atomic.Int32
			srv := p.serverConfig(tls.RequireAndVerifyClientCert, nil, &calls, version)
			srv.VerifyConnection = func(cs tls.ConnectionState) error {
				if cs.DidResume {
					resumedSeen.Store(true)
				}
				return current.Load().VerifyConnection(cs)
			}
			cli := p.clientConfig(cert, version)
			cli.ClientSessionCache = tls.NewLRUClientSessionCache(4)

			if r := handshake(t, srv, cli); r.handshake != nil || r.read != nil || r.server != nil || r.resumed {
				t.Fatalf("first connection: %+v", r)
			}
			if r := handshake(t, srv, cli); r.handshake != nil || r.read != nil || !r.resumed || !resumedSeen.Load() {
				t.Fatalf("second connection: %+v, VerifyConnection saw resumption: %v; want a resumed session", r, resumedSeen.Load())
			}
			current.Store(&ClientVerifier{CRL: crls}) // a reload with the new CRL
			resumedSeen.Store(false)
			r := handshake(t, srv, cli)
			if !resumedSeen.Load() {
				t.Fatalf("third connection did not resume: the test proves nothing")
			}
			if version == tls.VersionTLS13 {
				// The client's resumption handshake completes before the server's checks.
				checkAlert(t, r, version, alertBadCertificate)
			} else if a, ok := alertOf(r.handshake); !ok || a != alertBadCertificate {
				t.Fatalf("client: got %v; want alert %d", r.handshake, alertBadCertificate)
			}
			if !errors.Is(r.server, ErrRevoked) {
				t.Errorf("server: got %v; want ErrRevoked", r.server)
			}
		})
	}
}

// TestVerifyChains covers what a handshake cannot reach easily: an
// intermediate trusted directly (the chain ends at it) that its root revoked,
// and request mode with no verified chain.
func TestVerifyChains(t *testing.T) {
	p := newTestPKI(t)
	leaf := leafCert(t, mustIssue(t, p.inter2, Leaf{CommonName: "x", Client: true}))
	// A pool holding only the revoked intermediate: Go's chain is [leaf, inter2].
	pool := x509.NewCertPool()
	pool.AddCert(p.inter2.Cert)
	chains, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil || len(chains) != 1 || len(chains[0]) != 2 {
		t.Fatalf("got chains %v, %v; want one [leaf, intermediate]", len(chains), err)
	}
	v := &ClientVerifier{CRL: p.crls}
	if err := v.Verify(context.Background(), tls.ConnectionState{PeerCertificates: chains[0], VerifiedChains: chains}); !errors.Is(err, ErrRevoked) || !strings.Contains(err.Error(), "CN=revoked intermediate") {
		t.Errorf("anchor revoked by its root's CRL: got %v; want ErrRevoked naming the intermediate", err)
	}
	// Unverified (request mode): CRL and OCSP are skipped, EKU still checked.
	revoked := leafCert(t, p.revokedLeaf)
	if err := v.Verify(context.Background(), tls.ConnectionState{PeerCertificates: []*x509.Certificate{revoked}}); err != nil {
		t.Errorf("unverified: got %v; want nil (nothing known about the issuer)", err)
	}
	// A nil verifier still checks the usage, and accepts no certificate.
	var nilV *ClientVerifier
	serverOnly := leafCert(t, mustIssue(t, p.root, Leaf{CommonName: "s", Server: true}))
	if err := nilV.VerifyConnection(tls.ConnectionState{PeerCertificates: []*x509.Certificate{serverOnly}}); !errors.Is(err, ErrNoClientAuthEKU) || !strings.Contains(err.Error(), "serverAuth") {
		t.Errorf("nil verifier, serverAuth leaf: got %v; want ErrNoClientAuthEKU naming serverAuth", err)
	}
	if err := nilV.VerifyConnection(tls.ConnectionState{}); err != nil {
		t.Errorf("no certificate: got %v; want nil", err)
	}
}

// BenchmarkVerifyCRL: the per-handshake cost of the CRL checks, a leaf under
// an intermediate, both CAs with a CRL of 10,000 serials.
func BenchmarkVerifyCRL(b *testing.B) {
	root, err := NewAuthority("root")
	if err != nil {
		b.Fatal(err)
	}
	inter, err := root.Intermediate("inter")
	if err != nil {
		b.Fatal(err)
	}
	issued, err := inter.Issue(Leaf{CommonName: "device", Client: true})
	if err != nil {
		b.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(issued.TLS.Certificate[0])
	if err != nil {
		b.Fatal(err)
	}
	serials := make([]*big.Int, 10000)
	for i := range serials {
		serials[i] = new(big.Int).Lsh(big.NewInt(int64(i+1)), 100)
	}
	dir := b.TempDir()
	var files []string
	for _, a := range []*Authority{root, inter} {
		der, err := a.CRL(serials, time.Time{}, time.Time{})
		if err != nil {
			b.Fatal(err)
		}
		f := filepath.Join(dir, a.Cert.Subject.CommonName+".crl")
		if err := os.WriteFile(f, der, 0o644); err != nil {
			b.Fatal(err)
		}
		files = append(files, f)
	}
	crls, err := LoadCRLs(files, []*x509.Certificate{root.Cert, inter.Cert})
	if err != nil {
		b.Fatal(err)
	}
	cs := tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf, inter.Cert},
		VerifiedChains: [][]*x509.Certificate{{leaf, inter.Cert, root.Cert}}}
	v := &ClientVerifier{CRL: crls}
	b.ReportAllocs()
	for b.Loop() {
		if err := v.VerifyConnection(cs); err != nil {
			b.Fatal(err)
		}
	}
}
