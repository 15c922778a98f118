package edge

import (
	"cmp"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/tlsedge/tlsedge/affinity"
	"github.com/tlsedge/tlsedge/tlsmode"
)

// registry is the one list of live, routed connections, all modes. The
// connection directory, drain, rebalance and the active-connection gauges
// use it; nothing else keeps a list of connections (listeners only track
// sockets to close what is left at shutdown). Connections are kept in
// shards by id so that accepting on several cores does not contend on one
// lock; two indexes answer what operators ask without a scan: by client
// identity (CN, URI and DNS SANs, SHA-256) and by the server a stream is
// bound to.
type registry struct {
	next   atomic.Uint64
	shards [registryShards]regShard

	mu       sync.Mutex // guards the indexes
	byClient map[string]map[*tlsmode.Conn]struct{}
	byServer map[*affinity.Server]map[*tlsmode.Conn]struct{}
}

const registryShards = 32

type regShard struct {
	mu sync.Mutex
	m  map[uint64]*tlsmode.Conn
}

func newRegistry() *registry {
	r := &registry{byClient: map[string]map[*tlsmode.Conn]struct{}{}, byServer: map[*affinity.Server]map[*tlsmode.Conn]struct{}{}}
	for i := range r.shards {
		r.shards[i].m = map[uint64]*tlsmode.Conn{}
	}
	return r
}

// add gives c its id and lists it.
func (r *registry) add(c *tlsmode.Conn) {
	c.ID = r.next.Add(1)
	sh := &r.shards[c.ID%registryShards]
	sh.mu.Lock()
	sh.m[c.ID] = c
	sh.mu.Unlock()
}

// remove takes c out of the list and the indexes. Call it once its handler
// has returned.
func (r *registry) remove(c *tlsmode.Conn) {
	sh := &r.shards[c.ID%registryShards]
	sh.mu.Lock()
	delete(sh.m, c.ID)
	sh.mu.Unlock()
	r.mu.Lock()
	if s := c.BoundServer(); s != nil {
		r.unbindLocked(c, s)
	}
	if id := c.Identity(); id != nil {
		for _, k := range id.Keys() {
			r.unindexLocked(k, c)
		}
	}
	r.mu.Unlock()
}

// get returns the live connection with this id, or nil.
func (r *registry) get(id uint64) *tlsmode.Conn {
	sh := &r.shards[id%registryShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.m[id]
}

// count is the number of live connections.
func (r *registry) count() int {
	n := 0
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// bound moves c in the server index (tlsmode.Events.Bound).
func (r *registry) bound(c *tlsmode.Conn, old, new *affinity.Server) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if old != nil {
		r.unbindLocked(c, old)
	}
	if new != nil {
		set := r.byServer[new]
		if set == nil {
			set = map[*tlsmode.Conn]struct{}{}
			r.byServer[new] = set
		}
		set[c] = struct{}{}
	}
}

func (r *registry) unbindLocked(c *tlsmode.Conn, s *affinity.Server) {
	if set := r.byServer[s]; set != nil {
		delete(set, c)
		if len(set) == 0 {
			delete(r.byServer, s)
		}
	}
}

// identified indexes c by its client identity (tlsmode.Events.Identified).
func (r *registry) identified(c *tlsmode.Conn) {
	id := c.Identity()
	if id == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range id.Keys() { // a CN that is also a SAN is in one set once
		set := r.byClient[k]
		if set == nil {
			set = map[*tlsmode.Conn]struct{}{}
			r.byClient[k] = set
		}
		set[c] = struct{}{}
	}
}

func (r *registry) unindexLocked(k string, c *tlsmode.Conn) {
	if set := r.byClient[k]; set != nil {
		delete(set, c)
		if len(set) == 0 {
			delete(r.byClient, k)
		}
	}
}

// onServer returns the connections bound to s (streams: passthrough, tcp,
// upgraded WebSockets), newest first.
func (r *registry) onServer(s *affinity.Server) []*tlsmode.Conn {
	r.mu.Lock()
	out := make([]*tlsmode.Conn, 0, len(r.byServer[s]))
	for c := range r.byServer[s] {
		out = append(out, c)
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b *tlsmode.Conn) int { return cmp.Compare(b.ID, a.ID) })
	return out
}

// boundCount is the number of streams bound to s.
func (r *registry) boundCount(s *affinity.Server) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.byServer[s])
}

// connFilter selects connections of the directory; empty fields match all.
type connFilter struct {
	Client string // CN, URI SAN, DNS SAN or SHA-256 of the client certificate
	SNI    string
	Route  string // the route's first SNI pattern
	Server string // address of the bound (or last) server
	Source string // client IP, or IP:port
}

// list returns the connections f selects, oldest first. A client filter is
// answered from the identity index, without a scan.
func (r *registry) list(f connFilter) []*tlsmode.Conn {
	var cands []*tlsmode.Conn
	if f.Client != "" {
		r.mu.Lock()
		for c := range r.byClient[f.Client] {
			cands = append(cands, c)
		}
		r.mu.Unlock()
	} else {
		for i := range r.shards {
			sh := &r.shards[i]
			sh.mu.Lock()
			for _, c := range sh.m {
				cands = append(cands, c)
			}
			sh.mu.Unlock()
		}
	}
	out := cands[:0]
	for _, c := range cands {
		if f.matches(c) {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b *tlsmode.Conn) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

func (f connFilter) matches(c *tlsmode.Conn) bool {
	if f.SNI != "" && (c.Hello == nil || c.Hello.ServerName != f.SNI) {
		return false
	}
	if f.Route != "" {
		if r, _ := c.Route.(*Route); r == nil || r.Pattern != f.Route {
			return false
		}
	}
	if f.Server != "" {
		if s := c.LastServer(); s == nil || s.Address != f.Server {
			return false
		}
	}
	if f.Source != "" {
		if ap, err := netip.ParseAddrPort(f.Source); err == nil {
			if c.Source != ap {
				return false
			}
		} else if c.Source.Addr().String() != f.Source {
			return false
		}
	}
	return true
}
