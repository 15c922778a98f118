package e2e

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TLS profiles, session tickets across reloads and keep-alive connections
// across reloads, on the built binary (issue 9, "TLS profiles"):
// docs/config.md tls.profile ("intermediate = TLS 1.2 with ECDHE and AEAD
// suites only (no CBC, no RSA key exchange) and TLS 1.3; modern = TLS 1.3
// only"), tls.session_ticket_rotation ("Keys survive reloads that leave the
// route's TLS policy unchanged"), and "an HTTP route's unchanged
// connections are not drained by an unrelated reload".

// profileConfig is one listener with routes, to backends, using p's files.
func profileConfig(p *termPaths, routes []any, backends ...any) cfgMap {
	return cfgMap{
		"log":       cfgMap{"level": "info", "format": "json", "access": true},
		"certs":     cfgMap{"storage": filepath.Join(p.dir, "data")},
		"listeners": []any{cfgMap{"name": "public", "address": "", "routes": routes}},
		"backends":  backends,
	}
}

// httpBackendCfg is a backend of the one server addr, without health checks.
func httpBackendCfg(name, addr string) cfgMap {
	return cfgMap{"name": name, "servers": servers(addr), "health": cfgMap{"type": "none"}}
}

// reloadTLSEdge writes cfg over e's config file, sends SIGHUP (the file
// watch may reload too) and waits, bounded, for the line saying this very
// file was put in force.
func reloadTLSEdge(t *testing.T, e *edgeProc, cfg cfgMap) {
	t.Helper()
	hash := yamlHash(t, cfg)
	rewriteConfig(t, e.cfgPath, cfg)
	e.signal(syscall.SIGHUP)
	e.waitLog(t, "config reloaded with hash "+hash, func(l logLine) bool {
		return l.msg() == "config reloaded" && l.str("hash") == hash
	})
}

var (
	opensslCipher   = regexp.MustCompile(`New, \S+, Cipher is (\S+)`)
	opensslProtocol = regexp.MustCompile(`Protocol\s*:\s*(\S+)`)
)

// opensslHandshake runs openssl s_client towards addr with sni and extra
// arguments (version, ciphers), and returns the protocol and cipher it
// agreed on ("(NONE)" for both when refused) and its output.
func opensslHandshake(t *testing.T, p *termPaths, addr, sni string, extra ...string) (proto, cipher, out string) {
	t.Helper()
	args := append([]string{"s_client", "-connect", addr, "-servername", sni, "-CAfile", p.serverCA, "-verify_return_error"}, extra...)
	c := startCommand(t, 30*time.Second, "openssl", args...)
	_ = c.wait(t, waitLong) // stdin closed: s_client ends after the handshake (or its failure)
	out = c.out.String()
	m := opensslCipher.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("openssl %s: no \"New, ..., Cipher is\" line in its output:\n%s", strings.Join(args, " "), out)
	}
	if cipher = m[1]; cipher == "(NONE)" {
		return "(NONE)", cipher, out
	}
	// "New, TLSv1.0, Cipher is" names the suite's first version; the
	// session block says what was agreed.
	pm := opensslProtocol.FindStringSubmatch(out)
	if pm == nil {
		t.Fatalf("openssl %s: no \"Protocol :\" line in its output:\n%s", strings.Join(args, " "), out)
	}
	return pm[1], cipher, out
}

