package e2e

import (
	"crypto/tls"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// opsConfig is a passthrough route to one mTLS echo server, with the
// admin API on; mod changes it before it is written.
func opsConfig(t *testing.T, mod func(cfg cfgMap)) (*edgeProc, *adminClient) {
	t.Helper()
	b := startBackend(t, "ops-1")
	cfg := cfgMap{
		"log":       cfgMap{"level": "info", "format": "json", "access": true},
		"listeners": []any{cfgMap{"name": "public", "address": "", "routes": []any{cfgMap{"sni": []any{"*"}, "backend": "pool"}}}},
		"backends":  []any{cfgMap{"name": "pool", "servers": servers(b.Addr()), "health": cfgMap{"type": "none"}}},
	}
	addr := withAdmin(t, cfg)
	if mod != nil {
		mod(cfg)
	}
	return runEdge(t, cfg), newAdmin(t, addr)
}

// Issue, admin: "GET /healthz (process alive), GET /readyz (config loaded
// and every listener bound; 503 while starting or shutting down, so an L4
// balancer in front stops sending before the drain)". shutdown.delay keeps
// the listener serving while /readyz already says 503.
func TestReadyzAndShutdownDelay(t *testing.T) {
	t.Parallel()
	e, admin := opsConfig(t, func(cfg cfgMap) { cfg["shutdown"] = cfgMap{"delay": "3s", "grace": "2s"} })
	var body map[string]string
	if st := admin.get("/healthz", &body); st != http.StatusOK {
		t.Errorf("GET /healthz: %d %v; want 200", st, body)
	}
	if st := admin.get("/readyz", &body); st != http.StatusOK || body["status"] != "ready" {
		t.Errorf("GET /readyz: %d %v; want 200 ready", st, body)
	}
	held := mustDial(t, e.addr, clientOpts{SNI: "a.example.com"})

	e.stopped.Store(true) // this test stops it
	e.signal(syscall.SIGTERM)
	if !poll(waitLong, func() bool { return admin.get("/readyz", &body) == http.StatusServiceUnavailable }) {
		t.Fatalf("GET /readyz after SIGTERM: still %v; want 503", body)
	}
	// Still serving during the delay: a new connection works, and so does
	// the one held.
	if name := oneShot(t, e.addr, clientOpts{SNI: "a.example.com"}); name != "ops-1" {
		t.Errorf("during shutdown.delay a new connection reached %q; want ops-1", name)
	}
	if err := held.echo("still here\n"); err != nil {
		t.Errorf("held connection during shutdown.delay: %v", err)
	}
	select {
	case <-e.done:
	case <-time.After(20 * time.Second):
		t.Fatal("tlsedge did not exit within 20 s of SIGTERM (delay 3s, grace 2s)")
	}
	if e.exitErr != nil || strings.Contains(e.stderr.String(), "WARNING: DATA RACE") {
		t.Errorf("exit: %v; want a clean exit\n%s", e.exitErr, e.stderr.String())
	}
	l := e.waitLog(t, "shutting down line", func(l logLine) bool { return l.msg() == "shutting down" })
	if l.str("delay") == "" && l["delay"] == nil {
		t.Errorf("shutting down line %v: want the delay", l)
	}
}

// Issue: "Log level and format are applied on reload."
func TestLogLevelAndFormatOnReload(t *testing.T) {
	t.Parallel()
	e, admin := opsConfig(t, nil)
	probe := func() {
		t.Helper()
		c, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	probeLine := func(l logLine) bool {
		return l.msg() == "connection" && l.str("reason") == "client closed without sending anything"
	}
	// At info, a port probe is not logged (debug only).
	probe()
	probeOK := oneShot(t, e.addr, clientOpts{SNI: "a.example.com"}) // its line comes after the probe's would
	e.waitLog(t, "access line of a real connection", func(l logLine) bool { return l.msg() == "connection" && l.str("server") != "" })
	if n := len(e.findLogs(probeLine)); n != 0 || probeOK != "ops-1" {
		t.Fatalf("at level info: %d port-probe lines; want 0", n)
	}

	cfg := loadYAML(t, e.cfgPath)
	cfg["log"] = cfgMap{"level": "debug", "format": "json", "access": true}
	rewriteConfig(t, e.cfgPath, cfg)
	if st := admin.do(http.MethodPost, "/api/v1/reload", nil, nil); st != http.StatusOK {
		t.Fatalf("reload to level debug: status %d", st)
	}
	probe()
	e.waitLog(t, "a port probe logged at debug after the reload", func(l logLine) bool {
		return probeLine(l) && l.str("level") == "debug"
	})

	cfg["log"] = cfgMap{"level": "info", "format": "console", "access": true}
	rewriteConfig(t, e.cfgPath, cfg)
	if st := admin.do(http.MethodPost, "/api/v1/reload", nil, nil); st != http.StatusOK {
		t.Fatalf("reload to format console: status %d", st)
	}
	oneShot(t, e.addr, clientOpts{SNI: "a.example.com"})
	if !poll(waitLong, func() bool {
		for _, line := range strings.Split(e.stderr.String(), "\n") {
			if strings.Contains(line, "INF") && strings.Contains(line, "connection") && !strings.HasPrefix(line, "{") {
				return true
			}
		}
		return false
	}) {
		t.Fatalf("after the reload to format console, no console access line:\n%s", e.stderr.String())
	}
}

// Admin config changes apply on reload: the endpoint moves to the new
// address, the old one stops answering.
func TestAdminMovesOnReload(t *testing.T) {
	t.Parallel()
	e, admin := opsConfig(t, nil)
	cfg := loadYAML(t, e.cfgPath)
	next := freeAddr(t)
	cfg["admin"] = cfgMap{"address": next}
	rewriteConfig(t, e.cfgPath, cfg)
	var sum struct {
		Changed bool `json:"changed"`
	}
	if st := admin.do(http.MethodPost, "/api/v1/reload", nil, &sum); st != http.StatusOK || !sum.Changed {
		t.Fatalf("reload moving the admin endpoint: status %d %+v; want 200, changed", st, sum)
	}
	moved := newAdmin(t, next)
	var body map[string]string
	if !poll(waitLong, func() bool { return moved.get("/readyz", &body) == http.StatusOK }) {
		t.Fatalf("the admin endpoint does not answer on its new address %s", next)
	}
	old := strings.TrimPrefix(admin.base, "http://")
	if !poll(waitLong, func() bool {
		c, err := net.DialTimeout("tcp", old, time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	}) {
		t.Errorf("the old admin address %s still accepts after the reload moved it", old)
	}
}

// Admin config changes apply on reload at the same address too: turning
// TLS on keeps the port (no "address already in use") and serves HTTPS.
func TestAdminTLSOnSameAddress(t *testing.T) {
	t.Parallel()
	e, admin := opsConfig(t, nil)
	addr := strings.TrimPrefix(admin.base, "http://")
	cert, key := adminServerCert(t)
	cfg := loadYAML(t, e.cfgPath)
	cfg["admin"] = cfgMap{"address": addr, "tls": cfgMap{"cert": cert, "key": key}}
	rewriteConfig(t, e.cfgPath, cfg)
	var sum struct {
		Changed bool `json:"changed"`
	}
	if st := admin.do(http.MethodPost, "/api/v1/reload", nil, &sum); st != http.StatusOK || !sum.Changed {
		t.Fatalf("reload turning admin TLS on at the same address: status %d %+v; want 200", st, sum)
	}
	hc := &http.Client{Timeout: waitLong, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: thePKI.serverCA.Pool(), ServerName: "localhost"}}}
	var resp *http.Response
	if !poll(waitLong, func() bool {
		var err error
		resp, err = hc.Get("https://" + addr + "/readyz")
		return err == nil
	}) {
		t.Fatalf("the admin endpoint does not answer HTTPS on %s after the reload", addr)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET https://%s/readyz: %d; want 200", addr, resp.StatusCode)
	}
	// A new plain HTTP connection gets net/http's "client sent an HTTP
	// request to an HTTPS server" 400, never the API (a keep-alive
	// connection opened before the reload stays as it was).
	plain := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	if r, err := plain.Get("http://" + addr + "/readyz"); err == nil {
		r.Body.Close()
		if r.StatusCode == http.StatusOK {
			t.Errorf("plain HTTP still served /readyz on %s after TLS was turned on", addr)
		}
	}
}
