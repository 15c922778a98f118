package affinity

import (
	"errors"
	"fmt"
	"math"
)

// Picker chooses the server for one new connection.
//
// Pick considers only the servers s of servers with s.Available() and
// (skip == nil || !skip(s)), and returns nil when there is none. It never
// blocks on I/O, never dials and does not allocate; it may be called from
// many goroutines at once. It does not Acquire the server: the caller does.
//
// skip lets a caller exclude servers for this one Pick, typically the
// servers whose dial already failed for this connection. Pick may call skip
// more than once per server; skip must be cheap, must not block and must not
// call back into the Picker. Pick neither keeps servers nor skip after it
// returns, and never modifies the slice.
type Picker interface {
	Pick(servers []*Server, k Key, skip func(*Server) bool) *Server
}

// PickerFunc adapts a function to a Picker.
type PickerFunc func(servers []*Server, k Key, skip func(*Server) bool) *Server

// Pick calls f(servers, k, skip).
func (f PickerFunc) Pick(servers []*Server, k Key, skip func(*Server) bool) *Server {
	return f(servers, k, skip)
}

// Config is the balancing part of one backend's config. The zero Config is
// plain smooth weighted round-robin without affinity.
type Config struct {
	// Balance picks when Affinity is None, or when the connection's Key is
	// not Valid.
	Balance Balance
	// Affinity None: no consistent hashing; any other Mode: Valid keys are
	// placed by weighted rendezvous hashing (rendezvous.go). The Picker
	// itself does not look at the Mode (the Key already encodes it), it only
	// needs to know whether to hash at all.
	Affinity Mode
	// HashBalanceFactor bounds the load consistent hashing may put on one
	// server (bounded.go): a server takes a new key only while it holds
	// fewer than ceil(factor × average load × its weight share) connections.
	// 0 means off (plain rendezvous hashing). It must be 0 or above 1, e.g.
	// 1.25; values in (0, 1], negative values and NaN are errors; +Inf is
	// the same as off. It is ignored when Affinity is None.
	HashBalanceFactor float64
}

// ErrInvalidConfig is returned (wrapped) by [NewPicker] for a Config it
// cannot build.
var ErrInvalidConfig = errors.New("affinity: invalid config")

// NewPicker returns the Picker for c. Every call returns a new Picker with
// its own state (round-robin position, tie-breaking rotation, random source);
// servers' per-server state lives on the *Server values.
func NewPicker(c Config) (Picker, error) {
	if c.Affinity > FiveTuple {
		return nil, fmt.Errorf("%w: affinity %v: use none, source_ip, class_c or five_tuple", ErrInvalidConfig, c.Affinity)
	}
	var bal Picker
	switch c.Balance {
	case RoundRobin:
		bal = &roundRobin{}
	case LeastConn:
		bal = &leastConn{}
	case Random:
		bal = &random{}
	default:
		return nil, fmt.Errorf("%w: balance %v: use roundrobin, leastconn or random", ErrInvalidConfig, c.Balance)
	}
	f := c.HashBalanceFactor
	if f != 0 && !(f > 1) { // also catches NaN
		return nil, fmt.Errorf("%w: hash_balance_factor %v: use 0 (off) or a value above 1, e.g. 1.25", ErrInvalidConfig, f)
	}
	switch {
	case c.Affinity == None:
		return bal, nil
	case f == 0 || math.IsInf(f, 1):
		return &rendezvous{fallback: bal}, nil
	default:
		return &bounded{factor: f, fallback: bal}, nil
	}
}
