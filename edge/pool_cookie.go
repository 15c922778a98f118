package edge

import (
	"context"

	"github.com/tlsedge/tlsedge/affinity"
	"github.com/tlsedge/tlsedge/tlsmode"
)

// Cookie affinity's side of the pool (tlsmode.CookieBackend): the HTTP
// proxy asks for the server a request's cookie names, and the pool takes a
// slot on it by the same rules as any pick.

var _ tlsmode.CookieBackend = (*Pool)(nil)

// ServerList implements tlsmode.CookieBackend: the pool's servers. The
// slice is the snapshot's own: callers must not modify it.
func (p *Pool) ServerList() []*affinity.Server { return p.Servers }

// AcquireServerByAddress implements tlsmode.CookieBackend: AcquireServer
// that prefers the pool's server at addr. That server is taken while it is
// up, not draining, not ejected, not in skip and below
// max_connections_per_server; its weight does not matter (weight 0, from
// the config, the API or the server's reported load, takes no new clients
// but keeps those whose cookie names it, as in HAProxy). Otherwise the
// backend's policy picks, so a full server is passed over and the client
// moves, as with hash affinity; when every server is full the request
// waits for a slot up to queue_timeout, and a slot freed on the named
// server goes to it first. An addr not in the pool (a server removed) is a
// plain AcquireServer.
func (p *Pool) AcquireServerByAddress(ctx context.Context, c *tlsmode.Conn, addr string, skip func(*affinity.Server) bool) (*affinity.Server, error) {
	s := p.Server(addr)
	if s == nil {
		return p.AcquireServer(ctx, c, skip)
	}
	// The same snapshot with a picker that prefers s, so that the cap,
	// the queue and their errors are exactly acquire's.
	q := *p
	q.picker = ckPrefer{s: s, next: p.picker}
	var w queueWait
	defer w.end()
	return q.acquire(ctx, c, affinity.KeyFor(p.affinity, c.Source, c.Dest), skip, &w)
}

// ckPrefer picks s whenever it may take a request, else asks next.
type ckPrefer struct {
	s    *affinity.Server
	next affinity.Picker
}

func (k ckPrefer) Pick(servers []*affinity.Server, key affinity.Key, skip func(*affinity.Server) bool) *affinity.Server {
	s := k.s
	if s.Healthy() && !s.Draining() && !s.Ejected() && (skip == nil || !skip(s)) {
		return s
	}
	return k.next.Pick(servers, key, skip)
}
