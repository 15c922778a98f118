package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.yaml.in/yaml/v3"
)

// Issue, "How it must be shown": "200 long-lived connections (100
// WebSockets through terminate with mTLS, 100 raw TLS through passthrough,
// each echoing a message every 200 ms) stay up through 20 reloads by
// SIGHUP, file change and the API, including two invalid files: 0 dropped,
// 0 messages lost; new connections follow the new config."
func TestFleetSurvivesReloads(t *testing.T) {
	t.Parallel()
	const perKind = 100
	p := writeTermFiles(t)
	pass := []*backend{startBackend(t, "fleet-pass-1"), startBackend(t, "fleet-pass-2")}
	ws := []*httpBackend{startHTTPBackend(t, "fleet-ws-1"), startHTTPBackend(t, "fleet-ws-2")}
	addr, adminAddr := freeAddr(t), freeAddr(t)

	// gen is the config of generation k: it adds route gen-k.example.com;
	// an invalid one names a backend that does not exist.
	gen := func(k int, invalid bool) cfgMap {
		extra := "pass"
		if invalid {
			extra = "missing-backend"
		}
		return cfgMap{
			"admin": cfgMap{"address": adminAddr},
			"log":   cfgMap{"level": "info", "format": "json", "access": false},
			"listeners": []any{cfgMap{"name": "public", "address": addr, "routes": []any{
				cfgMap{"sni": []any{"pass.example.com"}, "mode": "passthrough", "backend": "pass"},
				termRoute(p, "ws.example.com", "terminate", "http", "ws", "require", "xfcc"),
				cfgMap{"sni": []any{fmt.Sprintf("gen-%d.example.com", k)}, "mode": "passthrough", "backend": extra},
			}}},
			"backends": []any{
				cfgMap{"name": "pass", "balance": "leastconn", "servers": servers(pass[0].Addr(), pass[1].Addr()), "health": cfgMap{"type": "none"}},
				cfgMap{"name": "ws", "balance": "leastconn", "servers": servers(ws[0].Addr(), ws[1].Addr()), "health": cfgMap{"type": "none"}},
			},
		}
	}
	path := writeConfig(t, gen(0, false))
	e := startEdge(t, path, addr, nil)
	admin := newAdmin(t, adminAddr)

	// The fleet: every connection echoes a message every 200 ms until
	// stop; any error or lost message is counted.
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var sent, echoed, failed atomic.Int64
	var mu sync.Mutex
	var errs []string
	fail := func(format string, args ...any) {
		failed.Add(1)
		mu.Lock()
		if len(errs) < 10 {
			errs = append(errs, fmt.Sprintf(format, args...))
		}
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for i := range perKind {
		c := mustDial(t, addr, clientOpts{SNI: "pass.example.com"})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; ctx.Err() == nil; k++ {
				sent.Add(1)
				if err := c.echo(fmt.Sprintf("raw %d message %d\n", i, k)); err != nil {
					fail("raw TLS %d, message %d: %v", i, k, err)
					return
				}
				echoed.Add(1)
				sleepCtx(ctx, 200*time.Millisecond)
			}
		}()
		w, _ := wsDial(t, addr, "ws.example.com", "/fleet", cliValid)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; ctx.Err() == nil; k++ {
				msg := fmt.Sprintf("ws %d message %d", i, k)
				sent.Add(1)
				wctx, cancel := context.WithTimeout(context.Background(), waitLong)
				err := w.Write(wctx, websocket.MessageText, []byte(msg))
				var got []byte
				if err == nil {
					_, got, err = w.Read(wctx)
				}
				cancel()
				if err != nil || string(got) != msg {
					fail("WebSocket %d, message %d: got %q, %v; want %q", i, k, got, err, msg)
					return
				}
				echoed.Add(1)
				sleepCtx(ctx, 200*time.Millisecond)
			}
		}()
	}

	reachable := func(k int) bool {
		c, err := dialTLS(addr, clientOpts{SNI: fmt.Sprintf("gen-%d.example.com", k), Deadline: 5 * time.Second})
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
	// outcome matches the reload outcome lines logged for trigger; a good
	// reload's line also names the hash of the file it read (a file
	// watch may still be reloading the previous generation's file).
	outcome := func(trigger, msg, hash string) func(logLine) bool {
		return func(l logLine) bool {
			return l.msg() == msg && l.str("trigger") == trigger && (hash == "" || l.str("hash") == hash)
		}
	}
	good := 0
	for k := 1; k <= 20; k++ {
		invalid := k == 7 || k == 14
		trigger := []string{"SIGHUP", "file changed", "admin API"}[k%3]
		msg := "config reloaded"
		if invalid {
			msg = "old config keeps serving"
		}
		next := gen(k, invalid)
		hash := "" // a good generation's hash is new: wait for its line
		if !invalid {
			hash = yamlHash(t, next)
		}
		before := len(e.findLogs(outcome(trigger, msg, hash)))
		rewriteConfig(t, path, next)
		switch trigger {
		case "SIGHUP":
			e.signal(syscall.SIGHUP)
		case "admin API":
			var body apiError
			st := admin.do(http.MethodPost, "/api/v1/reload", nil, &body)
			if invalid && (st != http.StatusUnprocessableEntity || len(body.Problems) == 0) {
				t.Errorf("reload %d of an invalid file by the API: status %d %+v; want 422 with the problems", k, st, body)
			}
			if !invalid && st != http.StatusOK {
				t.Errorf("reload %d by the API: status %d %+v; want 200", k, st, body)
			}
		}
		e.waitLogs(t, before+1, fmt.Sprintf("reload %d (%s): %s", k, trigger, msg), outcome(trigger, msg, hash))
		if invalid {
			// The old config keeps serving: generation k-1's route works.
			if !reachable(k-1) || reachable(k) {
				t.Errorf("after invalid reload %d: gen-%d reachable %v (want true), gen-%d reachable %v (want false)",
					k, k-1, reachable(k-1), k, reachable(k))
			}
			continue
		}
		good++
		if !reachable(k) {
			t.Errorf("after reload %d (%s): a new connection to gen-%d.example.com failed; want the new route", k, trigger, k)
		}
		if reachable(k - 1) {
			t.Errorf("after reload %d (%s): gen-%d.example.com still reachable; want its route gone", k, trigger, k-1)
		}
	}
	time.Sleep(time.Second) // a few more messages after the last reload
	stop()
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	if failed.Load() != 0 || sent.Load() != echoed.Load() {
		t.Errorf("%d connections failed, %d of %d messages echoed; want 0 failed, none lost; first errors:\n%v",
			failed.Load(), echoed.Load(), sent.Load(), errs)
	}
	if want := int64(2 * perKind * 20); echoed.Load() < want {
		t.Errorf("%d messages echoed; want at least %d (the fleet did not keep talking)", echoed.Load(), want)
	}
	if good != 18 {
		t.Errorf("%d good reloads; want 18", good)
	}
	f := admin.metrics()
	if v := f.value("tlsedge_config_reloads_total", map[string]string{"result": "refused"}); v < 2 {
		t.Errorf("tlsedge_config_reloads_total{result=refused} = %v; want at least 2", v)
	}
}

// sleepCtx sleeps d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// yamlHash is the SHA-256 (hex) of cfg as rewriteConfig writes it: what
// tlsedge logs as the hash of the file.
func yamlHash(t *testing.T, cfg cfgMap) string {
	t.Helper()
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
