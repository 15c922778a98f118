package e2e

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/certs"
)

// Passive ejection of servers of protocol http routes by what fails on
// real traffic besides their own 5xx answers: TLS handshakes to them
// (reencrypt) and requests they drop without an answer (tlsedge's 502).

// ohGet sends one GET for api.example.com through tlsedge at addr and
// returns the status.
func ohGet(t *testing.T, client *http.Client, addr string) int {
	t.Helper()
	return ohGetHost(t, client, addr, "api.example.com")
}

// ohGetHost is ohGet for host (the client's TLS config names it too).
func ohGetHost(t *testing.T, client *http.Client, addr, host string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", "https://"+addr+"/oh", nil)
	req.Host = host
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// ohClient is a new HTTP/1.1 client of tlsedge's route api.example.com (no
// keep-alive, so each request is a new connection to tlsedge; tlsedge's own
// connections to the servers are its business).
func ohClient() *http.Client { return ohClientFor("api.example.com") }

// ohClientFor is ohClient for the server name name.
func ohClientFor(name string) *http.Client {
	return &http.Client{Timeout: waitLong, Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{ServerName: name, RootCAs: thePKI.serverCA.Pool()}}}
}

// ohCfg is a terminate or reencrypt http route api.example.com to backend
// with the given servers and outlier settings, retries 0, no health checks.
func ohCfg(t *testing.T, mode string, outlier cfgMap, backendTLS cfgMap, addrs ...string) cfgMap {
	t.Helper()
	srv, err := thePKI.serverCert("oh")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := srv.WriteFiles(t.TempDir(), "oh")
	if err != nil {
		t.Fatal(err)
	}
	var servers []any
	for _, a := range addrs {
		servers = append(servers, cfgMap{"address": a})
	}
	b := cfgMap{"name": "oh", "balance": "roundrobin", "health": cfgMap{"type": "none"}, "outlier": outlier,
		"servers": servers, "retries": 0}
	if backendTLS != nil {
		b["tls"] = backendTLS
	}
	return cfgMap{
		"log": cfgMap{"level": "info", "format": "json", "access": true},
		"listeners": []any{cfgMap{"name": "public", "address": "127.0.0.1:0", "routes": []any{
			cfgMap{"sni": []any{"api.example.com"}, "mode": mode, "protocol": "http",
				"tls": cfgMap{"cert": certFile, "key": keyFile}, "backend": "oh"},
		}}},
		"backends": []any{b},
	}
}

// A reencrypt http route: a server whose TLS handshake always fails (it
// resets after the ClientHello) is ejected after consecutive_failures,
// reason tls, and gets no connection while ejected. Before, the TCP
// connect that worked reset the count before each TLS failure, so such a
// server was never ejected.
func TestOutlierEjectHTTPReencryptTLS(t *testing.T) {
	t.Parallel()
	leaf, err := thePKI.serverCert("oh-good")
	if err != nil {
		t.Fatal(err)
	}
	good := startHTTPSBackend(t, "oh-good", leaf.TLS, thePKI.clientCA.Pool())
	bad := agStartResetter(t)
	cfg := ohCfg(t, "reencrypt", cfgMap{"consecutive_failures": 3, "base_ejection_time": "10m", "max_ejection_percent": 50},
		hcCheckTLS(), good.Addr(), bad.addr)
	adminAddr := withAdmin(t, cfg)
	e := runEdge(t, cfg)
	admin := newAdmin(t, adminAddr)
	client := ohClient()
	for i := 0; bad.n.Load() < 3; i++ {
		if i == 30 {
			t.Fatalf("30 requests, the failing server saw %d connections; want 3", bad.n.Load())
		}
		ohGet(t, client, e.addr)
	}
	l := e.waitLog(t, "the failing server's ejection", agIsEjection(bad.addr))
	if l.str("reason") != "tls" || l["consecutive"] != float64(3) {
		t.Errorf("ejection log %v; want reason tls, consecutive 3", l)
	}
	if v := admin.metrics().value("tlsedge_server_ejections_total", map[string]string{"backend": "oh", "server": bad.addr, "reason": "tls"}); v != 1 {
		t.Errorf("tlsedge_server_ejections_total{reason=tls} = %v; want 1", v)
	}
	before := bad.n.Load()
	for i := range 10 {
		if code := ohGet(t, client, e.addr); code != http.StatusOK {
			t.Errorf("request %d while the failing server is ejected: %d; want 200 from the other", i, code)
		}
	}
	if n := bad.n.Load() - before; n != 0 {
		t.Errorf("the ejected server got %d connections during 10 requests; want 0", n)
	}
}

