package edge

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/tlsedge/tlsedge/certs"
	"github.com/tlsedge/tlsedge/tlsmode"
)

// Edge is a running balancer. Its methods are safe for concurrent use.
type Edge struct {
	log zerolog.Logger
	ctx context.Context
	// serving is handed to connection handlers; Shutdown cancels it first,
	// so HTTP connections close when idle and HTTP/2 ones get a GOAWAY.
	serving context.Context
	drain   context.CancelFunc

	mu        sync.Mutex // serializes Start, Reload and Shutdown
	cfg       *Config
	listeners map[string]*listener // by address
	retired   []*listener          // removed by a reload, with connections still open
	pools     map[string]*Pool     // by backend name
	// http are the HTTP proxies of the protocol http routes in force, by
	// httpRouteKey: a reload keeps those of unchanged routes (their
	// keep-alive connections go on) and closes the others.
	http    map[string]*keptHTTP
	tickets *ticketRings // session ticket keys, by TLS policy, across reloads
	// limiters are the client_limits counters of the routes in force, by
	// listener and route pattern: kept across reloads, so a client's
	// connections opened before a reload still count after it.
	limiters map[string]*tlsmode.ClientLimiter
	health   *healthChecks
	admin    *adminServer // nil without admin.address

	// running is what readers outside the lock see (admin API, metrics,
	// drain): swapped whole by each apply.
	running atomic.Pointer[running]
	// tables are the route tables in force by listener name, published
	// before a reload's re-authorization pass (see Edge.recheck).
	tables atomic.Pointer[map[string]*Table]
	ready  atomic.Bool // /readyz: started and not shutting down
	reg    *registry
	m      *metrics
	ops    *ops

	stopped bool // Shutdown was called: no more reloads

	// OnConfig, when set, is called with every config put in force (start
	// and each reload), under the lock: the command applies log.level and
	// log.format with it.
	OnConfig func(*Config)

	reloads reloadHistory   // the last reloads, for the API and the status page
	statics []*certs.Static // the route certificates from files of the config in force

	certs *certs.Manager // made with the first terminate route
	// certsLive is certs for readers outside the lock (the admin API,
	// metrics, TLS-ALPN-01 validations on connection goroutines).
	certsLive atomic.Pointer[certs.Manager]
	ocsp      map[certs.OCSPMode]*certs.OCSPChecker // shared across routes and reloads: its cache survives
	ocspFails failureLog                            // the OCSP soft-fail lines, bounded as failed connections are
}

// errStopped: a reload after Shutdown.
var errStopped = errors.New("edge: shutting down")

// running is one config in force, for lock-free readers.
type running struct {
	cfg   *Config
	pools map[string]*Pool
	http  map[string][]*tlsmode.HTTPProxy // by backend name
	start time.Time                       // when it was put in force
}

// New returns an Edge that logs to log. ctx bounds its background work.
func New(ctx context.Context, log zerolog.Logger) *Edge {
	serving, drain := context.WithCancel(ctx)
	e := &Edge{log: log, ctx: ctx, serving: serving, drain: drain,
		listeners: map[string]*listener{}, pools: map[string]*Pool{},
		ocsp: map[certs.OCSPMode]*certs.OCSPChecker{}, reg: newRegistry()}
	e.running.Store(&running{pools: map[string]*Pool{}}) // before anything reads it
	e.tickets = newTicketRings(ctx, log)
	e.m = newMetrics(e)
	e.ocspFails.summary = func(_, _, reason string, n int) {
		e.log.Warn().Int("count", n).Msg(fmt.Sprintf("OCSP soft mode: %d more certificates let through without a good OCSP answer were not logged", n))
	}
	e.health = newHealthChecks(ctx, e)
	e.ops = newOps(ctx, e)
	return e
}

// Start opens the admin endpoint (answering /readyz with 503 until the rest
// is up), then the listeners of cfg, and starts serving. On error nothing
// is left open.
func (e *Edge) Start(cfg *Config) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.startAdmin(cfg); err != nil {
		return err
	}
	if err := e.apply(cfg); err != nil {
		e.stopAdmin()
		return err
	}
	e.ready.Store(true)
	return nil
}

// Reload replaces the running config with cfg. Everything new is built and
// every new address bound first; only then are route tables and pools
// swapped, so a bad config changes nothing and connections in flight keep
// the snapshot they were routed with.
func (e *Edge) Reload(cfg *Config) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		return errStopped
	}
	err := e.apply(cfg)
	e.m.reloaded(err == nil)
	return err
}

// Config returns the config in force.
func (e *Edge) Config() *Config {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.cfg
}

// Pools returns the current pools by backend name. The map must not be modified.
func (e *Edge) Pools() map[string]*Pool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.pools
}

