package edge

import (
	"context"
	"net"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/tlsedge/tlsedge/affinity"
)

// checker actively health-checks one server of a pool. A server goes down
// after `fall` failed checks in a row and comes back after `rise` good ones;
// between transitions its state is left alone, so a single lost check does
// not flap it.
type checker struct {
	pool   string
	server *affinity.Server
	cfg    HealthCheckConfig
	log    zerolog.Logger
	runs   *healthRuns
}

// healthRuns counts a server's last checks in a row. It outlives reloads
// (like the server's state), so frequent reloads cannot keep a dead server
// from reaching `fall`.
type healthRuns struct{ ok, bad atomic.Int32 }

// run checks until ctx is done. It owns its ticker and recovers from a panic
// with a logged stack (house rule 13).
func (c *checker) run(ctx context.Context) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error().Str("backend", c.pool).Str("server", c.server.Address).
				Interface("panic", r).Bytes("stack", debug.Stack()).Msg("health checker crashed")
		}
	}()
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	if c.runs == nil {
		c.runs = &healthRuns{}
	}
	for {
		err := c.check(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			ok := c.runs.ok.Add(1)
			c.runs.bad.Store(0)
			if !c.server.Healthy() && int(ok) >= c.cfg.Rise {
				c.server.SetHealthy(true)
				c.log.Info().Str("backend", c.pool).Str("server", c.server.Address).
					Int("rise", c.cfg.Rise).Msg("server up")
			}
		} else {
			bad := c.runs.bad.Add(1)
			c.runs.ok.Store(0)
			if c.server.Healthy() && int(bad) >= c.cfg.Fall {
				c.server.SetHealthy(false)
				c.log.Warn().Str("backend", c.pool).Str("server", c.server.Address).
					Int("fall", c.cfg.Fall).Str("reason", err.Error()).Msg("server down")
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (c *checker) check(ctx context.Context) error {
	d := net.Dialer{Timeout: c.cfg.Timeout}
	conn, err := d.DialContext(ctx, "tcp", c.server.Address)
	if err != nil {
		return err
	}
	return conn.Close()
}

// startHealthChecks starts one checker per server of every pool with a
// health type other than none; cancel ctx to stop them all.
// runs keeps each server's counts across reloads; entries of servers no
// longer configured are dropped.
func startHealthChecks(ctx context.Context, pools map[string]*Pool, log zerolog.Logger, runs map[*affinity.Server]*healthRuns) {
	live := map[*affinity.Server]bool{}
	for _, p := range pools {
		if p.health.Type == "none" {
			continue
		}
		for _, s := range p.Servers {
			live[s] = true
			r := runs[s]
			if r == nil {
				r = &healthRuns{}
				runs[s] = r
			}
			c := &checker{pool: p.Name, server: s, cfg: p.health, log: log, runs: r}
			go c.run(ctx)
		}
	}
	for s := range runs {
		if !live[s] {
			delete(runs, s)
		}
	}
}
