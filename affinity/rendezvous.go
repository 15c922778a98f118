package affinity

// rendezvous is weighted rendezvous hashing, also called highest random
// weight (HRW) hashing (Thaler and Ravishankar, "Using name-based mappings to
// increase hit rates", 1998), with the logarithmic weighting of
// Schindelhauer and Schomaker ("Weighted distributed hash tables", 2005).
//
// Each server gets a score for the key, and the highest score wins:
//
//	u     = pairHash(key, server) mapped into the open interval (0, 1)
//	score = -weight / ln(u)
//
// (score.go computes it, exactly and in integers, as weight / -log2(u),
// which differs by the constant factor ln 2 and so ranks alike.)
//
// Why the key and the server are hashed together: the scores of one key
// then form an independent random ranking of the servers, different for
// every key. A server's score does not depend on which other servers exist,
// so when a server leaves (removed, down, draining, weight 0, skipped), only
// the keys it ranked first move, each to its own next-ranked server, which
// spreads them evenly over the survivors; no other key moves. When a server
// joins, it takes exactly the keys for which it outranks all the others,
// 1/(N+1) of them with equal weights, from every server alike. (A hash ring,
// by contrast, hands a departing server's keys to a single neighbour.)
//
// Why -weight/ln(u): u is uniform in (0,1), so E = -ln(u) is exponentially
// distributed with rate 1 and E/weight with rate weight. The minimum of
// independent exponentials with rates w_i falls on server i with probability
// w_i / Σw, so the server minimizing E/weight, that is maximizing
// weight/E = -weight/ln(u), gets a share of keys proportional to its weight.
// Changing one weight moves keys only to or from that server.
//
// Ties (equal scores: for equal weights, two servers whose -log2(u) agree to
// 2^-32) go to the lower Address, so every instance decides them alike;
// equal addresses, which config validation rejects, go to the earlier
// server in the slice.
//
// Determinism: the server's hash comes from its Address only and the key's
// from the connection's addresses only; no random seed, no map order, no
// dependence on the order of the servers slice, no floating point. Two
// instances built from the same config therefore agree on every key, on any
// CPU architecture.
type rendezvous struct {
	fallback Picker // for keys that are not Valid
}

func (p *rendezvous) Pick(servers []*Server, k Key, skip func(*Server) bool) *Server {
	if !k.Valid {
		return p.fallback.Pick(servers, k, skip)
	}
	var best *Server
	var bestRank rank
	for _, s := range servers {
		w, ok := candidate(s, skip)
		if !ok {
			continue
		}
		r := rankOf(k.Hash, s, w)
		if best == nil || outranks(r, s, bestRank, best) {
			best, bestRank = s, r
		}
	}
	return best
}
