package edge

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tlsedge/tlsedge/affinity"
)

// A server that refuses connections goes down after `fall` checks and comes
// back after `rise` good ones once it listens again.
func TestCheckerDownAndUp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	go acceptAndClose(ln)

	s := affinity.NewServer(addr, 1)
	c := &checker{pool: "b", server: s, log: zerolog.Nop(),
		cfg: HealthCheckConfig{Type: "tcp", Interval: 20 * time.Millisecond, Timeout: 200 * time.Millisecond, Rise: 2, Fall: 2}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.run(ctx)

	ln.Close()
	waitFor(t, "server down", func() bool { return !s.Healthy() })

	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listening again on %s: %v", addr, err)
	}
	defer ln.Close()
	go acceptAndClose(ln)
	waitFor(t, "server up", s.Healthy)
}

func acceptAndClose(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10s for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