// Mozilla's intermediate profile by default: openssl restricted to a CBC
// suite (RSA key exchange AES128-SHA256, or ECDHE with AES-CBC, which Go
// itself offers by default) is refused with alert 40 (handshake_failure);
// AEAD suites are accepted. Profile modern refuses TLS 1.2 with alert 70
// (protocol_version) and accepts TLS 1.3. The control: the same openssl
// CBC handshake succeeds against a Go server with Go's defaults, so the
// refusals are tlsedge's doing.
func TestTLSProfileOpenSSL(t *testing.T) {
	t.Parallel()
	needTools(t, "openssl")
	p := writeTermFiles(t)
	app := startHTTPBackend(t, "app-1")
	modern := termRoute(p, "modern.example.com", "terminate", "http", "app", "", nil)
	asMap(t, modern["tls"], "tls")["profile"] = "modern"
	e := runEdge(t, profileConfig(p, []any{
		termRoute(p, "inter.example.com", "terminate", "http", "app", "", nil),
		modern,
	}, httpBackendCfg("app", app.Addr())))

	tests := []struct {
		name, sni  string
		args       []string
		wantProto  string // "(NONE)": refused
		wantCipher string
		wantAlert  string // refused: the alert tlsedge sent
	}{
		{"intermediate refuses AES128-SHA256 (RSA key exchange, CBC)", "inter.example.com", []string{"-tls1_2", "-cipher", "AES128-SHA256"}, "(NONE)", "(NONE)", "SSL alert number 40"},
		{"intermediate refuses ECDHE-ECDSA-AES128-SHA (CBC)", "inter.example.com", []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA"}, "(NONE)", "(NONE)", "SSL alert number 40"},
		{"intermediate refuses ECDHE-ECDSA-AES256-SHA (CBC)", "inter.example.com", []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-SHA"}, "(NONE)", "(NONE)", "SSL alert number 40"},
		{"intermediate refuses ECDHE-ECDSA-AES128-SHA256 (CBC)", "inter.example.com", []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA256"}, "(NONE)", "(NONE)", "SSL alert number 40"},
		{"intermediate accepts ECDHE-ECDSA-AES128-GCM-SHA256", "inter.example.com", []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"}, "TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256", ""},
		{"intermediate accepts ECDHE-ECDSA-AES256-GCM-SHA384", "inter.example.com", []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384"}, "TLSv1.2", "ECDHE-ECDSA-AES256-GCM-SHA384", ""},
		{"intermediate accepts ECDHE-ECDSA-CHACHA20-POLY1305", "inter.example.com", []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"}, "TLSv1.2", "ECDHE-ECDSA-CHACHA20-POLY1305", ""},
		{"intermediate accepts TLS 1.3", "inter.example.com", []string{"-tls1_3"}, "TLSv1.3", "", ""},
		{"modern refuses TLS 1.2", "modern.example.com", []string{"-tls1_2"}, "(NONE)", "(NONE)", "SSL alert number 70"},
		{"modern accepts TLS 1.3", "modern.example.com", []string{"-tls1_3"}, "TLSv1.3", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proto, cipher, out := opensslHandshake(t, p, e.addr, tt.sni, tt.args...)
			if proto != tt.wantProto || (tt.wantCipher != "" && cipher != tt.wantCipher) {
				t.Errorf("openssl %s: got %s %s; want %s %s\n%s", strings.Join(tt.args, " "), proto, cipher, tt.wantProto, tt.wantCipher, out)
			}
			if tt.wantAlert != "" && !strings.Contains(out, tt.wantAlert) {
				t.Errorf("openssl %s: no %q in its output; want that alert\n%s", strings.Join(tt.args, " "), tt.wantAlert, out)
			}
		})
	}

	t.Run("control: Go's defaults accept ECDHE-ECDSA-AES128-SHA", func(t *testing.T) {
		ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{thePKI.term.edge.TLS}})
		if err != nil {
			t.Fatal(err)
		}
		g := newConnGroup(t, "Go's defaults")
		g.serve(ln, func(c net.Conn) {
			_ = c.SetDeadline(time.Now().Add(waitLong))
			_, _ = io.Copy(io.Discard, c)
		})
		defer g.stop()
		proto, cipher, out := opensslHandshake(t, p, ln.Addr().String(), "inter.example.com", "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA")
		if proto != "TLSv1.2" || cipher != "ECDHE-ECDSA-AES128-SHA" {
			t.Errorf("against Go's defaults: got %s %s; want TLSv1.2 ECDHE-ECDSA-AES128-SHA (else the refusals above prove nothing)\n%s", proto, cipher, out)
		}
	})
}

// resumeClient is a Go client of route a.example.com with certificate
// cliValid and a session cache, for one TLS version.
type resumeClient struct {
	addr string
	conf *tls.Config
}

// request connects, sends one request (reading the answer also reads the
// TLS 1.3 session ticket) and reports whether the session was resumed.
func (r *resumeClient) request(t *testing.T, path string) bool {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: waitLong}, "tcp", r.addr, r.conf)
	if err != nil {
		t.Fatalf("%s: TLS to %s: %v", tls.VersionName(r.conf.MinVersion), r.addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(waitLong))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, r.conf.ServerName)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s: %s: %v", tls.VersionName(r.conf.MinVersion), path, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %s: status %d; want 200", tls.VersionName(r.conf.MinVersion), path, resp.StatusCode)
	}
	return c.ConnectionState().DidResume
}

