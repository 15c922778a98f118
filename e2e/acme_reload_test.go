package e2e

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Reloads and ACME (review findings 1, 2, 3): a refused reload changes
// nothing, a change of certs.acme with http-01 is put in force, and a
// TLS-ALPN-01 hello is answered only for names the listener routes to an
// ACME route.

// acmefixAskAll starts an ask server that allows every name; its URL.
func acmefixAskAll(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveHTTP(t, "ask server", &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
	})}, ln)
	return "http://" + ln.Addr().String() + "/allowed"
}

// A reload that changes on_demand_orders and adds a listener on a taken
// port is refused; the running config's on-demand issuance goes on: a new
// name gets its certificate, no order is refused by the rate limit.
// (Before: the refused build had replaced the ACME state and stopped the
// rate limiter of the routes in force: every new name was refused.)
func TestAcmefixRefusedReloadKeepsOnDemand(t *testing.T) {
	t.Parallel()
	p := acmeStartPebble(t, acmePebbleOpts{alwaysValid: true})
	acme := cfgMap{"on_demand": true, "ask": acmefixAskAll(t), "on_demand_orders": 5, "on_demand_interval": "10m"}
	cfg := acmeEdgeConfig(t, p, filepath.Join(t.TempDir(), "store"), acme, acmeRoute("on_demand", "*.od.example.com"))
	e := runEdge(t, cfg)
	roots := p.rootPool(t)
	acmeWaitCert(t, e.addr, "first.od.example.com", roots, acmeWait)

	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { taken.Close() })
	next := acmeEdgeConfig(t, p, filepath.Join(t.TempDir(), "store"), cfgMap{"on_demand": true, "ask": acme["ask"],
		"on_demand_orders": 6, "on_demand_interval": "10m"}, acmeRoute("on_demand", "*.od.example.com"))
	next["certs"] = cfg["certs"]
	asMap(t, next["certs"], "certs")["acme"].(cfgMap)["on_demand_orders"] = 6
	listenerCfg(t, next, 0)["address"] = e.addr
	next["listeners"] = append(next["listeners"].([]any), cfgMap{"name": "second", "address": taken.Addr().String(),
		"routes": []any{acmeRoute("on_demand", "*.two.example.com")}})
	next["backends"] = cfg["backends"]
	rewriteConfig(t, e.cfgPath, next)
	e.signal(syscall.SIGHUP)
	e.waitLog(t, "the reload refused (address in use)", func(l logLine) bool {
		return strings.HasPrefix(l.msg(), "reload refused") && strings.Contains(l.str("error"), "address already in use")
	})

	leaf := acmeWaitCert(t, e.addr, "second.od.example.com", roots, acmeWait)
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "second.od.example.com" {
		t.Errorf("certificate names %v; want [second.od.example.com]", leaf.DNSNames)
	}
	if got := e.findLogs(func(l logLine) bool {
		return strings.Contains(l.str("error"), "rate limit of orders reached")
	}); len(got) != 0 {
		t.Errorf("%d on-demand orders refused by the rate limit after the refused reload; want 0: %v", len(got), got[0])
	}
}

// With http-01, a reload that changes certs.acme (the email) and adds an
// acme: true name is put in force (before: "bind: address already in
// use" until a restart); the http-01 listener keeps answering and the new
// name gets its certificate.
func TestAcmefixHTTP01ReloadChangesACME(t *testing.T) {
	t.Parallel()
	p := acmeStartPebble(t, acmePebbleOpts{alwaysValid: true})
	httpAddr := freeAddr(t)
	acme := cfgMap{"challenges": []any{"http-01"}, "http_address": httpAddr}
	cfg := acmeEdgeConfig(t, p, filepath.Join(t.TempDir(), "store"), acme, acmeRoute(true, "one.example.com"))
	e := runEdge(t, cfg)
	roots := p.rootPool(t)
	acmeWaitCert(t, e.addr, "one.example.com", roots, acmeWait)

	asMap(t, asMap(t, cfg["certs"], "certs")["acme"], "certs.acme")["email"] = "other@example.com"
	listenerCfg(t, cfg, 0)["routes"] = []any{acmeRoute(true, "one.example.com", "two.example.com")}
	reloadTLSEdge(t, e, cfg)
	if got := e.findLogs(func(l logLine) bool { return strings.HasPrefix(l.msg(), "reload refused") }); len(got) != 0 {
		t.Fatalf("reload refused: %v", got[0])
	}
	acmeWaitCert(t, e.addr, "two.example.com", roots, acmeWait)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + httpAddr + "/.well-known/acme-challenge/acmefix-none")
	if err != nil {
		t.Fatalf("http-01 listener after the reload: %v; want it answering", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("http-01 listener after the reload: status %d; want 404 (no such token)", resp.StatusCode)
	}
}

