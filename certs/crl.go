package certs

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
	"time"
)

// RevocationLists holds certificate revocation lists, checked at load and
// indexed by the CA that signed them. It is immutable once loaded (reload
// builds a new one), so it is safe for concurrent use. A nil
// *RevocationLists holds no CRL: nothing is revoked.
type RevocationLists struct {
	// bySubject holds, by the CA's raw subject, one entry per CA key with
	// that name (a lookup per handshake: no allocation to build the key).
	bySubject map[string][]*issuerCRLs
}

// issuerCRLs merges every loaded CRL of one CA (same subject, same key).
type issuerCRLs struct {
	signer  *x509.Certificate
	serials map[string]struct{} // serialKey of every revoked certificate: the union of the CRLs
	// nextUpdate is the latest NextUpdate among the CRLs: the CA's revocation
	// information is current while its freshest CRL is. Zero: no CRL said.
	nextUpdate time.Time
	files      []string
}

// LoadCRLs reads CRL files, PEM ("X509 CRL" blocks, any number) or DER (one
// CRL), and checks each at load: its signature must verify against one of cas
// (the CA whose subject is the CRL's issuer), and its NextUpdate must not have
// passed: an expired CRL is a configuration error, never a silent pass. A CRL
// without NextUpdate (RFC 5280 requires one) is taken as never expiring.
//
// The CRL of an intermediate CA needs that intermediate among cas (put it in
// client_ca next to the root). Several CRLs of one CA are merged: a serial on
// any of them is revoked. No files: an empty, usable set.
func LoadCRLs(files []string, cas []*x509.Certificate) (*RevocationLists, error) {
	r := &RevocationLists{bySubject: map[string][]*issuerCRLs{}}
	if len(files) > 0 && len(cas) == 0 {
		return nil, fmt.Errorf("%s: no CA certificates to check the CRL's signature against; set client_ca", files[0])
	}
	now := time.Now()
	for _, file := range files {
		lists, err := readCRLFile(file)
		if err != nil {
			return nil, err
		}
		for i, crl := range lists {
			where := file
			if len(lists) > 1 {
				where = fmt.Sprintf("%s: CRL %d", file, i+1)
			}
			if err := r.add(crl, cas, now, file); err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
		}
	}
	return r, nil
}

func readCRLFile(file string) ([]*x509.RevocationList, error) {
	if file == "" {
		return nil, errors.New("empty CRL file name")
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading CRL: %w", err) // *PathError names the file
	}
	if !bytes.Contains(data, []byte("-----BEGIN")) {
		crl, err := x509.ParseRevocationList(data)
		if err != nil {
			return nil, fmt.Errorf("%s: not a CRL: neither PEM (\"-----BEGIN X509 CRL-----\") nor DER: %w", file, err)
		}
		return []*x509.RevocationList{crl}, nil
	}
	ders, err := pemBlocks(file, data, "X509 CRL", "")
	if err != nil {
		return nil, err
	}
	var out []*x509.RevocationList
	for i, der := range ders {
		crl, err := x509.ParseRevocationList(der)
		if err != nil {
			return nil, fmt.Errorf("%s: CRL %d: %w", file, i+1, err)
		}
		out = append(out, crl)
	}
	return out, nil
}

func (r *RevocationLists) add(crl *x509.RevocationList, cas []*x509.Certificate, now time.Time, file string) error {
	signer, err := crlSigner(crl, cas)
	if err != nil {
		return err
	}
	if !crl.NextUpdate.IsZero() && now.After(crl.NextUpdate) {
		return fmt.Errorf("CRL of %q expired: its nextUpdate %s has passed; fetch the CA's current CRL and reload",
			signer.Subject, crl.NextUpdate.UTC().Format(time.RFC3339))
	}
	e := r.forIssuer(signer)
	if e == nil {
		e = &issuerCRLs{signer: signer, serials: map[string]struct{}{}, nextUpdate: crl.NextUpdate}
		r.bySubject[string(signer.RawSubject)] = append(r.bySubject[string(signer.RawSubject)], e)
	}
	for _, rc := range crl.RevokedCertificateEntries {
		var buf [serialBuf]byte
		e.serials[string(serialKey(buf[:], rc.SerialNumber))] = struct{}{}
	}
	if crl.NextUpdate.IsZero() || (!e.nextUpdate.IsZero() && crl.NextUpdate.After(e.nextUpdate)) {
		e.nextUpdate = crl.NextUpdate
	}
	if len(e.files) == 0 || e.files[len(e.files)-1] != file {
		e.files = append(e.files, file)
	}
	return nil
}

