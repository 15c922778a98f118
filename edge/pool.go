package edge

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
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
	checkTLS       *tls.Config   // tls and http checks over TLS; nil = plain
	weights        []int         // from the config, applied by commit
	dialer         net.Dialer    // connect_timeout and tcp_keepalive
	idleTimeout    time.Duration // passthrough, tcp and WebSocket streams; 0 = off
	drainTimeout   time.Duration
	drainRate      float64
	rebalance      *RebalanceConfig

	states map[*affinity.Server]*serverState // shared with the pools before and after a reload
	m      *metrics                          // nil in tests that build pools alone
}

func newPool(bc *BackendConfig, prev *Pool) (*Pool, error) {
	mode, err := affinity.ParseMode(bc.Affinity)
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
		// KeepAlive -1: Go's own 15 s default applies only when the
		// config is disabled, and "off" must stay off.
		dialer:       net.Dialer{Timeout: bc.ConnectTimeout, KeepAlive: -1, KeepAliveConfig: keepalive(bc.TCPKeepalive)},
		idleTimeout:  max(bc.IdleTimeout, 0),
		drainTimeout: bc.DrainTimeout,
		drainRate:    bc.DrainRate,
		rebalance:    bc.Rebalance,
		states:       map[*affinity.Server]*serverState{},
	}
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
	for _, sc := range bc.Servers {
		s := old[sc.Address]
		st := prev.state(s)
		if s == nil {
			s = affinity.NewServer(sc.Address, *sc.Weight)
			st = newServerState(s, *sc.Weight)
		}
		p.Servers = append(p.Servers, s)
		p.states[s] = st
		p.weights = append(p.weights, *sc.Weight)
	}
	return p, nil
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
// It returns the servers that health type none brought up.
func (p *Pool) commit() (up []*serverState) {
	for i, s := range p.Servers {
		p.states[s].setConfigured(p.weights[i]) // an API override stays in force
		if p.health.Type == "none" && p.states[s].setHealthy(true) {
			up = append(up, p.states[s])
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

// PickServer implements tlsmode.Backend.
func (p *Pool) PickServer(c *tlsmode.Conn, skip func(*affinity.Server) bool) *affinity.Server {
	return p.picker.Pick(p.Servers, affinity.KeyFor(p.affinity, c.Source, c.Dest), skip)
}

// Connect implements tlsmode.Backend: pick a server by the pool's affinity
// or balance policy, dial it within connect_timeout, and on a failed dial try
// up to `retries` other servers. Nothing has been sent to any server yet, so
// a retry is always safe. The server's slot is taken before dialing so that
// leastconn sees connections that are still being set up.
func (p *Pool) Connect(ctx context.Context, c *tlsmode.Conn) (*tlsmode.Upstream, error) {
	key := affinity.KeyFor(p.affinity, c.Source, c.Dest)
	var tried [8]*affinity.Server
	triedList := tried[:0]
	skip := func(s *affinity.Server) bool {
		for _, t := range triedList {
			if t == s {
				return true
			}
		}
		return false
	}
	var lastErr error
	for attempt := 0; attempt <= p.retries; attempt++ {
		s := p.picker.Pick(p.Servers, key, skip)
		if s == nil {
			break
		}
		s.Acquire()
		// Not cancelled by a drain: a connection already accepted gets its
		// server; the dial is bounded by connect_timeout.
		conn, err := p.dialServer(context.WithoutCancel(ctx), s)
		if err == nil {
			return &tlsmode.Upstream{Conn: conn, Server: s, Proxy: p.proxy, Release: s.Release}, nil
		}
		s.Release()
		lastErr = fmt.Errorf("connecting to %s: %w", s.Address, err)
		triedList = append(triedList, s)
	}
	if lastErr == nil {
		return nil, fmt.Errorf("backend %s: %w", p.Name, tlsmode.ErrNoServer)
	}
	return nil, lastErr
}

// dialServer connects to s under connect_timeout, with tcp_keepalive, and
// counts the connect (duration, errors) for s.
func (p *Pool) dialServer(ctx context.Context, s *affinity.Server) (net.Conn, error) {
	start := time.Now()
	conn, err := p.dialer.DialContext(ctx, "tcp", s.Address)
	if st := p.state(s); st != nil && err == nil {
		st.total.Add(1)
	}
	p.m.connected(p.Name, s.Address, time.Since(start), err)
	return conn, err
}

// DialHTTP connects to a server by address for the keep-alive transports
// of http routes (see tlsmode.HTTPOptions.Dial).
func (p *Pool) DialHTTP(ctx context.Context, _, addr string) (net.Conn, error) {
	if s := p.Server(addr); s != nil {
		return p.dialServer(ctx, s)
	}
	return p.dialer.DialContext(ctx, "tcp", addr) // a server a reload removed
}
