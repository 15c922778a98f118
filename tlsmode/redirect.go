package tlsmode

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tlsedge/tlsedge/tlsmode/identity"
)

// The redirect scheme (protocol redirect): tlsedge assigns a server and
// steps out of the path. Every request is answered with a redirect to the
// chosen server's public URL plus the request's path and query; nothing
// is forwarded. The server is chosen by the route's backend exactly as for
// a forwarded request (policy, affinity, health, drain, ejection, reported
// load), and its slot is given back at once: a redirect holds nothing.

// RedirectTokenParam is the query parameter that carries the signed token
// (redirect_token). A parameter of this name sent by the client is removed
// from the query before tlsedge adds its own.
const RedirectTokenParam = "tlsedge_token"

// Redirect answers the requests of a protocol redirect route. It is
// immutable after NewRedirect and shared by the route's connections.
type Redirect struct {
	status int
	// public is each server's public URL by its address. Built from the
	// config: a reload that changes a public URL or the servers builds a
	// new Redirect with the route's new proxy.
	public map[string]redirectTarget
	token  *redirectSigner // nil = no token
}

// redirectTarget is one server's public URL, parsed and as configured (the
// token's aud is the configured string, byte for byte).
type redirectTarget struct {
	u   *url.URL
	raw string
}

// RedirectOptions configure a Redirect.
type RedirectOptions struct {
	// Status is 301, 302, 303, 307 or 308; 0 = 307.
	Status int
	// Public maps a server's address (host:port, as in the pool) to the
	// absolute URL clients reach it at (http, https, ws or wss; a host; no
	// userinfo, query or fragment).
	Public map[string]string
	// TokenKey, when not empty, signs a token for each redirect of a
	// client with a verified certificate (at least 32 bytes).
	TokenKey []byte
	// TokenTTL is how long a token is valid, whole seconds from 1s to 1h;
	// 0 = 30s.
	TokenTTL time.Duration
}

// Bounds of RedirectOptions.TokenTTL and its default.
const (
	DefaultRedirectTokenTTL = 30 * time.Second
	MinRedirectTokenTTL     = time.Second
	MaxRedirectTokenTTL     = time.Hour
	// MinRedirectTokenKey is the shortest key (bytes) HMAC-SHA256 gets.
	MinRedirectTokenKey = 32
)

// NewRedirect checks opt and builds the Redirect.
func NewRedirect(opt RedirectOptions) (*Redirect, error) {
	rd := &Redirect{status: opt.Status, public: map[string]redirectTarget{}}
	if rd.status == 0 {
		rd.status = http.StatusTemporaryRedirect
	}
	if !RedirectStatusOK(rd.status) {
		return nil, fmt.Errorf("tlsmode: redirect status %d: use 301, 302, 303, 307 or 308", opt.Status)
	}
	for addr, s := range opt.Public {
		u, err := ParsePublicURL(s)
		if err != nil {
			return nil, fmt.Errorf("tlsmode: public URL of %s: %w", addr, err)
		}
		rd.public[addr] = redirectTarget{u: u, raw: s}
	}
	if len(opt.TokenKey) > 0 {
		ttl := opt.TokenTTL
		if ttl == 0 {
			ttl = DefaultRedirectTokenTTL
		}
		if err := RedirectTokenTTLOK(ttl); err != nil {
			return nil, err
		}
		if len(opt.TokenKey) < MinRedirectTokenKey {
			return nil, fmt.Errorf("tlsmode: redirect token key of %d bytes: it must have at least %d", len(opt.TokenKey), MinRedirectTokenKey)
		}
		rd.token = &redirectSigner{key: append([]byte(nil), opt.TokenKey...), ttl: ttl, now: time.Now}
	}
	return rd, nil
}

// RedirectStatusOK reports whether status is a redirect status a redirect
// route may answer with.
func RedirectStatusOK(status int) bool {
	switch status {
	case 301, 302, 303, 307, 308:
		return true
	}
	return false
}

// RedirectTokenTTLOK checks a token lifetime: whole seconds, 1s to 1h
// (a token's times are Unix seconds).
func RedirectTokenTTLOK(ttl time.Duration) error {
	if ttl < MinRedirectTokenTTL || ttl > MaxRedirectTokenTTL || ttl%time.Second != 0 {
		return errors.New("tlsmode: redirect token ttl must be whole seconds from 1s to 1h")
	}
	return nil
}

// ParsePublicURL parses a server's public URL: absolute, scheme http,
// https, ws or wss, a host of printable ASCII (a name in punycode or an
// address) with an optional numeric port, an optional path, and no
// userinfo, query or fragment (tlsedge appends the request's path and
// query to it).
func ParsePublicURL(s string) (*url.URL, error) {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return nil, errors.New("only printable ASCII, no spaces (write an international name in punycode, a path percent-encoded)")
		}
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, errors.New("not a URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "ws" && u.Scheme != "wss":
		return nil, errors.New("the scheme must be http, https, ws or wss")
	case u.Opaque != "" || u.Host == "":
		return nil, errors.New("no host: write it like wss://node-3.example.com/")
	case u.User != nil:
		return nil, errors.New("userinfo (user@) is not allowed")
	case u.RawQuery != "" || u.ForceQuery:
		return nil, errors.New("a query is not allowed: the request's query is appended")
	case u.Fragment != "" || strings.Contains(s, "#"):
		return nil, errors.New("a fragment is not allowed")
	case u.Hostname() == "":
		return nil, errors.New("no host: write it like wss://node-3.example.com/")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, errors.New("the port must be 1 to 65535")
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return nil, errors.New("an empty port")
	}
	return u, nil
}