// A terminate http route: a server that reads each request and closes the
// connection without an answer makes tlsedge answer 502; with
// consecutive_5xx those count as the server's 5xx, and it is ejected
// (reason 5xx) after 3.
func TestOutlierEjectHTTPDropped(t *testing.T) {
	t.Parallel()
	good := startHTTPBackend(t, "oh-good")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var hits atomic.Int64
	g := newConnGroup(t, "dropper")
	g.serve(ln, func(c net.Conn) {
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(waitLong))
		if _, err := c.Read(make([]byte, 4096)); err == nil {
			hits.Add(1) // a request came: drop it unanswered
		}
	})
	t.Cleanup(g.stop)
	cfg := ohCfg(t, "terminate", cfgMap{"consecutive_5xx": 3, "consecutive_failures": 0, "base_ejection_time": "10m", "max_ejection_percent": 50},
		nil, good.Addr(), ln.Addr().String())
	e := runEdge(t, cfg)
	client := ohClient()
	bad502 := 0
	for i := 0; hits.Load() < 3; i++ {
		if i == 30 {
			t.Fatalf("30 requests, the dropping server got %d; want 3", hits.Load())
		}
		if ohGet(t, client, e.addr) == http.StatusBadGateway {
			bad502++
		}
	}
	if bad502 != 3 {
		t.Errorf("%d answers 502; want 3 (one per dropped request)", bad502)
	}
	l := e.waitLog(t, "the dropping server's ejection", agIsEjection(ln.Addr().String()))
	if l.str("reason") != "5xx" {
		t.Errorf("ejection log %v; want reason 5xx", l)
	}
	before := hits.Load()
	for i := range 10 {
		if code := ohGet(t, client, e.addr); code != http.StatusOK {
			t.Errorf("request %d while the dropping server is ejected: %d; want 200", i, code)
		}
	}
	if n := hits.Load() - before; n != 0 {
		t.Errorf("the ejected server got %d of 10 requests; want 0", n)
	}
}

// On a reencrypt route without server_name, tlsedge verifies a server
// against the name the client asked for. A client asking for a name the
// route matches but the servers' certificate does not cover gets 502, and
// that is not counted against the servers: no client can get healthy
// servers ejected by choosing its SNI.
func TestOutlierClientNameNotServerFault(t *testing.T) {
	t.Parallel()
	leaf := pkMint(t).issue(thePKI.serverCA, certs.Leaf{CommonName: "only api", DNSNames: []string{"api.example.com"}, Server: true})
	good := startHTTPSBackend(t, "oh-name", leaf.TLS, thePKI.clientCA.Pool())
	good2 := startHTTPSBackend(t, "oh-name2", leaf.TLS, thePKI.clientCA.Pool())
	cfg := ohCfg(t, "reencrypt", cfgMap{"consecutive_failures": 2, "base_ejection_time": "10m", "max_ejection_percent": 50},
		hcCheckTLS(), good.Addr(), good2.Addr())
	listenerCfg(t, cfg, 0)["routes"].([]any)[0].(cfgMap)["sni"] = []any{"*.example.com"}
	e := runEdge(t, cfg)
	other := ohClientFor("other.example.com")
	for i := range 6 {
		if code := ohGetHost(t, other, e.addr, "other.example.com"); code != http.StatusBadGateway {
			t.Fatalf("request %d for other.example.com: %d; want 502 (the server's certificate does not cover it)", i, code)
		}
	}
	for i := range 4 {
		if code := ohGet(t, ohClient(), e.addr); code != http.StatusOK {
			t.Errorf("api.example.com request %d after 6 refused names: %d; want 200", i, code)
		}
	}
	if ej := e.findLogs(func(l logLine) bool { return l.msg() == "server ejected (passive: failures on real traffic)" }); len(ej) != 0 {
		t.Errorf("ejections %v; want none (3 failures each, for the client's name)", ej)
	}
}

