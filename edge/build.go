package edge

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"

	"github.com/tlsedge/tlsedge/certs"
	"github.com/tlsedge/tlsedge/tlsmode"
	"github.com/tlsedge/tlsedge/tlsmode/identity"
)

// Building one config's listener states, route handlers and HTTP proxies,
// before apply swaps them in.

// builder builds the listener states of one config. Nothing it does is
// seen by the running config until apply swaps: a refused reload changes
// nothing.
type builder struct {
	e       *Edge
	cfg     *Config
	pools   map[string]*Pool
	statics []*certs.Static
	closers []io.Closer                      // the HTTP proxies made by this build: closed when it is dropped
	http    map[string][]*tlsmode.HTTPProxy  // by backend name
	routes  []*Route                         // every route built, for their metric handles
	tickets *ticketStage                     // the ticket key rings of the routes built
	kept    map[string]*keptHTTP             // the HTTP proxies of the config built, by httpRouteKey
	rebind  map[*keptHTTP]*Pool              // proxies kept from the running config, and their new pool
	authz   map[*keptHTTP]*tlsmode.HTTPAuthz // the kept proxies' request rules in the config built
	// limiters of the config built (see Edge.limiters), with the settings
	// to give the ones it keeps at the swap; limitsOf: the kept proxies'.
	limiters  map[string]*tlsmode.ClientLimiter
	limitSets map[*tlsmode.ClientLimiter]tlsmode.ClientLimitSettings
	limitsOf  map[*keptHTTP]*tlsmode.ClientLimiter
	acme      acmeBuild // the acme names of the config built (acme_build.go)
}

// closeAll undoes a build that will not be put in force: its HTTP
// proxies are closed and the certificates it loaded (and their staplers)
// dropped, those of the running config kept.
func (b *builder) closeAll() {
	for _, c := range b.closers {
		c.Close()
	}
	if b.e.certs != nil {
		b.e.certs.Retain(b.e.statics)
		b.acmeAbort()
	}
}

// keptHTTP is the HTTP proxy of a protocol http route, kept across reloads
// that leave the route as it was.
type keptHTTP struct {
	hp   *tlsmode.HTTPProxy
	pool atomic.Pointer[Pool] // its backend's pool in the config in force
	tls  bool                 // reencrypt: a TLS handshake follows each connect
}

// dial connects through the pool in force (its dialer, keepalive, metrics),
// not the one the proxy was first built with.
func (k *keptHTTP) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return k.pool.Load().DialHTTP(ctx, network, addr, k.tls)
}

// upstreamTLS feeds the end of a TLS handshake with a server (reencrypt)
// to passive ejection: a failure counts towards consecutive_failures, a
// success resets it (the connect alone did not, see DialHTTP).
func (k *keptHTTP) upstreamTLS(addr string, err error) {
	p := k.pool.Load()
	s := p.Server(addr)
	if s == nil {
		return // a server a reload removed
	}
	if err != nil {
		p.agFailure(s, "tls")
	} else {
		p.agSuccess(s, "connect")
	}
}

// keep returns the name under which this build keeps the proxy of the
// route whose httpRouteKey is key, and the running config's proxy of that
// name, if any. Identical routes (same key) get a name each.
func (b *builder) keep(key string) (string, *keptHTTP) {
	name := key
	for n := 1; b.kept[name] != nil; n++ {
		name = fmt.Sprintf("%s#%d", key, n)
	}
	return name, b.e.http[name]
}

