package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"time"
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
	// Pair, when set, is what Cert and Key hold, already loaded (the edge
	// reads each file once per config); nil: LoadStatic reads them.
	Pair *tls.Certificate
	// Staple staples the certificate's OCSP response to handshakes.
	Staple bool
}

// LoadStatic reads a PEM certificate chain and key, puts it in the cache
// (listed, and watched for expiry, until Retain drops it) and returns what
// a route's tls.Config needs: a GetCertificate that serves exactly this
// certificate, so a route of the running config keeps serving its own
// while a reload loads a renewed one for the same names.
func (m *Manager) LoadStatic(ctx context.Context, opts StaticOptions) (*Static, error) {
	certFile, keyFile := opts.Cert, opts.Key
	var pair tls.Certificate
	if opts.Pair != nil {
		pair = *opts.Pair // a copy: the stapler sets its OCSPStaple
	} else {
		var err error
		if pair, err = tls.LoadX509KeyPair(certFile, keyFile); err != nil {
			return nil, fmt.Errorf("loading certificate %s with key %s: %w", certFile, keyFile, err)
		}
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("parsing certificate %s: %w", certFile, err)
	}
	if left := time.Until(leaf.NotAfter); left < ExpiryWarning {
		m.log.Warn().Str("cert", certFile).Strs("names", leaf.DNSNames).Str("serial", leaf.SerialNumber.Text(16)).
			Time("not_after", leaf.NotAfter).Int("days_left", int(left.Hours()/24)).
			Msg("certificate expires soon: replace the file (tlsedge picks it up without a reload)")
	}
	// In the cache (tagged StaticTag) for the listing and certmagic's
	// expiry warnings; served straight from here, without a cache lookup.
	hash, err := m.base.CacheUnmanagedTLSCertificate(ctx, pair, []string{StaticTag})
	if err != nil {
		return nil, fmt.Errorf("loading certificate %s with key %s: %w", certFile, keyFile, err)
	}
	m.mu.Lock()
	m.hashes[hash] = true
	var st *stapler
	if opts.Staple {
		st = m.stapler(hash, &pair, certFile)
	}
	m.mu.Unlock()
	served := &pair
	get := func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return served, nil }
	return &Static{GetCertificate: withStaple(get, st), Leaf: leaf, hash: hash}, nil
}

// StaticTag tags the certificates from files in certmagic's cache (ACME
// lookups never pick one).
const StaticTag = "tlsedge-static"

// stapler returns the stapler of the certificate with hash, started now
// when it has none; nil when the certificate cannot be stapled (said at
// debug level: most private CAs run no responder). Call with m.mu held.
func (m *Manager) stapler(hash string, pair *tls.Certificate, certFile string) *stapler {
	if s := m.staplers[hash]; s != nil {
		return s
	}
	s, err := newStapler(pair, m.log.With().Str("cert", certFile).Logger())
	if err != nil {
		m.log.Debug().Err(err).Str("cert", certFile).Msg("no OCSP stapling for this certificate")
		return nil
	}
	if m.staplers == nil {
		m.staplers = map[string]*stapler{}
	}
	m.staplers[hash] = s
	return s
}

// withStaple serves get's certificate with the stapler's current OCSP
// response (none while it has no fresh one).
func withStaple(get func(*tls.ClientHelloInfo) (*tls.Certificate, error), s *stapler) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if s == nil {
		return get
	}
	return func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		c, err := get(h)
		if err != nil || c == nil {
			return c, err
		}
		staple := s.staple()
		if staple == nil {
			return c, nil
		}
		served := *c // the cache's copy is shared: staple a copy
		served.OCSPStaple = staple
		return &served, nil
	}
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
		}
	}
	m.mu.Unlock()
	if len(drop) == 0 {
		return
	}
	m.cache.Remove(drop) // first: a listing meanwhile still sees them as from files
	m.mu.Lock()
	for _, h := range drop {
		delete(m.hashes, h)
		if s := m.staplers[h]; s != nil {
			s.cancel() // its goroutine ends at once, or when its fetch does
			delete(m.staplers, h)
		}
	}
	m.mu.Unlock()
}
