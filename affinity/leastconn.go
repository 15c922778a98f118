package affinity

import "sync/atomic"

// leastConn is weighted least connections: it picks the candidate with the
// smallest (Active+1) / weight, the load per unit of weight the server would
// have after taking this connection. The +1 makes weights count from the
// first connection: with weights 1 and 4 and no connections, the weight-4
// server takes the first three (1/4, 2/4, 3/4 < 1/1) before the two tie,
// rather than a coin toss between two idle servers.
//
// Comparison without floats: for positive weights,
//
//	(a1+1)/w1 < (a2+1)/w2  ⇔  (a1+1) × w2 < (a2+1) × w1
//
// and with effective weights ≤ maxEffective (< 2^31) the products stay below 2^63 for any
// connection count under 2^31.
//
// Ties: equal servers (idle ones, typically) take turns instead of the
// first one in the slice taking every short-lived connection. A counter
// advances on every Pick; the first pass finds the minimum and how many
// candidates m share it, the second takes the (counter mod m)-th of them.
// Rotating only the scan's start index would not do: a busy server in the
// middle would hand its turns to its neighbour, which then gets twice the
// share of the others.
type leastConn struct {
	turn atomic.Uint64
}

func (p *leastConn) Pick(servers []*Server, _ Key, skip func(*Server) bool) *Server {
	// Pass 1: the minimum load per weight, and how many share it.
	var best *Server
	var bestLoad, bestW int64
	ties := uint64(0)
	for _, s := range servers {
		w, ok := candidate(s, skip)
		if !ok {
			continue
		}
		load := s.load() + 1
		switch {
		case best == nil || load*bestW < bestLoad*w:
			best, bestLoad, bestW, ties = s, load, w, 1
		case load*bestW == bestLoad*w:
			ties++
		}
	}
	if ties <= 1 {
		return best
	}
	// Pass 2: the turn-th of the tied servers.
	turn := p.turn.Add(1) % ties
	for _, s := range servers {
		w, ok := candidate(s, skip)
		if !ok || (s.load()+1)*bestW != bestLoad*w {
			continue
		}
		if turn == 0 {
			return s
		}
		turn--
	}
	return best // loads changed between the passes
}
