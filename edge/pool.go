package edge

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tlsedge/tlsedge/affinity"
	"github.com/tlsedge/tlsedge/tlsmode"
)

// Pool is an immutable snapshot of one backend: its servers and how to pick
// and reach them. The *affinity.Server values inside carry the mutable,
// per-server state (health, live connections, drain, weight) and are reused
// by the pool of the same name after a reload, so a reload never resets
// counts or marks a sick server healthy.
type Pool struct {
	Name    string
	Servers []*affinity.Server

	picker         affinity.Picker
	affinity       affinity.Mode
	connectTimeout time.Duration
	retries        int
	proxy          byte
	health         HealthCheckConfig
	checkTLS       *tls.Config         // tls and http checks over TLS; nil = plain
	weights        []int               // from the config, applied by commit
	dialer         net.Dialer          // connect_timeout and tcp_keepalive; streams' (the connect started raw)
	httpDialer     net.Dialer          // the same, for the HTTP routes' requests (serverDialer says why)
	keepalive      net.KeepAliveConfig // tcp_keepalive, for passthrough's raw connects (dialStream)
	idleTimeout    time.Duration       // passthrough, tcp and WebSocket streams; 0 = off
	drainTimeout   time.Duration
	drainRate      float64
	maxPerServer   int           // connections (and requests) per server; 0 = unlimited
	queueTimeout   time.Duration // the wait for a slot at maxPerServer
	rebalance      *RebalanceConfig

	// disc resolves discovery.dns (nil without): shared with the pools
	// before and after a reload while the settings stay the same.
	// discPrev is the previous pool's, stopped by commit when replaced.
	disc, discPrev *discoverer
	// discFromDNS: addresses of servers that only DNS lists (source "dns");
	// discConfigured: the addresses the config lists.
	discFromDNS, discConfigured map[string]bool

	// outlier: passive ejection settings (nil = off); outGroup serializes
	// its decisions, shared across reloads (outlier.go).
	outlier  *agOutlierSettings
	outGroup *agOutlierGroup

	states map[*affinity.Server]*serverState // shared with the pools before and after a reload
	queue  *slotQueue                        // waiters for a slot at maxPerServer; shared across reloads
	m      *metrics                          // nil in tests that build pools alone
}

func newPool(bc *BackendConfig, prev *Pool) (*Pool, error) {
	aff := bc.Affinity
	if aff == "cookie" {
		// The HTTP proxy keeps a client on its server by cookie; the
		// first pick, and any after its server went away, is the policy's.
		aff = "none"
	}
	mode, err := affinity.ParseMode(aff)
	if err != nil {
		return nil, err
	}
	bal, err := affinity.ParseBalance(bc.Balance)
	if err != nil {
		return nil, err
	}
	picker, err := affinity.NewPicker(affinity.Config{Balance: bal, Affinity: mode, HashBalanceFactor: bc.HashBalanceFactor})
	if err != nil {
		return nil, err
	}
	p := &Pool{
		Name:           bc.Name,
		picker:         picker,
		affinity:       mode,
		connectTimeout: bc.ConnectTimeout,
		retries:        *bc.Retries,
		health:         bc.Health,
		dialer:         serverDialer(bc.ConnectTimeout, keepalive(bc.TCPKeepalive), true),
		httpDialer:     serverDialer(bc.ConnectTimeout, keepalive(bc.TCPKeepalive), false),
		keepalive:      keepalive(bc.TCPKeepalive),
		idleTimeout:    max(bc.IdleTimeout, 0),
		drainTimeout:   bc.DrainTimeout,
		drainRate:      bc.DrainRate,
		maxPerServer:   max(bc.MaxConnectionsPerServer, 0),
		queueTimeout:   bc.QueueTimeout,
		rebalance:      bc.Rebalance,
		states:         map[*affinity.Server]*serverState{},
	}
	if p.queueTimeout <= 0 {
		p.queueTimeout = DefaultQueueTimeout
	}
	if prev != nil {
		p.queue = prev.queue
		p.outGroup = prev.outGroup
	} else {
		p.queue = &slotQueue{}
	}
	if p.outGroup == nil {
		p.outGroup = newAgOutlierGroup()
	}
	p.outlier = agOutlierSettingsOf(bc.Outlier)
	switch bc.ProxyProtocol {
	case "v1":
		p.proxy = 1
	case "v2":
		p.proxy = 2
	}
	old := map[string]*affinity.Server{}
	if prev != nil {
		for _, s := range prev.Servers {
			old[s.Address] = s
		}
	}
	p.disc, p.discPrev = discFor(bc, prev)
	for _, en := range p.discMembers(bc) {
		s := old[en.Address]
		st := prev.state(s)
		if s == nil {
			s = affinity.NewServer(en.Address, en.Weight)
			st = newServerState(s, en.Weight)
			s.SetOnRelease(p.queue.released) // new, so no running pool sees it yet
		}
		p.Servers = append(p.Servers, s)
		p.states[s] = st
		p.weights = append(p.weights, en.Weight)
	}
	return p, nil
}