// Addr returns the bound address of the listener named name, or nil.
func (e *Edge) Addr(name string) net.Addr {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, l := range e.listeners {
		if l.state.Load().name == name {
			return l.ln.Addr()
		}
	}
	return nil
}

func (e *Edge) apply(cfg *Config) error {
	// 1. Build pools, reusing per-server state by backend name and address.
	pools := make(map[string]*Pool, len(cfg.Backends))
	for i := range cfg.Backends {
		bc := &cfg.Backends[i]
		p, err := newPool(bc, e.pools[bc.Name])
		if err != nil {
			return fmt.Errorf("backend %s: %w", bc.Name, err)
		}
		p.adoptRemoved(e.pools[bc.Name], func(addr string) *serverState { return e.ops.removedState(bc.Name, addr) })
		if (bc.Health.Type == "tls" || bc.Health.Type == "http") && bc.TLS != (BackendTLSConfig{}) {
			tc, err := buildUpstreamTLS(cfg, bc)
			if err != nil {
				return fmt.Errorf("backend %s: health check tls: %w", bc.Name, err)
			}
			tc.ClientSessionCache = nil // every check a full handshake
			p.checkTLS = tc
		}
		p.m = e.m
		pools[bc.Name] = p
	}
	// 2. Build every listener's state, with the TLS of terminate routes.
	b := &builder{e: e, cfg: cfg, pools: pools, tickets: e.tickets.stage(),
		kept: map[string]*keptHTTP{}, rebind: map[*keptHTTP]*Pool{}, authz: map[*keptHTTP]*tlsmode.HTTPAuthz{},
		limiters: map[string]*tlsmode.ClientLimiter{}, limitSets: map[*tlsmode.ClientLimiter]tlsmode.ClientLimitSettings{},
		limitsOf: map[*keptHTTP]*tlsmode.ClientLimiter{}}
	states := make(map[string]*listenerState, len(cfg.Listeners))
	for i := range cfg.Listeners {
		lc := &cfg.Listeners[i]
		st, err := b.listenerState(lc)
		if err != nil {
			b.closeAll()
			return fmt.Errorf("listener %s: %w", lc.Name, err)
		}
		states[lc.Address] = st
	}
	// 3. Bind new addresses (the admin endpoint's too, when it changed); on
	// failure close what this call opened.
	nextAdmin, err := e.prepareAdmin(cfg)
	if err != nil {
		b.closeAll()
		return err
	}
	opened := map[string]*listener{}
	for i := range cfg.Listeners {
		lc := &cfg.Listeners[i]
		if _, ok := e.listeners[lc.Address]; ok {
			continue
		}
		// KeepAlive -1: Go sets no keepalive on accepted connections;
		// tcp_keepalive is the listening socket's (keepalive.go), set
		// before listen(2) so that no connection comes without it. So is
		// TCP_NODELAY, for raw accepts (accept_linux.go).
		ka := keepalive(lc.TCPKeepalive)
		lcfg := net.ListenConfig{KeepAlive: -1, Control: func(_, _ string, raw syscall.RawConn) error {
			return raw.Control(func(fd uintptr) { socketKeepalive(fd, ka); listenerNoDelay(fd) })
		}}
		ln, err := lcfg.Listen(context.Background(), "tcp", lc.Address)
		if err != nil {
			for _, l := range opened {
				l.ln.Close()
			}
			nextAdmin.abort()
			b.closeAll()
			return fmt.Errorf("listener %s: %w", lc.Name, err)
		}
		opened[lc.Address] = newListener(ln.(*net.TCPListener), e)
	}
	// 4. Swap. Nothing below can fail. Metric series are made only now: a
	// refused reload leaves none behind.
	for k, p := range b.rebind {
		// Kept proxies of unchanged routes: the new pool for their
		// connections old and new, before the new tables send any.
		k.pool.Store(p)
		k.hp.SetBackend(p)
		k.hp.SetAuthz(b.authz[k])
		k.hp.SetClientLimits(b.limitsOf[k])
	}
	for lim, set := range b.limitSets {
		lim.Set(set)
	}
	e.limiters = b.limiters
	e.tickets.commit(b.tickets)
	for _, r := range b.routes {
		r.obs = newRouteObs(e.m, r)
	}
	for i := range cfg.Listeners {
		e.m.listenerSeen(cfg.Listeners[i].Name)
	}
	for _, p := range pools {
		for _, st := range p.commit() {
			e.log.Info().Str("backend", p.Name).Str("server", st.srv.Address).Str("check", "none").Msg("server up (health checks turned off)")
			e.m.healthChanged(p.Name, st.srv.Address, true)
		}
		for _, st := range p.states {
			e.ops.revive(st) // a server removed earlier and added back
		}
	}
	e.drainRemoved(pools)
	next := make(map[string]*listener, len(cfg.Listeners))
	for i := range cfg.Listeners {
		lc := &cfg.Listeners[i]
		l := e.listeners[lc.Address]
		if l == nil {
			l = opened[lc.Address]
		}
		l.ka.set(l.ln, states[lc.Address].keepalive)
		l.state.Store(states[lc.Address])
		next[lc.Address] = l
	}
	retired := e.retired[:0]
	for _, l := range e.retired {
		if l.active.Load() > 0 {
			retired = append(retired, l)
		}
	}
	for addr, l := range e.listeners {
		if _, keep := next[addr]; !keep {
			l.close() // stop accepting; its connections finish on their own
			retired = append(retired, l)
		}
	}
	e.retired = retired
	for _, l := range opened {
		go l.serve(e.serving)
		e.log.Info().Str("listener", l.state.Load().name).Str("address", l.ln.Addr().String()).Msg("listening")
	}
	e.health.update(pools)
	tables := make(map[string]*Table, len(cfg.Listeners))
	for i := range cfg.Listeners {
		tables[cfg.Listeners[i].Name] = states[cfg.Listeners[i].Address].table
	}
	e.tables.Store(&tables) // before the pass: a handshake ending from now on checks itself (recheck)
	// Before the replaced HTTP proxies drain below, so a refused connection
	// is logged as refused. Only connections of routes whose policy changed
	// are verified again.
	e.reauthorize(tables)
	for key, k := range e.http {
		if b.kept[key] != k {
			k.hp.Close() // a changed or removed route: its keep-alive connections drain
		}
	}
	if e.certs != nil {
		e.certs.Retain(b.statics)
		b.acmeCommit()
	}
	e.statics = b.statics
	e.swapAdmin(nextAdmin)
	e.listeners, e.pools, e.cfg, e.http = next, pools, cfg, b.kept
	e.running.Store(&running{cfg: cfg, pools: pools, http: b.http, start: time.Now()})
	e.m.configLoaded(cfg.Hash)
	e.ops.configChanged()
	if e.OnConfig != nil {
		e.OnConfig(cfg)
	}
	return nil
}

