package affinity

import (
	"errors"
	"fmt"
	"strconv"
)

// Balance is the policy used when there is no affinity key: when the pool's
// affinity is None, or when KeyFor could not build a key (for example a
// connection without an IP source address). The zero Balance is RoundRobin.
type Balance uint8

const (
	// RoundRobin: smooth weighted round-robin (roundrobin.go).
	RoundRobin Balance = iota
	// LeastConn: fewest live connections per unit of weight (leastconn.go).
	LeastConn
	// Random: weighted power of two choices (random.go).
	Random
)

// ErrUnknownBalance is returned (wrapped) by [ParseBalance] for a name it does not know.
var ErrUnknownBalance = errors.New("affinity: unknown balance policy")

var balanceNames = [...]string{
	RoundRobin: "roundrobin",
	LeastConn:  "leastconn",
	Random:     "random",
}

// ParseBalance parses the `balance:` config value. "" means "roundrobin".
// Names are matched exactly (lower case, as written in the spec).
func ParseBalance(s string) (Balance, error) {
	if s == "" {
		return RoundRobin, nil
	}
	for b, name := range balanceNames {
		if s == name {
			return Balance(b), nil
		}
	}
	return RoundRobin, fmt.Errorf("%w %q: use roundrobin, leastconn or random", ErrUnknownBalance, s)
}

// String returns the config name of b, or "Balance(N)" for a value out of range.
func (b Balance) String() string {
	if int(b) < len(balanceNames) {
		return balanceNames[b]
	}
	return "Balance(" + strconv.Itoa(int(b)) + ")"
}
