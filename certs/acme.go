package certs

import (
	"context"
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
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/rs/zerolog"
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
	// CARootPEM, when set, is what CARoot holds, already read (the edge
	// reads each file once per config); nil: read CARoot.
	CARootPEM []byte
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
	opts        ACMEOptions
	cfg         *certmagic.Config // acme: true names (no on-demand)
	issuer      *certmagic.ACMEIssuer
	tmpl        certmagic.ACMEIssuer // what issuer was made from (on-demand routes make theirs from it)
	limiter     *certmagic.RingBufferRateLimiter
	http        *acmeHTTP    // nil unless http-01; may be the running state's, reused
	httpHandler http.Handler // what http serves once this state is in force
	ondemand    *certmagic.Config
}

// acmeHTTP is the plain listener answering http-01 validations. Its
// handler is swapped when a new ACME state comes in force with the same
// address, so a reload never binds the address twice.
type acmeHTTP struct {
	addr    string
	srv     *http.Server
	handler atomic.Pointer[http.Handler]
}

func (h *acmeHTTP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p := h.handler.Load(); p != nil {
		(*p).ServeHTTP(w, r)
		return
	}
	http.NotFound(w, r)
}

// acmeRoute is a route of the config being built or in force that gets
// its certificates from ACME: its exact names (acme: true) or its
// patterns (on-demand).
type acmeRoute struct {
	onDemand bool
	patterns []string // lowercased
}

// matches reports whether this route gets certificates for name.
func (r acmeRoute) matches(name string) bool {
	if strings.Contains(name, "*") {
		return false
	}
	if r.onDemand {
		return (&onDemandRoute{patterns: r.patterns}).matches(name)
	}
	return slices.Contains(r.patterns, name)
}

// SetACME configures ACME and puts it in force at once (PrepareACME then
// CommitACME). Calling it again with the same options changes nothing.
func (m *Manager) SetACME(opts ACMEOptions) error {
	if err := m.PrepareACME(opts); err != nil {
		m.AbortACME()
		return err
	}
	m.CommitACME()
	return nil
}

