package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
)

// Reasons an on-demand certificate is refused (wrapped in the error the
// handshake fails with, and logged).
var (
	ErrAcmeNotAllowed  = errors.New("certs: on-demand: name not matched by the route's sni patterns")
	ErrAcmeAskRefused  = errors.New("certs: on-demand: refused by the ask URL")
	ErrAcmeRateLimit   = errors.New("certs: on-demand: rate limit of orders reached")
	ErrAcmeOnDemandOff = errors.New("certs: on-demand: certs.acme.on_demand is off")
)

// onDemandRoute is one on-demand route: its patterns ("*.example.com"
// matches one label more; exact names match themselves).
type onDemandRoute struct {
	patterns []string
}

func (r *onDemandRoute) matches(name string) bool {
	if strings.Contains(name, "*") {
		return false // never a certificate for a literal wildcard
	}
	for _, p := range r.patterns {
		if p == name || strings.HasPrefix(p, "*.") && certmagic.MatchWildcard(name, p) {
			return true
		}
	}
	return false
}

// AcmeDecision is what decides whether an on-demand certificate may be
// ordered for a name: the patterns first, then the ask URL, then the
// rate limit. Exported for tests; routes use OnDemandRoute.
type AcmeDecision struct {
	Patterns []string // the route's sni patterns, lowercased
	Ask      string   // "" = not asked
	// Limiter counts orders; nil = no limit (tests only).
	Limiter interface{ Allow() bool }
	// Stored reports whether storage already holds a certificate for the
	// name (loading it is not an order, so it is not rate limited); nil =
	// never.
	Stored func(ctx context.Context, name string) bool
	Client *http.Client // for Ask; nil = one with a 10s timeout
}

// Decide returns nil when a certificate may be obtained for name, or an
// error wrapping ErrAcmeNotAllowed, ErrAcmeAskRefused or ErrAcmeRateLimit.
func (d *AcmeDecision) Decide(ctx context.Context, name string) error {
	r := onDemandRoute{patterns: d.Patterns}
	if strings.Contains(name, "*") || !r.matches(strings.ToLower(name)) {
		return fmt.Errorf("%w: %s", ErrAcmeNotAllowed, name)
	}
	if d.Ask != "" {
		if err := d.ask(ctx, name); err != nil {
			return err
		}
	}
	if d.Stored != nil && d.Stored(ctx, name) {
		return nil
	}
	if d.Limiter != nil && !d.Limiter.Allow() {
		return fmt.Errorf("%w: %s", ErrAcmeRateLimit, name)
	}
	return nil
}

// ask GETs the ask URL with ?domain=NAME: only a 2xx answer allows.
func (d *AcmeDecision) ask(ctx context.Context, name string) error {
	u, err := url.Parse(d.Ask)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrAcmeAskRefused, err)
	}
	q := u.Query()
	q.Set("domain", name)
	u.RawQuery = q.Encode()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrAcmeAskRefused, err)
	}
	c := d.Client
	if c == nil {
		c = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrAcmeAskRefused, name, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%w: %s: status %d", ErrAcmeAskRefused, name, resp.StatusCode)
	}
	return nil
}

// AcmeOnDemandOrderTimeout bounds an on-demand order (ask, order,
// validation, download), as certmagic's own on-demand bound: it runs
// detached from the handshake that asked for it.
const AcmeOnDemandOrderTimeout = 180 * time.Second

// onDemandCall is one on-demand GetCertificate running for a name.
type onDemandCall struct {
	done chan struct{}
	cert *tls.Certificate
	err  error
}

// OnDemandRoute returns the GetCertificate of a route with on-demand
// certificates for the names its patterns match: a name without a
// certificate gets one when the decision (patterns, ask URL, rate limit)
// allows; any other handshake fails with the reason, which is also logged
// (at most 10 lines a minute). The route uses the ACME state of the config
// being built (PrepareACME), else the one in force.
//
// The order runs detached from the handshake (bounded by
// AcmeOnDemandOrderTimeout, one at a time per name): the handshake waits
// for it only until its own deadline, then fails while the order goes on;
// a later handshake finds the certificate.
func (m *Manager) OnDemandRoute(patterns []string) (func(*tls.ClientHelloInfo) (*tls.Certificate, error), error) {
	m.mu.Lock()
	st := m.acme
	if m.nextOn {
		st = m.next
	}
	m.mu.Unlock()
	if st == nil || st.ondemand == nil {
		return nil, ErrAcmeOnDemandOff
	}
	lower := make([]string, len(patterns))
	for i, p := range patterns {
		lower[i] = strings.ToLower(p)
	}
	issuerKey := st.issuer.IssuerKey()
	d := &AcmeDecision{Patterns: lower, Ask: st.opts.Ask, Limiter: st.limiter,
		Stored: func(ctx context.Context, name string) bool {
			return m.storage.Exists(ctx, certmagic.StorageKeys.SiteCert(issuerKey, name))
		}}
	c := m.acmeConfig(st.opts)
	c.OnDemand = &certmagic.OnDemandConfig{DecisionFunc: func(ctx context.Context, name string) error {
		err := d.Decide(ctx, name)
		if err != nil {
			if ok, held := m.refusals.allow(); ok {
				m.log.Warn().Str("sni", name).Err(err).Int("held_back", held).Msg("on-demand certificate refused")
			}
		}
		return err
	}}
	cfg := certmagic.New(m.cache, c)
	cfg.Issuers = []certmagic.Issuer{certmagic.NewACMEIssuer(cfg, st.tmpl)}
	var mu sync.Mutex
	running := map[string]*onDemandCall{}
	return func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
		var cert *tls.Certificate
		var err error
		if m.hasACMECert(name) {
			// In the cache: served (or renewed at the handshake) at once.
			cert, err = cfg.GetCertificateWithContext(hello.Context(), hello)
		} else {
			mu.Lock()
			call := running[name]
			if call == nil {
				call = &onDemandCall{done: make(chan struct{})}
				running[name] = call
				h := *hello
				go func() {
					ctx, cancel := context.WithTimeout(m.ctx, AcmeOnDemandOrderTimeout)
					defer cancel()
					call.cert, call.err = cfg.GetCertificateWithContext(ctx, &h)
					mu.Lock()
					delete(running, name)
					mu.Unlock()
					close(call.done)
				}()
			}
			mu.Unlock()
			select {
			case <-call.done:
				cert, err = call.cert, call.err
			case <-hello.Context().Done():
				return nil, fmt.Errorf("%w: %s (the handshake ended before the on-demand order: it goes on in the background)", ErrAcmeNotYet, hello.ServerName)
			}
		}
		if err != nil || cert == nil || len(cert.Certificate) == 0 {
			return nil, fmt.Errorf("%w: %s (%v)", ErrAcmeNotYet, hello.ServerName, err)
		}
		return cert, nil
	}, nil
}

// hasACMECert reports whether the cache holds an ACME certificate (not a
// route's from files) for name.
func (m *Manager) hasACMECert(name string) bool {
	all := m.cache.AllMatchingCertificates(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range all {
		if !m.hashes[c.Hash()] {
			return true
		}
	}
	return false
}
