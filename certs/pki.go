// Package certs holds certificates: a throwaway PKI for the demo and tests
// today; static files, ACME (certmagic), CA pools, CRL and OCSP as they come.
package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/crypto/ocsp"
)

// Authority is a throwaway certificate authority made at run time (for the
// demo and tests; never for production).
type Authority struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	PEM  []byte // the CA certificate, PEM

	parent *Authority // the CA that signed this one; nil for a self-signed root
}

// NewAuthority makes a self-signed ECDSA P-256 CA valid for a day.
func NewAuthority(cn string) (*Authority, error) {
	return newAuthority(cn, nil)
}

// Intermediate makes a CA named cn signed by a (valid now-1h .. now+24h, as a
// root from NewAuthority). Leaves it issues carry it (and any CA between it and
// the root) in their chain; see Issue.
func (a *Authority) Intermediate(cn string) (*Authority, error) {
	return newAuthority(cn, a)
}

func newAuthority(cn string, parent *Authority) (*Authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"tlsedge throwaway PKI"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	signerCert, signerKey := tmpl, crypto.Signer(key)
	if parent != nil {
		signerCert, signerKey = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, key.Public(), signerKey)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Authority{Cert: cert, Key: key, PEM: pemCert(der), parent: parent}, nil
}

// PEMChain returns this CA's certificate followed by each CA above it, up to
// and including the root: a CA bundle for a trust file. For a root it is PEM.
func (a *Authority) PEMChain() []byte {
	var out []byte
	for c := a; c != nil; c = c.parent {
		out = append(out, c.PEM...)
	}
	return out
}

// Leaf describes a certificate to issue. Zero fields take the defaults noted.
type Leaf struct {
	CommonName string
	DNSNames   []string
	IPs        []net.IP
	URIs       []*url.URL
	Emails     []string
	Client     bool // clientAuth extended key usage
	Server     bool // serverAuth extended key usage
	// With neither Client nor Server the certificate has no extended key usage
	// extension at all, which RFC 5280 (and Go, and OpenSSL) read as "any use".

	NotBefore  time.Time // zero: now - 1h
	NotAfter   time.Time // zero: now + 24h
	Serial     *big.Int  // nil: 127 random bits
	OCSPServer []string  // OCSP responder URLs (Authority Information Access); nil: none
}

// Issued is a certificate and its key, in PEM and ready for crypto/tls.
type Issued struct {
	CertPEM, KeyPEM []byte // CertPEM: the leaf, then the intermediates (not the root)
	TLS             tls.Certificate
}

// Issue signs a leaf certificate, valid for a day unless l says otherwise.
// When a is an intermediate, CertPEM and TLS carry the chain up to (not
// including) the root, as a TLS peer sends it.
func (a *Authority) Issue(l Leaf) (*Issued, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:   l.Serial,
		Subject:        pkix.Name{CommonName: l.CommonName},
		DNSNames:       l.DNSNames,
		IPAddresses:    l.IPs,
		URIs:           l.URIs,
		EmailAddresses: l.Emails,
		NotBefore:      l.NotBefore,
		NotAfter:       l.NotAfter,
		OCSPServer:     l.OCSPServer,
		KeyUsage:       x509.KeyUsageDigitalSignature,
		// CA:FALSE, as OpenSSL and most CAs write it for end entities.
		BasicConstraintsValid: true,
	}
	if tmpl.SerialNumber == nil {
		tmpl.SerialNumber = serial()
	}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = now.Add(-time.Hour)
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = now.Add(24 * time.Hour)
	}
	if l.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	if l.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.Cert, key.Public(), a.Key)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	out := &Issued{CertPEM: pemCert(der), KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})}
	for c := a; c.parent != nil; c = c.parent {
		out.CertPEM = append(out.CertPEM, c.PEM...)
	}
	out.TLS, err = tls.X509KeyPair(out.CertPEM, out.KeyPEM)
	return out, err
}

// Pool returns a CertPool holding only this CA.
func (a *Authority) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(a.Cert)
	return p
}

// CRL returns a DER certificate revocation list signed by a, listing revoked
// (each revoked at thisUpdate). Zero thisUpdate: now; zero nextUpdate:
// thisUpdate + 24h. The CRL number is thisUpdate in Unix seconds, so a later
// CRL has a larger number. Write it as is for a DER file, or through
// pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}) for PEM.
func (a *Authority) CRL(revoked []*big.Int, thisUpdate, nextUpdate time.Time) (der []byte, err error) {
	if thisUpdate.IsZero() {
		thisUpdate = time.Now()
	}
	if nextUpdate.IsZero() {
		nextUpdate = thisUpdate.Add(24 * time.Hour)
	}
	tmpl := &x509.RevocationList{
		Number:     big.NewInt(thisUpdate.Unix()),
		ThisUpdate: thisUpdate,
		NextUpdate: nextUpdate,
	}
	for _, s := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: s, RevocationTime: thisUpdate})
	}
	return x509.CreateRevocationList(rand.Reader, tmpl, a.Cert, a.Key)
}

// OCSPHandler returns a minimal OCSP responder (RFC 6960, requests by HTTP
// POST) for certificates a issued: status(serial) picks ocsp.Good, ocsp.Revoked
// or ocsp.Unknown; a signs each answer itself, valid from a minute ago for an
// hour. For tests and the demo only.
func (a *Authority) OCSPHandler(status func(serial *big.Int) int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST an OCSP request", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		if err != nil {
			return
		}
		req, err := ocsp.ParseRequest(body)
		if err != nil {
			w.Header().Set("Content-Type", "application/ocsp-response")
			_, _ = w.Write(ocsp.MalformedRequestErrorResponse)
			return
		}
		now := time.Now()
		tmpl := ocsp.Response{
			Status:       status(req.SerialNumber),
			SerialNumber: req.SerialNumber,
			ThisUpdate:   now.Add(-time.Minute),
			NextUpdate:   now.Add(time.Hour),
			IssuerHash:   req.HashAlgorithm,
		}
		if tmpl.Status == ocsp.Revoked {
			tmpl.RevokedAt = now.Add(-time.Minute)
			tmpl.RevocationReason = ocsp.KeyCompromise
		}
		resp, err := ocsp.CreateResponse(a.Cert, a.Cert, tmpl, a.Key)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/ocsp-response")
		_, _ = w.Write(resp)
	})
}

// WriteFiles writes <name>.pem and <name>-key.pem into dir (mode 0600 for the key).
func (i *Issued) WriteFiles(dir, name string) (certPath, keyPath string, err error) {
	certPath = filepath.Join(dir, name+".pem")
	keyPath = filepath.Join(dir, name+"-key.pem")
	if err = os.WriteFile(certPath, i.CertPEM, 0o644); err != nil {
		return "", "", fmt.Errorf("writing %s: %w", certPath, err)
	}
	if err = os.WriteFile(keyPath, i.KeyPEM, 0o600); err != nil {
		return "", "", fmt.Errorf("writing %s: %w", keyPath, err)
	}
	return certPath, keyPath, nil
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return n
}