func (b *builder) listenerState(lc *ListenerConfig) (*listenerState, error) {
	cfg := b.cfg
	st := &listenerState{
		name:         lc.Name,
		table:        b.acmeTable(),
		proxy:        lc.ProxyProtocol,
		helloTimeout: lc.ClientHelloTimeout,
		maxConns:     *lc.MaxConnections,
		access:       cfg.Log.Access == nil || *cfg.Log.Access,
		keepalive:    lc.TCPKeepalive,
		limits: connLimits{
			handshakeTimeout: lc.HandshakeTimeout,
			perIP:            *lc.MaxConnectionsPerIP,
			ratePerIP:        *lc.ConnectionRatePerIP,
			burstPerIP:       lc.ConnectionBurstPerIP,
			handshakes:       *lc.MaxHandshakes,
			failureBurst:     *cfg.Log.FailureBurst,
			failureInterval:  cfg.Log.FailureInterval,
		},
	}
	for _, t := range lc.TrustedProxies {
		p, err := parsePrefix(t)
		if err != nil {
			return nil, err
		}
		st.trusted = append(st.trusted, p)
	}
	st.streamsOnly = len(lc.Routes) > 0
	for j := range lc.Routes {
		rc := &lc.Routes[j]
		if rc.Mode != "passthrough" {
			st.streamsOnly = false
		}
		pool := b.pools[rc.Backend]
		if pool == nil {
			return nil, fmt.Errorf("no backend named %q", rc.Backend)
		}
		r := &Route{Mode: rc.Mode, Backend: rc.Backend, Listener: lc.Name, Protocol: rc.Protocol, pool: pool}
		for _, pat := range rc.SNI {
			n, err := NormalizePattern(pat)
			if err != nil {
				return nil, err
			}
			if r.Pattern == "" {
				r.Pattern = n
			}
			st.table.add(n, r)
		}
		b.routes = append(b.routes, r)
		switch rc.Mode {
		case "passthrough":
			r.Handler = &tlsmode.Passthrough{Backend: pool}
		case "terminate", "reencrypt":
			h, err := b.terminate(lc, rc, r, pool, st.access)
			if err != nil {
				return nil, fmt.Errorf("route %s: %w", r.Pattern, err)
			}
			r.Handler = h
		default:
			return nil, fmt.Errorf("mode %s is not implemented", rc.Mode)
		}
	}
	return st, nil
}

func (b *builder) terminate(lc *ListenerConfig, rc *RouteConfig, r *Route, pool *Pool, access bool) (tlsmode.Handler, error) {
	e := b.e
	if e.certs == nil {
		e.certs = certs.NewManager(certs.ManagerOptions{Storage: b.cfg.storage(), Log: e.log,
			RenewInterval: b.cfg.Certs.ACME.RenewInterval})
		e.certsLive.Store(e.certs)
	}
	if rc.TLS.ACME.Enabled() {
		if err := b.acmeRoute(lc, rc); err != nil {
			return nil, err
		}
	}
	rt, err := buildServerTLS(e.ctx, b.cfg, rc, e.certs, e.ocspChecker)
	if err != nil {
		return nil, err
	}
	if rt.static != nil {
		b.statics = append(b.statics, rt.static)
	}
	if !rt.server.SessionTicketsDisabled {
		b.tickets.attach(rt.policy, rc.TLS.SessionTicketRotation, rt.server)
	}
	t := &tlsmode.Terminate{TLS: rt.server, Backend: pool, HandshakeTimeout: lc.HandshakeTimeout, ExactNames: exactNames(rc),
		Recheck: func(c *tlsmode.Conn, cs *tls.ConnectionState) string { return e.recheck(r, c, cs) }}
	if t.Allow, err = buildAllowList(b.cfg, rc, rc.Allow); err != nil {
		return nil, err
	}
	if rc.ClientLimits != nil {
		key := lc.Name + "\x00" + r.Pattern
		set := clientLimitSettings(rc.ClientLimits)
		lim := e.limiters[key]
		if lim == nil {
			lim = tlsmode.NewClientLimiter(set)
		} else {
			b.limitSets[lim] = set // at the swap: a refused reload changes nothing
		}
		b.limiters[key] = lim
		t.ClientLimits = lim
	}
	r.authz = &routeAuthz{
		policy:   authzPolicy(rt.clientPolicy, rc, t.Allow),
		allow:    t.Allow,
		cas:      rt.server.ClientCAs,
		verifier: rt.verifier,
		tcp:      !rc.isHTTP(),
		recheck:  rc.ReauthorizeOnReload == nil || *rc.ReauthorizeOnReload,
	}
	if rc.Mode == "reencrypt" {
		bc := b.cfg.backend(rc.Backend)
		if t.Upstream, err = buildUpstreamTLS(b.cfg, bc); err != nil {
			return nil, fmt.Errorf("backend %s: %w", bc.Name, err)
		}
		if bc.TLS.InsecureSkipVerify {
			e.log.Warn().Str("backend", bc.Name).Msg("INSECURE: insecure_skip_verify is set: tlsedge does not verify these servers' certificates; anyone on the path can impersonate them")
		}
	}
	if rc.isHTTP() {
		bc := b.cfg.backend(rc.Backend)
		key, err := httpRouteKey(b.cfg, lc, rc, bc)
		if err != nil {
			return nil, err
		}
		name, k := b.keep(key)
		if k != nil {
			b.rebind[k] = pool // unchanged: keep it and its connections
			if b.authz[k], err = buildHTTPAuthz(b.cfg, rc); err != nil {
				return nil, err
			}
			b.limitsOf[k] = t.ClientLimits
		} else if k, err = b.newHTTP(lc, rc, bc, r, pool, t.Upstream, access, t.ClientLimits); err != nil {
			return nil, err
		}
		b.kept[name] = k
		t.HTTP = k.hp
		if b.http == nil {
			b.http = map[string][]*tlsmode.HTTPProxy{}
		}
		b.http[rc.Backend] = append(b.http[rc.Backend], k.hp)
	}
	return t, nil
}

