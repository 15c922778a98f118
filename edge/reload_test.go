package edge

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tlsedge/tlsedge/certs"
	"github.com/tlsedge/tlsedge/tlsmode"
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

// reloadFile loads path again and reloads e with it.
func reloadFile(t *testing.T, e *Edge, path string) error {
	t.Helper()
	cfg, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return e.Reload(cfg)
}

// Session ticket keys live across reloads by TLS policy: two routes with
// the same policy share a ring, a lax route has its own; a reload that
// leaves a route's policy alone keeps its keys (clients resume right
// after it); changing the client CA file's contents makes new keys (no
// session resumes under the old CAs) and stops the old ring.
func TestReloadKeepsTicketKeys(t *testing.T) {
	dir := t.TempDir()
	ca, _ := edgeCert(t, dir, "*.example.com")
	writeFile(t, filepath.Join(dir, "ca.pem"), string(ca.PEM))
	client, err := ca.Issue(certs.Leaf{CommonName: "device-1", Client: true})
	if err != nil {
		t.Fatal(err)
	}
	other, err := certs.NewAuthority("other CA")
	if err != nil {
		t.Fatal(err)
	}
	const routes = `
listeners:
  - name: public
    address: "127.0.0.1:0"
    routes:
      - {sni: [a.example.com], mode: terminate, backend: app, tls: {cert: edge.pem, key: edge-key.pem, client_auth: require, client_ca: ca.pem}}
      - {sni: [a2.example.com], mode: terminate, backend: app, tls: {cert: edge.pem, key: edge-key.pem, client_auth: require, client_ca: ca.pem}}
      - {sni: [lax.example.com], mode: terminate, backend: app, tls: {cert: edge.pem, key: edge-key.pem}}
`
	const backends = `
backends:
  - name: app
    health: {type: none}
    servers: [{address: "127.0.0.1:1"}]
`
	path := writeConfigIn(t, dir, routes+backends)
	e := startEdge(t, path)
	addr := e.Addr("public").String()

	ringA := ringOf(e, routeTLSConfig(t, e, "public", "a.example.com"))
	ringA2 := ringOf(e, routeTLSConfig(t, e, "public", "a2.example.com"))
	ringLax := ringOf(e, routeTLSConfig(t, e, "public", "lax.example.com"))
	if ringA == nil || ringLax == nil {
		t.Fatalf("rings: a %v, lax %v; want both routes' configs in a ring", ringA, ringLax)
	}
	if ringA != ringA2 {
		t.Error("a and a2 (identical policy): separate rings; want one shared ring")
	}
	if ringA == ringLax {
		t.Error("a (require) and lax (none): one ring; want separate rings")
	}
	firstKey := ringA.encrypting()

	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		cfg := &tls.Config{ServerName: "a.example.com", RootCAs: ca.Pool(), Certificates: []tls.Certificate{client.TLS},
			ClientSessionCache: tls.NewLRUClientSessionCache(4), MinVersion: v, MaxVersion: v}
		if _, err := handshake(addr, cfg); err != nil {
			t.Fatalf("%s: %v", tls.VersionName(v), err)
		}
		if cs, err := handshake(addr, cfg); err != nil || !cs.DidResume {
			t.Fatalf("%s before any reload: resumed %v, %v; want resumed (or the test proves nothing)", tls.VersionName(v), cs.DidResume, err)
		}
	}

	// An unrelated change: a new route.
	writeConfigIn(t, dir, routes+`      - {sni: [new.example.com], backend: app}
`+backends)
	if err := reloadFile(t, e, path); err != nil {
		t.Fatal(err)
	}
	if r := ringOf(e, routeTLSConfig(t, e, "public", "a.example.com")); r != ringA || r.encrypting() != firstKey {
		t.Errorf("a's ring after an unrelated reload: same ring %v, same key %v; want both", r == ringA, r != nil && r.encrypting() == firstKey)
	}
	cfgs := map[uint16]*tls.Config{}
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		cfg := &tls.Config{ServerName: "a.example.com", RootCAs: ca.Pool(), Certificates: []tls.Certificate{client.TLS},
			ClientSessionCache: tls.NewLRUClientSessionCache(4), MinVersion: v, MaxVersion: v}
		cfgs[v] = cfg
		if _, err := handshake(addr, cfg); err != nil {
			t.Fatalf("%s: %v", tls.VersionName(v), err)
		}
	}

	// The same file name, other contents: one more CA trusted.
	writeFile(t, filepath.Join(dir, "ca.pem"), string(ca.PEM)+string(other.PEM))
	if err := reloadFile(t, e, path); err != nil {
		t.Fatal(err)
	}
	newA := ringOf(e, routeTLSConfig(t, e, "public", "a.example.com"))
	if newA == nil || newA == ringA {
		t.Errorf("a's ring after its client CA file changed: same ring %v; want a new ring", newA == ringA)
	}
	if r := ringOf(e, routeTLSConfig(t, e, "public", "a2.example.com")); r != newA {
		t.Error("a2 after the CA change: not in a's new ring; want shared (same policy again)")
	}
	if r := ringOf(e, routeTLSConfig(t, e, "public", "lax.example.com")); r != ringLax {
		t.Error("lax after a reload that did not change it: another ring; want the same")
	}
	if !waitDone(ringA.done) {
		t.Error("a's old ring: still rotating 5s after no config used it")
	}
	for v, cfg := range cfgs {
		cs, err := handshake(addr, cfg)
		if err != nil {
			t.Fatalf("%s after the CA change: %v; want a full handshake", tls.VersionName(v), err)
		}
		if cs.DidResume {
			t.Errorf("%s after the CA change: resumed; want a full handshake under the new CAs", tls.VersionName(v))
		}
	}
}

