package certs

import (
	"crypto/tls"
	"errors"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// CertInfo describes one certificate in the cache.
type CertInfo struct {
	Names    []string
	Issuer   string // the issuer's subject
	Serial   string // hex, lowercase
	NotAfter time.Time
	Managed  bool // from ACME (false: a route's certificate from files)
}

// Certificates lists every certificate in the cache, from files and from
// ACME, sorted by first name then expiry.
func (m *Manager) Certificates() []CertInfo {
	all := m.cached()
	m.mu.Lock()
	out := make([]CertInfo, 0, len(all))
	for _, c := range all {
		leaf := c.Leaf
		if leaf == nil {
			continue
		}
		out = append(out, CertInfo{
			Names:    slices.Clone(c.Names),
			Issuer:   leaf.Issuer.String(),
			Serial:   strings.ToLower(leaf.SerialNumber.Text(16)),
			NotAfter: leaf.NotAfter,
			Managed:  !m.hashes[c.Hash()],
		})
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b CertInfo) int {
		var an, bn string
		if len(a.Names) > 0 {
			an = a.Names[0]
		}
		if len(b.Names) > 0 {
			bn = b.Names[0]
		}
		if r := strings.Compare(an, bn); r != 0 {
			return r
		}
		return a.NotAfter.Compare(b.NotAfter)
	})
	return out
}

// cached returns every certificate in the cache, from files and ACME.
func (m *Manager) cached() []certmagic.Certificate {
	var all []certmagic.Certificate
	seen := map[string]bool{}
	collect := allSelector(func(choices []certmagic.Certificate) {
		for _, c := range choices {
			if !seen[c.Hash()] {
				seen[c.Hash()] = true
				all = append(all, c)
			}
		}
	})
	// certmagic offers every cached certificate to a selector when none
	// matches the name: a name no certificate can have lists them all.
	c := m.config("")
	c.CertSelection = collect
	c.Logger = zap.NewNop()
	cfg := certmagic.New(m.cache, c)
	a, b := net.Pipe() // certmagic logs the hello's addresses
	_, _ = cfg.GetCertificate(&tls.ClientHelloInfo{ServerName: "tlsedge-list.invalid", Conn: a})
	a.Close()
	b.Close()
	return all
}

// allSelector is given every cached certificate and picks none.
type allSelector func([]certmagic.Certificate)

func (f allSelector) SelectCertificate(_ *tls.ClientHelloInfo, choices []certmagic.Certificate) (certmagic.Certificate, error) {
	f(choices)
	return certmagic.Certificate{}, errors.New("listing only")
}