// PrepareACME makes the ACME state of a config being built without
// touching the one in force: the storage folder is created (0700), the CA
// root loaded, the http-01 listener started when chosen (the running one
// is reused when its address is the same). CommitACME puts it in force,
// AbortACME drops it. The same options as the state in force reuse it
// whole (its rate limiter goes on counting).
func (m *Manager) PrepareACME(opts ACMEOptions) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.dropNextLocked()
	m.nextOn = true
	if m.acme != nil && reflect.DeepEqual(m.acme.opts, opts) {
		m.next = m.acme
		return nil
	}
	if fs, ok := m.storage.(*certmagic.FileStorage); ok {
		if fs.Path == "" {
			return errors.New("certs.storage: not set, and neither XDG_DATA_HOME nor HOME is set to default it: give certs.storage (a folder only tlsedge can read: it holds private keys)")
		}
		if err := prepareStorage(fs.Path, m.log); err != nil {
			return err
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
		b := opts.CARootPEM
		if b == nil {
			var err error
			if b, err = os.ReadFile(opts.CARoot); err != nil {
				return fmt.Errorf("certs.acme.ca_root: %w", err)
			}
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
		st.httpHandler = st.issuer.HTTPChallengeHandler(http.NotFoundHandler())
		if m.acme != nil && m.acme.http != nil && m.acme.http.addr == opts.HTTPAddress {
			st.http = m.acme.http // its handler is swapped at CommitACME
		} else {
			ln, err := net.Listen("tcp", opts.HTTPAddress)
			if err != nil {
				st.stopExcept(m.acme)
				return fmt.Errorf("certs.acme.http_address: %w", err)
			}
			h := &acmeHTTP{addr: opts.HTTPAddress}
			h.srv = &http.Server{
				Handler:           h,
				ReadHeaderTimeout: 5 * time.Second,
				ReadTimeout:       10 * time.Second,
				WriteTimeout:      10 * time.Second,
			}
			st.http = h
			go func() { _ = h.srv.Serve(ln) }()
			m.log.Info().Str("address", ln.Addr().String()).Msg("answering ACME http-01 validations")
		}
	}
	m.next = st
	return nil
}

// AddACMERoute records, for the config being built, a route that gets
// its certificates from ACME: key names it (listener and first pattern,
// as in AcmeChallengeRoute), names are its exact names (acme: true) or
// its patterns (onDemand). In force at CommitACME.
func (m *Manager) AddACMERoute(key string, onDemand bool, names []string) {
	lower := make([]string, len(names))
	for i, n := range names {
		lower[i] = strings.ToLower(n)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.nextRoutes == nil {
		m.nextRoutes = map[string]acmeRoute{}
	}
	m.nextRoutes[key] = acmeRoute{onDemand: onDemand, patterns: lower}
}

// CommitACME puts in force what the config being built prepared
// (PrepareACME, AddACMERoute): nothing prepared = no ACME in force. The
// replaced state is stopped (its http-01 listener kept when the new state
// reuses it); certificates in the cache that neither an acme: true name
// nor an on-demand route in force covers any more are dropped from the
// cache (they stay in storage), so nothing renews them.
func (m *Manager) CommitACME() {
	m.mu.Lock()
	next, old := m.next, m.acme
	if !m.nextOn {
		next = nil
	}
	m.acme, m.routes = next, m.nextRoutes
	m.next, m.nextOn, m.nextRoutes = nil, false, nil
	if next != nil && next.http != nil {
		h := next.httpHandler
		next.http.handler.Store(&h)
	}
	m.mu.Unlock()
	if old != nil && old != next {
		old.stopExcept(next)
	}
	m.dropUncovered()
}

// AbortACME drops what the config being built prepared; the state in
// force is left as it was.
func (m *Manager) AbortACME() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.dropNextLocked()
}

// dropNextLocked stops the prepared state (unless it is the one in force)
// and forgets it. m.mu held.
func (m *Manager) dropNextLocked() {
	if m.next != nil && m.next != m.acme {
		m.next.stopExcept(m.acme)
	}
	m.next, m.nextOn, m.nextRoutes = nil, false, nil
}

// stopExcept stops st's http-01 listener and rate limiter, except what it
// shares with keep (the state in force or coming in force).
func (st *acmeState) stopExcept(keep *acmeState) {
	if st.http != nil && (keep == nil || keep.http != st.http) {
		_ = st.http.srv.Close()
	}
	if st.limiter != nil && (keep == nil || keep.limiter != st.limiter) {
		st.limiter.Stop()
	}
}

// covered reports whether a certificate for name is one the ACME config
// in force gets (an acme: true route's name, or a name an on-demand
// route's patterns match), and whether by on-demand. m.mu held.
func (m *Manager) coveredLocked(name string) (ok, onDemand bool) {
	if m.acme == nil {
		return false, false
	}
	for _, r := range m.routes {
		if r.matches(name) {
			return true, r.onDemand
		}
	}
	return false, false
}

// dropUncovered removes from the cache the ACME certificates none of
// whose names the config in force covers.
func (m *Manager) dropUncovered() {
	var gone []string
	for _, c := range m.cached() {
		m.mu.Lock()
		keep := m.hashes[c.Hash()]
		for _, n := range c.Names {
			if ok, _ := m.coveredLocked(n); ok || m.managed[n] != nil {
				keep = true
			}
		}
		m.mu.Unlock()
		if !keep {
			gone = append(gone, c.Hash())
			m.log.Info().Strs("names", c.Names).Msg("acme: certificate no longer used by the config: dropped from the cache (kept in storage), not renewed")
		}
	}
	if len(gone) > 0 {
		m.cache.Remove(gone)
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

// prepareStorage creates the storage folder 0700, and warns when an
// existing one is open to its group or others (it holds private keys).
func prepareStorage(path string, log zerolog.Logger) error {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return fmt.Errorf("certs.storage: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("certs.storage: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		log.Warn().Str("storage", path).Str("mode", fi.Mode().Perm().String()).
			Msg("certs.storage is accessible to its group or others: it holds ACME account and certificate private keys; chmod 700 it")
	}
	return nil
}

// logLimiter lets at most max lines through per interval every; the
// number held back is given with the next line let through.
type logLimiter struct {
	every time.Duration
	max   int

	mu         sync.Mutex
	start      time.Time
	n          int
	suppressed int
}

// allow reports whether a line may be written now, and how many were
// held back since the last one written.
func (l *logLimiter) allow() (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if now.Sub(l.start) >= l.every {
		l.start, l.n = now, 0
	}
	if l.n >= l.max {
		l.suppressed++
		return false, 0
	}
	l.n++
	s := l.suppressed
	l.suppressed = 0
	return true, s
}
