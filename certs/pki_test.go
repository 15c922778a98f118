package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Helpers shared by this package's tests.

func mustCA(t *testing.T, cn string) *Authority {
	t.Helper()
	a, err := NewAuthority(cn)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func mustIntermediate(t *testing.T, parent *Authority, cn string) *Authority {
	t.Helper()
	a, err := parent.Intermediate(cn)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func mustIssue(t *testing.T, a *Authority, l Leaf) *Issued {
	t.Helper()
	i, err := a.Issue(l)
	if err != nil {
		t.Fatal(err)
	}
	return i
}

// leafCert is the parsed leaf of an Issued.
func leafCert(t *testing.T, i *Issued) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(i.TLS.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func crlPEM(der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}) }

// selfSignedCert makes a self-signed certificate from tmpl (serial, key and
// subject filled in when missing): for CA shapes NewAuthority does not make.
func selfSignedCert(t *testing.T, tmpl *x509.Certificate) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if tmpl.SerialNumber == nil {
		tmpl.SerialNumber = big.NewInt(1)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestIssueLeafFields(t *testing.T) {
	ca := mustCA(t, "root")
	u, _ := url.Parse("spiffe://example.org/ns/default/sa/api")
	nb := time.Now().Add(-48 * time.Hour).Truncate(time.Second)
	na := time.Now().Add(-24 * time.Hour).Truncate(time.Second)
	c := leafCert(t, mustIssue(t, ca, Leaf{
		CommonName: "x", Client: true, URIs: []*url.URL{u}, Emails: []string{"a@example.org"},
		NotBefore: nb, NotAfter: na, Serial: big.NewInt(4242), OCSPServer: []string{"http://ocsp.test/"},
	}))
	if c.SerialNumber.Int64() != 4242 || !c.NotBefore.Equal(nb) || !c.NotAfter.Equal(na) {
		t.Errorf("got serial %v, validity %v..%v; want 4242, %v..%v", c.SerialNumber, c.NotBefore, c.NotAfter, nb, na)
	}
	if len(c.URIs) != 1 || c.URIs[0].String() != u.String() || len(c.EmailAddresses) != 1 || len(c.OCSPServer) != 1 {
		t.Errorf("got URIs %v, emails %v, OCSP %v", c.URIs, c.EmailAddresses, c.OCSPServer)
	}
	if !c.BasicConstraintsValid || c.IsCA {
		t.Errorf("got BasicConstraintsValid=%v IsCA=%v; want CA:FALSE", c.BasicConstraintsValid, c.IsCA)
	}
	// Defaults: a day, random serial.
	d := leafCert(t, mustIssue(t, ca, Leaf{CommonName: "y"}))
	if time.Until(d.NotAfter) < 23*time.Hour || time.Since(d.NotBefore) < 59*time.Minute || d.SerialNumber.BitLen() < 64 {
		t.Errorf("got validity %v..%v serial %v; want now-1h..now+24h, random", d.NotBefore, d.NotAfter, d.SerialNumber)
	}
}

func TestIntermediateChain(t *testing.T) {
	root := mustCA(t, "root")
	inter := mustIntermediate(t, root, "inter")
	if err := inter.Cert.CheckSignatureFrom(root.Cert); err != nil {
		t.Fatalf("intermediate not signed by root: %v", err)
	}
	leaf := mustIssue(t, inter, Leaf{CommonName: "device", Client: true})
	if n := len(leaf.TLS.Certificate); n != 2 {
		t.Fatalf("got %d certificates in the TLS chain; want 2 (leaf, intermediate)", n)
	}
	if rest := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.TLS.Certificate[1]}); string(rest) != string(inter.PEM) {
		t.Errorf("second certificate is not the intermediate")
	}
	inters := x509.NewCertPool()
	inters.AddCert(inter.Cert)
	if _, err := leafCert(t, leaf).Verify(x509.VerifyOptions{Roots: root.Pool(), Intermediates: inters,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("leaf does not verify to the root: %v", err)
	}
	if got, want := string(inter.PEMChain()), string(inter.PEM)+string(root.PEM); got != want {
		t.Errorf("PEMChain is not intermediate then root")
	}
	if string(root.PEMChain()) != string(root.PEM) {
		t.Errorf("a root's PEMChain is not its PEM")
	}
	// A root's leaves carry no chain.
	if n := len(mustIssue(t, root, Leaf{CommonName: "r"}).TLS.Certificate); n != 1 {
		t.Errorf("got %d certificates for a root-issued leaf; want 1", n)
	}
}

func TestAuthorityCRL(t *testing.T) {
	ca := mustCA(t, "root")
	this := time.Now().Add(-time.Minute).Truncate(time.Second)
	der, err := ca.CRL([]*big.Int{big.NewInt(7), big.NewInt(9)}, this, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(ca.Cert); err != nil {
		t.Errorf("CRL signature: %v", err)
	}
	if len(crl.RevokedCertificateEntries) != 2 || !crl.ThisUpdate.Equal(this) || !crl.NextUpdate.Equal(this.Add(24*time.Hour)) {
		t.Errorf("got %d entries, %v..%v; want 2, %v..+24h", len(crl.RevokedCertificateEntries), crl.ThisUpdate, crl.NextUpdate, this)
	}
	if crl.Number.Int64() != this.Unix() {
		t.Errorf("got CRL number %v; want %v", crl.Number, this.Unix())
	}
}
