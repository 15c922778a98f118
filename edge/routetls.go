package edge

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/tlsedge/tlsedge/certs"
)

// routeTLS is what a terminate or reencrypt route needs at run time.
type routeTLS struct {
	server *tls.Config
	static *certs.Static // nil for a route with acme
	// verifier checks CRLs (and OCSP) of client certificates; nil when the
	// route verifies none.
	verifier *certs.ClientVerifier
	// clientPolicy is the hash of the client certificate policy (as policy,
	// also when tickets are off).
	clientPolicy string
	// policy is the hash of what decides who may resume a session of the
	// route (see ticketPolicy): routes with the same policy share session
	// ticket keys. "" when tickets are off.
	policy string
}

var tlsVersions = map[string]uint16{"": tls.VersionTLS12, "1.2": tls.VersionTLS12, "1.3": tls.VersionTLS13}

var clientAuthTypes = map[string]tls.ClientAuthType{
	"":                tls.NoClientCert,
	"none":            tls.NoClientCert,
	"request":         tls.RequestClientCert,
	"verify_if_given": tls.VerifyClientCertIfGiven,
	"require":         tls.RequireAndVerifyClientCert,
}

// intermediateSuites are the TLS 1.2 suites of Mozilla's intermediate
// profile that Go implements: ECDHE key exchange (forward secrecy) and AEAD
// ciphers only; no CBC (Lucky13 and its kin), no RSA key exchange. Go's own
// default list still offers ECDHE with AES-CBC, so it is never left to Go.
// (Mozilla's DHE suites are not in crypto/tls.)
var intermediateSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// profileCurves are the key exchanges of both profiles, in order of
// preference: the hybrid post-quantum X25519MLKEM768 (TLS 1.3 only; Go's
// default first choice), then Mozilla's X25519, P-256, P-384.
var profileCurves = []tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256, tls.CurveP384}

// buildServerTLS builds the server side TLS of one terminate/reencrypt
// route: its certificate through the certmagic cache, its profile
// (intermediate: TLS 1.2 with ECDHE and AEAD suites only, and TLS 1.3;
// modern: TLS 1.3 only), client certificate policy, CRLs and OCSP. Session
// tickets are bound to the server name they were issued for; the caller
// gives the config its ticket keys (the ring of rt.policy), unless
// session_ticket_rotation is off.
func buildServerTLS(ctx context.Context, c *Config, rc *RouteConfig, m *certs.Manager, ocspFor func(certs.OCSPMode) *certs.OCSPChecker) (*routeTLS, error) {
	t := &rc.TLS
	var st *certs.Static
	var getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	if t.ACME.Enabled() {
		var err error
		if getCert, err = acmeGetCertificate(rc, m); err != nil {
			return nil, err
		}
	} else {
		pair, err := c.keyPair(t.Cert, t.Key)
		if err != nil {
			return nil, fmt.Errorf("loading certificate %s with key %s: %w", c.resolve(t.Cert), c.resolve(t.Key), err)
		}
		st, err = m.LoadStatic(ctx, certs.StaticOptions{Cert: c.resolve(t.Cert), Key: c.resolve(t.Key), Pair: &pair, Staple: t.OCSPStapling != "off"})
		if err != nil {
			return nil, err
		}
		getCert = st.GetCertificate
	}
	tc := &tls.Config{
		GetCertificate:   getCert,
		MinVersion:       tlsVersions[t.MinVersion],
		CipherSuites:     slices.Clone(intermediateSuites),
		CurvePreferences: slices.Clone(profileCurves),
		ClientAuth:       clientAuthTypes[t.ClientAuth],
		NextProtos:       routeALPN(rc),
	}
	if t.Profile == "modern" {
		tc.MinVersion = tls.VersionTLS13
	}
	if len(t.CipherSuites) > 0 {
		tc.CipherSuites = tc.CipherSuites[:0]
		for _, name := range t.CipherSuites {
			id, err := cipherSuite(name)
			if err != nil {
				return nil, err
			}
			tc.CipherSuites = append(tc.CipherSuites, id)
		}
	}
	var cas []*x509.Certificate
	var crls [][]byte
	var verifier *certs.ClientVerifier
	mode := certs.OCSPOff
	if len(t.ClientCA) > 0 {
		pool, list, err := c.caPool(t.ClientCA)
		if err != nil {
			return nil, err
		}
		cas = list
		tc.ClientCAs = pool
		v := &certs.ClientVerifier{}
		if len(t.CRL) > 0 {
			crl, err := c.revocationLists(t.CRL, list)
			if err != nil {
				return nil, err
			}
			v.CRL = crl
			for _, f := range t.CRL {
				b, err := c.readFile(f)
				if err != nil {
					return nil, fmt.Errorf("reading CRL: %w", err)
				}
				crls = append(crls, b)
			}
		}
		if mode, err = certs.ParseOCSPMode(t.OCSP); err != nil {
			return nil, err
		}
		if mode != certs.OCSPOff {
			v.OCSP = ocspFor(mode)
		}
		tc.VerifyConnection = v.VerifyConnection
		verifier = v
	}
	rt := &routeTLS{server: tc, static: st, verifier: verifier, clientPolicy: ticketPolicy(tc, t, cas, crls, mode)}
	if t.SessionTicketRotation < 0 {
		tc.SessionTicketsDisabled = true // "off": every connection a full handshake
		return rt, nil
	}
	bindSessions(tc)
	rt.policy = rt.clientPolicy
	return rt, nil
}

