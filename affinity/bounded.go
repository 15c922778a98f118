package affinity

// bounded is consistent hashing with bounded loads (Mirrokni, Thorup and
// Zadimoghaddam, "Consistent Hashing with Bounded Loads", SODA 2018), on top
// of the weighted rendezvous ranking of rendezvous.go.
//
// Plain consistent hashing can pile many live connections on one server
// (one huge client network under class_c, a popular source IP). With a
// balance factor c > 1, each server gets a capacity
//
//	cap(s) = ceil(c × (T+1) × w(s) / W)
//
// where T is the number of live connections on all candidate servers (the
// available, not skipped ones) before this one, T+1 counts the connection
// being placed, w(s) is the server's weight and W the candidates' total
// weight. With equal weights this is the paper's ceil(c × m/n): at most c
// times the average load. A key walks its rendezvous ranking and takes the
// first server holding fewer than cap(s) connections.
//
// Why some server always has room: the capacities sum to at least
// c × (T+1) > T+1 > T, the connections present, so some server holds fewer
// than its cap (pigeonhole). The fallback "all full: take the top-ranked"
// is there only for counts that change concurrently between the passes.
//
// Invariant: after every placement, each server holds at most
// ceil(c × T' × w/W) connections, T' being the new total (a server's cap
// only grows with T). For c = 1+ε the paper bounds the expected number of
// keys moved per update (a key or server arriving or leaving) by O(1/ε²),
// so a factor like 1.25 trades a little stickiness for a hard cap.
//
// While no server is full, every key goes exactly where plain rendezvous
// hashing puts it, so two instances agree as long as their loads stay below
// the caps; loads are per instance, so under pressure they may diverge.
//
// Comparing without rounding: Active is an integer, and for an integer a,
// a < ceil(x) exactly when a < x, so the test is Active < c(T+1)w/W.
//
// The walk in rank order needs no sorting and no memory: the first server
// in the key's ranking that has room is simply the highest-ranked server
// among those with room. One pass finds the top-ranked candidate and sums
// the load and weight of all candidates; if the top one has room, as it
// nearly always has, that is the answer. Otherwise a second pass keeps the
// best-ranked candidate with room. O(N), no allocation.
type bounded struct {
	factor   float64
	fallback Picker // for keys that are not Valid
}

func (p *bounded) Pick(servers []*Server, k Key, skip func(*Server) bool) *Server {
	if !k.Valid {
		return p.fallback.Pick(servers, k, skip)
	}
	// Pass 1: the top-ranked candidate; total live connections and weight.
	// Pass 1 ranks every candidate once; small pools keep the ranks (and
	// weights) on the stack so pass 2 need not hash again.
	const keep = 32
	var ranks [keep]rank
	var top *Server
	var topRank rank
	var total, sumW int64
	for i, s := range servers {
		w, ok := candidate(s, skip)
		if !ok {
			if i < keep {
				ranks[i] = rank{}
			}
			continue
		}
		total += s.load()
		sumW += w
		r := rankOf(k.Hash, s, w)
		if i < keep {
			ranks[i] = r
		}
		if top == nil || outranks(r, s, topRank, top) {
			top, topRank = s, r
		}
	}
	if top == nil {
		return nil
	}
	// room: load < factor × (T+1) × w / W, compared as load × W <
	// factor × (T+1) × w so that scaling every weight alike (effective
	// weights are in hundredths) rounds alike.
	room := func(load int64, w uint64) bool {
		return float64(load)*float64(sumW) < p.factor*float64(total+1)*float64(w)
	}
	if room(top.load(), topRank.w) {
		return top
	}
	var best *Server
	var bestRank rank
	for i, s := range servers {
		var r rank
		if i < keep {
			if r = ranks[i]; r.w == 0 {
				continue // not a candidate in pass 1
			}
		} else {
			w, ok := candidate(s, skip)
			if !ok {
				continue
			}
			r = rankOf(k.Hash, s, w)
		}
		if !room(s.load(), r.w) {
			continue
		}
		if best == nil || outranks(r, s, bestRank, best) {
			best, bestRank = s, r
		}
	}
	if best == nil {
		return top // every candidate is full (counts changed since pass 1)
	}
	return best
}
