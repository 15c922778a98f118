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
// is there only for counts that change concurrently during the walk.
//
// Invariant: after every placement, each server holds at most
// ceil(c × T' × w/W) connections, T' being the new total (a server's cap
// only grows with T). For c = 1+ε the paper bounds the extra keys moved when
// servers come and go by a factor O(1/ε²) over plain consistent hashing, so
// 1.25 is a fair compromise between balance and stickiness. While no server
// is full, every key goes exactly where plain rendezvous
// hashing puts it, so two instances agree as long as their loads are below
// the caps; loads are per instance, so under pressure they may diverge.
//
// Comparing without rounding: Active is an integer, and for an integer a,
// a < ceil(x) exactly when a < x, so the test is Active < c(T+1)w/W.
//
// The walk does not allocate: the scores of up to maxStackServers servers
// are kept in an array on the stack, and each step selects the best server
// ranked strictly after the previous one (O(N) per step, and the first step
// nearly always succeeds). Larger pools recompute scores at each step.
type bounded struct {
	factor   float64
	fallback Picker // for keys that are not Valid
}

// maxStackServers is how many scores bounded keeps on the stack.
const maxStackServers = 64

func (p *bounded) Pick(servers []*Server, k Key, skip func(*Server) bool) *Server {
	if !k.Valid {
		return p.fallback.Pick(servers, k, skip)
	}
	var buf [maxStackServers]float64
	var scores []float64 // scores[i] > 0: candidate; 0: not a candidate
	if len(servers) <= len(buf) {
		scores = buf[:len(servers)]
	}
	// Pass 1: scores, the top-ranked candidate, total load and weight.
	top := -1
	var topScore float64
	var total, sumW int64
	for i, s := range servers {
		w, ok := candidate(s, skip)
		if !ok {
			continue // scores[i] stays 0
		}
		sc := score(k.Hash, s.hash, w)
		if scores != nil {
			scores[i] = sc
		}
		total += s.load()
		sumW += w
		if top < 0 || rankedBefore(sc, s, i, topScore, servers[top], top) {
			top, topScore = i, sc
		}
	}
	if top < 0 {
		return nil
	}
	// A server of weight w has room while Active < perWeight × w.
	perWeight := p.factor * float64(total+1) / float64(sumW)

	cur, curScore := top, topScore
	for {
		s := servers[cur]
		if float64(s.load()) < perWeight*float64(s.weight.Load()) {
			return s
		}
		// Next: the best candidate ranked strictly after cur.
		next := -1
		var nextScore float64
		for i, t := range servers {
			var sc float64
			if scores != nil {
				sc = scores[i]
				if sc == 0 {
					continue
				}
			} else {
				w, ok := candidate(t, skip)
				if !ok {
					continue
				}
				sc = score(k.Hash, t.hash, w)
			}
			if !rankedBefore(curScore, s, cur, sc, t, i) {
				continue // ranked at or before cur: already tried
			}
			if next < 0 || rankedBefore(sc, t, i, nextScore, servers[next], next) {
				next, nextScore = i, sc
			}
		}
		if next < 0 {
			return servers[top] // every candidate is full
		}
		cur, curScore = next, nextScore
	}
}

// rankedBefore is the strict total order of the walk: outranks, then the
// slice index for servers that share an Address.
func rankedBefore(sa float64, a *Server, ia int, sb float64, b *Server, ib int) bool {
	if sa != sb || a.Address != b.Address {
		return outranks(sa, a, sb, b)
	}
	return ia < ib
}
