package edge

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tlsedge/tlsedge/affinity"
)

// clCall is one run of a test check: its server, the pool whose settings
// it ran with, the loop's ctx and the checks its loop ran so far.
type clCall struct {
	srv  *affinity.Server
	pool *Pool
	ctx  context.Context
	n    int
}

// clLoops returns test loops whose check sends a clCall on calls (a check
// of a pool with health.type none is off) and whose off hook appends the
// server to *offs. A check panics instead while panics > 0 (one per check).
func clLoops(log *zerolog.Logger, calls chan<- clCall, offs *[]*affinity.Server, panics *int) *checkLoops[int] {
	return &checkLoops[int]{name: "test check", log: log,
		enabled:  func(p *Pool) bool { return p.health.Type != "none" },
		interval: func(*Pool) time.Duration { return time.Millisecond },
		once: func(ctx context.Context, p *Pool, l *checkLoop[int]) {
			l.own++ // the loop's own state: touched by its goroutine only
			if *panics > 0 {
				*panics--
				panic("boom")
			}
			select {
			case calls <- clCall{srv: l.st.srv, pool: p, ctx: ctx, n: l.own}:
			case <-ctx.Done():
			}
		},
		off: func(l *checkLoop[int]) { *offs = append(*offs, l.st.srv) },
	}
}

// clPool is a pool of servers (their states from states) with the check
// on or off.
func clPool(on bool, states map[*affinity.Server]*serverState, servers ...*affinity.Server) *Pool {
	p := &Pool{Name: "b", Servers: servers, states: states}
	p.health.Type = "none"
	if on {
		p.health.Type = "tcp"
	}
	return p
}

// clWait reads calls until one of srv ran with pool p, for at most 10s;
// it returns that call.
func clWait(t *testing.T, calls <-chan clCall, srv *affinity.Server, p *Pool) clCall {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case c := <-calls:
			if c.srv == srv && c.pool == p {
				return c
			}
		case <-deadline:
			t.Fatalf("waited 10s for a check of %s with its new pool", srv.Address)
		}
	}
}

// The loops' life: a loop per server of the pools with the check on, none
// for a pool with it off; a reload hands the same loop the new pool; a
// server whose pool turns the check off has its loop stopped and its
// effect undone (off), one removed from the config only stopped; stop
// stops all and undoes nothing.
func TestCheckLoopsLifecycle(t *testing.T) {
	t.Parallel()
	a, b, c := affinity.NewServer("127.0.0.1:1", 1), affinity.NewServer("127.0.0.1:2", 1), affinity.NewServer("127.0.0.1:3", 1)
	states := map[*affinity.Server]*serverState{}
	for _, s := range []*affinity.Server{a, b, c} {
		states[s] = newServerState(s, 1)
	}
	calls := make(chan clCall)
	var offs []*affinity.Server
	log, panics := zerolog.Nop(), 0
	cl := clLoops(&log, calls, &offs, &panics)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	t.Cleanup(cl.stop) // runs first: stops the loops still running

	p1 := clPool(true, states, a, b)
	cl.update(ctx, map[string]*Pool{"b": p1, "c": clPool(false, states, c)})
	firstA := clWait(t, calls, a, p1)
	clWait(t, calls, b, p1)
	if len(cl.loops) != 2 || cl.loops[c] != nil {
		t.Fatalf("loops for %d servers, one for c: %v; want 2, none for c (its check is off)", len(cl.loops), cl.loops[c] != nil)
	}

	loopA := cl.loops[a]
	p2 := clPool(true, states, a, b) // a reload: new pool, same servers
	cl.update(ctx, map[string]*Pool{"b": p2, "c": clPool(false, states, c)})
	reloadedA := clWait(t, calls, a, p2)
	lastB := clWait(t, calls, b, p2)
	if cl.loops[a] != loopA || reloadedA.n <= firstA.n {
		t.Fatalf("a reload: same loop %v, checks counted %d then %d; want the same loop and its count going on",
			cl.loops[a] == loopA, firstA.n, reloadedA.n)
	}

	p3 := clPool(true, states, a)
	cl.update(ctx, map[string]*Pool{"b": p3, "c": clPool(false, states, b, c)}) // b's check turned off
	if lastB.ctx.Err() == nil || cl.loops[b] != nil {
		t.Fatalf("b's check turned off: its loop's ctx error %v, still listed %v; want cancelled, gone", lastB.ctx.Err(), cl.loops[b] != nil)
	}
	if !slices.Equal(offs, []*affinity.Server{b}) {
		t.Fatalf("off ran for %d servers; want once, for b", len(offs))
	}
	lastA := clWait(t, calls, a, p3)

	cl.update(ctx, map[string]*Pool{"c": clPool(false, states, c)}) // a leaves the config
	if lastA.ctx.Err() == nil || len(cl.loops) != 0 {
		t.Fatalf("a removed: its loop's ctx error %v, %d loops; want cancelled, none", lastA.ctx.Err(), len(cl.loops))
	}
	if len(offs) != 1 {
		t.Fatalf("off ran for %d servers; want only b's (a left the config: nothing to undo)", len(offs))
	}

	p4 := clPool(true, states, a, c)
	cl.update(ctx, map[string]*Pool{"b": p4})
	lastA, lastC := clWait(t, calls, a, p4), clWait(t, calls, c, p4)
	if cl.loops[a] == loopA || lastA.n != 1 {
		t.Fatalf("a back in the config: old loop %v, its first check counted %d; want a new loop counting from 1", cl.loops[a] == loopA, lastA.n)
	}
	cl.stop()
	if lastA.ctx.Err() == nil || lastC.ctx.Err() == nil || len(cl.loops) != 0 || len(offs) != 1 {
		t.Fatalf("stop: ctx errors %v, %v, %d loops, off ran %d times; want both cancelled, none, once (b's earlier)",
			lastA.ctx.Err(), lastC.ctx.Err(), len(cl.loops), len(offs))
	}
}

// A panic in a check is logged once per panic, with the kind, backend,
// server and stack, and the checks of that server go on.
func TestCheckLoopsPanicLogged(t *testing.T) {
	t.Parallel()
	s := affinity.NewServer("127.0.0.1:1", 1)
	states := map[*affinity.Server]*serverState{s: newServerState(s, 1)}
	var out lockedBuffer
	log := zerolog.New(&out)
	calls := make(chan clCall)
	var offs []*affinity.Server
	panics := 2
	cl := clLoops(&log, calls, &offs, &panics)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	t.Cleanup(cl.stop)

	p := clPool(true, states, s)
	cl.update(ctx, map[string]*Pool{"b": p})
	call := clWait(t, calls, s, p) // after two panics: the loop went on
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d log lines %q; want 2, one per panic", len(lines), lines)
	}
	for _, l := range lines {
		for _, want := range []string{`"level":"error"`, `"message":"test check crashed"`, `"backend":"b"`,
			`"server":"127.0.0.1:1"`, `"panic":"boom"`, `"stack":`, `checkloop.go`} {
			if !strings.Contains(l, want) {
				t.Errorf("crash line %s; want %s in it", l, want)
			}
		}
	}
	if call.n != 3 {
		t.Errorf("the first check that answered is check %d; want 3 (two panics before it)", call.n)
	}
}
