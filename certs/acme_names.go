package certs

// The names ACME manages and how their certificates are served: the
// routes' GetCertificate, the TLS-ALPN-01 answers, the choice among
// certificates certmagic holds for a name.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/caddyserver/certmagic"
)

// managedName is a name under ManageACME: the context of its obtain job
// (cancelled by UnmanageACME) and the state that started it.
type managedName struct {
	ctx    context.Context
	cancel context.CancelFunc
	st     *acmeState
}

// ManageACME starts obtaining (in the background, never blocking) and
// then renewing certificates for names, each name its own certificate.
// Names already managed by the ACME state in force are left as they are
// (no second obtain job); the job of a name managed under a replaced
// state is cancelled and started again with the state in force.
func (m *Manager) ManageACME(ctx context.Context, names []string) error {
	m.mu.Lock()
	st := m.acme
	if st == nil {
		m.mu.Unlock()
		return errors.New("certs: ACME is not configured (certs.acme)")
	}
	var start []string
	var ctxs []context.Context
	for _, n := range names {
		if mn := m.managed[n]; mn != nil {
			if mn.st == st {
				continue
			}
			mn.cancel()
		}
		c, cancel := context.WithCancel(ctx)
		m.managed[n] = &managedName{ctx: c, cancel: cancel, st: st}
		start = append(start, n)
		ctxs = append(ctxs, c)
	}
	m.mu.Unlock()
	for i, n := range start {
		if err := st.cfg.ManageAsync(ctxs[i], []string{n}); err != nil {
			return err
		}
	}
	return nil
}

// UnmanageACME stops obtaining and renewing names (their obtain jobs are
// cancelled) and drops their certificates from the cache (they stay in
// storage).
func (m *Manager) UnmanageACME(names []string) {
	var subjects []certmagic.SubjectIssuer
	m.mu.Lock()
	for _, n := range names {
		if mn := m.managed[n]; mn != nil {
			mn.cancel()
		}
		delete(m.managed, n)
		subjects = append(subjects, certmagic.SubjectIssuer{Subject: n})
	}
	m.mu.Unlock()
	m.cache.RemoveManaged(subjects)
}

// ManagedNames returns the names ManageACME was given (and not
// unmanaged since).
func (m *Manager) ManagedNames() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.managed))
	for n := range m.managed {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// ACMERoute returns the GetCertificate of a route whose certificates come
// from ACME for exactly names: a handshake for another name, or for one
// whose certificate is not obtained yet, fails (never another route's
// certificate).
func (m *Manager) ACMERoute(names []string) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	allowed := map[string]bool{}
	for _, n := range names {
		allowed[strings.ToLower(n)] = true
	}
	return func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
		if !allowed[name] {
			return nil, fmt.Errorf("certs: %q is not one of the route's ACME names", hello.ServerName)
		}
		m.mu.Lock()
		st := m.acme
		m.mu.Unlock()
		if st == nil {
			return nil, errors.New("certs: ACME is not configured")
		}
		c, err := st.cfg.GetCertificate(hello)
		if err != nil || c == nil || len(c.Certificate) == 0 {
			return nil, fmt.Errorf("%w: %s (%v)", ErrAcmeNotYet, name, err)
		}
		return c, nil
	}
}

// AcmeChallengeRoute reports whether a TLS-ALPN-01 validation for name,
// which the listener's table routes to the route key (AddACMERoute's:
// listener name, NUL, first pattern), is tlsedge's to answer: that route
// of the config in force gets its certificates from ACME and covers name
// (one of its acme: true names, or matched by its on-demand patterns).
// A name with "*" never is.
func (m *Manager) AcmeChallengeRoute(key, name string) bool {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.acme == nil {
		return false
	}
	r, ok := m.routes[key]
	return ok && r.matches(name)
}

// AcmeChallengeTLS is the TLS config that answers TLS-ALPN-01
// validations (certmagic serves the validation certificate, from memory
// or, when another instance on the same storage placed the order, from
// storage). nil when ACME is not configured.
func (m *Manager) AcmeChallengeTLS() *tls.Config {
	m.mu.Lock()
	st := m.acme
	m.mu.Unlock()
	if st == nil {
		return nil
	}
	return &tls.Config{
		GetCertificate: st.cfg.GetCertificate,
		NextProtos:     []string{AcmeALPN},
		MinVersion:     tls.VersionTLS12,
	}
}

// managedSelector picks, among the cached certificates certmagic offers,
// one that is not a static route certificate and whose names cover the
// SNI: an ACME route never serves another route's certificate.
type managedSelector struct{ m *Manager }

func (s managedSelector) SelectCertificate(hello *tls.ClientHelloInfo, choices []certmagic.Certificate) (certmagic.Certificate, error) {
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	// Names first, without the lock: for a name no certificate has,
	// certmagic offers the whole cache.
	var fit []certmagic.Certificate
	for _, c := range choices {
		for _, n := range c.Names {
			if n == name || certmagic.MatchWildcard(name, n) {
				fit = append(fit, c)
				break
			}
		}
	}
	if len(fit) > 0 {
		s.m.mu.Lock()
		fit = slices.DeleteFunc(fit, func(c certmagic.Certificate) bool { return s.m.hashes[c.Hash()] }) // a route's certificate from files
		s.m.mu.Unlock()
	}
	if len(fit) == 0 {
		return certmagic.Certificate{}, fmt.Errorf("%w: %s", ErrAcmeNotYet, name)
	}
	return certmagic.DefaultCertificateSelector(hello, fit)
}
