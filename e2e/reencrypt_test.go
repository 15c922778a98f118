package e2e

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// reencryptEdge is examples/reencrypt-mtls.yaml (api.example.com: http,
// rfc9440 -> secure-api; db.example.com: tcp -> secure-db) against servers
// that require tlsedge's client certificate, plus three routes to a server
// whose certificate is signed by a rogue CA: rogue.example.com (http) and
// roguedb.example.com (tcp) verify it against the server CA and must fail;
// insecure.example.com has insecure_skip_verify: true.
type reencryptEdge struct {
	*edgeProc
	p     *termPaths
	api   *httpBackend // sapi-1: HTTPS, requires a client certificate of the harness's client CA
	db    *backend     // db-1: the harness's mTLS echo server
	rogue *httpBackend // rogue-1: HTTPS with a certificate of the rogue CA
}

func startReencrypt(t *testing.T) *reencryptEdge {
	t.Helper()
	p := writeTermFiles(t)
	pk := thePKI.term
	srv, err := thePKI.serverCert("sapi-1")
	if err != nil {
		t.Fatal(err)
	}
	r := &reencryptEdge{
		p:     p,
		api:   startHTTPSBackend(t, "sapi-1", srv.TLS, thePKI.clientCA.Pool()),
		db:    startBackend(t, "db-1"),
		rogue: startHTTPSBackend(t, "rogue-1", pk.rogueSrv.TLS, thePKI.clientCA.Pool()),
	}
	cfg := loadExample(t, "reencrypt-mtls.yaml")
	mapServers(t, cfg, map[string]string{"127.0.0.1:9443": r.api.Addr(), "127.0.0.1:9543": r.db.Addr()})
	// The harness's server certificates are for *.example.com.
	asMap(t, backendCfg(t, cfg, "secure-api")["tls"], "secure-api.tls")["server_name"] = "api-internal.example.com"
	asMap(t, backendCfg(t, cfg, "secure-db")["tls"], "secure-db.tls")["server_name"] = "db-internal.example.com"
	useTermFiles(t, cfg, p)
	none := cfgMap{"type": "none"}
	verified := cfgMap{"ca": p.serverCA, "server_name": "rogue.example.com", "cert": p.upCert, "key": p.upKey}
	addBackend(t, cfg, cfgMap{"name": "rogue-api", "servers": servers(r.rogue.Addr()), "health": none, "tls": verified})
	addBackend(t, cfg, cfgMap{"name": "rogue-db", "servers": servers(r.rogue.Addr()), "health": none, "tls": verified})
	addBackend(t, cfg, cfgMap{"name": "insecure-api", "servers": servers(r.rogue.Addr()), "health": none,
		"tls": cfgMap{"insecure_skip_verify": true, "cert": p.upCert, "key": p.upKey}})
	addRoute(t, cfg, 0, termRoute(p, "rogue.example.com", "reencrypt", "http", "rogue-api", "require", nil))
	addRoute(t, cfg, 0, termRoute(p, "roguedb.example.com", "reencrypt", "tcp", "rogue-db", "require", nil))
	addRoute(t, cfg, 0, termRoute(p, "insecure.example.com", "reencrypt", "http", "insecure-api", "require", nil))
	r.edgeProc = runEdge(t, cfg)
	return r
}

// dialTerm connects to tlsedge with sni and client certificate client of
// termPKI, and completes the handshake.
func dialTerm(t testing.TB, addr, sni, client string) *tls.Conn {
	t.Helper()
	conf := &tls.Config{ServerName: sni, RootCAs: thePKI.serverCA.Pool()}
	if client != "" {
		conf.Certificates = []tls.Certificate{thePKI.term.clients[client].TLS}
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: waitLong}, "tcp", addr, conf)
	if err != nil {
		t.Fatalf("TLS to %s (%s): %v", addr, sni, err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(waitLong))
	return c
}