// A Go client resumes its session right after a reload that did not touch
// its route (the ticket keys were kept), and does a full handshake after
// one that changed the route's client CAs (a session made under the old
// CAs never resumes under the new ones). TLS 1.2 and 1.3.
func TestTLSProfileResumptionAcrossReload(t *testing.T) {
	t.Parallel()
	p := writeTermFiles(t)
	app := startHTTPBackend(t, "app-1")
	route := func(cas ...any) cfgMap {
		r := termRoute(p, "a.example.com", "terminate", "http", "app", "require", nil)
		asMap(t, r["tls"], "tls")["client_ca"] = cas
		return r
	}
	cfg := profileConfig(p, []any{route(p.caA)}, httpBackendCfg("app", app.Addr()))
	e := runEdge(t, cfg)
	pk := thePKI.term
	var clients []*resumeClient
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		clients = append(clients, &resumeClient{addr: e.addr, conf: &tls.Config{
			ServerName: "a.example.com", RootCAs: thePKI.serverCA.Pool(), Certificates: []tls.Certificate{pk.clients[cliValid].TLS},
			ClientSessionCache: tls.NewLRUClientSessionCache(8), MinVersion: v, MaxVersion: v,
		}})
	}
	for _, c := range clients {
		if c.request(t, "/first") {
			t.Fatalf("%s: the first connection resumed; want a full handshake", tls.VersionName(c.conf.MinVersion))
		}
		if !c.request(t, "/second") {
			t.Fatalf("%s: the second connection did not resume; want resumed (or the test proves nothing)", tls.VersionName(c.conf.MinVersion))
		}
	}

	// A reload that adds another route: a.example.com is untouched.
	cfg["listeners"].([]any)[0].(cfgMap)["routes"] = []any{route(p.caA),
		termRoute(p, "www.example.com", "terminate", "http", "app", "", nil)}
	reloadTLSEdge(t, e, cfg)
	for _, c := range clients {
		if !c.request(t, "/after-unrelated-reload") {
			t.Errorf("%s after a reload that did not touch the route: full handshake; want resumed (ticket keys kept)", tls.VersionName(c.conf.MinVersion))
		}
	}

	// A reload that changes the route's client CAs (CA B trusted too).
	cfg["listeners"].([]any)[0].(cfgMap)["routes"] = []any{route(p.caA, p.caB),
		termRoute(p, "www.example.com", "terminate", "http", "app", "", nil)}
	reloadTLSEdge(t, e, cfg)
	for _, c := range clients {
		if c.request(t, "/after-ca-change") {
			t.Errorf("%s after the route's client CAs changed: resumed; want a full handshake", tls.VersionName(c.conf.MinVersion))
		}
	}
}

// keepAliveConn is an HTTP/1.1 connection to tlsedge.
type keepAliveConn struct {
	c   *tls.Conn
	br  *bufio.Reader
	sni string
}

func dialKeepAlive(t *testing.T, addr, sni string) *keepAliveConn {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: waitLong}, "tcp", addr,
		&tls.Config{ServerName: sni, RootCAs: thePKI.serverCA.Pool(), NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatalf("TLS to %s: %v", sni, err)
	}
	t.Cleanup(func() { c.Close() })
	return &keepAliveConn{c: c, br: bufio.NewReader(c), sni: sni}
}

// get sends one request on the connection and returns the status (or the error).
func (k *keepAliveConn) get(path string) error {
	_ = k.c.SetDeadline(time.Now().Add(waitLong))
	if _, err := fmt.Fprintf(k.c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, k.sni); err != nil {
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

// An HTTP/1.1 keep-alive connection to a route that a reload did not change
// goes on across the reload, on the same TCP connection to the server (it
// saw one), while the idle one of a route the reload changed is drained
// (closed by tlsedge).
func TestTLSProfileKeepAliveAcrossReload(t *testing.T) {
	t.Parallel()
	p := writeTermFiles(t)
	keepSrv, changeSrv := startHTTPBackend(t, "keep-1"), startHTTPBackend(t, "change-1")
	changeRoute := termRoute(p, "change.example.com", "terminate", "http", "change", "", "xfcc")
	cfg := profileConfig(p, []any{
		termRoute(p, "keep.example.com", "terminate", "http", "keep", "", nil),
		changeRoute,
	}, httpBackendCfg("keep", keepSrv.Addr()), httpBackendCfg("change", changeSrv.Addr()))
	e := runEdge(t, cfg)

	keep := dialKeepAlive(t, e.addr, "keep.example.com")
	change := dialKeepAlive(t, e.addr, "change.example.com")
	for _, k := range []*keepAliveConn{keep, change} {
		if err := k.get("/ka-before"); err != nil {
			t.Fatalf("%s before the reload: %v", k.sni, err)
		}
	}

	changeRoute["identity"] = "ssl"
	reloadTLSEdge(t, e, cfg)

	if err := keep.get("/ka-after"); err != nil {
		t.Errorf("keep.example.com's keep-alive connection after a reload that did not change its route: %v; want 200 on the same connection", err)
	}
	if got, _ := findRequest(t, "/ka-after", keepSrv); got.Path != "/ka-after" {
		t.Errorf("keep-1 got %q; want /ka-after", got.Path)
	}
	if n := keepSrv.Accepted(); n != 1 {
		t.Errorf("keep-1 accepted %d connections; want 1 (the request after the reload on the kept connection)", n)
	}
	_ = change.c.SetReadDeadline(time.Now().Add(waitLong))
	if _, err := change.br.ReadByte(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("change.example.com's idle keep-alive connection after its route changed: got %v; want closed by tlsedge (drained)", err)
	}
}