// newHTTP builds the HTTP proxy of a protocol http route.
func (b *builder) newHTTP(lc *ListenerConfig, rc *RouteConfig, bc *BackendConfig, r *Route, pool *Pool, upstream *tls.Config, access bool, lim *tlsmode.ClientLimiter) (*keptHTTP, error) {
	authz, err := buildHTTPAuthz(b.cfg, rc)
	if err != nil {
		return nil, err
	}
	id, err := identity.Parse(rc.Identity.Preset, rc.Identity.Headers)
	if err != nil {
		return nil, err
	}
	redirect, err := buildRedirect(b.cfg, rc, bc)
	if err != nil {
		return nil, err
	}
	cookie, err := buildCookie(b.cfg, bc)
	if err != nil {
		return nil, err
	}
	e := b.e
	k := &keptHTTP{tls: upstream != nil}
	k.pool.Store(pool)
	hp := tlsmode.NewHTTPProxy(tlsmode.HTTPOptions{
		Backend:        pool,
		Identity:       id,
		Upstream:       upstream,
		ConnectTimeout: bc.ConnectTimeout,
		Dial:           k.dial,
		Retries:        *bc.Retries,
		Log:            e.log,
		Access:         access,
		Listener:       lc.Name,
		Route:          r.Pattern,
		Limits:         httpLimits(rc, bc),
		Upgrades:       rc.Upgrades,
		StripHeaders:   rc.StripHeaders,
		Authz:          authz,
		ClientLimits:   lim,
		UpstreamTLS:    k.upstreamTLS,
		ExactNames:     exactNames(rc),
		Redirect:       redirect,
		Cookie:         cookie,
		WSFailover:     rc.WebSocket.Failover,
	})
	k.hp = hp
	b.closers = append(b.closers, hp)
	return k, nil
}

// httpLimits are the HTTP proxy's bounds from a route's http keys and its
// backend's; zero values take tlsmode's defaults.
func httpLimits(rc *RouteConfig, bc *BackendConfig) tlsmode.HTTPLimits {
	return tlsmode.HTTPLimits{
		ReadHeaderTimeout:     rc.HTTP.ReadHeaderTimeout,
		IdleTimeout:           rc.HTTP.IdleTimeout,
		ResponseHeaderTimeout: rc.HTTP.ResponseHeaderTimeout,
		MaxHeaderBytes:        rc.HTTP.MaxHeaderBytes,
		MaxRequestBody:        rc.HTTP.MaxRequestBody,
		WriteTimeout:          rc.HTTP.WriteTimeout,
		ReadBodyTimeout:       rc.HTTP.ReadBodyTimeout,
		MaxResponseHeader:     bc.MaxResponseHeaderBytes,
		H2: tlsmode.H2Limits{
			MaxConcurrentStreams:    rc.HTTP.H2.MaxConcurrentStreams,
			ReceiveWindow:           rc.HTTP.H2.ReceiveWindow,
			ConnectionReceiveWindow: rc.HTTP.H2.ConnectionReceiveWindow,
			PingInterval:            rc.HTTP.H2.PingInterval,
			PingTimeout:             rc.HTTP.H2.PingTimeout,
		},
	}
}

// exactNames are the route's server names that are not patterns
// (wildcards, the default "*"), normalized.
func exactNames(rc *RouteConfig) []string {
	var out []string
	for _, p := range rc.SNI {
		if n, err := NormalizePattern(p); err == nil && !strings.Contains(n, "*") {
			out = append(out, n)
		}
	}
	return out
}
