package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/caddyserver/certmagic"
)

// ExpiryWarning: a certificate from files that expires within this is
// logged as a warning when it is loaded.
const ExpiryWarning = 14 * 24 * time.Hour

// Static is a certificate loaded from files for one route.
type Static struct {
	// GetCertificate serves this route's certificate, whatever the SNI (a
	// route answers for the names it routes, which its certificate may not
	// all cover; clients then fail verification, as with any proxy).
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	Leaf           *x509.Certificate
	hash           string
}

// StaticOptions say which files make a route's certificate, and how it is
// served.
type StaticOptions struct {
	Cert, Key string // PEM chain and key files
	// Staple staples the certificate's OCSP response to handshakes.
	Staple bool
}

// LoadStatic reads a PEM certificate chain and key into the cache and
// returns what a route's tls.Config needs: a GetCertificate that selects
// exactly this certificate (by the hash of its chain), so a route of the
// running config keeps serving its certificate until Retain drops it after
// a reload, even when the new config loads a renewed one for the same names.
func (m *Manager) LoadStatic(ctx context.Context, opts StaticOptions) (*Static, error) {
	certFile, keyFile := opts.Cert, opts.Key
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading certificate %s with key %s: %w", certFile, keyFile, err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("parsing certificate %s: %w", certFile, err)
	}
	if left := leaf.NotAfter.Sub(time.Now()); left < ExpiryWarning {
		m.log.Warn().Str("cert", certFile).Strs("names", leaf.DNSNames).Str("serial", leaf.SerialNumber.Text(16)).
			Time("not_after", leaf.NotAfter).Int("days_left", int(left.Hours()/24)).
			Msg("certificate expires soon: replace the file (tlsedge picks it up without a reload)")
	}
	hash, err := m.base.CacheUnmanagedTLSCertificate(ctx, pair, nil)
	if err != nil {
		return nil, fmt.Errorf("loading certificate %s with key %s: %w", certFile, keyFile, err)
	}
	m.mu.Lock()
	m.hashes[hash] = true
	m.mu.Unlock()
	// A hello without SNI (the "*" route) looks the certificate up by
	// DefaultServerName instead of failing.
	c := m.config(leafName(leaf))
	c.CertSelection = hashSelector(hash)
	cfg := certmagic.New(m.cache, c)
	return &Static{GetCertificate: cfg.GetCertificate, Leaf: leaf, hash: hash}, nil
}

// Retain drops from the cache every certificate not in keep: call it after
// a reload has swapped in the routes that use keep.
func (m *Manager) Retain(keep []*Static) {
	want := map[string]bool{}
	for _, s := range keep {
		want[s.hash] = true
	}
	m.mu.Lock()
	var drop []string
	for h := range m.hashes {
		if !want[h] {
			drop = append(drop, h)
			delete(m.hashes, h)
		}
	}
	m.mu.Unlock()
	if len(drop) > 0 {
		m.cache.Remove(drop)
	}
}

// leafName is a name the certificate is for: its first DNS name, else its
// first IP address, else its common name.
func leafName(c *x509.Certificate) string {
	switch {
	case len(c.DNSNames) > 0:
		return c.DNSNames[0]
	case len(c.IPAddresses) > 0:
		return c.IPAddresses[0].String()
	}
	return c.Subject.CommonName
}

// hashSelector picks the route's own certificate among the candidates
// (certmagic passes every cached certificate when none matches the SNI, so
// a route always finds its own).
type hashSelector string

func (h hashSelector) SelectCertificate(_ *tls.ClientHelloInfo, choices []certmagic.Certificate) (certmagic.Certificate, error) {
	for _, c := range choices {
		if c.Hash() == string(h) {
			return c, nil
		}
	}
	return certmagic.Certificate{}, fmt.Errorf("certs: the route's certificate %.12s is not loaded", string(h))
}
