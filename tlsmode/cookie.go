package tlsmode

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tlsedge/tlsedge/affinity"
)

// Cookie affinity (backends[].affinity: cookie) keeps an HTTP client on one
// server by a cookie, as HAProxy's "cookie ... insert indirect":
//
//   - The cookie's value names a server by an opaque value, never its
//     address: base64url (no padding) of the first 16 bytes of
//     HMAC-SHA256(key, backend name + 0x00 + server address), 22
//     characters. Every instance with the same key computes the same value
//     for a server, so a client keeps its server whichever instance behind
//     an L4 balancer it reaches, and after restarts.
//   - A request whose cookie names a server of the pool that is up, not
//     draining and not ejected goes there (a server at
//     max_connections_per_server is passed over like any full server: see
//     the backend's AcquireServerByAddress). Any other request, one without
//     the cookie, with a value naming no server of the pool (forged,
//     garbage, a server removed), or whose server went away, is balanced
//     by the backend's policy.
//   - The response sets the cookie when the request's cookie did not name
//     the server that answered (a 101 for a WebSocket too), and only then.
//   - The server never sees the cookie: it is removed from the forwarded
//     request, the client's other cookies kept byte for byte.

// DefaultCookieName is the cookie's name when CookieOptions.Name is "".
const DefaultCookieName = "tlsedge_server"

// defaultCookieKey is the HMAC key when no key is given: a constant, so
// every instance and every restart agree without a shared secret. It hides
// the address from a casual reader of the cookie only: anyone who knows the
// backend's name can compute the value of an address they guess.
var defaultCookieKey = sha256.Sum256([]byte("tlsedge cookie affinity: the key without backends[].cookie.key_file"))

// CookieOptions configure a CookieAffinity. Zero values: DefaultCookieName,
// the constant default key, a session cookie, no Secure, no HttpOnly,
// SameSite=Lax (the config's defaults are set by package edge).
type CookieOptions struct {
	// Backend is the backend's name, part of every value (two backends
	// with the same servers do not share values).
	Backend string
	// Key is the HMAC key; nil = the constant default key.
	Key []byte
	// Name is the cookie's name, a token (RFC 6265); "" = DefaultCookieName.
	Name string
	// TTL is the cookie's Max-Age, in whole seconds; 0 = a session cookie.
	TTL time.Duration
	// Secure and HTTPOnly add those attributes.
	Secure, HTTPOnly bool
	// SameSite is "lax", "strict" or "none"; "" = "lax".
	SameSite string
}

// CookieBackend is a Backend that can serve a request on a server it
// names (edge's *Pool implements it). Cookie affinity is in force only
// with such a backend; with another, every request is balanced.
type CookieBackend interface {
	Backend
	// ServerList returns the backend's servers. The caller must not
	// modify the slice. A backend is an immutable snapshot: the list of
	// one value never changes (a reload, or DNS discovery, brings another
	// value).
	ServerList() []*affinity.Server
	// AcquireServerByAddress is AcquireServer preferring the server at
	// addr: it takes a slot there when that server is up, not draining,
	// not ejected, not skipped and below its connection cap; otherwise
	// it picks as AcquireServer does.
	AcquireServerByAddress(ctx context.Context, c *Conn, addr string, skip func(*affinity.Server) bool) (*affinity.Server, error)
}

// CookieAffinity is the cookie affinity of one route's backend. It is built
// at load and shared by the route's requests; safe for concurrent use.
type CookieAffinity struct {
	backend string
	key     []byte
	name    string
	attrs   string // "; Path=/..." after the value

	// index maps values to addresses for one backend snapshot.
	index atomic.Pointer[ckIndex]
}

// ckIndex is the value of every server of one backend snapshot.
type ckIndex struct {
	backend CookieBackend
	byValue map[string]string // value -> address
}

// NewCookieAffinity checks opt and builds the affinity.
func NewCookieAffinity(opt CookieOptions) (*CookieAffinity, error) {
	if opt.Name == "" {
		opt.Name = DefaultCookieName
	}
	if !ValidCookieName(opt.Name) {
		return nil, errors.New("tlsmode: cookie name " + strconv.Quote(opt.Name) + " is not a token")
	}
	if opt.TTL < 0 || (opt.TTL > 0 && opt.TTL < time.Second) {
		return nil, errors.New("tlsmode: cookie ttl " + opt.TTL.String() + ": want 0 (a session cookie) or at least 1s")
	}
	key := opt.Key
	if key == nil {
		key = defaultCookieKey[:]
	}
	var attrs strings.Builder
	attrs.WriteString("; Path=/")
	if opt.TTL > 0 {
		attrs.WriteString("; Max-Age=" + strconv.FormatInt(int64(opt.TTL/time.Second), 10))
	}
	if opt.Secure {
		attrs.WriteString("; Secure")
	}
	if opt.HTTPOnly {
		attrs.WriteString("; HttpOnly")
	}
	switch opt.SameSite {
	case "", "lax":
		attrs.WriteString("; SameSite=Lax")
	case "strict":
		attrs.WriteString("; SameSite=Strict")
	case "none":
		attrs.WriteString("; SameSite=None")
	default:
		return nil, errors.New("tlsmode: cookie same_site " + strconv.Quote(opt.SameSite) + ": want lax, strict or none")
	}
	return &CookieAffinity{
		backend: opt.Backend,
		key:     append([]byte(nil), key...),
		name:    opt.Name,
		attrs:   attrs.String(),
	}, nil
}

