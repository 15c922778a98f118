package edge

// Re-authorization on reload: open connections whose client a reloaded
// route no longer admits are ended (routes[].reauthorize_on_reload).

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"time"

	"github.com/tlsedge/tlsedge/certs"
	"github.com/tlsedge/tlsedge/tlsmode"
)

// routeAuthz is what decides who may use a terminate or reencrypt route.
type routeAuthz struct {
	policy   string                // hash of all below: an unchanged route is not checked again
	allow    tlsmode.AllowList     // nil = every verified certificate
	cas      *x509.CertPool        // client_ca; nil = no client certificates verified
	verifier *certs.ClientVerifier // CRLs; nil = none
	tcp      bool                  // protocol tcp: a client without a certificate is refused when allow is set
	recheck  bool                  // reauthorize_on_reload
}

// refuses says why a connection with TLS state st is not admitted by a,
// "" when it is. Only what can be decided without the network is checked:
// the chain against client_ca, the CRLs, the allow list (OCSP is not asked
// again).
func (a *routeAuthz) refuses(st *tls.ConnectionState) string {
	if len(st.VerifiedChains) == 0 {
		if a.tcp && a.allow != nil {
			return "no client certificate"
		}
		return "" // http: each request is checked against the rules
	}
	if a.cas == nil {
		return "" // the route no longer asks for certificates
	}
	leaf := st.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range st.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	opts := x509.VerifyOptions{Roots: a.cas, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	chains, err := leaf.Verify(opts)
	if err != nil {
		// A certificate that expired while connected is not the reload's
		// business (the handshake judged its dates): try at its start.
		opts.CurrentTime = leaf.NotBefore.Add(time.Second)
		chains, err = leaf.Verify(opts)
	}
	if err != nil {
		return "certificate no longer verifies against the route's client_ca"
	}
	now := *st
	now.VerifiedChains = chains
	if a.verifier != nil && a.verifier.CRL.Len() > 0 {
		crl := &certs.ClientVerifier{CRL: a.verifier.CRL, StrictEKU: a.verifier.StrictEKU, Now: a.verifier.Now}
		if err := crl.Verify(context.Background(), now); err != nil {
			return "certificate revoked or refused: " + err.Error()
		}
	}
	if a.allow != nil && !a.allow.Admits(&now) {
		return "no longer on the route's allow list"
	}
	return ""
}

// currentRoute is the route in force for c's server name on the listener
// of old (the route c was routed with), or nil.
func (e *Edge) currentRoute(tables map[string]*Table, old *Route, c *tlsmode.Conn) *Route {
	tb := tables[old.Listener]
	if tb == nil {
		return nil
	}
	name := ""
	if c.Hello != nil {
		name = c.Hello.ServerName
	}
	return tb.Match(name)
}

// stale says why the route now in force for c refuses it, "" when it does
// not, or when c's own route is still in force or has the same policy.
func (e *Edge) stale(tables map[string]*Table, old *Route, c *tlsmode.Conn, st *tls.ConnectionState) string {
	cur := e.currentRoute(tables, old, c)
	if cur == nil || cur == old || cur.authz == nil || !cur.authz.recheck {
		return ""
	}
	if old.authz != nil && old.authz.policy == cur.authz.policy {
		return ""
	}
	return cur.authz.refuses(st)
}

// recheck is a terminate route's Recheck: a handshake that ended after a
// reload replaced the route it was routed with is judged by the route now
// in force (the reload's pass saw no TLS state for it yet).
func (e *Edge) recheck(old *Route, c *tlsmode.Conn, st *tls.ConnectionState) string {
	p := e.tables.Load()
	if p == nil {
		return ""
	}
	return e.stale(*p, old, c, st)
}

// reauthorize ends the open connections that the routes now in force
// (tables) refuse: each connection is judged by the route its server name
// matches now, when that route's policy differs from the one it was
// admitted under.
func (e *Edge) reauthorize(tables map[string]*Table) {
	for _, c := range e.reg.list(connFilter{}) {
		old := routeOf(c)
		st := c.TLSState()
		if old == nil || st == nil {
			continue
		}
		why := e.stale(tables, old, c, st)
		if why == "" || !c.MarkEnding() { // admitted, or already being ended
			continue
		}
		reason := tlsmode.ReasonAccessDenied + " after reload: " + why
		e.log.Warn().Uint64("id", c.ID).Str("listener", old.Listener).Str("route", old.Pattern).
			Str("client", c.Source.String()).Str("client_cert", c.Client).Str("reason", reason).Msg("connection no longer authorized")
		c.EndGracefully(reason) // returns at once; the reason is set before a reload drain can close it
	}
}

// authzPolicy hashes what decides who may use a route: its client
// certificate policy (clientPolicy: client_auth, CAs, CRLs, OCSP ...), its
// allow list and protocol. A reload that keeps it keeps the route's
// connections without checking them again.
func authzPolicy(clientPolicy string, rc *RouteConfig, allow tlsmode.AllowList) string {
	h := sha256.New()
	_ = json.NewEncoder(h).Encode(struct {
		Client   string
		Allow    []ClientPatternConfig
		Protocol string
	}{clientPolicy, rc.Allow, rc.Protocol})
	for _, p := range allow {
		for _, ca := range p.IssuerCAs { // issuer CA files: their contents
			h.Write(ca.Raw)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}
