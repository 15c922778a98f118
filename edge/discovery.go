package edge

import (
	"context"
	"fmt"
	"net/netip"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"
)

// DNS discovery (backends[].discovery): a pool's servers are its
// configured ones plus those a DNS name resolves to, re-resolved every
// refresh and when the answer's TTL runs out.
//
// The pool stays an immutable snapshot. A discoverer belongs to a backend
// and keeps the last good set of servers; newPool builds the pool from the
// config's servers and that set. When the set changes, the discoverer puts
// the config in force again (Edge.apply with the same config), which is
// exactly a reload that adds and removes those servers: per-server state is
// carried over by address, new servers get health checks, a server gone
// from DNS drains (drain_timeout, then drain_rate) and one that comes back
// before it is gone is the same server, enabled again. A reload with the
// same discovery settings hands the discoverer to the new pool, set and
// all (no lookup, no flap). Changed settings make a new discoverer: with
// the same dns name it starts from the old one's set and NXDOMAIN state
// and resolves in its loop (no lookup while the config is put in force);
// with a new name it resolves once before the pool is built (at most
// discInitialTimeout) and, if that lookup fails, keeps the old set under
// the usual rules (a failed lookup never empties the pool).

// DiscDefaultRefresh is discovery.refresh's zero value.
const DiscDefaultRefresh = 10 * time.Second

// DiscDefaultMaxServers is discovery.max_servers's zero value, and
// DiscMaxMaxServers its largest setting.
const (
	DiscDefaultMaxServers = 256
	DiscMaxMaxServers     = 10000
)

// discMinInterval: never more than one lookup a second, whatever the TTL.
const discMinInterval = time.Second

// discWarnEvery: failed lookups are logged at most this often per backend
// (the count of those not logged goes with the next line).
const discWarnEvery = 30 * time.Second

// discInitialTimeout bounds the lookup made while a config is put in force
// (under the Edge's lock: only for a new dns name).
const discInitialTimeout = 2 * time.Second

// discLookupTimeout bounds each lookup of the loop (and refresh, if
// shorter).
const discLookupTimeout = 10 * time.Second

// discoverer resolves one backend's discovery.dns. Its loop runs from the
// first commit of a pool holding it until a pool without it is committed,
// its backend leaves the config, or the Edge shuts down.
type discoverer struct {
	backend string
	spec    string // discovery.dns as written
	target  discTarget
	refresh time.Duration
	res     discResolver
	key     string // what a reload compares: the same key keeps the discoverer

	// lookup resolves (a field so unit tests can script answers).
	lookup func(ctx context.Context) discAnswer

	mu       sync.Mutex
	servers  []discServer // the last good set, by address; nil before one
	known    discKnown    // the addresses each name had in the last good set
	last     time.Time    // the last lookup's end
	result   string       // its result
	lastErr  string
	next     time.Time // the next lookup
	nxSince  time.Time // the first NXDOMAIN of the current run; zero = none
	warned   time.Time // the last warning logged
	quiet    int       // failures not logged since
	failing  bool      // the last lookup failed (for the "works again" line)
	started  bool
	first    *discAnswer // the lookup made by newDiscoverer, counted once started
	seeded   int         // servers taken over from the replaced discoverer
	cancel   context.CancelFunc
	stopping bool
	retry    bool // the last change could not be put in force: try again after the next lookup
	max      int  // discovery.max_servers in force
	dropped  int  // servers of the last good answer beyond max, left out
}

// newDiscoverer makes the discoverer of backend bc. It starts from old's
// set (old: the discoverer it replaces, or nil), so that changing the
// settings never empties the pool. With old's dns name it takes old's
// NXDOMAIN state too and its first lookup is the loop's, due at once;
// otherwise it resolves the name once (at most discInitialTimeout), the
// answer applied to old's set under the rules of record. It does not start
// the loop (see start). bc was validated.
func newDiscoverer(bc *BackendConfig, old *discoverer) *discoverer {
	t, err := discParse(bc.Discovery.DNS)
	d := &discoverer{backend: bc.Name, spec: bc.Discovery.DNS, target: t, refresh: bc.Discovery.Refresh,
		res: discResolver{server: bc.Discovery.Resolver}, key: discKey(bc), max: bc.Discovery.MaxServers}
	if d.refresh <= 0 {
		d.refresh = DiscDefaultRefresh
	}
	if d.max <= 0 {
		d.max = DiscDefaultMaxServers
	}
	d.lookup = func(ctx context.Context) discAnswer {
		if err != nil {
			return discAnswer{result: discError, err: err}
		}
		return d.res.lookup(ctx, d.target, d.knownAddrs())
	}
	now := time.Now()
	if old != nil {
		sameName := err == nil && old.target == d.target
		old.mu.Lock()
		d.servers, d.known, d.seeded = slices.Clone(old.servers), old.known, len(old.servers)
		if sameName {
			d.nxSince = old.nxSince
			d.last, d.result, d.lastErr = old.last, old.result, old.lastErr
		}
		old.mu.Unlock()
		if sameName {
			d.next = now // the loop resolves at once
			return d
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), discInitialTimeout)
	defer cancel()
	a := d.lookup(ctx)
	d.record(a, time.Now())
	d.first = &a
	return d
}

