package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"
)

// ACME challenge types (the values of certs.acme.challenges).
const (
	AcmeTLSALPN01 = "tls-alpn-01"
	AcmeHTTP01    = "http-01"
)

// AcmeALPN is the ALPN protocol of a TLS-ALPN-01 validation (RFC 8737).
const AcmeALPN = "acme-tls/1"

// ErrAcmeNotYet: the certificate of an acme name has not been obtained
// yet (the order is in the background, or failed: see the log).
var ErrAcmeNotYet = errors.New("certs: no ACME certificate for this name yet")

// ACMEOptions configure automatic certificates. The zero value asks Let's
// Encrypt's production directory, with no email, answering tls-alpn-01.
type ACMEOptions struct {
	Email     string
	Directory string // ACME directory URL; "" = Let's Encrypt production
	// CARoot is a PEM file of the roots that sign the ACME server's own
	// HTTPS certificate (a private ACME CA); "" = the system's roots.
	CARoot string
	// Challenges are the challenge types offered: tls-alpn-01, http-01.
	// nil = tls-alpn-01 only.
	Challenges []string
	// TLSALPNAddress is the address (host:port) of the tlsedge listener
	// that answers tls-alpn-01, so certmagic does not open its own
	// listener there.
	TLSALPNAddress string
	// HTTPAddress is where tlsedge serves http-01 validations (plain
	// HTTP); used when Challenges has http-01.
	HTTPAddress string
	// RenewalWindowRatio is how much of a certificate's lifetime is left
	// when it is renewed; 0 = certmagic's 1/3.
	RenewalWindowRatio float64
	// OnDemand allows on-demand routes (OnDemandRoute) at all.
	OnDemand bool
	// Ask is a URL asked (GET ?domain=NAME) before an on-demand order;
	// only a 2xx answer allows it. "" = not asked.
	Ask string
	// OnDemandOrders on-demand orders at most per OnDemandInterval, over
	// the whole instance. 0 = 10 per minute.
	OnDemandOrders   int
	OnDemandInterval time.Duration
}

// Defaults of the on-demand rate limit.
const (
	AcmeDefaultOnDemandOrders   = 10
	AcmeDefaultOnDemandInterval = time.Minute
)

// acmeState is what one set of ACMEOptions made: the certmagic config of
// the acme: true names, the issuer's key, the on-demand limiter and the
// http-01 server.
type acmeState struct {
	opts     ACMEOptions
	cfg      *certmagic.Config // acme: true names (no on-demand)
	issuer   *certmagic.ACMEIssuer
	tmpl     certmagic.ACMEIssuer // what issuer was made from (on-demand routes make theirs from it)
	limiter  *certmagic.RingBufferRateLimiter
	httpSrv  *http.Server // nil unless http-01
	ondemand *certmagic.Config
}