// Spec: reencrypt ("verify the client at the edge, then open a new,
// verified TLS connection to the server, presenting tlsedge's own client
// certificate"), backends[].tls ca / server_name / cert / key /
// insecure_skip_verify ("true only with a loud warning at start; never the
// default"); README: "A failed verification is a 502 and a log line naming
// the error".
func TestReencryptUpstreamTLS(t *testing.T) {
	t.Parallel()
	needTools(t, "curl")
	e := startReencrypt(t)

	// The loud warning, once, at start, naming the backend; none for the others.
	warns := e.findLogs(func(l logLine) bool { return strings.Contains(l.msg(), "insecure_skip_verify") })
	if len(warns) != 1 || warns[0].str("level") != "warn" || warns[0].str("backend") != "insecure-api" || !strings.Contains(warns[0].msg(), "INSECURE") {
		t.Errorf("insecure_skip_verify warnings %v; want exactly one warn line, backend insecure-api, with INSECURE in its message", warns)
	}

	t.Run("http to a server requiring tlsedge's certificate", func(t *testing.T) {
		t.Parallel()
		r := curl(t, e.p, e.addr, curlOpts{Host: "api.example.com", Path: "/re/http", Client: cliChained})
		if r.Status != 200 || r.Body != "sapi-1 GET /re/http\n" {
			t.Fatalf("got %d %q; want 200 \"sapi-1 GET /re/http\\n\"", r.Status, r.Body)
		}
		got, _ := findRequest(t, "/re/http", e.api)
		if got.PeerCN != "tlsedge-upstream" || got.SNI != "api-internal.example.com" {
			t.Errorf("the server saw client certificate CN %q and SNI %q; want tlsedge-upstream and server_name api-internal.example.com", got.PeerCN, got.SNI)
		}
		want := golden(t, "rfc9440.golden", goldenVars{Host: "api.example.com", Port: portOf(e.addr), C: factsOf(t, cliChained)})
		if d := identityDump(got.Header); d != want {
			t.Errorf("identity headers through reencrypt:\n%s\nwant (rfc9440.golden):\n%s", d, want)
		}
	})

	t.Run("tcp to a server requiring tlsedge's certificate", func(t *testing.T) {
		t.Parallel()
		c := dialTerm(t, e.addr, "db.example.com", cliValid)
		br := bufio.NewReader(c)
		banner, err := br.ReadString('\n')
		if err != nil || banner != "db-1 CN=tlsedge-upstream\n" {
			t.Fatalf("banner %q, %v; want \"db-1 CN=tlsedge-upstream\\n\" (the server verified tlsedge's certificate)", banner, err)
		}
		const msg = "SELECT 1;\n"
		if _, err := io.WriteString(c, msg); err != nil {
			t.Fatal(err)
		}
		if got, err := br.ReadString('\n'); err != nil || got != msg {
			t.Fatalf("echo %q, %v; want %q", got, err, msg)
		}
		conns := e.db.Conns()
		if len(conns) != 1 || conns[0].SNI != "db-internal.example.com" || conns[0].CN != "tlsedge-upstream" {
			t.Errorf("db-1 handshakes %+v; want one, SNI db-internal.example.com, client CN tlsedge-upstream", conns)
		}
		l := e.closeAndLog(t, c)
		if l.str("route") != "db.example.com" || l.str("mode") != "reencrypt" || l.str("server") != e.db.Addr() || l.str("client_cert") != "CN=device-42" {
			t.Errorf("access line %v: want route db.example.com, mode reencrypt, server %s, client_cert CN=device-42", l, e.db.Addr())
		}
	})

	t.Run("http to a server not signed by tls.ca", func(t *testing.T) {
		t.Parallel()
		r := curl(t, e.p, e.addr, curlOpts{Host: "rogue.example.com", Path: "/re/rogue", Client: cliValid})
		if r.Status != 502 || r.Body != "502 bad gateway: TLS with the server failed\n" {
			t.Errorf("got %d %q; want 502 \"502 bad gateway: TLS with the server failed\\n\"", r.Status, r.Body)
		}
		l := e.requestLine(t, "/re/rogue")
		if reason := l.str("reason"); !strings.Contains(reason, "x509: certificate signed by unknown authority") || !strings.Contains(reason, e.rogue.Addr()) {
			t.Errorf("request line reason %q; want the server %s and \"x509: certificate signed by unknown authority\" (line %v)", reason, e.rogue.Addr(), l)
		}
		if l.str("level") != "warn" || int(l.num("status")) != 502 {
			t.Errorf("request line %v: want level warn, status 502", l)
		}
		for _, q := range e.rogue.Requests() {
			if q.Path == "/re/rogue" {
				t.Errorf("the rogue server received the request: tlsedge sent it over an unverified TLS connection")
			}
		}
	})

	t.Run("tcp to a server not signed by tls.ca", func(t *testing.T) {
		t.Parallel()
		c := dialTerm(t, e.addr, "roguedb.example.com", cliValid)
		client := c.LocalAddr().String()
		seen := e.accessCount(client) // tlsedge closes first: count before the read
		_, _ = io.WriteString(c, "SELECT secrets;\n")
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		if n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("read %q, %v; want the connection closed with nothing from the rogue server", buf[:n], err)
		}
		l := e.nextAccessLine(t, client, seen)
		want := "server tls handshake: tls: failed to verify certificate: x509: certificate signed by unknown authority"
		if l.str("reason") != want || l.str("level") != "warn" {
			t.Errorf("access line %v: want level warn, reason %q", l, want)
		}
	})

	t.Run("insecure_skip_verify", func(t *testing.T) {
		t.Parallel()
		r := curl(t, e.p, e.addr, curlOpts{Host: "insecure.example.com", Path: "/re/insecure", Client: cliValid})
		if r.Status != 200 || r.Body != "rogue-1 GET /re/insecure\n" {
			t.Errorf("got %d %q; want 200 from rogue-1", r.Status, r.Body)
		}
		if got, _ := findRequest(t, "/re/insecure", e.rogue); got.PeerCN != "tlsedge-upstream" {
			t.Errorf("the server saw client CN %q; want tlsedge-upstream", got.PeerCN)
		}
	})

}

// portOf is the port of host:port.
func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

// Spec: `tlsedge validate` "exit 1 with every problem listed, one a line
// ... (file, the key path as written in the file, why and how to fix)";
// backends[].tls.ca is required for reencrypt unless insecure_skip_verify.
func TestReencryptValidateNeedsCA(t *testing.T) {
	t.Parallel()
	p := writeTermFiles(t)
	cfg := loadExample(t, "reencrypt-mtls.yaml")
	useTermFiles(t, cfg, p)
	delete(asMap(t, backendCfg(t, cfg, "secure-api")["tls"], "secure-api.tls"), "ca")
	path := writeConfig(t, cfg)
	for _, cmd := range []string{"validate", "run"} {
		stdout, stderr, code := runTlsedge(t, cmd, "-c", path)
		lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
		prefix := path + ": backends[0].tls.ca: missing"
		if code != 1 || stdout != "" || len(lines) != 1 || !strings.HasPrefix(lines[0], prefix) || !strings.Contains(lines[0], "insecure_skip_verify") {
			t.Errorf("tlsedge %s without backends[0].tls.ca: exit %d, stdout %q, stderr:\n%s\nwant exit 1 and one line %q... that mentions insecure_skip_verify", cmd, code, stdout, stderr, prefix)
		}
	}
}
