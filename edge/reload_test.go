package edge

import (
	"context"
	"fmt"
	"net"
	"testing"

	"github.com/rs/zerolog"
)

// A reload that fails (here: a new listener's address is taken) changes
// nothing that runs: not the routes, not the servers' weights or health.
func TestReloadRefusedChangesNothing(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cfg1, err := LoadFile(writeConfig(t, "edge.yaml", `
listeners:
  - name: a
    address: "127.0.0.1:0"
    routes: [{sni: ["*"], backend: b}]
backends:
  - name: b
    health: {type: tcp, interval: 1h}
    servers: [{address: "127.0.0.1:9001", weight: 3}]
`))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e := New(ctx, zerolog.Nop())
	if err := e.Start(cfg1); err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown(0)
	s := e.Pools()["b"].Servers[0]
	s.SetHealthy(false)

	cfg2, err := LoadFile(writeConfig(t, "edge.yaml", fmt.Sprintf(`
listeners:
  - name: a
    address: "127.0.0.1:0"
    routes: [{sni: ["*"], backend: b}]
  - name: new
    address: "%s"
    routes: [{sni: ["*"], backend: b}]
backends:
  - name: b
    health: {type: none}
    servers: [{address: "127.0.0.1:9001", weight: 0}]
`, taken.Addr())))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Reload(cfg2); err == nil {
		t.Fatal("Reload: got nil error; want the taken address")
	}
	if e.Config() != cfg1 {
		t.Error("the refused config became the running one")
	}
	if s.Weight() != 3 || s.Healthy() {
		t.Errorf("after a refused reload: weight %d healthy %v; want 3 and still down", s.Weight(), s.Healthy())
	}
}