// crlSigner finds the CA among cas that signed crl.
func crlSigner(crl *x509.RevocationList, cas []*x509.Certificate) (*x509.Certificate, error) {
	var sameName []string
	var lastErr error
	for _, ca := range cas {
		if !bytes.Equal(ca.RawSubject, crl.RawIssuer) {
			continue
		}
		if lastErr = crl.CheckSignatureFrom(ca); lastErr == nil {
			return ca, nil
		}
		sameName = append(sameName, ca.Subject.String())
	}
	if len(sameName) > 0 {
		return nil, fmt.Errorf("CRL signature does not verify against the CA named %q (%v): the CRL comes from a different CA of the same name, or was altered; use the CRL that CA issued", crl.Issuer, lastErr)
	}
	names := make([]string, len(cas))
	for i, ca := range cas {
		names[i] = fmt.Sprintf("%q", ca.Subject)
	}
	return nil, fmt.Errorf("CRL issued by %q, which is not one of the CA certificates (%s): add that CA to client_ca or drop the CRL", crl.Issuer, strings.Join(names, ", "))
}

// Revoked reports whether cert, issued by issuer, is on a loaded CRL of that
// issuer (matched by subject and public key, so a re-issued CA certificate
// with the same key finds its CRLs). issuer nil: the CA is looked up among the
// CRL signers by cert's issuer name and signature (for the last certificate of
// a chain, whose issuer the chain does not hold). It does not consider CRL
// freshness; Check does.
func (r *RevocationLists) Revoked(cert, issuer *x509.Certificate) bool {
	e := r.lookup(cert, issuer)
	return e != nil && e.has(cert.SerialNumber)
}

// Check is Revoked with the CRL's freshness: it returns an error wrapping
// ErrRevoked when cert is on its issuer's CRL, one wrapping ErrCRLExpired
// when the issuer has CRLs loaded and the freshest one's NextUpdate is before
// now (OpenSSL, and so nginx and HAProxy, fail closed on an expired CRL too),
// and nil otherwise, also when no CRL of that issuer is loaded.
func (r *RevocationLists) Check(cert, issuer *x509.Certificate, now time.Time) error {
	e := r.lookup(cert, issuer)
	if e == nil {
		return nil
	}
	if e.has(cert.SerialNumber) {
		return fmt.Errorf("%w: %q (serial %x) is on the CRL of %q (%s)", ErrRevoked,
			cert.Subject, cert.SerialNumber, e.signer.Subject, strings.Join(e.files, ", "))
	}
	if !e.nextUpdate.IsZero() && now.After(e.nextUpdate) {
		return fmt.Errorf("%w: the CRL of %q (%s) expired at %s; fetch the CA's current CRL and reload",
			ErrCRLExpired, e.signer.Subject, strings.Join(e.files, ", "), e.nextUpdate.UTC().Format(time.RFC3339))
	}
	return nil
}

func (r *RevocationLists) lookup(cert, issuer *x509.Certificate) *issuerCRLs {
	if r == nil || cert == nil {
		return nil
	}
	if issuer != nil {
		return r.forIssuer(issuer)
	}
	for _, e := range r.bySubject[string(cert.RawIssuer)] {
		if cert.CheckSignatureFrom(e.signer) == nil {
			return e
		}
	}
	return nil
}

// forIssuer returns the CRLs of the CA with ca's name and key, or nil.
func (r *RevocationLists) forIssuer(ca *x509.Certificate) *issuerCRLs {
	for _, e := range r.bySubject[string(ca.RawSubject)] {
		if bytes.Equal(e.signer.RawSubjectPublicKeyInfo, ca.RawSubjectPublicKeyInfo) {
			return e
		}
	}
	return nil
}

// Len reports how many CAs have CRLs loaded.
func (r *RevocationLists) Len() int {
	if r == nil {
		return 0
	}
	n := 0
	for _, es := range r.bySubject {
		n += len(es)
	}
	return n
}

func (e *issuerCRLs) has(serial *big.Int) bool {
	var buf [serialBuf]byte
	_, ok := e.serials[string(serialKey(buf[:], serial))]
	return ok
}

// serialBuf holds any RFC 5280 serial (at most 20 octets) and a sign.
const serialBuf = 24

// serialKey writes a map key for serial into buf when it fits: its magnitude,
// big-endian, after a "-" when negative (negative serials are invalid but
// occur in the wild).
func serialKey(buf []byte, serial *big.Int) []byte {
	if serial == nil {
		return nil
	}
	sign := 0
	if serial.Sign() < 0 {
		sign = 1
	}
	n := (serial.BitLen() + 7) / 8
	if sign+n > len(buf) {
		buf = make([]byte, sign+n)
	}
	buf = buf[:sign+n]
	if sign == 1 {
		buf[0] = '-'
	}
	serial.FillBytes(buf[sign:])
	return buf
}
