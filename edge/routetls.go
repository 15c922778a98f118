package edge

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"

	"github.com/tlsedge/tlsedge/certs"
)

// routeTLS is what a terminate or reencrypt route needs at run time.
type routeTLS struct {
	server *tls.Config
	static *certs.Static
}

var tlsVersions = map[string]uint16{"": tls.VersionTLS12, "1.2": tls.VersionTLS12, "1.3": tls.VersionTLS13}

var clientAuthTypes = map[string]tls.ClientAuthType{
	"":                tls.NoClientCert,
	"none":            tls.NoClientCert,
	"request":         tls.RequestClientCert,
	"verify_if_given": tls.VerifyClientCertIfGiven,
	"require":         tls.RequireAndVerifyClientCert,
}

// buildServerTLS builds the server side TLS of one terminate/reencrypt
// route: its certificate through the certmagic cache, client certificate
// policy, CRLs, OCSP and its own session ticket key, so that a session
// resumes only on the route that issued it (and so under the same
// client-auth policy and CAs).
func buildServerTLS(ctx context.Context, c *Config, rc *RouteConfig, m *certs.Manager, ocspFor func(certs.OCSPMode) *certs.OCSPChecker) (*routeTLS, error) {
	t := &rc.TLS
	st, err := m.LoadStatic(ctx, c.resolve(t.Cert), c.resolve(t.Key))
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{
		GetCertificate: st.GetCertificate,
		MinVersion:     tlsVersions[t.MinVersion],
		ClientAuth:     clientAuthTypes[t.ClientAuth],
		NextProtos:     routeALPN(rc),
	}
	if len(t.ClientCA) > 0 {
		pool, list, err := certs.LoadCAPool(c.resolveAll(t.ClientCA))
		if err != nil {
			return nil, err
		}
		tc.ClientCAs = pool
		v := &certs.ClientVerifier{}
		if len(t.CRL) > 0 {
			crl, err := certs.LoadCRLs(c.resolveAll(t.CRL), list)
			if err != nil {
				return nil, err
			}
			v.CRL = crl
		}
		mode, err := certs.ParseOCSPMode(t.OCSP)
		if err != nil {
			return nil, err
		}
		if mode != certs.OCSPOff {
			v.OCSP = ocspFor(mode)
		}
		tc.VerifyConnection = v.VerifyConnection
	}
	var key [32]byte
	if _, err := rand.Read(key[:]); err != nil {
		return nil, err
	}
	tc.SetSessionTicketKeys([][32]byte{key})
	return &routeTLS{server: tc, static: st}, nil
}

// routeALPN is the route's alpn list, or h2 + http/1.1 for protocol http.
func routeALPN(rc *RouteConfig) []string {
	if len(rc.TLS.ALPN) > 0 {
		return rc.TLS.ALPN
	}
	if rc.Protocol == "http" {
		return []string{"h2", "http/1.1"}
	}
	return nil
}

// buildUpstreamTLS builds the balancer's TLS client towards a reencrypt
// backend's servers.
func buildUpstreamTLS(c *Config, bc *BackendConfig) (*tls.Config, error) {
	t := &bc.TLS
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify,
		ClientSessionCache: tls.NewLRUClientSessionCache(256),
	}
	if t.CA != "" {
		pool, _, err := certs.LoadCAPool([]string{c.resolve(t.CA)})
		if err != nil {
			return nil, err
		}
		tc.RootCAs = pool
	}
	if t.Cert != "" {
		pair, err := tls.LoadX509KeyPair(c.resolve(t.Cert), c.resolve(t.Key))
		if err != nil {
			return nil, fmt.Errorf("loading client certificate %s with key %s: %w", t.Cert, t.Key, err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	return tc, nil
}