// discKey identifies a backend's discovery settings; "" = none.
func discKey(bc *BackendConfig) string {
	if bc.Discovery.DNS == "" {
		return ""
	}
	return fmt.Sprintf("%s|%v|%s|%d", bc.Discovery.DNS, bc.Discovery.Refresh, bc.Discovery.Resolver, bc.Discovery.MaxServers)
}

// discFor returns the discoverer for the pool being built from bc: prev's
// when the settings did not change, else a new one (nil without
// discovery), and the one prev had (which commit stops if replaced).
func discFor(bc *BackendConfig, prev *Pool) (d, old *discoverer) {
	if prev != nil {
		old = prev.disc
	}
	key := discKey(bc)
	switch {
	case key == "":
		return nil, old
	case old != nil && old.key == key:
		return old, old
	}
	return newDiscoverer(bc, old), old
}

// discKnown maps a DNS name (an SRV target, or the A/AAAA name) to the
// addresses it had in the last good set; never modified once made.
type discKnown map[string][]netip.Addr

// knownAddrs returns the addresses of the last good set by name.
func (d *discoverer) knownAddrs() discKnown {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.known
}

// current returns the last good set (a copy).
func (d *discoverer) current() []discServer {
	if d == nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.servers)
}

// record takes a lookup's answer at now: ok replaces the set; empty and
// error keep it; NXDOMAIN keeps it until the name has been NXDOMAIN for
// refresh × 3 without a break, then empties it. It schedules the next
// lookup: refresh, or sooner when an ok answer's TTL runs out first, never
// sooner than discMinInterval. changed: the set is different.
func (d *discoverer) record(a discAnswer, now time.Time) (changed bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.last, d.result, d.lastErr = now, a.result, ""
	if a.err != nil {
		d.lastErr = a.err.Error()
	}
	wait := d.refresh
	switch a.result {
	case discOK:
		d.nxSince = time.Time{}
		if a.ttl > 0 {
			wait = min(wait, a.ttl)
		}
		kept := a.servers
		d.dropped = 0
		limit := d.max
		if limit <= 0 {
			limit = DiscDefaultMaxServers
		}
		if len(kept) > limit {
			// The first by address: instances given the same answer keep
			// the same servers.
			kept, d.dropped = kept[:limit], len(kept)-limit
		}
		changed = !slices.Equal(d.servers, kept)
		d.servers = slices.Clone(kept)
		d.known = a.addrs
	case discNXDomain:
		if d.nxSince.IsZero() {
			d.nxSince = now
		}
		if now.Sub(d.nxSince) >= 3*d.refresh && len(d.servers) > 0 {
			d.servers, d.known = []discServer{}, nil
			changed = true
		}
	default:
		d.nxSince = time.Time{}
	}
	d.next = now.Add(max(wait, discMinInterval))
	return changed
}

// DiscoveryInfo is a backend's DNS discovery in GET /api/v1/backends.
type DiscoveryInfo struct {
	DNS      string `json:"dns"`
	Resolver string `json:"resolver"` // "" = the system's
	Refresh  string `json:"refresh"`
	Servers  int    `json:"servers"` // in the last good set
	// Dropped: servers of the last good answer left out, beyond
	// max_servers.
	Dropped    int        `json:"dropped,omitempty"`
	LastLookup *time.Time `json:"last_lookup,omitempty"`
	Result     string     `json:"result,omitempty"` // ok | empty | nxdomain | error
	Error      string     `json:"error,omitempty"`
	NextLookup *time.Time `json:"next_lookup,omitempty"`
	// NXDomainSince: the name has been NXDOMAIN since then; its servers
	// go once that lasts refresh × 3.
	NXDomainSince *time.Time `json:"nxdomain_since,omitempty"`
}

