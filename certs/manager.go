package certs

import (
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

	mu       sync.Mutex
	hashes   map[string]bool           // certificates loaded from files, until Retain drops them
	staplers map[string]*stapler       // OCSP stapling of certificates from files, by hash, until Retain drops them
	acme     *acmeState                // nil until SetACME
	managed  map[string]bool           // names given to ManageACME
	onDemand map[string]*onDemandRoute // by the route's patterns

	log zerolog.Logger
	zap *zap.Logger // certmagic's logger, writing to log
}

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
		managed: map[string]bool{}, onDemand: map[string]*onDemandRoute{}, log: opts.Log, zap: newZapLogger(opts.Log)}
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   m.configForCert,
		RenewCheckInterval: opts.RenewInterval,
		Logger:             m.zap.Named("cache"),
	})
	m.base = certmagic.New(m.cache, m.config(""))
	return m
}

// configForCert is the certmagic config that maintains c: the ACME
// config for managed names, the on-demand one for other ACME
// certificates, the base one (no issuer used) for certificates from files.
func (m *Manager) configForCert(c certmagic.Certificate) (*certmagic.Config, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.hashes[c.Hash()] || m.acme == nil {
		return m.base, nil
	}
	for _, n := range c.Names {
		if m.managed[n] {
			return m.acme.cfg, nil
		}
	}
	if m.acme.ondemand != nil {
		return m.acme.ondemand, nil
	}
	return m.acme.cfg, nil
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
	m.mu.Lock()
	st := m.acme
	m.acme = nil
	for h, s := range m.staplers {
		s.cancel()
		delete(m.staplers, h)
	}
	m.mu.Unlock()
	if st != nil {
		st.stop()
	}
}