// countingServer is a plain HTTP server that counts the TCP connections it
// accepted.
type countingServer struct {
	addr  string
	conns atomic.Int64
}

func startCountingServer(t *testing.T) *countingServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &countingServer{addr: ln.Addr().String()}
	hs := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				s.conns.Add(1)
			}
		},
	}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return s
}

// keepAlive is an HTTP/1.1 client connection to one route.
type keepAlive struct {
	c  *tls.Conn
	br *bufio.Reader
}

func dialKeepAlive(t *testing.T, addr, sni string, roots *tls.Config) *keepAlive {
	t.Helper()
	cfg := roots.Clone()
	cfg.ServerName, cfg.NextProtos = sni, []string{"http/1.1"}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &keepAlive{c: c, br: bufio.NewReader(c)}
}

// get sends one request on the connection and reads the answer.
func (k *keepAlive) get(host string) error {
	_ = k.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(k.c, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", host); err != nil {
		return err
	}
	resp, err := http.ReadResponse(k.br, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// A reload keeps the HTTP proxy of a route it did not change: that route's
// keep-alive connection goes on (and its server connection: the server saw
// one), while the changed route's connection is drained. A refused reload
// changes nothing: no proxy closed, no ring replaced.
func TestReloadKeepsUnchangedHTTPRoutes(t *testing.T) {
	dir := t.TempDir()
	ca, _ := edgeCert(t, dir, "*.example.com")
	keepSrv, changeSrv := startCountingServer(t), startCountingServer(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	config := func(changedIdentity, extraListener string) string {
		return fmt.Sprintf(`
listeners:
  - name: public
    address: "127.0.0.1:0"
    routes:
      - {sni: [keep.example.com], mode: terminate, protocol: http, backend: keep, tls: {cert: edge.pem, key: edge-key.pem}}
      - {sni: [change.example.com], mode: terminate, protocol: http, backend: change, identity: %s, tls: {cert: edge.pem, key: edge-key.pem}}
%s
backends:
  - name: keep
    health: {type: none}
    servers: [{address: "%s"}]
  - name: change
    health: {type: none}
    servers: [{address: "%s"}]
`, changedIdentity, extraListener, keepSrv.addr, changeSrv.addr)
	}
	path := writeConfigIn(t, dir, config("xfcc", ""))
	e := startEdge(t, path)
	addr := e.Addr("public").String()
	roots := &tls.Config{RootCAs: ca.Pool()}
	proxyOf := func(sni string) *tlsmode.HTTPProxy {
		return routeFor(t, e, "public", sni).Handler.(*tlsmode.Terminate).HTTP
	}
	keepProxy, changeProxy := proxyOf("keep.example.com"), proxyOf("change.example.com")
	keepRing := ringOf(e, routeTLSConfig(t, e, "public", "keep.example.com"))

	keep := dialKeepAlive(t, addr, "keep.example.com", roots)
	change := dialKeepAlive(t, addr, "change.example.com", roots)
	for _, k := range []*keepAlive{keep, change} {
		if err := k.get(k.c.ConnectionState().ServerName); err != nil {
			t.Fatalf("first request to %s: %v", k.c.ConnectionState().ServerName, err)
		}
	}

	// Refused (a new listener's address is taken) although it changes the
	// change route: nothing changes.
	writeConfigIn(t, dir, config("ssl", fmt.Sprintf(`  - name: extra
    address: "%s"
    routes: [{sni: ["*"], backend: keep}]`, taken.Addr())))
	if err := reloadFile(t, e, path); err == nil {
		t.Fatal("reload onto a taken address: got nil error; want refused")
	}
	if proxyOf("change.example.com") != changeProxy || ringOf(e, routeTLSConfig(t, e, "public", "keep.example.com")) != keepRing {
		t.Error("a refused reload replaced a route's proxy or ticket ring")
	}
	for _, k := range []*keepAlive{keep, change} {
		if err := k.get(k.c.ConnectionState().ServerName); err != nil {
			t.Errorf("%s after a refused reload: %v; want the connection to go on", k.c.ConnectionState().ServerName, err)
		}
	}

	// The change route's identity changes; the keep route does not.
	writeConfigIn(t, dir, config("ssl", ""))
	if err := reloadFile(t, e, path); err != nil {
		t.Fatal(err)
	}
	if got := proxyOf("keep.example.com"); got != keepProxy {
		t.Error("keep.example.com after a reload that did not change it: a new HTTP proxy; want the same")
	}
	if got := proxyOf("change.example.com"); got == changeProxy {
		t.Error("change.example.com after a reload that changed it: the same HTTP proxy; want a new one")
	}
	e.mu.Lock()
	var kept *keptHTTP
	for _, k := range e.http {
		if k.hp == keepProxy {
			kept = k
		}
	}
	pool := e.pools["keep"]
	e.mu.Unlock()
	if kept == nil || kept.pool.Load() != pool {
		t.Error("the kept proxy does not dial through the new config's pool")
	}
	if err := keep.get("keep.example.com"); err != nil {
		t.Errorf("keep.example.com's keep-alive connection after an unrelated reload: %v; want it to go on", err)
	}
	if n := keepSrv.conns.Load(); n != 1 {
		t.Errorf("keep's server saw %d connections; want 1 (one client connection, one kept server connection)", n)
	}
	_ = change.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := change.br.ReadByte(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("change.example.com's idle keep-alive connection after its route changed: got %v; want closed by tlsedge", err)
	}
}
