// Package identity forwards the client certificate of terminate and
// reencrypt routes to servers: in terminate and reencrypt modes the client
// certificate tlsedge verified is told to plaintext HTTP servers as request
// headers. A server trusts these headers, so a client must never be able to
// forge one: every header any preset can set is removed from every request,
// whatever the config (Strip), and values are formatted so that no byte of a
// certificate can end a header, start another one or hide a separator.
//
// Escaping, for every value:
//   - Distinguished names are RFC 2253 strings built from the DER, as
//     OpenSSL's XN_FLAG_RFC2253 prints them (nginx, HAProxy and Envoy all use
//     OpenSSL): RDNs in reverse order (and, like OpenSSL, the attributes of a
//     multi-valued RDN too), "," between RDNs and "+" inside one,
//     the characters , + " \ < > ; and a leading # or space and a trailing
//     space escaped with a backslash, and control characters and every byte
//     of a non-ASCII character escaped as \HH (uppercase hex, RFC 2253 §2.4),
//     so a DN is always printable ASCII. Attribute types use the RFC 2253
//     names (CN, L, ST, O, OU, C, STREET, DC, UID) and OpenSSL's short names
//     for serialNumber, postalCode, title, SN, GN, initials,
//     generationQualifier, dnQualifier, pseudonym, businessCategory and
//     emailAddress; any other type, and any value that is not a string, is
//     the dotted OID and "#" followed by the hex of the value's DER.
//   - SAN values (DNS, URI, email) are sent as they are in the certificate,
//     except that control characters, space, DEL and non-ASCII bytes are
//     percent-encoded (%HH), and in comma-separated lists a "," inside a
//     value is sent as %2C. "%" itself is not encoded: URIs keep their own
//     escapes, so a decoder cannot tell a literal "%0D" from an encoded CR.
//     Valid host names and mail addresses are never changed, and a valid URI
//     only when it holds a "," and goes into a comma-separated list.
//   - As a last guard, any control or non-ASCII byte left in a value is
//     percent-encoded before the header is set.
package identity

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// ErrConfig means the identity forwarding config names an unknown
// preset or field or a header that cannot carry an identity.
var ErrConfig = errors.New("identity: bad identity forwarding config")

// Values of the verify field and of X-SSL-Client-Verify.
const (
	VerifySuccess = "SUCCESS" // a certificate was presented and tlsedge verified its chain
	VerifyNone    = "NONE"    // no certificate was presented
	VerifyFailed  = "FAILED"  // a certificate was presented but not verified (client_auth request)
)

type identityField uint8

const (
	idSubject identityField = iota + 1
	idIssuer
	idSerial
	idSHA256
	idCert
	idChain
	idURI
	idDNS
	idEmail
	idNotBefore
	idNotAfter
	idVerify
	// Preset-only fields.
	idXFCC       // Envoy's X-Forwarded-Client-Cert element
	idClientCert // RFC 9440 Client-Cert: the leaf as an RFC 8941 byte sequence
)

// identityFields are the fields a header map may use, in documentation order.
var identityFields = []struct {
	name  string
	field identityField
}{
	{"subject", idSubject},
	{"issuer", idIssuer},
	{"serial", idSerial},
	{"sha256", idSHA256},
	{"cert", idCert},
	{"chain", idChain},
	{"uri", idURI},
	{"dns", idDNS},
	{"email", idEmail},
	{"not_before", idNotBefore},
	{"not_after", idNotAfter},
	{"verify", idVerify},
}

type identityHeader struct {
	name  string // canonical form
	field identityField
}

// identityPresetNames lists the presets in documentation order.
var identityPresetNames = []string{"xfcc", "ssl", "rfc9440", "none"}