// An acme-tls/1 hello for a name the listener routes to a passthrough
// route (an exact name inside an on-demand wildcard) reaches that route's
// backend, which answers its own validation; one for a name the on-demand
// route gets is tlsedge's (not passed through). No CA is contacted.
func TestAcmefixPassthroughKeepsItsValidations(t *testing.T) {
	t.Parallel()
	leaf, err := thePKI.serverCert("legacy.od.example.com")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{leaf.TLS}, NextProtos: []string{"acme-tls/1"}})
	if err != nil {
		t.Fatal(err)
	}
	var reached atomic.Int64
	g := newConnGroup(t, "passthrough ACME backend")
	g.serve(ln, func(c net.Conn) {
		reached.Add(1)
		_ = c.SetDeadline(time.Now().Add(waitLong))
		_ = c.(*tls.Conn).Handshake()
	})
	t.Cleanup(g.stop)
	cfg := cfgMap{
		"log": cfgMap{"level": "info", "failure_burst": 0},
		"certs": cfgMap{"storage": filepath.Join(t.TempDir(), "store"), "acme": cfgMap{"email": "ops@example.com",
			"directory": "https://127.0.0.1:9/directory", "on_demand": true, "ask": "http://127.0.0.1:9/ask"}},
		"listeners": []any{cfgMap{"name": "public", "address": "127.0.0.1:1", "routes": []any{
			acmeRoute("on_demand", "*.od.example.com"),
			cfgMap{"sni": []any{"legacy.od.example.com"}, "mode": "passthrough", "backend": "legacy"},
		}}},
		"backends": []any{
			cfgMap{"name": "echo", "servers": []any{cfgMap{"address": acmeEcho(t)}}, "health": cfgMap{"type": "none"}},
			cfgMap{"name": "legacy", "servers": []any{cfgMap{"address": ln.Addr().String()}}, "health": cfgMap{"type": "none"}},
		},
	}
	e := runEdge(t, cfg)
	validation := func(name string) (*tls.ConnectionState, error) {
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		defer cancel()
		c, err := (&tls.Dialer{Config: &tls.Config{ServerName: name, NextProtos: []string{"acme-tls/1"}, InsecureSkipVerify: true}}).DialContext(ctx, "tcp", e.addr)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		st := c.(*tls.Conn).ConnectionState()
		return &st, nil
	}
	st, err := validation("legacy.od.example.com")
	if err != nil {
		t.Fatalf("acme-tls/1 hello for the passthrough name: %v; want the backend's handshake", err)
	}
	if got := st.PeerCertificates[0].Subject.CommonName; got != "backend legacy.od.example.com" || st.NegotiatedProtocol != "acme-tls/1" {
		t.Errorf("acme-tls/1 hello for the passthrough name: certificate %q, ALPN %q; want the backend's (backend legacy.od.example.com, acme-tls/1)", got, st.NegotiatedProtocol)
	}
	if _, err := validation("shop.od.example.com"); err == nil {
		t.Error("acme-tls/1 hello for an on-demand name with no validation in progress: handshake succeeded; want it failed by tlsedge")
	}
	if n := reached.Load(); n != 1 {
		t.Errorf("the passthrough backend saw %d connections; want 1 (the on-demand name's hello is tlsedge's)", n)
	}
}
