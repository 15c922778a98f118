package edge

import (
	"context"
	"errors"
	"net"
	"testing"

	"github.com/rs/zerolog"

	"github.com/tlsedge/tlsedge/tlsmode"
)

// rebalancePool is a leastconn pool of servers holding the given numbers of
// bound streams (and extra in-flight requests that are not streams).
func rebalancePool(t *testing.T, e *Edge, weights []int, streams []int, extra []int) *Pool {
	t.Helper()
	bc := &BackendConfig{Name: "b", Balance: "leastconn", Affinity: "none", Retries: new(int)}
	for i, w := range weights {
		bc.Servers = append(bc.Servers, ServerConfig{Address: "127.0.0.1:" + string(rune('1'+i)) + "000", Weight: &w})
	}
	p, err := newPool(bc, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.commit()
	r := &Route{Pattern: "*", Mode: "passthrough", pool: p}
	for i, s := range p.Servers {
		for range streams[i] {
			a, b := net.Pipe()
			t.Cleanup(func() { a.Close(); b.Close() })
			c := &tlsmode.Conn{Conn: a, Route: r, Events: connEvents{e}}
			e.reg.add(c)
			s.Acquire()
			c.Bind(s)
		}
		for range extra[i] {
			s.Acquire()
		}
	}
	return p
}

// Issue, rebalance: "close connections on servers holding more than above
// × the pool's mean ... Never more than the excess; never on a pool with
// one server."
func TestRebalancePlan(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		streams []int
		extra   []int
		above   float64
		want    []int // closing per server
		err     error
	}{
		{"a 4th server added after 60", []int{1, 1, 1, 1}, []int{20, 20, 20, 0}, []int{0, 0, 0, 0}, 1.25, []int{5, 5, 5, 0}, nil},
		{"under the threshold: nothing", []int{1, 1, 1, 1}, []int{18, 16, 16, 10}, []int{0, 0, 0, 0}, 1.25, []int{0, 0, 0, 0}, nil},
		{"above 1 closes any excess", []int{1, 1, 1, 1}, []int{18, 16, 16, 10}, []int{0, 0, 0, 0}, 1, []int{3, 1, 1, 0}, nil},
		{"weights: 2:1:1", []int{2, 1, 1}, []int{10, 10, 0}, []int{0, 0, 0}, 1.25, []int{0, 5, 0}, nil},
		{"only streams are closed, never more than there are", []int{1, 1}, []int{3, 0}, []int{17, 0}, 1.25, []int{3, 0}, nil},
		{"one server: refused", []int{1}, []int{10}, []int{0}, 1.25, nil, errOneServer},
		{"one available server: refused", []int{1, 0}, []int{10, 0}, []int{0, 0}, 1.25, nil, errOneServer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := New(context.Background(), zerolog.Nop())
			defer e.ops.stop()
			p := rebalancePool(t, e, tt.weights, tt.streams, tt.extra)
			e.ops.mu.Lock()
			plan, conns, err := e.ops.plan(p, tt.above, 10)
			e.ops.mu.Unlock()
			if !errors.Is(err, tt.err) {
				t.Fatalf("plan: error %v; want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			total := 0
			for i, sp := range plan.Servers {
				if sp.Closing != tt.want[i] {
					t.Errorf("server %d: closing %d; want %d (plan %+v)", i, sp.Closing, tt.want[i], plan)
				}
				total += sp.Closing
			}
			if plan.Closing != total || len(conns) != total {
				t.Errorf("plan closes %d, lists %d connections; want both %d", plan.Closing, len(conns), total)
			}
			for _, c := range conns {
				if c.BoundServer() == nil {
					t.Errorf("connection %d is not a stream bound to a server", c.ID)
				}
			}
		})
	}
}