// identityPresets are the headers each preset sets, in the order Set sets them.
var identityPresets = map[string][]identityHeader{
	"xfcc": identityCanon([]identityHeader{
		{"X-Forwarded-Client-Cert", idXFCC},
	}),
	"ssl": identityCanon([]identityHeader{
		{"X-SSL-Client-Verify", idVerify},
		{"X-SSL-Client-S-DN", idSubject},
		{"X-SSL-Client-I-DN", idIssuer},
		{"X-SSL-Client-Serial", idSerial},
		{"X-SSL-Client-SHA256", idSHA256},
		{"X-SSL-Client-Not-Before", idNotBefore},
		{"X-SSL-Client-Not-After", idNotAfter},
		{"X-SSL-Client-Cert", idCert},
		{"X-SSL-Client-SAN-URI", idURI},
		{"X-SSL-Client-SAN-DNS", idDNS},
	}),
	"rfc9440": identityCanon([]identityHeader{
		{"Client-Cert", idClientCert},
		{"Client-Cert-Chain", idChain},
	}),
}

func identityCanon(hs []identityHeader) []identityHeader {
	for i := range hs {
		hs[i].name = http.CanonicalHeaderKey(hs[i].name)
	}
	return hs
}

// identityAllNames holds every header name any preset can set, in
// identityKey form, for Strip.
var identityAllNames = func() map[string]bool {
	m := make(map[string]bool)
	for _, name := range HeaderNames() {
		m[identityKey(name)] = true
	}
	return m
}()

// HeaderNames lists every header name any preset can set, in
// canonical form (as http.Header stores them: "X-Ssl-Client-S-Dn"; header
// names are case-insensitive on the wire), preset by preset. Strip removes
// all of them from every request.
func HeaderNames() []string {
	var names []string
	for _, p := range identityPresetNames {
		for _, h := range identityPresets[p] {
			names = append(names, h.name)
		}
	}
	return names
}

// Headers says which request headers carry the client's certificate to HTTP
// servers. A nil *Headers sets nothing and still strips every identity
// header. It is immutable and safe for concurrent use.
//
// Presets:
//
//   - xfcc: X-Forwarded-Client-Cert, one Envoy XFCC element (see below).
//   - ssl: X-SSL-Client-Verify, -S-DN, -I-DN, -Serial, -SHA256, -Not-Before,
//     -Not-After, -Cert, -SAN-URI and -SAN-DNS, formatted as the fields
//     subject, issuer, serial, sha256, not_before, not_after, cert, uri and dns.
//   - rfc9440: Client-Cert (the leaf's DER as an RFC 8941 byte sequence,
//     ":base64:") and Client-Cert-Chain (field chain).
//
// Fields:
//
//   - subject, issuer: RFC 2253 DN, as OpenSSL prints it (see the top of
//     identity.go): "CN=client-1,O=Example\, Inc.,C=US".
//   - serial: lowercase hex, two digits per byte ("0123456789abcdef").
//   - sha256: lowercase hex SHA-256 of the leaf's DER.
//   - cert: the leaf as PEM, URL-encoded as Envoy does it (newline, space, +,
//     / and = percent-encoded).
//   - chain: the certificates the client sent after its leaf
//     (cs.PeerCertificates[1:]) as an RFC 8941 list of byte sequences
//     (":b64:, :b64:"); not set when there are none.
//   - uri, dns, email: the SANs of that type, comma-separated, in certificate
//     order; not set when there are none.
//   - not_before, not_after: RFC 3339 in UTC ("2025-01-01T00:00:00Z").
//   - verify: SUCCESS, NONE (no certificate) or FAILED (presented, not
//     verified).
//
// Only verify is ever set from a connection without a verified certificate.
type Headers struct {
	headers []identityHeader
	mapped  map[string]bool // identityKey of the mapped names
}