// info describes d for the admin API; nil for a nil d.
func (d *discoverer) info() *DiscoveryInfo {
	if d == nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	in := &DiscoveryInfo{DNS: d.spec, Resolver: d.res.server, Refresh: d.refresh.String(), Servers: len(d.servers), Dropped: d.dropped,
		Result: d.result, Error: d.lastErr}
	if !d.last.IsZero() {
		t := d.last
		in.LastLookup = &t
	}
	if !d.next.IsZero() && !d.stopping {
		t := d.next
		in.NextLookup = &t
	}
	if !d.nxSince.IsZero() {
		t := d.nxSince
		in.NXDomainSince = &t
	}
	return in
}

// start runs the loop for e, once; later calls do nothing. Called by
// commit, once the config holding d is being put in force.
func (d *discoverer) start(e *Edge) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.started || d.stopping {
		return
	}
	d.started = true
	ctx, cancel := context.WithCancel(e.serving) // Shutdown cancels serving first
	d.cancel = cancel
	ev := e.log.Info().Str("backend", d.backend).Str("dns", d.spec).Int("servers", len(d.servers))
	if a := d.first; a != nil {
		d.first = nil
		e.m.discLookup(d.backend, a.result)
		d.logLocked(e, *a, time.Now())
		ev = ev.Str("result", a.result)
		if a.result != discOK && d.seeded > 0 {
			e.log.Warn().Str("backend", d.backend).Str("dns", d.spec).Str("result", a.result).Int("servers_kept", len(d.servers)).
				Msg("DNS discovery: the new name did not resolve; keeping the previous discovery's servers for now")
		}
	}
	if d.seeded > 0 {
		ev = ev.Int("servers_from_previous", d.seeded)
	}
	ev.Msg("DNS discovery started")
	go d.run(ctx, e)
}

// stop ends the loop (without waiting: it may be waiting for e.mu).
func (d *discoverer) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stopping = true
	if d.cancel != nil {
		d.cancel()
	}
}

// run looks the name up whenever the next lookup is due until ctx ends or
// d no longer belongs to the pool in force. It owns its timer; a panic in a
// step is logged with its stack and the loop goes on (house rule 13).
func (d *discoverer) run(ctx context.Context, e *Edge) {
	t := time.NewTimer(d.untilNext(time.Now()))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !d.owned(e) {
			return
		}
		if !d.safeStep(ctx, e) {
			return
		}
		t.Reset(d.untilNext(time.Now()))
	}
}

func (d *discoverer) untilNext(now time.Time) time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	return max(d.next.Sub(now), 0)
}

// owned reports whether d is the discoverer of its backend's pool in force
// (read under e.mu: a reload in progress has not swapped pools yet).
func (d *discoverer) owned(e *Edge) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.pools[d.backend]
	return !e.stopped && p != nil && p.disc == d
}

func (d *discoverer) safeStep(ctx context.Context, e *Edge) (goOn bool) {
	defer func() {
		if r := recover(); r != nil {
			e.log.Error().Str("backend", d.backend).Interface("panic", r).Bytes("stack", debug.Stack()).Msg("DNS discovery step crashed")
			d.mu.Lock()
			defer d.mu.Unlock()
			d.next = time.Now().Add(d.refresh)
			goOn = true
		}
	}()
	return d.step(ctx, e)
}

// step makes one lookup, counts and logs it, and puts a changed set in
// force; false when the loop must end.
// Each lookup has at most min(refresh, discLookupTimeout).
func (d *discoverer) step(ctx context.Context, e *Edge) bool {
	lctx, cancel := context.WithTimeout(ctx, min(d.refresh, discLookupTimeout))
	a := d.lookup(lctx)
	cancel()
	if ctx.Err() != nil {
		return false
	}
	now := time.Now()
	before := d.current()
	changed := d.record(a, now)
	e.m.discLookup(d.backend, a.result)
	if d.logged(e, a, now) {
		changed = true
	}
	if !changed {
		return true
	}
	return d.applySet(ctx, e, before, d.current())
}

// logged logs a (see logLocked) and returns and clears the retry flag.
func (d *discoverer) logged(e *Edge, a discAnswer, now time.Time) (retry bool) {
	d.mu.Lock()
	defer d.mu.Unlock() // a panic in logLocked must not leave d locked (safeStep locks it)
	retry, d.retry = d.retry, false
	d.logLocked(e, a, now)
	return retry
}

