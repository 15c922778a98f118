package tlsmode

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/tlsedge/tlsedge/affinity"
	"github.com/tlsedge/tlsedge/tlsmode/identity"
)

// HTTPOptions configure an HTTPProxy.
type HTTPOptions struct {
	Backend  Backend
	Identity *identity.Headers // nil = no identity headers (they are still stripped)
	// Upstream is the TLS client config towards servers (reencrypt); nil =
	// plain HTTP. An empty ServerName means the request's host.
	Upstream       *tls.Config
	ConnectTimeout time.Duration // 0 = 3s
	// Dial connects to a server's address; nil = a net.Dialer with
	// ConnectTimeout. The edge passes its own (keepalive, metrics).
	Dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	Retries int // other servers tried when a connect fails
	Limits  HTTPLimits
	// Upgrades lists the protocols clients may switch to (case-insensitive);
	// a request asking for another gets 400 and reaches no server. nil =
	// websocket only; empty (not nil) = none.
	Upgrades []string
	// StripHeaders are more request headers removed before forwarding; a
	// name ending in "*" is a prefix.
	StripHeaders []string
	// Authz decides which client identities may send which requests;
	// nil admits every request.
	Authz *HTTPAuthz
	// ClientLimits bounds each verified client's request rate (429); nil
	// = no limit.
	ClientLimits *ClientLimiter
	// ExactNames are the route's exact server names (see Terminate).
	ExactNames []string
	// UpstreamTLS, when set, is told how each TLS handshake with a server
	// (Upstream set) ended: nil error for a handshake that worked.
	UpstreamTLS func(addr string, err error)
	// Redirect, when set, answers every request with a redirect to the
	// public URL of the server the backend picks (protocol redirect);
	// nothing is forwarded.
	Redirect *Redirect
	// Cookie, when set, keeps each client on one server by a cookie
	// (affinity cookie).
	Cookie *CookieAffinity
	// WSFailover: WebSockets are terminated on both sides and relayed
	// message by message, and moved to another server when theirs goes
	// away (wsfailover.go).
	WSFailover bool
	Log        zerolog.Logger
	Access     bool // one log line per request
	Listener   string
	Route      string
}

// HTTPProxy serves HTTP/1.1, HTTP/2 and WebSocket upgrades on the
// terminated connections of one route and forwards each request to a server
// of the route's pool (balanced per request, with the connection's affinity
// key). It is built once per route at load and shared by its connections.
//
// Hardening: HTTP/1.x connections are read through the smuggling guard
// (h1guard.go); a request body of a declared length up to bufferBody is
// read whole before a server is picked (httpparts.go);
// every wait for request body bytes is bounded by Limits.ReadBodyTimeout
// (408); CONNECT is refused (405) and Upgrade only to Upgrades (400); the
// identity headers of other proxies and StripHeaders are removed.
type HTTPProxy struct {
	opt      HTTPOptions
	backend  atomic.Pointer[Backend] // opt.Backend, or the pool a reload put in its place
	limits   HTTPLimits
	strip    *identity.StripList           // opt.StripHeaders
	authz    atomic.Pointer[HTTPAuthz]     // opt.Authz, replaced by SetAuthz on reload
	limiter  atomic.Pointer[ClientLimiter] // opt.ClientLimits, replaced by SetClientLimits
	upgrades []string                      // opt.Upgrades, or websocket
	proxy    *httputil.ReverseProxy
	dial     func(ctx context.Context, network, addr string) (net.Conn, error)
	errorLog *stdlog.Logger

	mu         sync.Mutex
	transports map[transportKey]*http.Transport

	reqMu    sync.Mutex
	requests map[string]map[*inflight]struct{} // plain requests in flight, by server address
	servers  map[*http.Server]struct{}         // one per live HTTP/2 client connection
	h1conns  map[*h1Conn]struct{}              // the live HTTP/1.x client connections
	up       upPools                           // the lean forward's server connections
	closed   bool
}