// Parse builds the Headers of a route from the config. With headers nil or empty,
// preset is one of "xfcc", "ssl", "rfc9440", "none" or "" (same as "none").
// With a header map (header name -> field), preset must be "". Fields:
// subject, issuer, serial, sha256, cert, chain, uri, dns, email, not_before,
// not_after, verify. Header names must be HTTP tokens, unique ignoring case
// and "_" versus "-", and not a header the proxy itself relies on (Host,
// framing and hop-by-hop headers, Cookie, Authorization, Forwarded,
// X-Forwarded-* other than X-Forwarded-Client-Cert, X-Real-IP): Strip
// removes every mapped name from every request. Errors wrap
// ErrConfig, name the bad preset, field or header and list the valid
// choices.
func Parse(preset string, headers map[string]string) (*Headers, error) {
	if len(headers) == 0 {
		switch preset {
		case "", "none":
			return &Headers{}, nil
		}
		hs, ok := identityPresets[preset]
		if !ok {
			return nil, fmt.Errorf("%w: unknown identity preset %q (valid: %s, or a map of header name to field)",
				ErrConfig, preset, strings.Join(identityPresetNames, ", "))
		}
		return &Headers{headers: hs}, nil
	}
	if preset != "" {
		return nil, fmt.Errorf("%w: identity preset %q and a header map given; use one or the other", ErrConfig, preset)
	}
	names := make([]string, 0, len(headers))
	for name := range headers {
		names = append(names, name)
	}
	slices.Sort(names)
	id := &Headers{mapped: make(map[string]bool, len(names))}
	seen := make(map[string]string, len(names))
	for _, name := range names {
		if !identityIsToken(name) {
			return nil, fmt.Errorf("%w: identity header name %q is not a valid HTTP header name (letters, digits and !#$%%&'*+-.^_`|~)",
				ErrConfig, name)
		}
		key := identityKey(name)
		if why := identityReserved(key); why != "" {
			return nil, fmt.Errorf("%w: identity header %q cannot carry an identity: %s", ErrConfig, name, why)
		}
		if prev, dup := seen[key]; dup {
			return nil, fmt.Errorf("%w: identity headers %q and %q are the same header (names ignore case, and servers often read _ as -)",
				ErrConfig, prev, name)
		}
		seen[key] = name
		field, ok := identityFieldByName(headers[name])
		if !ok {
			valid := make([]string, len(identityFields))
			for i, f := range identityFields {
				valid[i] = f.name
			}
			return nil, fmt.Errorf("%w: identity header %q: unknown field %q (valid: %s)",
				ErrConfig, name, headers[name], strings.Join(valid, ", "))
		}
		id.headers = append(id.headers, identityHeader{http.CanonicalHeaderKey(name), field})
		id.mapped[key] = true
	}
	return id, nil
}

func identityFieldByName(s string) (identityField, bool) {
	for _, f := range identityFields {
		if f.name == s {
			return f.field, true
		}
	}
	return 0, false
}

// identityReserved says why a header (in identityKey form) may not be mapped,
// or "" when it may.
func identityReserved(key string) string {
	switch key {
	case "host", "content-length", "content-type", "content-encoding", "transfer-encoding",
		"connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade", "expect":
		return "the proxy needs it to route or frame the request"
	case "cookie", "authorization", "proxy-authorization":
		return "it carries the client's own credentials"
	case "forwarded", "x-real-ip":
		return "forwarded headers are handled separately"
	case "x-forwarded-client-cert":
		return ""
	}
	if strings.HasPrefix(key, "x-forwarded-") {
		return "forwarded headers are handled separately"
	}
	return ""
}

// identityIsToken reports whether s is an RFC 9110 token, the syntax of a
// header field name.
func identityIsToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// identityKey is the form Strip compares header names in: lower case, with
// "_" read as "-", because many servers (CGI, PHP, WSGI, nginx with
// underscores_in_headers) map both to the same variable, so X_SSL_Client_Verify
// from a client would otherwise pass as X-SSL-Client-Verify.
func identityKey(name string) string {
	var buf [64]byte
	return string(identityKeyBytes(buf[:0], name))
}

func identityKeyBytes(b []byte, name string) []byte {
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case c == '_':
			c = '-'
		}
		b = append(b, c)
	}
	return b
}

