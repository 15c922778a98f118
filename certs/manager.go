package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// Manager serves the certificates of terminate and reencrypt routes from one
// certmagic cache, whose storage folder instances may share (so ACME
// certificates can join later without changing how routes get theirs).
type Manager struct {
	cache   *certmagic.Cache
	storage certmagic.Storage

	mu      sync.Mutex
	configs map[string]*certmagic.Config // by tag
	hashes  map[string]bool              // certificates loaded, until Retain drops them
}

// NewManager makes the cache; storage is certmagic's folder. Stop it when done.
func NewManager(storage string) *Manager {
	m := &Manager{storage: &certmagic.FileStorage{Path: storage}, configs: map[string]*certmagic.Config{}, hashes: map[string]bool{}}
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(c certmagic.Certificate) (*certmagic.Config, error) {
			m.mu.Lock()
			defer m.mu.Unlock()
			for _, t := range c.Tags {
				if cfg := m.configs[t]; cfg != nil {
					return cfg, nil
				}
			}
			return nil, errors.New("certs: no config for certificate")
		},
		Logger: zap.NewNop(),
	})
	return m
}

// Static is a certificate loaded from files for one route.
type Static struct {
	// GetCertificate serves this route's certificate, whatever the SNI (a
	// route answers for the names it routes, which its certificate may not
	// all cover; clients then fail verification, as with any proxy).
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	Leaf           *x509.Certificate
	hash           string
}

// LoadStatic reads a PEM certificate chain and key into the cache under tag
// and returns what a route's tls.Config needs. Give every load its own tag
// (route and config generation): routes of the running config keep theirs
// until Retain drops them after a reload.
func (m *Manager) LoadStatic(ctx context.Context, tag, certFile, keyFile string) (*Static, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading certificate %s with key %s: %w", certFile, keyFile, err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("parsing certificate %s: %w", certFile, err)
	}
	cfg := certmagic.New(m.cache, certmagic.Config{
		Storage:       m.storage,
		CertSelection: tagSelector(tag),
		// A hello without SNI (the "*" route) looks the certificate up by
		// this name instead of failing.
		DefaultServerName: leafName(leaf),
		Logger:            zap.NewNop(),
	})
	m.mu.Lock()
	m.configs[tag] = cfg
	m.mu.Unlock()
	hash, err := cfg.CacheUnmanagedCertificatePEMFile(ctx, certFile, keyFile, []string{tag})
	if err != nil {
		return nil, fmt.Errorf("loading certificate %s with key %s: %w", certFile, keyFile, err)
	}
	m.mu.Lock()
	m.hashes[hash] = true
	m.mu.Unlock()
	return &Static{GetCertificate: cfg.GetCertificate, Leaf: leaf, hash: hash}, nil
}

// Retain drops from the cache every certificate and config not in keep:
// call it after a reload has swapped in the routes that use keep.
func (m *Manager) Retain(keep []*Static, keepTags []string) {
	m.mu.Lock()
	tags := map[string]bool{}
	for _, t := range keepTags {
		tags[t] = true
	}
	for t := range m.configs {
		if !tags[t] {
			delete(m.configs, t)
		}
	}
	hashes := map[string]bool{}
	for _, s := range keep {
		hashes[s.hash] = true
	}
	var drop []string
	for h := range m.hashes {
		if !hashes[h] {
			drop = append(drop, h)
			delete(m.hashes, h)
		}
	}
	m.mu.Unlock()
	if len(drop) > 0 {
		m.cache.Remove(drop)
	}
}

// Stop ends the cache's maintenance goroutine.
func (m *Manager) Stop() { m.cache.Stop() }

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

// tagSelector picks the certificate carrying the route's tag among the
// candidates (certmagic passes every cached certificate when none matches
// the SNI, so a route always finds its own).
type tagSelector string

func (t tagSelector) SelectCertificate(_ *tls.ClientHelloInfo, choices []certmagic.Certificate) (certmagic.Certificate, error) {
	for _, c := range choices {
		if slices.Contains(c.Tags, string(t)) {
			return c, nil
		}
	}
	return certmagic.Certificate{}, fmt.Errorf("certs: no certificate for route %s", string(t))
}
