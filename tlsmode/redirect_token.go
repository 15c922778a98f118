package tlsmode

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/tlsedge/tlsedge/tlsmode/identity"
)

// The redirect token (redirect_token): the client's verified identity,
// handed to the server it is redirected to, which cannot see the client's
// certificate (tlsedge terminated its TLS). It is a JSON Web Token
// (RFC 7519) signed with HMAC-SHA256 (JWS HS256, RFC 7515 compact form),
// so any JWT library verifies it; the claims:
//
//	iss          "tlsedge"
//	aud          the public URL of the server it was made for, exactly as
//	             configured (servers[].public): a server accepts only its own
//	iat, exp     Unix seconds: made at, and valid until (iat + ttl)
//	jti          16 random bytes, base64url: lets a server refuse a replay
//	sub          the certificate's subject, RFC 2253 (as OpenSSL prints it)
//	cert_issuer  its issuer, RFC 2253
//	cert_serial  its serial, lowercase hex (two digits a byte)
//	cert_sha256  the SHA-256 of its DER, lowercase hex
//	uri, dns, email  its SANs of each kind, as the certificate spells them
//	             (absent when it has none)
//	cert_not_after  Unix seconds: when the first certificate of the
//	             verified chain expires (a token is never made after it)
//	method, path the request that was redirected, as sent (the path
//	             escaped, without the query): what allow/authorize admitted
//
// Only a client whose certificate tlsedge verified gets a token; without
// one the Location has none. The key is the key file's bytes as they are.

// RedirectClaims are the claims of a redirect token.
type RedirectClaims struct {
	Issuer     string   `json:"iss"`
	Audience   string   `json:"aud"`
	IssuedAt   int64    `json:"iat"`
	Expires    int64    `json:"exp"`
	ID         string   `json:"jti"`
	Subject    string   `json:"sub"`
	CertIssuer string   `json:"cert_issuer"`
	CertSerial string   `json:"cert_serial"`
	CertSHA256 string   `json:"cert_sha256"`
	URI        []string `json:"uri,omitempty"`
	DNS        []string `json:"dns,omitempty"`
	Email      []string `json:"email,omitempty"`
	NotAfter   int64    `json:"cert_not_after"`
	Method     string   `json:"method"`
	Path       string   `json:"path"`
}

// RedirectTokenIssuer is the iss claim of every redirect token.
const RedirectTokenIssuer = "tlsedge"

// redirectTokenHeader is the JOSE header of every token, base64url:
// {"alg":"HS256","typ":"JWT"}.
var redirectTokenHeader = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

// redirectSigner makes the tokens of one route.
type redirectSigner struct {
	key []byte
	ttl time.Duration
	now func() time.Time // time.Now; tests move it
}

// chainNotAfter is when the first certificate of the verified chain of cs
// expires; zero without one.
func chainNotAfter(cs *tls.ConnectionState) time.Time {
	var t time.Time
	if cs == nil || len(cs.VerifiedChains) == 0 {
		return t
	}
	for _, c := range cs.VerifiedChains[0] {
		if t.IsZero() || c.NotAfter.Before(t) {
			t = c.NotAfter
		}
	}
	return t
}

// sign returns the token of the verified client of cs, for the request
// method and path (escaped) redirected to the server with public URL aud;
// "" when the client has no verified certificate. The caller refuses a
// chain that expired since the handshake (see serveRedirect).
func (s *redirectSigner) sign(cs *tls.ConnectionState, aud, method, path string) string {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.PeerCertificates) == 0 {
		return ""
	}
	leaf := cs.PeerCertificates[0]
	now := s.now().Unix()
	var jti [16]byte
	_, _ = rand.Read(jti[:]) // never fails (crypto/rand panics rather)
	sum := sha256.Sum256(leaf.Raw)
	sans := identity.SANsOf(leaf)
	c := RedirectClaims{
		Issuer:     RedirectTokenIssuer,
		Audience:   aud,
		IssuedAt:   now,
		Expires:    now + int64(s.ttl/time.Second),
		ID:         base64.RawURLEncoding.EncodeToString(jti[:]),
		Subject:    identity.DN(leaf.RawSubject),
		CertIssuer: identity.DN(leaf.RawIssuer),
		CertSerial: identity.Serial(leaf.SerialNumber),
		CertSHA256: hex.EncodeToString(sum[:]),
		URI:        sans.URI,
		DNS:        sans.DNS,
		Email:      sans.Email,
		NotAfter:   chainNotAfter(cs).Unix(),
		Method:     method,
		Path:       path,
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "" // strings and numbers only: cannot happen
	}
	signing := redirectTokenHeader + "." + base64.RawURLEncoding.EncodeToString(payload)
	return signing + "." + base64.RawURLEncoding.EncodeToString(redirectMAC(s.key, signing))
}

func redirectMAC(key []byte, signing string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(signing))
	return m.Sum(nil)
}

// Errors of VerifyRedirectToken.
var (
	ErrRedirectTokenMalformed = errors.New("tlsmode: redirect token: malformed")
	ErrRedirectTokenSignature = errors.New("tlsmode: redirect token: bad signature")
	ErrRedirectTokenExpired   = errors.New("tlsmode: redirect token: expired")
	ErrRedirectTokenAudience  = errors.New("tlsmode: redirect token: made for another server")
)

// VerifyRedirectToken is the check a server makes (docs/operations.md
// shows the same steps for server authors): the header is exactly
// HS256/JWT, the MAC over "header.payload" with key matches (constant
// time), iss is tlsedge, aud is the server's own public URL, and now is
// before exp (with leeway for clock skew). It returns the claims.
func VerifyRedirectToken(token string, key []byte, public string, now time.Time, leeway time.Duration) (*RedirectClaims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[0] != redirectTokenHeader {
		return nil, ErrRedirectTokenMalformed
	}
	mac, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, ErrRedirectTokenMalformed
	}
	if subtle.ConstantTimeCompare(mac, redirectMAC(key, parts[0]+"."+parts[1])) != 1 {
		return nil, ErrRedirectTokenSignature
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, ErrRedirectTokenMalformed
	}
	var c RedirectClaims
	if err := json.Unmarshal(payload, &c); err != nil || c.Issuer != RedirectTokenIssuer {
		return nil, ErrRedirectTokenMalformed
	}
	if c.Audience != public {
		return nil, ErrRedirectTokenAudience
	}
	if now.Add(-leeway).Unix() >= c.Expires {
		return nil, ErrRedirectTokenExpired
	}
	return &c, nil
}
