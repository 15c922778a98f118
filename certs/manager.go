package certs

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/rs/zerolog"
	"go.uber.org/zap"
)

// Manager serves the certificates of terminate and reencrypt routes from one
// certmagic cache, whose storage folder instances may share: certificates
// from files (LoadStatic) and from an ACME CA (SetACME, ManageACME,
// OnDemandRoute), which instances on the same storage obtain once and
// share, coordinating through certmagic's storage locks.
type Manager struct {
	cache   *certmagic.Cache
	storage certmagic.Storage
	base    *certmagic.Config // maintenance of the unmanaged certificates
	inert   *certmagic.Config // ACME certificates the config no longer uses: renewed by nobody

	mu       sync.Mutex
	hashes   map[string]bool     // certificates loaded from files, until Retain drops them
	staplers map[string]*stapler // OCSP stapling: of certificates from files, by hash, until Retain drops them; of ACME ones, by "acme:" + SHA-256 (nil: cannot be stapled)
	// acmeStapled is the stapler key of each ACME name's certificate.
	acmeStapled map[string]string
	acme        *acmeState              // the ACME state in force; nil = none
	routes      map[string]acmeRoute    // the ACME routes in force, by AddACMERoute's key
	managed     map[string]*managedName // names given to ManageACME
	// What the config being built prepared (PrepareACME, AddACMERoute),
	// put in force by CommitACME; nextOn: PrepareACME was called.
	next       *acmeState
	nextOn     bool
	nextRoutes map[string]acmeRoute

	ctx      context.Context // on-demand orders run on it, detached from handshakes; cancelled by Stop
	cancel   context.CancelFunc
	refusals logLimiter // "on-demand certificate refused" lines

	opts ManagerOptions // as made (storage and renew interval are fixed)

	log zerolog.Logger
	zap *zap.Logger // certmagic's logger, writing to log
}

// Options returns the options the Manager was made with: its storage
// folder and renew interval cannot change afterwards.
func (m *Manager) Options() ManagerOptions { return m.opts }

// ManagerOptions configures a Manager.
type ManagerOptions struct {
	Storage string         // certmagic's storage folder
	Log     zerolog.Logger // where the manager (and certmagic) log
	// RenewInterval is how often managed certificates are checked for
	// renewal; 0 = certmagic's 10 minutes.
	RenewInterval time.Duration
}

// NewManager makes the cache on opts.Storage. Stop it when done.
func NewManager(opts ManagerOptions) *Manager {
	m := &Manager{storage: &certmagic.FileStorage{Path: opts.Storage}, hashes: map[string]bool{},
		managed: map[string]*managedName{}, opts: opts, log: opts.Log, zap: newZapLogger(opts.Log),
		refusals: logLimiter{every: time.Minute, max: 10}}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   m.configForCert,
		RenewCheckInterval: opts.RenewInterval,
		Logger:             m.zap.Named("cache"),
	})
	m.base = certmagic.New(m.cache, m.config(""))
	// certmagic's maintenance skips the certificates of on-demand configs:
	// this one, whose decision refuses everything, renews nothing.
	inert := m.config("")
	inert.OnDemand = &certmagic.OnDemandConfig{DecisionFunc: func(context.Context, string) error {
		return errors.New("certs: this certificate is no longer used by the config")
	}}
	m.inert = certmagic.New(m.cache, inert)
	return m
}

// configForCert is the certmagic config that maintains c: the ACME
// config for managed names, the on-demand one for certificates an
// on-demand route in force covers, the base one (no issuer used) for
// certificates from files, and for any other ACME certificate (of a name
// or route no longer in the config) one that renews nothing.
func (m *Manager) configForCert(c certmagic.Certificate) (*certmagic.Config, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.hashes[c.Hash()] {
		return m.base, nil
	}
	if m.acme != nil {
		for _, n := range c.Names {
			if mn := m.managed[n]; mn != nil {
				return m.acme.cfg, nil
			}
		}
		for _, n := range c.Names {
			if ok, od := m.coveredLocked(n); ok && od && m.acme.ondemand != nil {
				return m.acme.ondemand, nil
			}
		}
	}
	return m.inert, nil
}

func (m *Manager) config(defaultName string) certmagic.Config {
	return certmagic.Config{
		Storage: m.storage,
		// Stapling fetches from the network with no timeout at load, which
		// would stall a start or a reload; clients check revocation anyway.
		OCSP:              certmagic.OCSPConfig{DisableStapling: true},
		DefaultServerName: defaultName,
		Logger:            m.zap,
	}
}

// Stop ends the cache's maintenance goroutine, and the http-01 listener.
func (m *Manager) Stop() {
	m.cache.Stop()
	m.cancel()
	m.mu.Lock()
	m.dropNextLocked()
	st := m.acme
	m.acme = nil
	for n, mn := range m.managed {
		mn.cancel()
		delete(m.managed, n)
	}
	for h, s := range m.staplers {
		if s != nil { // nil: an ACME certificate that cannot be stapled
			s.cancel()
		}
		delete(m.staplers, h)
	}
	m.mu.Unlock()
	if st != nil {
		st.stopExcept(nil)
	}
}