// identityForeignExact and identityForeignPrefixes are the identity
// headers other proxies and platforms set, in identityKey form: a server
// moved from behind one of them may still trust them, so Strip removes them
// from every request (see Strip).
var identityForeignExact = map[string]bool{
	"x-arr-clientcert":                   true, // IIS ARR, Azure App Service
	"x-arr-ssl":                          true,
	"cf-access-jwt-assertion":            true, // Cloudflare Access
	"cf-access-authenticated-user-email": true,
	"x-goog-iap-jwt-assertion":           true, // Google Cloud IAP
}

var identityForeignPrefixes = []string{
	"x-ssl-",                     // nginx and HAProxy configs: X-SSL-Client-Cert, -DN, -CN, -Verify, X-SSL-Cert, ...
	"ssl-",                       // SSL_CLIENT_* of Apache mod_ssl and nginx ingress, Tomcat SSLValve's ssl_client_cert, ssl_cipher, ssl_session_id
	"x-client-cert",              // X-Client-Cert (nginx, Azure Application Gateway), GCP's X-Client-Cert-Present, -Chain-Verified, -Hash, -SPIFFE, ...
	"x-client-verify",            // nginx configs: X-Client-Verify
	"x-client-dn",                // X-Client-DN
	"x-client-s-dn",              // X-Client-S-DN
	"x-client-i-dn",              // X-Client-I-DN
	"x-client-cn",                // X-Client-CN
	"x-client-subject",           // X-Client-Subject(-DN)
	"x-client-issuer",            // X-Client-Issuer(-DN)
	"x-client-serial",            // X-Client-Serial
	"x-client-fingerprint",       // X-Client-Fingerprint
	"x-client-san",               // X-Client-SAN(-URI, -DNS)
	"x-client-ssl-",              // X-Client-SSL-*
	"x-client-tls-",              // X-Client-TLS-*
	"x-tls-",                     // X-TLS-Client-Cert and friends
	"x-forwarded-tls-client-",    // Traefik passTLSClientCert: X-Forwarded-Tls-Client-Cert, -Cert-Info
	"x-amzn-mtls-",               // AWS ALB mTLS: X-Amzn-Mtls-Clientcert, -Clientcert-Subject, -Issuer, -Serial-Number, -Validity, -Leaf
	"x-amzn-tls-",                // AWS ALB: X-Amzn-Tls-Version, -Cipher-Suite
	"x-amzn-oidc-",               // AWS ALB authentication: X-Amzn-Oidc-Data, -Identity, -Accesstoken
	"x-ms-client-principal",      // Azure App Service authentication: X-MS-CLIENT-PRINCIPAL, -NAME, -ID, -IDP
	"x-ms-token-",                // Azure App Service authentication: X-MS-TOKEN-AAD-ID-TOKEN, ...
	"cf-client-cert-",            // Cloudflare mTLS forwarding: Cf-Client-Cert-Der-Base64, -Sha256
	"x-goog-authenticated-user-", // Google Cloud IAP: X-Goog-Authenticated-User-Email, -Id
}

// identityForeign reports whether key (identityKey form) is another
// proxy's identity header.
func identityForeign(key []byte) bool {
	if identityForeignExact[string(key)] {
		return true
	}
	for _, p := range identityForeignPrefixes {
		if len(key) >= len(p) && string(key[:len(p)]) == p {
			return true
		}
	}
	return false
}