// SetACME configures (or reconfigures) ACME: the storage folder is
// created (0700), the CA root loaded, the http-01 listener started when
// chosen. Calling it again with the same options changes nothing.
func (m *Manager) SetACME(opts ACMEOptions) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.acme != nil && reflect.DeepEqual(m.acme.opts, opts) {
		return nil
	}
	if fs, ok := m.storage.(*certmagic.FileStorage); ok {
		if err := os.MkdirAll(fs.Path, 0o700); err != nil {
			return fmt.Errorf("certs.storage: %w", err)
		}
	}
	st := &acmeState{opts: opts}
	tmpl := certmagic.ACMEIssuer{
		CA:                      opts.Directory,
		Email:                   opts.Email,
		Agreed:                  true,
		DisableHTTPChallenge:    !slices.Contains(opts.Challenges, AcmeHTTP01),
		DisableTLSALPNChallenge: len(opts.Challenges) > 0 && !slices.Contains(opts.Challenges, AcmeTLSALPN01),
		Logger:                  m.zap.Named("acme"),
	}
	if tmpl.CA == "" {
		tmpl.CA = certmagic.LetsEncryptProductionCA
	}
	if opts.CARoot != "" {
		b, err := os.ReadFile(opts.CARoot)
		if err != nil {
			return fmt.Errorf("certs.acme.ca_root: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return fmt.Errorf("certs.acme.ca_root: %s holds no PEM certificate", opts.CARoot)
		}
		tmpl.TrustedRoots = pool
	}
	// certmagic opens a listener for a challenge unless one answers at
	// the address already: point it at tlsedge's own.
	if !tmpl.DisableTLSALPNChallenge && opts.TLSALPNAddress != "" {
		host, port, err := splitPort(opts.TLSALPNAddress)
		if err != nil {
			return err
		}
		tmpl.ListenHost, tmpl.AltTLSALPNPort = host, port
	}
	if !tmpl.DisableHTTPChallenge {
		host, port, err := splitPort(opts.HTTPAddress)
		if err != nil {
			return fmt.Errorf("certs.acme.http_address: %w", err)
		}
		tmpl.ListenHost, tmpl.AltHTTPPort = host, port
	}
	st.tmpl = tmpl
	st.cfg = certmagic.New(m.cache, m.acmeConfig(opts))
	st.issuer = certmagic.NewACMEIssuer(st.cfg, tmpl)
	st.cfg.Issuers = []certmagic.Issuer{st.issuer}
	if opts.OnDemand {
		n, every := opts.OnDemandOrders, opts.OnDemandInterval
		if n <= 0 {
			n = AcmeDefaultOnDemandOrders
		}
		if every <= 0 {
			every = AcmeDefaultOnDemandInterval
		}
		st.limiter = certmagic.NewRateLimiter(n, every)
		// The config of on-demand certificates in the cache (their
		// maintenance is at handshakes, by their route's config).
		c := m.acmeConfig(opts)
		c.OnDemand = &certmagic.OnDemandConfig{DecisionFunc: func(context.Context, string) error {
			return errors.New("certs: renewed at handshakes by the route's own rules")
		}}
		st.ondemand = certmagic.New(m.cache, c)
		st.ondemand.Issuers = []certmagic.Issuer{certmagic.NewACMEIssuer(st.ondemand, tmpl)}
	}
	if !tmpl.DisableHTTPChallenge {
		ln, err := net.Listen("tcp", opts.HTTPAddress)
		if err != nil {
			return fmt.Errorf("certs.acme.http_address: %w", err)
		}
		st.httpSrv = &http.Server{
			Handler:           st.issuer.HTTPChallengeHandler(http.NotFoundHandler()),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      10 * time.Second,
		}
		go func() { _ = st.httpSrv.Serve(ln) }()
		m.log.Info().Str("address", ln.Addr().String()).Msg("answering ACME http-01 validations")
	}
	old := m.acme
	m.acme = st
	if old != nil {
		old.stop()
	}
	return nil
}

func (st *acmeState) stop() {
	if st.httpSrv != nil {
		_ = st.httpSrv.Close()
	}
	if st.limiter != nil {
		st.limiter.Stop()
	}
}

// acmeConfig is the certmagic config of ACME certificates: they select
// only managed certificates (never a route's static one).
func (m *Manager) acmeConfig(opts ACMEOptions) certmagic.Config {
	c := m.config("")
	c.RenewalWindowRatio = opts.RenewalWindowRatio
	c.CertSelection = managedSelector{m}
	return c
}

// splitPort splits host:port into its host and port number.
func splitPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port <= 0 || port > 65535 {
		return "", 0, fmt.Errorf("%q: not a port number", p)
	}
	return host, port, nil
}

// ManageACME starts obtaining (in the background, never blocking) and
// then renewing certificates for names, each name its own certificate.
// Names already managed are left as they are.
func (m *Manager) ManageACME(ctx context.Context, names []string) error {
	m.mu.Lock()
	st := m.acme
	for _, n := range names {
		m.managed[n] = true
	}
	m.mu.Unlock()
	if st == nil {
		return errors.New("certs: ACME is not configured (certs.acme)")
	}
	return st.cfg.ManageAsync(ctx, names)
}

// UnmanageACME stops renewing names and drops their certificates from
// the cache (they stay in storage).
func (m *Manager) UnmanageACME(names []string) {
	var subjects []certmagic.SubjectIssuer
	m.mu.Lock()
	for _, n := range names {
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

// AcmeChallengeName reports whether a TLS-ALPN-01 validation for name is
// tlsedge's to answer: the name is managed, or allowed by an on-demand
// route.
func (m *Manager) AcmeChallengeName(name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.acme == nil {
		return false
	}
	if m.managed[name] {
		return true
	}
	for _, r := range m.onDemand {
		if r.matches(name) {
			return true
		}
	}
	return false
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
	s.m.mu.Lock()
	var fit []certmagic.Certificate
	for _, c := range choices {
		if s.m.hashes[c.Hash()] {
			continue // a route's certificate from files
		}
		for _, n := range c.Names {
			if n == name || certmagic.MatchWildcard(name, n) {
				fit = append(fit, c)
				break
			}
		}
	}
	s.m.mu.Unlock()
	if len(fit) == 0 {
		return certmagic.Certificate{}, fmt.Errorf("%w: %s", ErrAcmeNotYet, name)
	}
	return certmagic.DefaultCertificateSelector(hello, fit)
}