// discMembers returns the servers of the pool built from bc: the config's,
// in config order, or with discovery the config's plus those of the
// discoverer's last good set (an address the config lists is that server,
// with the config's weight), all ordered by address so that instances with
// the same config and the same DNS answer build the same pool. It fills
// p.discFromDNS and p.discConfigured.
func (p *Pool) discMembers(bc *BackendConfig) []discServer {
	var out []discServer
	p.discConfigured = map[string]bool{}
	p.discFromDNS = map[string]bool{}
	for _, sc := range bc.Servers {
		out = append(out, discServer{Address: sc.Address, Weight: *sc.Weight})
		p.discConfigured[sc.Address] = true
	}
	if p.disc == nil {
		return out
	}
	for _, ds := range p.disc.current() {
		if !p.discConfigured[ds.Address] {
			out = append(out, ds)
			p.discFromDNS[ds.Address] = true
		}
	}
	slices.SortStableFunc(out, func(a, b discServer) int { return discCompareAddr(a.Address, b.Address) })
	return out
}

// discSource says where the server at addr comes from: "config" or "dns".
func (p *Pool) discSource(addr string) string {
	if p != nil && p.discFromDNS[addr] {
		return "dns"
	}
	return "config"
}

// adoptRemoved takes back, for each server the previous pool did not have,
// the server a reload removed at that address if it still drains (found
// by removed), with its live connections, counters and health: a server
// added back is the same server. commit's caller revives it.
func (p *Pool) adoptRemoved(prev *Pool, removed func(addr string) *serverState) {
	for i, s := range p.Servers {
		if prev != nil && prev.Server(s.Address) != nil {
			continue
		}
		if st := removed(s.Address); st != nil {
			delete(p.states, s)
			p.Servers[i] = st.srv
			p.states[st.srv] = st
		}
	}
}

// keepalive turns tcp_keepalive (a duration; -1 = off) into Go's config:
// the idle time and the probe interval, 9 probes.
func keepalive(d time.Duration) net.KeepAliveConfig {
	if d < 0 {
		return net.KeepAliveConfig{Enable: false, Idle: -1, Interval: -1, Count: -1}
	}
	if d == 0 {
		d = DefaultTCPKeepalive
	}
	return net.KeepAliveConfig{Enable: true, Idle: d, Interval: d, Count: 9}
}

// state returns what the edge keeps about server s of p, or nil (also for
// a nil p or s).
func (p *Pool) state(s *affinity.Server) *serverState {
	if p == nil || s == nil {
		return nil
	}
	return p.states[s]
}

// commit applies the config's weights, and health "none" (always up), to
// servers shared with the running pool. Call it only once the reload can no
// longer fail: a refused reload must leave the running servers as they were.
//
// It also starts the DNS discovery loop of a new discoverer and stops the
// previous pool's when the discovery settings changed.
//
// It returns the servers that health type none brought up.
func (p *Pool) commit() (up []*serverState) {
	if p.discPrev != nil && p.discPrev != p.disc {
		p.discPrev.stop() // discovery changed or removed
	}
	if p.disc != nil && p.m != nil && p.m.discEdge != nil {
		p.disc.start(p.m.discEdge) // once; kept across reloads
	}
	for i, s := range p.Servers {
		s.SetOnRelease(p.queue.released)        // also servers adopted back from a drain
		p.states[s].setConfigured(p.weights[i]) // an API override stays in force
		if p.health.Type == "none" && p.states[s].setHealthy(true) {
			up = append(up, p.states[s])
		}
		if p.health.Type != "http" {
			p.states[s].setReported(false, -1) // no X-Tlsedge-Weight any more
		}
		if p.outlier == nil && s.Ejected() {
			p.states[s].agEndEjection() // passive ejection turned off
		}
	}
	return up
}