// NewHTTPProxy builds the proxy of one route.
func NewHTTPProxy(opt HTTPOptions) *HTTPProxy {
	if opt.ConnectTimeout <= 0 {
		opt.ConnectTimeout = 3 * time.Second
	}
	p := &HTTPProxy{
		opt:        opt,
		limits:     opt.Limits.WithDefaults(),
		dial:       opt.Dial,
		transports: map[transportKey]*http.Transport{},
		requests:   map[string]map[*inflight]struct{}{},
		servers:    map[*http.Server]struct{}{},
		h1conns:    map[*h1Conn]struct{}{},
		strip:      identity.NewStripList(opt.StripHeaders),
		upgrades:   opt.Upgrades,
	}
	if p.upgrades == nil {
		p.upgrades = []string{"websocket"}
	}
	if p.dial == nil {
		p.dial = (&net.Dialer{Timeout: opt.ConnectTimeout}).DialContext
	}
	p.backend.Store(&opt.Backend)
	p.authz.Store(opt.Authz)
	p.limiter.Store(opt.ClientLimits)
	p.errorLog = stdlog.New(zerologWriter{opt.Log}, "", 0)
	p.proxy = &httputil.ReverseProxy{
		Rewrite:   p.rewrite,
		Transport: &poolTransport{p: p},
		ModifyResponse: func(resp *http.Response) error {
			rs := reqStateOf(resp.Request.Context())
			if rs != nil {
				rs.status = resp.StatusCode
			}
			if resp.StatusCode < 100 {
				// ReverseProxy's WriteHeader would panic with the
				// server's slot held.
				return fmt.Errorf("the server answered status %d", resp.StatusCode)
			}
			p.cookieResponse(resp, rs)
			// A 101 for another protocol than the one asked for (or for a
			// request that asked for none): ReverseProxy would give up
			// without closing the body, and the server's slot would leak.
			// An error here closes it and answers 502.
			// ASCII only, printable only, as ReverseProxy checks.
			if resp.StatusCode == http.StatusSwitchingProtocols {
				if !sameToken(upgradeType(resp.Request.Header), upgradeType(resp.Header)) {
					return errUpgradeMismatch
				}
				if rs := reqStateOf(resp.Request.Context()); rs != nil && rs.closeUnless101 != nil {
					// Switching: the "Connection: close" set for any
					// other answer must not go into the 101.
					rs.closeUnless101.Del("Connection")
				}
			}
			return nil
		},
		ErrorHandler: p.errorHandler,
		ErrorLog:     p.errorLog,
		BufferPool:   copyBuffers,
	}
	return p
}

// SetBackend points the proxy at the pool a reload built for its backend,
// when the reload kept the route as it was (its connections go on).
func (p *HTTPProxy) SetBackend(b Backend) { p.backend.Store(&b) }

// SetAuthz replaces the authorization of the requests to come (a reload
// that changed only the route's allow or authorize keys keeps the proxy
// and its connections).
func (p *HTTPProxy) SetAuthz(a *HTTPAuthz) { p.authz.Store(a) }

// SetClientLimits replaces the per-client request limiter (nil: none).
func (p *HTTPProxy) SetClientLimits(l *ClientLimiter) { p.limiter.Store(l) }

// Close is called when a reload replaced the route: its client connections
// drain (closed once idle; HTTP/2 gets a GOAWAY) so that their next
// requests go through the new config, and idle server connections close.
// Upgraded WebSockets go on.
func (p *HTTPProxy) Close() error {
	p.mu.Lock()
	p.closed = true
	for srv := range p.servers {
		go func() { _ = srv.Shutdown(context.Background()) }()
	}
	for h := range p.h1conns {
		go h.shutdownNow()
	}
	for _, t := range p.transports {
		t.CloseIdleConnections()
	}
	p.mu.Unlock()
	p.up.closeIdle("", false)
	return nil
}

// track registers a connection's server; false when the proxy is closed.
func (p *HTTPProxy) track(srv *http.Server, add bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add {
		p.servers[srv] = struct{}{}
	} else {
		delete(p.servers, srv)
	}
	return !p.closed
}

