package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// Errors of the client certificate checks, wrapped with context.
var (
	ErrRevoked         = errors.New("certs: certificate revoked")
	ErrCRLExpired      = errors.New("certs: CRL expired")
	ErrOCSP            = errors.New("certs: OCSP check failed")
	ErrNoClientAuthEKU = errors.New("certs: client certificate not for client authentication")
)

// ClientVerifier runs the client certificate checks that come after the
// chain: extended key usage, CRLs and OCSP. Use it as
// tls.Config.VerifyConnection (or call Verify). It returns errors and never
// logs. Set its fields before use and do not change them after (build a new
// one on reload); then it is safe for concurrent use. The zero value checks
// only the extended key usage.
//
// What the client sees: crypto/tls answers any error from VerifyConnection
// with alert bad_certificate (42), a revoked certificate included (Go offers
// no way to send certificate_revoked, 44). Go's own chain check, which runs
// first in verify_if_given and require modes, sends unknown_ca (48) for an
// unknown issuer, certificate_expired (45) for an expired certificate and
// bad_certificate (42) for the rest, a missing clientAuth usage included; no
// certificate where one is required gets certificate_required (116) in TLS
// 1.3 and handshake_failure (40) in TLS 1.2. In TLS 1.3 the client's
// Handshake has already returned when the server checks its certificate: a Go
// client sees the alert on its first Read ("remote error: tls: bad
// certificate"). Go also calls VerifyConnection on a resumed session, with
// the chains stored in the ticket, so revocation is checked again then.
type ClientVerifier struct {
	// CRL lists revoked certificates. nil: no CRL check.
	CRL *RevocationLists
	// OCSP checks the leaf with its responder. nil or Mode off: no OCSP check.
	OCSP *OCSPChecker
	// StrictEKU also refuses a leaf with no extended key usage extension at
	// all. false (the zero value): such a leaf is accepted, as RFC 5280
	// section 4.2.1.12, Go's verifier and OpenSSL read "no extension" as "any
	// usage"; a leaf whose extension lacks clientAuth and anyExtendedKeyUsage
	// is refused either way.
	StrictEKU bool
	// Now is the clock for CRL freshness. nil: time.Now.
	Now func() time.Time
}

// VerifyConnection is Verify without a context (crypto/tls gives none); an
// OCSP lookup is still bounded by OCSPChecker.Timeout. It does not retain cs.
func (v *ClientVerifier) VerifyConnection(cs tls.ConnectionState) error {
	return v.Verify(context.Background(), cs)
}

// Verify checks the client certificate of cs:
//
//   - no certificate presented: nil (whether one is needed is
//     tls.Config.ClientAuth's business);
//   - the leaf must allow client authentication (ErrNoClientAuthEKU): Go
//     checks this itself when it verifies the chain, but not in request
//     mode (tls.RequestClientCert, RequireAnyClientCert);
//   - when Go verified the chain (cs.VerifiedChains), every certificate of
//     every verified chain is checked against its issuer's CRL (ErrRevoked,
//     ErrCRLExpired), the last one too when it is not self-issued (an
//     intermediate trusted directly) and a CRL of its issuer is loaded; then
//     the leaf with OCSP (ErrRevoked, or ErrOCSP in hard mode).
//
// Without verified chains (request mode) nothing is known about the issuer,
// so CRL and OCSP are skipped: such a certificate is unverified and must be
// treated so by the caller.
func (v *ClientVerifier) Verify(ctx context.Context, cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return nil
	}
	leaf := cs.PeerCertificates[0]
	strict := v != nil && v.StrictEKU
	if !clientAuthAllowed(leaf, strict) {
		return fmt.Errorf("%w: %q has extended key usages %s, none of them clientAuth", ErrNoClientAuthEKU, leaf.Subject, ekuNames(leaf))
	}
	if v == nil || len(cs.VerifiedChains) == 0 {
		return nil
	}
	if v.CRL.Len() > 0 {
		now := time.Now()
		if v.Now != nil {
			now = v.Now()
		}
		for _, chain := range cs.VerifiedChains {
			for i, c := range chain {
				var issuer *x509.Certificate
				if i+1 < len(chain) {
					issuer = chain[i+1]
				} else if selfIssued(c) {
					break
				}
				if err := v.CRL.Check(c, issuer, now); err != nil {
					return err
				}
			}
		}
	}
	if v.OCSP != nil && v.OCSP.Mode != OCSPOff {
		var issuer *x509.Certificate
		if chain := cs.VerifiedChains[0]; len(chain) > 1 {
			issuer = chain[1]
		}
		if err := v.OCSP.Check(ctx, leaf, issuer); err != nil {
			return err
		}
	}
	return nil
}

// clientAuthAllowed reports whether c's extended key usage allows TLS client
// authentication.
func clientAuthAllowed(c *x509.Certificate, strict bool) bool {
	if len(c.ExtKeyUsage) == 0 && len(c.UnknownExtKeyUsage) == 0 {
		return !strict
	}
	for _, u := range c.ExtKeyUsage {
		if u == x509.ExtKeyUsageClientAuth || u == x509.ExtKeyUsageAny {
			return true
		}
	}
	return false
}

func ekuNames(c *x509.Certificate) string {
	names := map[x509.ExtKeyUsage]string{
		x509.ExtKeyUsageServerAuth: "serverAuth", x509.ExtKeyUsageCodeSigning: "codeSigning",
		x509.ExtKeyUsageEmailProtection: "emailProtection", x509.ExtKeyUsageTimeStamping: "timeStamping",
		x509.ExtKeyUsageOCSPSigning: "OCSPSigning",
	}
	var out []string
	for _, u := range c.ExtKeyUsage {
		if n, ok := names[u]; ok {
			out = append(out, n)
		} else {
			out = append(out, fmt.Sprintf("ExtKeyUsage(%d)", u))
		}
	}
	for _, oid := range c.UnknownExtKeyUsage {
		out = append(out, oid.String())
	}
	if len(out) == 0 {
		return "[] (no extension)"
	}
	return fmt.Sprint(out)
}

// selfIssued reports whether c names itself as issuer: a root. By name only,
// so the hot path pays no signature check; a CA that re-keyed under the same
// name is treated as a root here.
func selfIssued(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject)
}
