package edge

import (
	"context"
	"net"
	"runtime/debug"
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
}

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
	ok, bad := 0, 0
	for {
		err := c.check(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			ok, bad = ok+1, 0
			if !c.server.Healthy() && ok >= c.cfg.Rise {
				c.server.SetHealthy(true)
				c.log.Info().Str("backend", c.pool).Str("server", c.server.Address).
					Int("rise", c.cfg.Rise).Msg("server up")
			}
		} else {
			ok, bad = 0, bad+1
			if c.server.Healthy() && bad >= c.cfg.Fall {
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
func startHealthChecks(ctx context.Context, pools map[string]*Pool, log zerolog.Logger) {
	for _, p := range pools {
		if p.health.Type == "none" {
			continue
		}
		for _, s := range p.Servers {
			c := &checker{pool: p.Name, server: s, cfg: p.health, log: log}
			go c.run(ctx)
		}
	}
}