// Strip removes from h every header any preset can set, these Headers'
// mapped names and the identity headers of other proxies, whatever the
// config and whether or not a certificate was presented, comparing names
// case-insensitively and reading "_" as "-", so that a client can never
// forge an identity, ours or one a server moved from behind another proxy
// still trusts. The families of other proxies (a name ending in "*" is a
// prefix):
//
//   - nginx, HAProxy, Apache, Tomcat, nginx ingress: X-SSL-*, Ssl-* (also
//     SSL_CLIENT_S_DN and ssl_client_cert), X-Client-Cert*, X-Client-Verify*,
//     X-Client-DN*, X-Client-S-DN*, X-Client-I-DN*, X-Client-CN*,
//     X-Client-Subject*, X-Client-Issuer*, X-Client-Serial*,
//     X-Client-Fingerprint*, X-Client-SAN*, X-Client-SSL-*, X-Client-TLS-*,
//     X-TLS-*. Only these X-Client- names: X-Client-Version, X-Client-Id and
//     the like are application headers.
//   - Envoy, Istio: X-Forwarded-Client-Cert (the xfcc preset's).
//   - Traefik: X-Forwarded-Tls-Client-* (Cert, Cert-Info).
//   - AWS ALB: X-Amzn-Mtls-*, X-Amzn-Tls-*, X-Amzn-Oidc-*.
//   - Azure: X-ARR-ClientCert, X-ARR-SSL, X-MS-Client-Principal*,
//     X-MS-Token-*.
//   - Google Cloud: X-Client-Cert-* (the mTLS custom headers the docs
//     suggest), X-Goog-Authenticated-User-*, X-Goog-IAP-JWT-Assertion.
//   - Cloudflare: Cf-Client-Cert-*, Cf-Access-Jwt-Assertion,
//     Cf-Access-Authenticated-User-Email.
//
// It does not touch Forwarded or X-Forwarded-For/-Proto/-Host: the caller
// keeps those from trusted proxies and removes them from everyone else with
// StripForwarded. Set calls Strip itself, so calling it first is harmless.
// Site-specific names go in a StripList (the route's strip_headers).
func (id *Headers) Strip(h http.Header) {
	var buf [64]byte
	for name := range h {
		key := identityKeyBytes(buf[:0], name)
		if identityAllNames[string(key)] || identityForeign(key) || (id != nil && id.mapped[string(key)]) {
			delete(h, name)
		}
	}
}

// StripList removes more request headers (a route's strip_headers): exact
// names, and prefixes written with a trailing "*", compared as Strip does
// (case-insensitive, "_" read as "-"). A nil *StripList removes nothing. It
// is immutable and safe for concurrent use.
type StripList struct {
	exact    map[string]bool
	prefixes []string
}

// NewStripList compiles names; nil for none.
func NewStripList(names []string) *StripList {
	if len(names) == 0 {
		return nil
	}
	s := &StripList{exact: map[string]bool{}}
	for _, n := range names {
		if p, ok := strings.CutSuffix(n, "*"); ok {
			s.prefixes = append(s.prefixes, identityKey(p))
		} else {
			s.exact[identityKey(n)] = true
		}
	}
	return s
}

// Strip removes the listed headers from h.
func (s *StripList) Strip(h http.Header) {
	if s == nil {
		return
	}
	var buf [64]byte
	for name := range h {
		key := identityKeyBytes(buf[:0], name)
		drop := s.exact[string(key)]
		for _, p := range s.prefixes {
			drop = drop || (len(key) >= len(p) && string(key[:len(p)]) == p)
		}
		if drop {
			delete(h, name)
		}
	}
}

// StripForwarded removes from h the headers that describe the client's
// address and the original request: Forwarded, every X-Forwarded-* header
// (For, Proto, Host, Port, Prefix, ...), X-Real-IP and the client address
// headers of CDNs and other proxies (True-Client-IP, CF-Connecting-IP(v6),
// Fastly-Client-IP, X-Client-IP, X-Cluster-Client-IP, X-Azure-ClientIP,
// X-Original-Forwarded-For), comparing names case-insensitively and reading
// "_" as "-". The caller calls it for every peer that is not a trusted
// proxy, before setting its own X-Forwarded-*; identity headers are Strip's
// job and are removed for every peer.
func StripForwarded(h http.Header) {
	var buf [64]byte
	for name := range h {
		key := identityKeyBytes(buf[:0], name)
		if identityForwarded[string(key)] || strings.HasPrefix(string(key), "x-forwarded-") {
			delete(h, name)
		}
	}
}

var identityForwarded = map[string]bool{
	"forwarded": true, "x-real-ip": true, "true-client-ip": true, "cf-connecting-ip": true, "cf-connecting-ipv6": true,
	"fastly-client-ip": true, "x-client-ip": true, "x-cluster-client-ip": true, "x-azure-clientip": true,
	"x-original-forwarded-for": true,
}