// Name is the cookie's name.
func (ca *CookieAffinity) Name() string { return ca.name }

// Value is the cookie value naming the server at addr.
func (ca *CookieAffinity) Value(addr string) string {
	m := hmac.New(sha256.New, ca.key)
	m.Write([]byte(ca.backend))
	m.Write([]byte{0})
	m.Write([]byte(addr))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

// SetCookie is the Set-Cookie field value naming the server at addr.
func (ca *CookieAffinity) SetCookie(addr string) string {
	return ca.name + "=" + ca.Value(addr) + ca.attrs
}

// indexFor returns the values of b's servers, computed once per snapshot.
func (ca *CookieAffinity) indexFor(b CookieBackend) *ckIndex {
	if idx := ca.index.Load(); idx != nil && idx.backend == b {
		return idx
	}
	servers := b.ServerList()
	idx := &ckIndex{backend: b, byValue: make(map[string]string, len(servers))}
	for _, s := range servers {
		idx.byValue[ca.Value(s.Address)] = s.Address
	}
	ca.index.Store(idx)
	return idx
}

// requestServer returns the address of the server of b that req's cookie
// names, "" for none. On the first call for a request it removes the
// cookie from req's header (the request forwarded to the server) and, when
// the cookie named a server, remembers that server for the retries and
// the response.
func (ca *CookieAffinity) requestServer(req *http.Request, b CookieBackend) string {
	rs := reqStateOf(req.Context())
	if rs != nil && rs.ckChecked {
		return rs.ckNamed
	}
	values := ckStrip(req.Header, ca.name)
	addr := ""
	if len(values) > 0 {
		idx := ca.indexFor(b)
		for _, v := range values {
			if a, ok := idx.byValue[v]; ok { // else forged, garbage, or a server no longer in the pool
				addr = a
				break
			}
		}
	}
	if rs != nil {
		rs.ckChecked, rs.ckNamed = true, addr
	}
	return addr
}

// acquireServer picks the server of a request and takes a slot on it:
// with cookie affinity the server its cookie names, when it may take it
// (see CookieBackend), else the backend's pick. It is called for every
// attempt of a request (skip: the servers already tried).
func (p *HTTPProxy) acquireServer(req *http.Request, c *Conn, skip func(*affinity.Server) bool) (*affinity.Server, error) {
	b := *p.backend.Load()
	if ca := p.opt.Cookie; ca != nil {
		cb, ok := b.(CookieBackend)
		if !ok {
			ckStrip(req.Header, ca.name) // no server to name: balanced, but never forwarded
		} else if addr := ca.requestServer(req, cb); addr != "" {
			return cb.AcquireServerByAddress(req.Context(), c, addr, skip)
		}
	}
	return b.AcquireServer(req.Context(), c, skip)
}

// cookieResponse sets the affinity cookie on a server's response (a 101
// too) unless the request's cookie already named that server.
func (p *HTTPProxy) cookieResponse(resp *http.Response, rs *reqState) {
	ca := p.opt.Cookie
	if ca == nil || rs == nil {
		return
	}
	if rs.server == nil || rs.ckNamed == rs.server.Address {
		return
	}
	resp.Header.Add("Set-Cookie", ca.SetCookie(rs.server.Address))
}

// ckStrip removes every cookie called name from the Cookie fields of h
// and returns their values (surrounding quotes removed), in order. The
// other cookies stay as the client wrote each, in order, joined by "; ";
// a field left with none is removed. Fields without the cookie are not
// touched.
// (HTTP/2 clients may split cookies into several fields; net/http joins
// them into one before the handler, and several HTTP/1 fields are
// handled alike.)
func ckStrip(h http.Header, name string) []string {
	fields := h["Cookie"]
	if len(fields) == 0 {
		return nil
	}
	var values []string
	var kept []string
	changed := false
	for _, f := range fields {
		if !strings.Contains(f, name) {
			kept = append(kept, f)
			continue
		}
		var rest []string
		found := false
		for _, part := range strings.Split(f, ";") {
			part = strings.Trim(part, " \t")
			if part == "" {
				continue
			}
			n, v, _ := strings.Cut(part, "=")
			if strings.Trim(n, " \t") != name {
				rest = append(rest, part)
				continue
			}
			found = true
			v = strings.Trim(v, " \t")
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			values = append(values, v)
		}
		if !found {
			kept = append(kept, f) // the name was part of another cookie
			continue
		}
		changed = true
		if len(rest) > 0 {
			kept = append(kept, strings.Join(rest, "; "))
		}
	}
	switch {
	case !changed:
	case len(kept) == 0:
		delete(h, "Cookie")
	default:
		h["Cookie"] = kept
	}
	return values
}

// ValidCookieName reports whether s is an HTTP token (RFC 9110 tchar),
// the syntax of a cookie name (RFC 6265).
func ValidCookieName(s string) bool { return h1Token([]byte(s)) }
