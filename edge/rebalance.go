package edge

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/tlsedge/tlsedge/affinity"
	"github.com/tlsedge/tlsedge/tlsmode"
)

// RebalancePlan is what a rebalance will close: on each server holding
// more than Above × its fair share (the pool's connections on available
// servers, split by weight), the connections above that share, at Rate a
// second. Clients reconnect, and the balancer places them on the servers
// with room (leastconn), such as one added by a scale-up.
type RebalancePlan struct {
	Pool    string                `json:"pool"`
	Above   float64               `json:"above"`
	Rate    float64               `json:"rate"`
	Total   int64                 `json:"connections"`
	Servers []RebalanceServerPlan `json:"servers"`
	Closing int                   `json:"closing"`
	Started time.Time             `json:"started"`
}

// RebalanceServerPlan is one server's part of a plan.
type RebalanceServerPlan struct {
	Address string  `json:"address"`
	Active  int64   `json:"active"`
	Share   float64 `json:"fair_share"`
	Closing int     `json:"closing"`
}

// Conflicts the admin API answers with 409.
var (
	errOneServer        = errors.New("edge: a rebalance needs two or more available servers")
	errRebalanceRunning = errors.New("edge: a rebalance of this pool is already running")
)

// rebalance plans a rebalance of pool and starts closing at rate. Only
// streams bound to a server (passthrough, tcp, upgraded WebSockets) are
// closed: HTTP requests are balanced one by one anyway. Never more than a
// server's excess over its share; never on a pool with one available
// server.
func (o *ops) rebalance(p *Pool, above, rate float64) (*RebalancePlan, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.rebal[p.Name] != nil {
		return nil, errRebalanceRunning
	}
	plan, conns, err := o.plan(p, above, rate)
	if err != nil {
		return nil, err
	}
	if plan.Closing > 0 {
		from := make(map[*tlsmode.Conn]*affinity.Server, len(conns))
		for _, c := range conns {
			from[c] = c.BoundServer() // the server plan found it on
		}
		o.rebal[p.Name] = &rebalJob{plan: plan, pending: conns, from: from}
		o.e.log.Info().Str("backend", p.Name).Int("closing", plan.Closing).Float64("rate", rate).
			Float64("above", above).Msg("rebalance started")
		o.poke()
	}
	return plan, nil
}

func (o *ops) plan(p *Pool, above, rate float64) (*RebalancePlan, []*tlsmode.Conn, error) {
	plan := &RebalancePlan{Pool: p.Name, Above: above, Rate: rate, Servers: []RebalanceServerPlan{}, Started: time.Now()}
	var weights, n int64
	for _, s := range p.Servers {
		if s.Available() {
			n++
			weights += s.EffectiveWeight() // the weight in force: agent and health reports included
			plan.Total += max(s.Active(), 0)
		}
	}
	if n < 2 {
		return nil, nil, errOneServer
	}
	var conns []*tlsmode.Conn
	for _, s := range p.Servers {
		if !s.Available() {
			continue
		}
		active := max(s.Active(), 0)
		share := float64(plan.Total) * float64(s.EffectiveWeight()) / float64(weights)
		sp := RebalanceServerPlan{Address: s.Address, Active: active, Share: math.Round(share*100) / 100}
		if float64(active) > above*share {
			excess := int(active - int64(math.Ceil(share)))
			for _, c := range o.e.reg.onServer(s) {
				if sp.Closing == excess {
					break
				}
				if c.ShutdownReason() == "" {
					conns = append(conns, c)
					sp.Closing++
				}
			}
		}
		plan.Closing += sp.Closing
		plan.Servers = append(plan.Servers, sp)
	}
	return plan, conns, nil
}

// current returns the plan of the pool's rebalance in progress, or nil.
func (o *ops) current(pool string) *RebalancePlan {
	o.mu.Lock()
	defer o.mu.Unlock()
	if j := o.rebal[pool]; j != nil {
		return j.plan
	}
	return nil
}

// autoRebalance starts the automatic rebalances that are due (backends
// with a rebalance key) and returns how long until the next one.
func (o *ops) autoRebalance(now time.Time, run *running) time.Duration {
	wait := time.Hour
	for name, p := range run.pools {
		rc := p.rebalance
		if rc == nil || rc.Interval <= 0 { // none, or "off": only on request
			o.mu.Lock()
			delete(o.autoNext, name)
			o.mu.Unlock()
			continue
		}
		o.mu.Lock()
		next, ok := o.autoNext[name]
		if !ok {
			next = now.Add(rc.Interval)
			o.autoNext[name] = next
		}
		due := !now.Before(next)
		if due {
			o.autoNext[name] = now.Add(rc.Interval)
			next = o.autoNext[name]
		}
		o.mu.Unlock()
		if due {
			if plan, err := o.rebalance(p, rc.Above, rc.Rate); err == nil && plan.Closing > 0 {
				o.e.log.Info().Str("backend", name).Str("trigger", "rebalance.interval").Msg(fmt.Sprintf("automatic rebalance: closing %d", plan.Closing))
			}
		}
		wait = min(wait, next.Sub(now))
	}
	return wait
}
