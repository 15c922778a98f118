package certs

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"strings"
)

// maxACMEStaplers bounds the staplers of ACME certificates (one per name
// while its certificate is served; on-demand names are bounded by their
// rate limit, this by construction).
const maxACMEStaplers = 10000

// WithStapling serves get's certificates (ACME ones: obtained and renewed
// by certmagic) with their OCSP response: the first handshake of a
// certificate starts its stapler (in the background, as for certificates
// from files) and later ones get the response once fetched. A certificate
// renewed for a name replaces its stapler; certificates that cannot be
// stapled (no responder, no issuer in the chain) are remembered and served
// as they are.
func (m *Manager) WithStapling(get func(*tls.ClientHelloInfo) (*tls.Certificate, error)) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		c, err := get(h)
		if err != nil || c == nil || c.Leaf == nil || len(c.Certificate) == 0 {
			return c, err
		}
		s := m.acmeStapler(c)
		if s == nil {
			return c, nil
		}
		staple := s.staple()
		if staple == nil {
			return c, nil
		}
		served := *c // certmagic's copy is shared: staple a copy
		served.OCSPStaple = staple
		return &served, nil
	}
}

// acmeStapler returns the stapler of an ACME certificate, started on
// first use; nil when it cannot be stapled.
func (m *Manager) acmeStapler(c *tls.Certificate) *stapler {
	sum := sha256.Sum256(c.Certificate[0])
	key := "acme:" + hex.EncodeToString(sum[:])
	name := strings.ToLower(c.Leaf.Subject.CommonName)
	if len(c.Leaf.DNSNames) > 0 {
		name = strings.ToLower(c.Leaf.DNSNames[0])
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.staplers[key]; ok {
		return s // nil: known not to be stapled
	}
	if m.staplers == nil {
		m.staplers = map[string]*stapler{}
	}
	if m.acmeStapled == nil {
		m.acmeStapled = map[string]string{}
	}
	// The name's previous certificate (renewed): its stapler ends.
	if old, ok := m.acmeStapled[name]; ok && old != key {
		if s := m.staplers[old]; s != nil {
			s.cancel()
		}
		delete(m.staplers, old)
	}
	if len(m.acmeStapled) >= maxACMEStaplers {
		return nil
	}
	s, err := newStapler(c, m.log.With().Str("name", name).Logger())
	if err != nil && !errors.Is(err, ErrNoStapling) {
		m.log.Debug().Err(err).Str("name", name).Msg("no OCSP stapling for this ACME certificate")
	}
	m.staplers[key] = s // nil when it cannot be stapled: not tried again
	m.acmeStapled[name] = key
	return s
}