// A server that refuses names it does not serve with a TLS alert (as
// Caddy, nginx's ssl_reject_handshake or HAProxy's strict-sni do) is not
// ejected for the names clients choose on a wildcard route either.
func TestOutlierStrictSNIServerNotEjected(t *testing.T) {
	t.Parallel()
	leaf := pkMint(t).issue(thePKI.serverCA, certs.Leaf{CommonName: "only api", DNSNames: []string{"api.example.com"}, Server: true})
	strict := func(name string) *httpBackend {
		return newHTTPBackend(t, name, &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"},
			ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: thePKI.clientCA.Pool(),
			GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
				if h.ServerName != "api.example.com" {
					return nil, errors.New("no certificate for this name")
				}
				return &leaf.TLS, nil
			}})
	}
	a, b := strict("oh-strict-a"), strict("oh-strict-b")
	cfg := ohCfg(t, "reencrypt", cfgMap{"consecutive_failures": 2, "base_ejection_time": "10m", "max_ejection_percent": 50},
		hcCheckTLS(), a.Addr(), b.Addr())
	listenerCfg(t, cfg, 0)["routes"].([]any)[0].(cfgMap)["sni"] = []any{"*.example.com"}
	e := runEdge(t, cfg)
	other := ohClientFor("other.example.com")
	for i := range 6 {
		if code := ohGetHost(t, other, e.addr, "other.example.com"); code != http.StatusBadGateway {
			t.Fatalf("request %d for other.example.com: %d; want 502 (the server refuses the name)", i, code)
		}
	}
	if ej := e.findLogs(func(l logLine) bool { return l.msg() == "server ejected (passive: failures on real traffic)" }); len(ej) != 0 {
		t.Errorf("ejections %v; want none (the client chose the name)", ej)
	}
}

// On a route whose only name is exact, the client chose nothing: a server
// presenting a certificate for another name (a bad deploy) is ejected.
func TestOutlierWrongCertExactRouteEjected(t *testing.T) {
	t.Parallel()
	wrong := pkMint(t).issue(thePKI.serverCA, certs.Leaf{CommonName: "wrong", DNSNames: []string{"wrong.example.net"}, Server: true})
	right := pkMint(t).issue(thePKI.serverCA, certs.Leaf{CommonName: "api", DNSNames: []string{"api.example.com"}, Server: true})
	bad := startHTTPSBackend(t, "oh-wrong", wrong.TLS, thePKI.clientCA.Pool())
	good := startHTTPSBackend(t, "oh-right", right.TLS, thePKI.clientCA.Pool())
	cfg := ohCfg(t, "reencrypt", cfgMap{"consecutive_failures": 2, "base_ejection_time": "10m", "max_ejection_percent": 50},
		hcCheckTLS(), bad.Addr(), good.Addr())
	e := runEdge(t, cfg)
	client := ohClient()
	for i := 0; len(e.findLogs(agIsEjection(bad.Addr()))) == 0; i++ {
		if i == 20 {
			t.Fatal("20 requests and the server with the wrong certificate for the route's only name was not ejected")
		}
		ohGet(t, client, e.addr)
	}
	for i := range 6 {
		if code := ohGet(t, client, e.addr); code != http.StatusOK {
			t.Errorf("request %d once the wrong server is ejected: %d; want 200", i, code)
		}
	}
}

// One pick-and-retry loop for every protocol (tlsmode.TryServers): on an
// http route, a request whose connect failed and whose retry then waited
// in vain for a slot (max_connections_per_server) gets 503 with the queue
// timeout as its reason, as a tcp stream would, not the 502 of the connect.
func TestRetryThenQueueTimeout503(t *testing.T) {
	t.Parallel()
	silent := startSilentBackend(t)
	dead := closedAddr(t)
	cfg := ohCfg(t, "terminate", nil, nil, dead, silent.Addr())
	b := backendCfg(t, cfg, "oh")
	delete(b, "outlier")
	b["retries"], b["max_connections_per_server"], b["queue_timeout"] = 1, 1, "1s"
	asMap(t, listenerCfg(t, cfg, 0)["routes"].([]any)[0], "route")["http"] = cfgMap{"response_header_timeout": "1m"}
	cfg["shutdown"] = cfgMap{"grace": "1s"} // the held request ends with the test
	e := runEdge(t, cfg)
	// The first request takes the silent server's only slot and holds it.
	go func() {
		c := &http.Client{Timeout: time.Minute, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{ServerName: "api.example.com", RootCAs: thePKI.serverCA.Pool()}}}
		req, _ := http.NewRequest("GET", "https://"+e.addr+"/hold", nil)
		req.Host = "api.example.com"
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	if !poll(waitLong, func() bool { return silent.Accepted() == 1 }) {
		t.Fatal("the first request never reached the silent server")
	}
	if code := ohGet(t, ohClient(), e.addr); code != http.StatusServiceUnavailable {
		t.Errorf("a request with one server dead and the other at its cap: %d; want 503", code)
	}
	l := e.waitLog(t, "the 503's access line", func(l logLine) bool { return l.msg() == "request" && l["status"] == float64(503) })
	if !strings.Contains(l.str("reason"), "queue") {
		t.Errorf("the 503's reason %q; want the queue timeout", l.str("reason"))
	}
}