// logLocked logs a failed lookup (warn, at most once per discWarnEvery) or
// the first good one after failures.
// An ok answer with an error (an SRV target or an address family that
// did not resolve, its previous addresses kept) is warned about the same
// way.
func (d *discoverer) logLocked(e *Edge, a discAnswer, now time.Time) {
	if a.result == discOK && a.err != nil {
		if d.warned.IsZero() || now.Sub(d.warned) >= discWarnEvery {
			e.log.Warn().Str("backend", d.backend).Str("dns", d.spec).Str("error", a.err.Error()).Int("not_logged", d.quiet).
				Msg("DNS discovery lookup partly failed: keeping the previous addresses of what did not resolve")
			d.warned, d.quiet = now, 0
		} else {
			d.quiet++
		}
	}
	if a.result == discOK {
		if d.failing {
			e.log.Info().Str("backend", d.backend).Str("dns", d.spec).Int("not_logged", d.quiet).Msg("DNS discovery lookups answer again")
		}
		d.failing, d.quiet = false, 0
		return
	}
	d.failing = true
	if !d.warned.IsZero() && now.Sub(d.warned) < discWarnEvery {
		d.quiet++
		return
	}
	ev := e.log.Warn().Str("backend", d.backend).Str("dns", d.spec).Str("result", a.result).Int("not_logged", d.quiet).
		Int("servers_kept", len(d.servers))
	if a.err != nil {
		ev = ev.Str("error", a.err.Error())
	}
	ev.Msg("DNS discovery lookup failed: keeping the last good servers")
	d.warned, d.quiet = now, 0
}

// applySet puts the new set in force: the config in force is applied
// again, and newPool reads the set from d. Servers gone from DNS drain as
// servers a reload removed; their drain is shown as by "dns".
func (d *discoverer) applySet(ctx context.Context, e *Edge, before, after []discServer) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.pools[d.backend]
	if ctx.Err() != nil || e.stopped || p == nil || p.disc != d {
		return false
	}
	in := map[string]bool{}
	for _, s := range after {
		in[s.Address] = true
	}
	var gone, added []string
	for _, s := range before {
		if !in[s.Address] && !p.discConfigured[s.Address] {
			gone = append(gone, s.Address)
		}
	}
	for _, s := range after {
		if p.Server(s.Address) == nil {
			added = append(added, s.Address)
		}
	}
	e.log.Info().Str("backend", d.backend).Str("dns", d.spec).Strs("added", added).Strs("gone", gone).
		Int("servers", len(after)).Msg("servers changed in DNS")
	d.mu.Lock()
	dropped := d.dropped
	d.mu.Unlock()
	if dropped > 0 {
		e.log.Warn().Str("backend", d.backend).Str("dns", d.spec).Int("max_servers", d.max).Int("dropped", dropped).
			Msg("DNS discovery: the answer has more servers than discovery.max_servers; the first by address are used, the rest left out")
	}
	if err := e.apply(e.cfg); err != nil {
		e.log.Error().Str("backend", d.backend).Err(err).Msg("DNS discovery: putting the new servers in force failed; the pools stay as they were until the next lookup tries again")
		d.mu.Lock()
		d.retry = true
		d.mu.Unlock()
		return true
	}
	for _, addr := range gone {
		if st := e.ops.removedState(d.backend, addr); st != nil {
			st.mu.Lock()
			if st.drainBy == "reload" {
				st.drainBy = "dns"
			}
			st.mu.Unlock()
		}
	}
	return true
}

// discValidate checks a backend's servers and discovery keys: servers may
// be empty only with discovery.dns; dns is an SRV name or name:port;
// refresh at least a second; resolver host:port.
func discValidate(ps *Problems, p string, b *BackendConfig) {
	dc := b.Discovery
	if dc.DNS == "" {
		if len(b.Servers) == 0 {
			ps.Add(p+".servers", "missing: list at least one server address (host:port), or set discovery.dns")
		}
		if dc.Refresh != 0 {
			ps.Add(p+".discovery.refresh", "refresh is for discovery.dns: set it or remove refresh")
		}
		if dc.Resolver != "" {
			ps.Add(p+".discovery.resolver", "resolver is for discovery.dns: set it or remove resolver")
		}
		if dc.MaxServers != 0 {
			ps.Add(p+".discovery.max_servers", "max_servers is for discovery.dns: set it or remove max_servers")
		}
		return
	}
	if _, err := discParse(dc.DNS); err != nil {
		ps.Add(p+".discovery.dns", "%s", strings.TrimPrefix(err.Error(), errDiscSyntax.Error()+": "))
	}
	if dc.Refresh != 0 && dc.Refresh < discMinInterval {
		ps.Add(p+".discovery.refresh", "%v: must be at least 1s, e.g. 10s (0 = 10s)", dc.Refresh)
	}
	if dc.Resolver != "" {
		checkHostPort(ps, p+".discovery.resolver", dc.Resolver, false)
	}
	if dc.MaxServers < 0 || dc.MaxServers > DiscMaxMaxServers {
		ps.Add(p+".discovery.max_servers", "%d: must be from 1 to %d (0 = %d)", dc.MaxServers, DiscMaxMaxServers, DiscDefaultMaxServers)
	}
}