// Server returns the pool's server with this address, or nil.
func (p *Pool) Server(addr string) *affinity.Server {
	for _, s := range p.Servers {
		if s.Address == addr {
			return s
		}
	}
	return nil
}

// AcquireServer implements tlsmode.Backend: pick a server for c by the
// pool's affinity or balance policy and take a slot on it, waiting for one
// at max_connections_per_server (see acquire).
func (p *Pool) AcquireServer(ctx context.Context, c *tlsmode.Conn, skip func(*affinity.Server) bool) (*affinity.Server, error) {
	var w queueWait
	defer w.end()
	return p.acquire(ctx, c, affinity.KeyFor(p.affinity, c.Source, c.Dest), skip, &w)
}

// Connect implements tlsmode.Backend: pick a server by the pool's affinity
// or balance policy, dial it within connect_timeout, and on a failed dial try
// up to `retries` other servers. Nothing has been sent to any server yet, so
// a retry is always safe. The server's slot is taken before dialing so that
// leastconn sees connections that are still being set up; at
// max_connections_per_server the connection may first wait for a slot (one
// queue_timeout for all attempts).
func (p *Pool) Connect(ctx context.Context, c *tlsmode.Conn) (*tlsmode.Upstream, error) {
	key := affinity.KeyFor(p.affinity, c.Source, c.Dest)
	var w queueWait
	defer w.end()
	var up *tlsmode.Upstream
	pick := func(skip func(*affinity.Server) bool) (*affinity.Server, error) {
		return p.acquire(ctx, c, key, skip, &w)
	}
	err := tlsmode.TryServers(p.retries+1, nil, pick, func(s *affinity.Server) (bool, error) {
		// Not cancelled by a drain: a connection already accepted gets its
		// server; the dial is bounded by connect_timeout.
		var conn net.Conn
		var err error
		if r := routeOf(c); r != nil && r.Mode == "passthrough" {
			conn, err = p.dialStream(s)
		} else {
			conn, err = p.dialServer(context.WithoutCancel(ctx), &p.dialer, s)
		}
		if err != nil {
			p.agFailure(s, "connect")
			s.Release()
			return true, fmt.Errorf("connecting to %s: %w", s.Address, err)
		}
		release := s.Release
		if r := routeOf(c); p.outlier != nil && r != nil && r.Mode == "reencrypt" {
			// judged when it ends: did the TLS handshake with s work?
			release = p.agReencryptRelease(c, s)
		} else {
			p.agSuccess(s, "connect")
		}
		up = &tlsmode.Upstream{Conn: conn, Server: s, Proxy: p.proxy, Release: release}
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	return up, nil
}

// queuePoll is how often a connection waiting for a server slot picks
// again even without a release: a server may have come up, or its weight
// changed.
var queuePoll = 250 * time.Millisecond // a var: tests set it to an hour to see the wake-ups alone

// acquire picks a server for key (skip: servers already tried) and takes a
// slot on it. With max_connections_per_server, servers at the cap are
// passed over (so affinity may move a client while its server is full);
// when every server the pick could choose is at the cap, it waits for a
// release (or a queuePoll) and picks again, until queue_timeout after the
// first wait of w, or until ctx ends. Errors wrap tlsmode.ErrNoServer (none
// available), tlsmode.ErrQueueTimeout (also an ErrNoServer) or ctx's error.
func (p *Pool) acquire(ctx context.Context, c *tlsmode.Conn, key affinity.Key, skip func(*affinity.Server) bool, w *queueWait) (*affinity.Server, error) {
	limit := int64(p.maxPerServer)
	if limit <= 0 {
		s := p.picker.Pick(p.Servers, key, skip)
		if s == nil {
			return nil, fmt.Errorf("backend %s: %w", p.Name, tlsmode.ErrNoServer)
		}
		s.Acquire()
		return s, nil
	}
	full := func(s *affinity.Server) bool { return s.Active() >= limit || skip != nil && skip(s) }
	for {
		// Take the wake-up channel before picking: a release after the
		// pick closes it, so no release is missed.
		var wake <-chan struct{}
		if w.waiting() {
			wake = p.queue.next()
		}
		if s := p.picker.Pick(p.Servers, key, full); s != nil {
			if s.TryAcquire(limit) {
				return s, nil
			}
			continue // another connection took the last slot meanwhile
		}
		if p.picker.Pick(p.Servers, key, skip) == nil {
			return nil, fmt.Errorf("backend %s: %w", p.Name, tlsmode.ErrNoServer)
		}
		if !w.waiting() {
			w.start(p.queue, p.queueTimeout)
			continue // pick once more, now that a release wakes us
		}
		select {
		case <-wake:
		case <-w.poll.C:
		case <-w.timeout.C:
			if r := routeOf(c); r != nil {
				p.m.refusedBy(r.Listener, refusedQueue)
			}
			return nil, fmt.Errorf("backend %s: every server at max_connections_per_server %d for queue_timeout %v: %w",
				p.Name, p.maxPerServer, p.queueTimeout, tlsmode.ErrQueueTimeout)
		case <-ctx.Done():
			return nil, fmt.Errorf("backend %s: waiting for a server slot: %w", p.Name, context.Cause(ctx))
		}
	}
}

// slotQueue wakes the connections waiting for a server slot of a pool
// (max_connections_per_server). Its servers call released from
// affinity.Server.Release (SetOnRelease); that costs one atomic load while
// nobody waits. A wake-up is a broadcast: every waiter picks again, and
// whoever gets the slot first has it (no FIFO order).
type slotQueue struct {
	waiters atomic.Int64
	mu      sync.Mutex
	ch      chan struct{} // closed at the next release; nil until someone waits
}

// next returns the channel the next release closes.
func (q *slotQueue) next() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.ch == nil {
		q.ch = make(chan struct{})
	}
	return q.ch
}

// released wakes every waiter.
func (q *slotQueue) released() {
	if q.waiters.Load() == 0 {
		return
	}
	q.mu.Lock()
	if q.ch != nil {
		close(q.ch)
		q.ch = nil
	}
	q.mu.Unlock()
}

// queueWait is one connection's (or request's) wait in a slotQueue; the
// zero value is not waiting. Call end when done.
type queueWait struct {
	q       *slotQueue
	timeout *time.Timer
	poll    *time.Ticker
}

func (w *queueWait) waiting() bool { return w.q != nil }

func (w *queueWait) start(q *slotQueue, d time.Duration) {
	w.q = q
	q.waiters.Add(1)
	w.timeout = time.NewTimer(d)
	w.poll = time.NewTicker(queuePoll)
}

func (w *queueWait) end() {
	if w.q == nil {
		return
	}
	w.q.waiters.Add(-1)
	w.timeout.Stop()
	w.poll.Stop()
	w.q = nil
}

// dialServer connects to s with d (connect_timeout, tcp_keepalive), and
// counts the connect (duration, errors) for s.
func (p *Pool) dialServer(ctx context.Context, d *net.Dialer, s *affinity.Server) (net.Conn, error) {
	start := time.Now()
	conn, err := d.DialContext(ctx, "tcp", s.Address)
	p.dialed(s, start, err)
	return conn, err
}

// dialed counts a dial to s that started at start.
func (p *Pool) dialed(s *affinity.Server, start time.Time, err error) {
	if st := p.state(s); st != nil && err == nil {
		st.total.Add(1)
	}
	p.m.connected(p.Name, s.Address, time.Since(start), err)
}

// DialHTTP connects to a server by address for the keep-alive transports
// of http routes (see tlsmode.HTTPOptions.Dial). A connect that fails
// counts towards passive ejection; one that works resets the count, unless
// tlsNext (reencrypt): then the TLS handshake that follows decides.
func (p *Pool) DialHTTP(ctx context.Context, _, addr string, tlsNext bool) (net.Conn, error) {
	if s := p.Server(addr); s != nil {
		conn, err := p.dialServer(ctx, &p.httpDialer, s)
		switch {
		case err == nil && tlsNext:
			// judged when its TLS handshake ends (HTTPOptions.UpstreamTLS)
		case err == nil:
			p.agSuccess(s, "connect")
		case ctx.Err() == nil: // not the request given up
			p.agFailure(s, "connect")
		}
		return conn, err
	}
	return p.httpDialer.DialContext(ctx, "tcp", addr) // a server a reload removed
}
