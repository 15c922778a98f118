package affinity

import "sync"

// roundRobin is smooth weighted round-robin, nginx's algorithm
// (ngx_http_upstream_get_peer, 2012). Each server keeps a "current weight",
// starting at 0. On every pick:
//
//	for each candidate s: s.current += s.weight; total += s.weight
//	best = the candidate with the highest current (the first on a tie)
//	best.current -= total
//
// Over any cycle of Σweight picks, with no change in the candidates, each
// server is picked exactly weight times, and the picks are interleaved as
// evenly as possible: weights {a:5, b:1, c:1} give a a b a c a a, not
// a a a a a b c. The currents always sum to 0, so they stay within
// ±Σweight and cannot overflow.
//
// Unavailable and skipped servers sit the round out: their current does not
// move, and the others share the turns by their weights.
//
// State: the current weights live on the Servers (rrCurrent) and the whole
// read-modify-write of one pick runs under mu, so concurrent Picks on one
// picker are serialized and exact. The fields are atomics only because the
// pool snapshots before and after a reload may briefly pick over the same
// Servers with two pickers; that is race-free, at worst one slightly
// uneven turn.
type roundRobin struct {
	mu sync.Mutex
}

func (p *roundRobin) Pick(servers []*Server, _ Key, skip func(*Server) bool) *Server {
	p.mu.Lock()
	defer p.mu.Unlock()
	var best *Server
	var bestCur, total int64
	for _, s := range servers {
		w, ok := candidate(s, skip)
		if !ok {
			continue
		}
		cur := s.rrCurrent.Add(w)
		total += w
		if best == nil || cur > bestCur {
			best, bestCur = s, cur
		}
	}
	if best != nil {
		best.rrCurrent.Add(-total)
	}
	return best
}