// ServeHTTP checks that the request belongs to the connection's route, then
// forwards it.
func (p *HTTPProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cs := connStateOf(r.Context())
	if cs == nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	cs.begin()
	defer cs.end()
	cs.c.live.requests.Add(1)
	start := time.Now()
	c := cs.c
	rs := &reqState{host: requestHost(r.Host), start: start}
	rw := &statusWriter{ResponseWriter: w}
	if r.ProtoMajor == 2 {
		// HTTP/2: a client that stops reading stops granting window; no
		// socket write ever blocks, so each stream gets its own deadline.
		rw.writeTimeout = p.limits.WriteTimeout
	}
	// Deferred: ReverseProxy panics with http.ErrAbortHandler when a copy
	// fails half way, and exactly those requests need their line. An
	// upgraded stream the lean relay carries on has its line at its end.
	defer func() {
		if !rs.logAtEnd {
			p.accessLog(c, r, rw, rs, start)
		}
	}()

	// The HTTP/1 guard stops checking after a request with an Upgrade
	// field or a CONNECT (what follows may be another protocol): unless the
	// server switches protocols, the connection must carry nothing more,
	// so every other answer closes it.
	if _, up := r.Header["Upgrade"]; r.ProtoMajor == 1 && (up || r.Method == http.MethodConnect) {
		rw.Header().Set("Connection", "close")
		rs.closeUnless101 = rw.Header()
	}

	// SNI/Host binding: the Host must select the very route this
	// connection handshook on, or a client could use a lax route's
	// handshake (or HTTP/2 connection coalescing) to reach a strict one.
	if rs.host == "" && r.Host != "" {
		rs.err = fmt.Errorf("bad request: invalid Host %s", strconv.QuoteToASCII(r.Host))
		if r.ProtoMajor == 1 {
			rw.Header().Set("Connection", "close")
		}
		http.Error(rw, "400 bad request: invalid Host", http.StatusBadRequest)
		return
	}
	if c.Routes != nil && c.Routes.MatchRoute(rs.host) != c.Route {
		rs.err = errMisdirected
		http.Error(rw, "421 misdirected request: this connection's TLS name does not serve host "+rs.host, http.StatusMisdirectedRequest)
		return
	}
	// Who may reach what: after the Host binding, before any server.
	if status, why := p.authz.Load().Check(r, cs.tls); status != 0 {
		rs.err = fmt.Errorf("%s: %s", strings.ToLower(http.StatusText(status)), why)
		if rs.closeUnless101 != nil {
			cs.endWith(rs.err.Error())
		}
		http.Error(rw, strconv.Itoa(status)+" "+strings.ToLower(http.StatusText(status))+": "+why, status)
		return
	}
	if lim := p.limiter.Load(); lim != nil && cs.tls != nil && len(cs.tls.VerifiedChains) > 0 {
		if ok, wait := lim.Request(cs.clientKey(lim)); !ok {
			secs := max(1, int((wait+time.Second-1)/time.Second))
			rs.err = fmt.Errorf("too many requests: client_limits.requests_per_second %g", lim.Settings().Rate)
			rw.Header().Set("Retry-After", strconv.Itoa(secs))
			http.Error(rw, "429 too many requests: this client's request rate is limited on this route", http.StatusTooManyRequests)
			return
		}
	}
	// A reverse proxy tunnels nothing: inside a tunnel no header would be
	// stripped and no Host checked.
	if r.Method == http.MethodConnect {
		rs.err = errConnect
		if rs.closeUnless101 != nil {
			cs.endWith(rs.err.Error())
		}
		rw.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
		http.Error(rw, "405 method not allowed: CONNECT", http.StatusMethodNotAllowed)
		return
	}
	if p.opt.Redirect != nil {
		p.serveRedirect(rw, r, cs, rs)
		return
	}
	if up := upgradeType(r.Header); up != "" && !p.upgradeAllowed(r.Header) {
		rs.err = fmt.Errorf("bad request: upgrade to %s is not allowed on this route", h1Quote([]byte(up)))
		if rs.closeUnless101 != nil {
			cs.endWith(rs.err.Error())
		}
		http.Error(rw, "400 bad request: upgrade to "+strconv.QuoteToASCII(up)+" is not allowed", http.StatusBadRequest)
		return
	}
	if max := p.limits.MaxRequestBody; max > 0 && r.ContentLength > max {
		// Declared too large: refused before any server sees it.
		rs.err = &http.MaxBytesError{Limit: max}
		http.Error(rw, "413 request body too large", http.StatusRequestEntityTooLarge)
		return
	}
	if r.Body != nil && r.Body != http.NoBody {
		rs.body = &timedBody{ReadCloser: r.Body, rc: http.NewResponseController(w), timeout: p.limits.ReadBodyTimeout, guard: cs.guard}
		r.Body = rs.body
		if r.ContentLength >= 0 && r.ContentLength <= bufferBody {
			if !p.readBody(rw, r, rs) {
				return
			}
		}
		if max := p.limits.MaxRequestBody; max > 0 { // a chunked body is cut where it passes the limit
			r.Body = http.MaxBytesReader(rw, r.Body, max)
		}
	}
	// Values only: on HTTP/1 the context stays one the h1 request's
	// cancelRequest alone cancels, which the lean forward's abort relies
	// on (h1Response.onCancel). A deadline or cancel added here would
	// need forward to watch the context itself.
	r = r.WithContext(context.WithValue(r.Context(), reqKey{}, rs))
	if p.opt.WSFailover && r.ProtoMajor == 1 && sameToken(upgradeType(r.Header), "websocket") {
		p.serveWSFailover(rw, r, cs, rs)
		return
	}
	if p.leanOK(rw, r, rs) {
		p.forward(rw, r, cs, rs)
		return
	}
	p.proxy.ServeHTTP(rw, r)
	if rs.up != nil {
		// ReverseProxy is done with an upgraded stream when it returns,
		// even when it refused the 101 without closing it: close it here
		// so its server slot and the connection's binding end now.
		rs.up.Close()
	}
}

