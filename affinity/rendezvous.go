package affinity

import "math"

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
// Ties (equal scores, about 2^-52 likely for two servers) go to the lower
// Address, so every instance decides them alike; equal addresses, which
// config validation rejects, go to the earlier server in the slice.
//
// Determinism: the server's hash comes from its Address only and the key's
// from the connection's addresses only; no random seed, no map order, no
// dependence on the order of the servers slice. Two instances built from the
// same config therefore agree on every key. (math.Log is assembly on amd64
// and Go elsewhere; instances on different CPU architectures could in
// principle disagree when two scores are within the last bit of each other,
// about once in 2^50 keys.)
type rendezvous struct {
	fallback Picker // for keys that are not Valid
}

func (p *rendezvous) Pick(servers []*Server, k Key, skip func(*Server) bool) *Server {
	if !k.Valid {
		return p.fallback.Pick(servers, k, skip)
	}
	var best *Server
	var bestScore float64
	for _, s := range servers {
		w, ok := candidate(s, skip)
		if !ok {
			continue
		}
		sc := score(k.Hash, s.hash, w)
		if best == nil || outranks(sc, s, bestScore, best) {
			best, bestScore = s, sc
		}
	}
	return best
}

// pairHash hashes a key together with a server. Two rounds of mix64 with
// the server hash mixed into each: with one round, keys k and k^a^b would
// merely swap their hashes on servers a and b.
func pairHash(key, server uint64) uint64 {
	return mix64(mix64(key^server) ^ server)
}

// score is the rendezvous score -weight/ln(u) of a server of weight w
// (w > 0) for a key.
func score(key, server uint64, w int64) float64 {
	return -float64(w) / math.Log(unit(pairHash(key, server)))
}

// unit maps a hash to u in the open interval (0,1): the top 52 bits plus one
// half, over 2^52. The sum is exact in a float64 (53-bit mantissa), so u is
// never 0 or 1, ln(u) is finite and negative, and the score is finite and
// positive. (With 53 bits, 2^53 - 1 + 0.5 would round up to u = 1.)
func unit(h uint64) float64 {
	return (float64(h>>12) + 0.5) * 0x1p-52
}

// outranks reports whether server a with score sa ranks strictly before
// server b with score sb: a higher score, or on a tie the lower Address.
func outranks(sa float64, a *Server, sb float64, b *Server) bool {
	if sa != sb {
		return sa > sb
	}
	return a.Address < b.Address
}
