package affinity

import "sync/atomic"

// leastConn is weighted least connections: it picks the candidate with the
// smallest (Active+1) / weight, the load per unit of weight the server would
// have after taking this connection. The +1 makes weights count from the
// first connection: with weights 1 and 4 and no connections, the weight-4
// server gets the first four connections ((0+1)/4 < (0+1)/1, ..., 4/4 = 1/1),
// rather than a coin toss between two idle servers.
//
// Comparison without floats: for positive weights,
//
//	(a1+1)/w1 < (a2+1)/w2  ⇔  (a1+1) × w2 < (a2+1) × w1
//
// and with weights ≤ MaxWeight (2^31) the products stay below 2^63 for any
// connection count under 2^31.
//
// Ties: the scan starts at a position that advances by one on every Pick
// and wraps around, and only a strictly better server replaces the one in
// hand, so equal servers (idle ones, typically) take turns instead of the
// first one in the slice taking every short-lived connection.
type leastConn struct {
	next atomic.Uint64 // start of the next scan
}

func (p *leastConn) Pick(servers []*Server, _ Key, skip func(*Server) bool) *Server {
	n := len(servers)
	if n == 0 {
		return nil
	}
	start := int(p.next.Add(1) % uint64(n))
	var best *Server
	var bestLoad, bestW int64
	for j := range n {
		i := start + j
		if i >= n {
			i -= n
		}
		s := servers[i]
		w, ok := candidate(s, skip)
		if !ok {
			continue
		}
		load := s.load() + 1
		if best == nil || load*bestW < bestLoad*w {
			best, bestLoad, bestW = s, load, w
		}
	}
	return best
}