var (
	errMisdirected     = errors.New("host does not belong to the connection's route")
	errUpgradeMismatch = errors.New("the server switched to another protocol than the one requested")
	errConnect         = errors.New("method not allowed: CONNECT (tlsedge tunnels nothing)")
)

// upgradeAllowed reports whether the request's Upgrade field names exactly
// one protocol, and one the route allows.
func (p *HTTPProxy) upgradeAllowed(h http.Header) bool {
	vals := h.Values("Upgrade")
	if len(vals) != 1 {
		return false
	}
	tok := strings.Trim(vals[0], " \t")
	for _, a := range p.upgrades {
		if sameToken(tok, a) {
			return true
		}
	}
	return false
}

// upgradeType is the Upgrade header of a request or response that has
// "Connection: upgrade", else "".
func upgradeType(h http.Header) string {
	for _, v := range h.Values("Connection") {
		for _, tok := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "upgrade") {
				return h.Get("Upgrade")
			}
		}
	}
	return ""
}

// rewrite builds the outbound request. ReverseProxy has already removed
// hop-by-hop headers and Forwarded / X-Forwarded-* from pr.Out.
func (p *HTTPProxy) rewrite(pr *httputil.ProxyRequest) {
	cs := connStateOf(pr.In.Context())
	c := cs.c
	pr.Out.URL.Scheme = "http"
	if p.opt.Upstream != nil {
		pr.Out.URL.Scheme = "https"
	}
	pr.Out.URL.Host = "server.invalid" // poolTransport picks the server
	pr.Out.Host = pr.In.Host
	// ReverseProxy removed only the exact names; X_Forwarded_For and
	// friends (read as X-Forwarded-For by CGI, PHP, WSGI, nginx) go too.
	identity.StripForwarded(pr.Out.Header)

	// Identity headers: every one tlsedge can set is removed whatever the
	// config (after hop-by-hop removal, so "Connection: X-SSL-Client-Verify"
	// cannot take ours away), then ours are set from the verified chain.
	p.opt.Identity.Strip(pr.Out.Header)
	p.strip.Strip(pr.Out.Header)
	cs.idOnce.Do(func() {
		cs.id = p.opt.Identity.Values(cs.tls)
		cs.xff = c.Source.Addr().String()
	})
	cs.id.Apply(pr.Out.Header)

	xff := cs.xff
	if c.PeerTrusted {
		if prior := pr.In.Header.Values("X-Forwarded-For"); len(prior) > 0 {
			xff = strings.Join(prior, ", ") + ", " + xff
		}
		for _, h := range []string{"X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded"} {
			if v := pr.In.Header.Values(h); len(v) > 0 {
				pr.Out.Header[h] = v
			}
		}
	}
	// Set, with the three values in one array (Set allocates one each).
	vals := make([]string, 3)
	vals[0] = xff
	pr.Out.Header["X-Forwarded-For"] = vals[0:1:1]
	if pr.Out.Header.Get("X-Forwarded-Proto") == "" {
		vals[1] = "https"
		pr.Out.Header["X-Forwarded-Proto"] = vals[1:2:2]
	}
	if pr.Out.Header.Get("X-Forwarded-Host") == "" {
		vals[2] = pr.In.Host
		pr.Out.Header["X-Forwarded-Host"] = vals[2:3:3]
	}
}

// requestHost lowercases the Host (or :authority), drops the port and one
// trailing dot: the same normal form as SNI. "" for a Host servers could read
// differently (more than one ":" outside brackets, a port that is not
// digits).
func requestHost(h string) string {
	if strings.IndexByte(h, ':') < 0 && !strings.HasPrefix(h, "[") {
		return strings.TrimSuffix(strings.ToLower(h), ".") // no port (SplitHostPort's error would be allocated)
	}
	if host, port, err := net.SplitHostPort(h); err == nil {
		if strings.Trim(port, "0123456789") != "" {
			return "" // servers disagree on "host:abc"
		}
		h = host
	} else if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
	} else if strings.Contains(h, ":") {
		return "" // "a:443:443": servers disagree on which part is the host
	}
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

// serverAddress is s's address, or "" for nil.
func serverAddress(s *affinity.Server) string {
	if s == nil {
		return ""
	}
	return s.Address
}

// sameToken compares two header tokens ASCII-case-insensitively; a token
// with a byte that is not printable ASCII matches nothing (Unicode folding,
// such as the Kelvin sign for k, must not pass as a match).
func sameToken(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x < 0x21 || x > 0x7e || y < 0x21 || y > 0x7e {
			return false
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