// ocspChecker returns the one checker of a mode, shared by every route and
// kept across reloads so its cache survives.
func (e *Edge) ocspChecker(m certs.OCSPMode) *certs.OCSPChecker {
	o := e.ocsp[m]
	if o == nil {
		o = &certs.OCSPChecker{Mode: m, OnSoftFail: func(leaf *x509.Certificate, err error) {
			// At most log.failure_burst lines a failure_interval: a
			// responder down means every handshake passes here.
			burst, interval := DefaultFailureBurst, DefaultFailureInterval
			if r := e.running.Load(); r != nil && r.cfg != nil && r.cfg.Log.FailureBurst != nil {
				burst, interval = *r.cfg.Log.FailureBurst, r.cfg.Log.FailureInterval
			}
			if e.ocspFails.allow("", "ocsp soft", burst, interval, time.Now()) {
				e.log.Warn().Str("client_cert", leaf.Subject.String()).Err(err).Msg("OCSP soft mode: certificate let through without a good OCSP answer")
			}
		}}
		e.ocsp[m] = o
	}
	return o
}

// Shutdown stops accepting, waits up to grace for connections to end, then
// ends the rest (as a drain does, then by closing their sockets) and stops
// health checks, drains, rebalances and the admin endpoint. After it,
// Reload refuses.
func (e *Edge) Shutdown(grace time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stopped = true
	e.ready.Store(false)
	e.drain()
	ls := append(slices.Collect(maps.Values(e.listeners)), e.retired...)
	var ended []<-chan struct{}
	for _, l := range ls {
		l.close()
	}
	for _, l := range ls {
		ended = append(ended, l.stopped())
	}
	if !waitAll(ended, grace) {
		// Past the grace: every routed connection is ended as a drain
		// ends it (close_notify and FIN both ways, WebSockets 1001), then
		// whatever is left is closed.
		for _, c := range e.reg.list(connFilter{}) {
			c.Shutdown(reasonShutdown)
		}
		if !waitAll(ended, tlsmode.CloseGrace+time.Second) {
			for _, l := range ls {
				l.closeConns()
			}
			waitAll(ended, -1)
		}
	}
	e.retired = nil
	e.health.stop()
	e.ops.stop()
	e.stopAdmin()
	for _, k := range e.http {
		k.hp.Close()
	}
	e.tickets.stop()
	if e.certs != nil {
		e.certs.Stop()
		e.certs = nil
	}
	e.listeners = map[string]*listener{}
}

// waitAll waits for every channel to close, at most d (d < 0: no limit);
// it reports whether they all did.
func waitAll(chs []<-chan struct{}, d time.Duration) bool {
	var limit <-chan time.Time
	if d >= 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		limit = t.C
	}
	for _, ch := range chs {
		select {
		case <-ch:
		case <-limit:
			return false
		}
	}
	return true
}
