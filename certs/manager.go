package certs

import (
	"sync"

	"github.com/caddyserver/certmagic"
	"github.com/rs/zerolog"
	"go.uber.org/zap"
)

// Manager serves the certificates of terminate and reencrypt routes from one
// certmagic cache, whose storage folder instances may share (so ACME
// certificates can join later without changing how routes get theirs).
type Manager struct {
	cache   *certmagic.Cache
	storage certmagic.Storage
	base    *certmagic.Config // maintenance of the unmanaged certificates

	mu     sync.Mutex
	hashes map[string]bool // certificates loaded, until Retain drops them

	log zerolog.Logger
}

// ManagerOptions configures a Manager.
type ManagerOptions struct {
	Storage string         // certmagic's storage folder
	Log     zerolog.Logger // where the manager (and certmagic) log
}

// NewManager makes the cache on opts.Storage. Stop it when done.
func NewManager(opts ManagerOptions) *Manager {
	m := &Manager{storage: &certmagic.FileStorage{Path: opts.Storage}, hashes: map[string]bool{}, log: opts.Log}
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return m.base, nil },
		Logger:           zap.NewNop(),
	})
	m.base = certmagic.New(m.cache, m.config(""))
	return m
}

func (m *Manager) config(defaultName string) certmagic.Config {
	return certmagic.Config{
		Storage: m.storage,
		// Stapling fetches from the network with no timeout at load, which
		// would stall a start or a reload; clients check revocation anyway.
		OCSP:              certmagic.OCSPConfig{DisableStapling: true},
		DefaultServerName: defaultName,
		Logger:            zap.NewNop(),
	}
}

// Stop ends the cache's maintenance goroutine.
func (m *Manager) Stop() { m.cache.Stop() }
