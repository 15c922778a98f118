package e2e

import (
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Issue 6: "On-demand: an allowed name under the wildcard gets a
// certificate at its first handshake; a name outside the pattern or
// refused by the ask URL gets none; a burst of 50 unknown-but-allowed
// names places at most the rate limit's worth of orders."
// Rate limit: 3 orders per 10 minutes; the first allowed name uses one,
// so the burst may place 2 at most.
func TestAcmeOnDemandAskAndRateLimit(t *testing.T) {
	t.Parallel()
	p := acmeStartPebble(t, acmePebbleOpts{alwaysValid: true})
	var asked atomic.Int64
	askLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveHTTP(t, "ask server", &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		if strings.HasPrefix(r.URL.Query().Get("domain"), "deny") {
			http.Error(w, "not a customer", http.StatusForbidden)
			return
		}
		w.WriteHeader(http.StatusOK)
	})}, askLn)
	acme := cfgMap{"on_demand": true, "ask": "http://" + askLn.Addr().String() + "/allowed",
		"on_demand_orders": 3, "on_demand_interval": "10m"}
	cfg := acmeEdgeConfig(t, p, filepath.Join(t.TempDir(), "store"), acme, acmeRoute("on_demand", "*.od.example.com"))
	e := runEdge(t, cfg)
	roots := p.rootPool(t)

	// Allowed: a certificate for exactly the name, at the first handshakes.
	const allowed = "shop1.od.example.com"
	leaf := acmeWaitCert(t, e.addr, allowed, roots, acmeWait)
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != allowed {
		t.Errorf("on-demand certificate names %v; want [%s]", leaf.DNSNames, allowed)
	}
	if n := p.issued(); n != 1 {
		t.Fatalf("pebble issued %d certificates after the first name; want 1", n)
	}

	// Refused by the ask URL: no certificate, the reason logged.
	if _, err := acmeHandshake(e.addr, "deny1.od.example.com", roots); err == nil {
		t.Errorf("deny1.od.example.com got a certificate; want a failed handshake (ask answered 403)")
	}
	e.waitLog(t, "the ask refusal logged", func(l logLine) bool {
		return l.msg() == "on-demand certificate refused" && l.str("sni") == "deny1.od.example.com" &&
			strings.Contains(l.str("error"), "refused by the ask URL") && strings.Contains(l.str("error"), "status 403")
	})
	// Outside the pattern (two labels under it): no route, no order.
	if _, err := acmeHandshake(e.addr, "a.b.od.example.com", roots); err == nil {
		t.Errorf("a.b.od.example.com got a certificate; want none (not matched by *.od.example.com)")
	}
	askedBefore := asked.Load()

	// A burst of 50 unknown names the ask URL allows.
	var wg sync.WaitGroup
	var ok atomic.Int64
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := acmeHandshake(e.addr, "burst"+strconv.Itoa(i)+".od.example.com", roots); err == nil {
				ok.Add(1)
			}
		}()
	}
	if !waitBounded(wg.Wait) {
		t.Fatalf("the burst's handshakes did not end within %v", waitLong)
	}
	// Refusals are logged at most 10 times a minute (one was the ask's).
	limited := e.findLogs(func(l logLine) bool {
		return l.msg() == "on-demand certificate refused" && strings.Contains(l.str("error"), "rate limit of orders reached")
	})
	if len(limited) == 0 || len(limited) > 9 {
		t.Errorf("%d refusals by the rate limit logged; want 1 to 9 (throttled: 10 lines a minute)", len(limited))
	}
	if n := ok.Load(); n > 2 {
		t.Errorf("%d burst names got a certificate; want at most 2 (3 orders per 10m, one used)", n)
	}
	if n := p.issued(); n > 3 {
		t.Errorf("pebble issued %d certificates; want at most 3 (the rate limit)", n)
	}
	if got := asked.Load() - askedBefore; got < 50 {
		t.Errorf("the ask URL was asked %d times during the burst; want 50 (asked before the rate limit)", got)
	}
}