// ticketPolicy hashes what decides who may resume a session, and how: the
// client certificate policy (client_auth, the client CAs' certificates, the
// CRLs' bytes, the OCSP mode), the versions, suites, curves and ALPN
// offered, the profile, and the rotation period of the keys. Two routes
// with the same policy share ticket keys; any change makes new keys, so a
// session never resumes under a policy it was not made with (a route that
// now trusts another CA, revokes a certificate, or requires one).
func ticketPolicy(tc *tls.Config, t *RouteTLSConfig, cas []*x509.Certificate, crls [][]byte, mode certs.OCSPMode) string {
	h := sha256.New()
	field := func(name string, b []byte) {
		fmt.Fprintf(h, "%s %d\n", name, len(b))
		h.Write(b)
	}
	profile := t.Profile
	if profile == "" {
		profile = DefaultTLSProfile
	}
	rotation := t.SessionTicketRotation
	if rotation == 0 {
		rotation = DefaultTicketRotation
	}
	field("profile", []byte(profile))
	field("rotation", []byte(rotation.String()))
	field("client_auth", []byte(tc.ClientAuth.String()))
	field("min_version", []byte(tls.VersionName(tc.MinVersion)))
	field("ocsp", []byte(mode.String()))
	for _, id := range tc.CipherSuites {
		field("suite", []byte(tls.CipherSuiteName(id)))
	}
	for _, id := range tc.CurvePreferences {
		field("curve", []byte(id.String()))
	}
	for _, p := range tc.NextProtos {
		field("alpn", []byte(p))
	}
	for _, ca := range cas {
		field("client_ca", ca.Raw)
	}
	for _, b := range crls {
		field("crl", b)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// httpRouteKey identifies what the HTTPProxy of a protocol http route is
// built from: the route's keys, its listener's name, the access log switch,
// the keys of its backend that the proxy uses (tls, connect_timeout,
// retries, max_response_header_bytes) and the contents of the backend's TLS
// files. A reload that gives a route the same key keeps its proxy, and so
// its keep-alive client connections; any other change drains them.
func httpRouteKey(c *Config, lc *ListenerConfig, rc *RouteConfig, bc *BackendConfig) (string, error) {
	h := sha256.New()
	retries := 0
	if bc.Retries != nil {
		retries = *bc.Retries
	}
	err := json.NewEncoder(h).Encode(struct {
		Listener               string
		Access                 bool
		Route                  *RouteConfig
		BackendTLS             BackendTLSConfig
		ConnectTimeout         time.Duration
		Retries                int
		MaxResponseHeaderBytes int
		Affinity               string
		Cookie                 *CookieConfig
		Public                 map[string]string
	}{lc.Name, c.Log.Access == nil || *c.Log.Access, withoutAuthz(rc), bc.TLS, bc.ConnectTimeout, retries, bc.MaxResponseHeaderBytes,
		bc.Affinity, bc.Cookie, serverPublics(bc)})
	if err != nil {
		return "", err
	}
	// The route's own certificate, key, CAs and CRLs are not part of it:
	// they matter to new handshakes only (a connection whose client the new
	// files refuse is ended by reauthorize_on_reload), so replacing them
	// keeps the route's keep-alive connections.
	files := []string{bc.TLS.CA, bc.TLS.Cert, bc.TLS.Key}
	if rc.RedirectToken != nil {
		files = append(files, rc.RedirectToken.KeyFile) // its contents sign the tokens
	}
	if bc.Cookie != nil {
		files = append(files, bc.Cookie.KeyFile) // its contents sign the cookie values
	}
	for _, f := range files {
		if f == "" {
			continue
		}
		b, err := c.readFile(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%d\n", len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// serverPublics maps each configured server's address to its public URL
// (redirect routes); nil when no server has one.
func serverPublics(bc *BackendConfig) map[string]string {
	var m map[string]string
	for _, s := range bc.Servers {
		if s.Public != "" {
			if m == nil {
				m = map[string]string{}
			}
			m[s.Address] = s.Public
		}
	}
	return m
}

// withoutAuthz is rc without the authorization keys (and client_limits): a
// reload that changes only those keeps the route's proxy and connections (the proxy gets the new
// rules, and the connections are checked again).
func withoutAuthz(rc *RouteConfig) *RouteConfig {
	c := *rc
	c.Allow, c.Authorize, c.AllowUnauthenticatedPaths, c.ReauthorizeOnReload, c.ClientLimits = nil, nil, nil, nil, nil
	return &c
}

// routeALPN is the route's alpn list, or h2 + http/1.1 for protocol http.
func routeALPN(rc *RouteConfig) []string {
	if len(rc.TLS.ALPN) > 0 {
		return rc.TLS.ALPN
	}
	if rc.isHTTP() {
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
		pool, _, err := c.caPool([]string{t.CA})
		if err != nil {
			return nil, err
		}
		tc.RootCAs = pool
	}
	if t.Cert != "" {
		pair, err := c.keyPair(t.Cert, t.Key)
		if err != nil {
			return nil, fmt.Errorf("loading client certificate %s with key %s: %w", t.Cert, t.Key, err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	return tc, nil
}
