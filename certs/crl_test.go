package certs

import (
	"crypto/x509"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"
)

func mustCRL(t *testing.T, a *Authority, revoked []*big.Int, this, next time.Time) []byte {
	t.Helper()
	der, err := a.CRL(revoked, this, next)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestLoadCRLsRevoked(t *testing.T) {
	ca := mustCA(t, "clients")
	bad := mustIssue(t, ca, Leaf{CommonName: "stolen laptop", Client: true})
	good := mustIssue(t, ca, Leaf{CommonName: "fine laptop", Client: true})
	der := mustCRL(t, ca, []*big.Int{leafCert(t, bad).SerialNumber, big.NewInt(12345)}, time.Time{}, time.Time{})

	for _, form := range []struct {
		name string
		data []byte
	}{{"PEM", crlPEM(der)}, {"DER", der}} {
		t.Run(form.name, func(t *testing.T) {
			r, err := LoadCRLs([]string{writeFile(t, "ca.crl", form.data)}, []*x509.Certificate{ca.Cert})
			if err != nil {
				t.Fatal(err)
			}
			if !r.Revoked(leafCert(t, bad), ca.Cert) {
				t.Errorf("revoked serial not reported revoked")
			}
			if r.Revoked(leafCert(t, good), ca.Cert) {
				t.Errorf("good serial reported revoked")
			}
			if err := r.Check(leafCert(t, bad), ca.Cert, time.Now()); !errors.Is(err, ErrRevoked) {
				t.Errorf("Check(revoked): got %v; want ErrRevoked", err)
			} else if !strings.Contains(err.Error(), "CN=stolen laptop") {
				t.Errorf("Check(revoked): got %q; want the subject in it", err)
			}
			if err := r.Check(leafCert(t, good), ca.Cert, time.Now()); err != nil {
				t.Errorf("Check(good): got %v; want nil", err)
			}
			// Issuer unknown to the caller: found by name and signature.
			if !r.Revoked(leafCert(t, bad), nil) || r.Revoked(leafCert(t, good), nil) {
				t.Errorf("lookup without issuer: wrong answer")
			}
		})
	}
}

func TestLoadCRLsIntermediate(t *testing.T) {
	root := mustCA(t, "root")
	inter := mustIntermediate(t, root, "inter")
	bad := leafCert(t, mustIssue(t, inter, Leaf{CommonName: "revoked", Client: true}))
	good := leafCert(t, mustIssue(t, inter, Leaf{CommonName: "fine", Client: true}))
	_, cas, err := LoadCAPool([]string{writeFile(t, "chain.pem", inter.PEMChain())})
	if err != nil {
		t.Fatal(err)
	}
	r, err := LoadCRLs([]string{
		writeFile(t, "inter.crl", crlPEM(mustCRL(t, inter, []*big.Int{bad.SerialNumber}, time.Time{}, time.Time{}))),
		writeFile(t, "root.crl", mustCRL(t, root, nil, time.Time{}, time.Time{})),
	}, cas)
	if err != nil {
		t.Fatal(err)
	}
	if r.Len() != 2 {
		t.Errorf("got CRLs of %d CAs; want 2", r.Len())
	}
	if !r.Revoked(bad, inter.Cert) {
		t.Errorf("leaf on the intermediate's CRL not revoked")
	}
	if r.Revoked(good, inter.Cert) {
		t.Errorf("good leaf reported revoked")
	}
	// The same serial under another issuer is another certificate.
	if r.Revoked(bad, root.Cert) {
		t.Errorf("serial matched against the wrong issuer's CRL")
	}
}

func TestLoadCRLsMerge(t *testing.T) {
	ca := mustCA(t, "clients")
	a, b := big.NewInt(1001), big.NewInt(1002)
	old := mustCRL(t, ca, []*big.Int{a}, time.Now().Add(-2*time.Hour), time.Now().Add(time.Hour))
	fresh := mustCRL(t, ca, []*big.Int{b}, time.Now().Add(-time.Hour), time.Now().Add(5*time.Hour))
	// Two CRLs in one PEM file.
	r, err := LoadCRLs([]string{writeFile(t, "both.crl", append(crlPEM(old), crlPEM(fresh)...))}, []*x509.Certificate{ca.Cert})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*big.Int{a, b} {
		if !r.Revoked(&x509.Certificate{SerialNumber: s}, ca.Cert) {
			t.Errorf("serial %v: not revoked; want revoked (the union of the CRLs)", s)
		}
	}
	// Fresh while the freshest CRL is: after old's nextUpdate, before fresh's.
	other := &x509.Certificate{SerialNumber: big.NewInt(5)}
	if err := r.Check(other, ca.Cert, time.Now().Add(2*time.Hour)); err != nil {
		t.Errorf("after the older CRL's nextUpdate: got %v; want nil", err)
	}
	if err := r.Check(other, ca.Cert, time.Now().Add(6*time.Hour)); !errors.Is(err, ErrCRLExpired) {
		t.Errorf("after every nextUpdate: got %v; want ErrCRLExpired", err)
	}
	// Revoked stays revoked once the CRL expires.
	if err := r.Check(&x509.Certificate{SerialNumber: a}, ca.Cert, time.Now().Add(6*time.Hour)); !errors.Is(err, ErrRevoked) {
		t.Errorf("revoked after expiry: got %v; want ErrRevoked", err)
	}
}

func TestLoadCRLsErrors(t *testing.T) {
	ca, other := mustCA(t, "clients"), mustCA(t, "someone else")
	twin := mustCA(t, "clients") // same name as ca, another key
	cas := []*x509.Certificate{ca.Cert}
	current := mustCRL(t, ca, nil, time.Time{}, time.Time{})

	tests := []struct {
		name  string
		file  string
		wants []string
	}{
		{"other CA", writeFile(t, "other.crl", mustCRL(t, other, nil, time.Time{}, time.Time{})),
			[]string{`CRL issued by "CN=someone else`, "not one of the CA certificates", `"CN=clients`, "add that CA to client_ca"}},
		{"same name, other key", writeFile(t, "twin.crl", mustCRL(t, twin, nil, time.Time{}, time.Time{})),
			[]string{"does not verify against the CA named"}},
		{"expired", writeFile(t, "old.crl", crlPEM(mustCRL(t, ca, nil, time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour)))),
			[]string{"expired", "nextUpdate", "fetch the CA's current CRL"}},
		{"second CRL in file expired", writeFile(t, "two.crl", append(crlPEM(current), crlPEM(mustCRL(t, ca, nil, time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour)))...)),
			[]string{"CRL 2", "expired"}},
		{"not a CRL", writeFile(t, "x.crl", []byte("hello")), []string{"not a CRL"}},
		{"wrong PEM type", writeFile(t, "cert.crl", ca.PEM), []string{`PEM block 1 is "CERTIFICATE", not X509 CRL`}},
		{"missing", t.TempDir() + "/nope.crl", []string{"no such file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			good := writeFile(t, "good.crl", current)
			_, err := LoadCRLs([]string{good, tt.file}, cas)
			if err == nil {
				t.Fatalf("got nil error; want one naming %s", tt.file)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.file) {
				t.Errorf("got %q; want the file name %s in it", msg, tt.file)
			}
			for _, w := range tt.wants {
				if !strings.Contains(msg, w) {
					t.Errorf("got %q; want it to contain %q", msg, w)
				}
			}
		})
	}
	if _, err := LoadCRLs([]string{writeFile(t, "c.crl", current)}, nil); err == nil || !strings.Contains(err.Error(), "client_ca") {
		t.Errorf("no CAs: got %v; want an error pointing at client_ca", err)
	}
}

func TestRevocationListsZero(t *testing.T) {
	var r *RevocationLists
	c := &x509.Certificate{SerialNumber: big.NewInt(1)}
	if r.Revoked(c, c) || r.Check(c, c, time.Now()) != nil || r.Len() != 0 {
		t.Errorf("nil RevocationLists: want nothing revoked")
	}
	empty, err := LoadCRLs(nil, nil)
	if err != nil || empty.Revoked(c, c) || empty.Len() != 0 {
		t.Errorf("no files: got %v, %v; want an empty set", empty, err)
	}
}