// Status is the redirect status answered.
func (rd *Redirect) Status() int { return rd.status }

// location is the URL a request for path (escaped) and rawQuery is sent to
// on the server with public URL pub: pub's path without its trailing
// slash, then the request's path (so https://n/base/ + /x = /base/x), then
// the request's query without any tlsedge_token, then the token (when not
// empty). Bytes a Location may not hold are percent-encoded.
func redirectLocation(pub *url.URL, path, rawQuery, token string) string {
	var b strings.Builder
	b.WriteString(pub.Scheme)
	b.WriteString("://")
	b.WriteString(pub.Host)
	b.WriteString(strings.TrimSuffix(pub.EscapedPath(), "/"))
	if !strings.HasPrefix(path, "/") {
		path = "/" + path // OPTIONS *, or an empty path: the server's root
		if path == "/*" {
			path = "/"
		}
	}
	b.WriteString(path)
	q := redirectQuery(rawQuery)
	if token != "" {
		if q != "" {
			q += "&"
		}
		q += RedirectTokenParam + "=" + token
	}
	if q != "" {
		b.WriteByte('?')
		b.WriteString(q)
	}
	// "#" too: a raw one (net/http passes it in the query) would start a
	// fragment and hide the token from the server.
	return identity.Percent(b.String(), func(c byte) bool { return c <= ' ' || c >= 0x7f || c == '#' })
}

// redirectQuery is rawQuery without any parameter named tlsedge_token
// (also percent-encoded, or after a ";" that some servers split on); the
// other parameters are kept exactly as sent, in order.
func redirectQuery(rawQuery string) string {
	if !strings.Contains(strings.ToLower(rawQuery), "token") && !strings.Contains(rawQuery, "%") {
		return rawQuery
	}
	var kept []string
	for _, part := range strings.Split(rawQuery, "&") {
		drop := false
		for _, sub := range strings.Split(part, ";") {
			k, _, _ := strings.Cut(sub, "=")
			if dk, err := url.QueryUnescape(k); err == nil {
				k = dk
			}
			drop = drop || k == RedirectTokenParam
		}
		if !drop {
			kept = append(kept, part)
		}
	}
	return strings.Join(kept, "&")
}

// redirectedTo is the access log's reason of an answered redirect: where
// the client was sent (the server's public URL, without path or token).
// Recorded as the request's reason, it also keeps the redirect out of
// passive ejection's view: no server answered it.
type redirectedTo struct{ public string }

func (r redirectedTo) Error() string { return "redirected to " + r.public }

// serveRedirect answers r with a redirect to the public URL of the server
// the backend picks. It runs after the SNI/Host binding, authorization and
// client limits (ServeHTTP). The pick takes a slot that is given back at
// once. No server: 503, as the proxy answers.
func (p *HTTPProxy) serveRedirect(w http.ResponseWriter, r *http.Request, cs *connState, rs *reqState) {
	rd := p.opt.Redirect // CONNECT was refused before (ServeHTTP): nothing to redirect a tunnel to
	s, err := (*p.backend.Load()).AcquireServer(r.Context(), cs.c, nil)
	if err != nil {
		rs.err = err
		if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
			return // the client went away while a slot was awaited: 499
		}
		http.Error(w, "503 service unavailable: no server available", http.StatusServiceUnavailable)
		return
	}
	s.Release() // a redirect holds no slot
	rs.server = s
	pub, ok := rd.public[s.Address]
	if !ok {
		// validate requires public on every server of the backend; a server
		// without one here is a bug, said in the log and to the client.
		rs.err = fmt.Errorf("server %s has no public URL: cannot redirect", s.Address)
		p.opt.Log.Error().Str("listener", p.opt.Listener).Str("route", p.opt.Route).Str("server", s.Address).
			Msg("redirect route: the chosen server has no public URL; answered 503")
		http.Error(w, "503 service unavailable: no server available", http.StatusServiceUnavailable)
		return
	}
	token := ""
	if rd.token != nil {
		// A connection outlives its certificate (keep-alive, HTTP/2): the
		// token must not vouch for one that expired since the handshake.
		if na := chainNotAfter(cs.tls); !na.IsZero() && !rd.token.now().Before(na) {
			rs.err = fmt.Errorf("forbidden: the client certificate expired at %s, after this connection's handshake", na.UTC().Format(time.RFC3339))
			cs.endWith(rs.err.Error())
			if r.ProtoMajor == 1 {
				w.Header().Set("Connection", "close")
			}
			http.Error(w, "403 forbidden: the client certificate has expired", http.StatusForbidden)
			return
		}
		token = rd.token.sign(cs.tls, pub.raw, r.Method, r.URL.EscapedPath())
	}
	loc := redirectLocation(pub.u, r.URL.EscapedPath(), r.URL.RawQuery, token)
	rs.err = redirectedTo{public: pub.raw}
	h := w.Header()
	h.Set("Location", loc)
	h.Set("Cache-Control", "no-store")
	if r.ProtoMajor == 1 && r.ContentLength != 0 {
		// The body is not read: rather than wait for it to drain, the
		// connection ends after this answer (307/308 make the client send
		// it again, to the server).
		h.Set("Connection", "close")
	}
	body := strconv.Itoa(rd.status) + " " + strings.ToLower(http.StatusText(rd.status)) + "\n"
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(rd.status)
	if r.Method != http.MethodHead {
		_, _ = w.Write([]byte(body))
	}
}
