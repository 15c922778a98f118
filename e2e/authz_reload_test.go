package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/tlsedge/tlsedge/certs"
)

// Authorization enforced again on reload, on the built binary
// (docs/config.md routes[].allow, reauthorize_on_reload; edge/reauth.go):
// a reload that changes a route's allow list or client_ca ends the open
// connections whose client the route no longer admits (an idle HTTP/1.1
// keep-alive connection is closed, a WebSocket gets close 1008 both ways,
// a tcp stream close_notify and FIN), each with a warn line "connection no
// longer authorized" and an access line giving the reason; connections
// still admitted go on, on the same sockets. The client PKI is thePKI.ar
// (pki_test.go).

// The reasons of the connections a reload ends.
const (
	arNotAllowed  = "access denied after reload: no longer on the route's allow list"
	arNotVerified = "access denied after reload: certificate no longer verifies against the route's client_ca"
	arWarnMsg     = "connection no longer authorized"
)

// Allow entries of routes a.example.com and t.example.com.
var (
	arAcme   = cfgMap{"uri": "spiffe://partners.test/acme/*"}
	arGlobex = cfgMap{"uri": "spiffe://partners.test/globex/*"}
)

// ---------------------------------------------------------------- PKI files

// arFiles are the PKI files of one test, in its own folder.
type arFiles struct {
	dir               string
	ca                map[string]string // "A", "B": the CA files
	edgeCert, edgeKey string
	cert, key         map[string]string // by client
}

// arWriteFiles writes the files of thePKI.ar into a new temp folder.
func arWriteFiles(t testing.TB) *arFiles {
	t.Helper()
	p := thePKI.ar
	f := &arFiles{dir: t.TempDir(), ca: map[string]string{}, cert: map[string]string{}, key: map[string]string{}}
	for name, ca := range map[string]*certs.Authority{"A": p.caA, "B": p.caB} {
		f.ca[name] = pkWriteFile(t, f.dir, "ca-"+name+".pem", ca.PEM)
	}
	f.edgeCert, f.edgeKey = pkWritePair(t, f.dir, "edge", p.edge)
	for name, is := range p.leaves {
		f.cert[name], f.key[name] = pkWritePair(t, f.dir, name, is)
	}
	return f
}

// ---------------------------------------------------------------- servers

// arWeb is the HTTP server behind the http routes: "ar <path>\n" to every
// request, for /hold/... once unhold is called; a WebSocket is echoed, and
// how it ended on the server's side (its close status) is recorded by path.
type arWeb struct {
	ctx     context.Context // the WebSockets' and held requests'
	release chan struct{}   // closed by unhold
	relOnce sync.Once
	mu      sync.Mutex
	addr    string
	accept  int
	held    int // /hold/ requests received
	closes  map[string]websocket.StatusCode
	wg      sync.WaitGroup
}

func arStartWeb(t testing.TB) *arWeb {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	w := &arWeb{ctx: ctx, release: make(chan struct{}), addr: raw.Addr().String(), closes: map[string]websocket.StatusCode{}}
	ln := &countingListener{Listener: raw, count: func() { w.mu.Lock(); w.accept++; w.mu.Unlock() }}
	srv := &http.Server{Handler: w, ReadHeaderTimeout: waitLong, ErrorLog: stdlog.New(io.Discard, "", 0)}
	serveHTTP(t, "HTTP server web", srv, ln)
	t.Cleanup(func() { // first: srv.Close does not end hijacked connections
		stop()
		w.unhold()
		if !waitBounded(w.wg.Wait) {
			t.Errorf("HTTP server web: WebSockets did not end within %v", waitLong)
		}
	})
	return w
}

func (w *arWeb) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		if strings.HasPrefix(r.URL.Path, "/hold/") {
			w.mu.Lock()
			w.held++
			w.mu.Unlock()
			select {
			case <-w.release:
			case <-w.ctx.Done():
			}
		}
		fmt.Fprintf(rw, "ar %s\n", r.URL.Path)
		return
	}
	c, err := websocket.Accept(rw, r, nil)
	if err != nil {
		return
	}
	w.wg.Add(1)
	defer w.wg.Done()
	defer c.CloseNow()
	for {
		typ, p, err := c.Read(w.ctx)
		if err == nil {
			err = c.Write(w.ctx, typ, p)
		}
		if err != nil {
			w.mu.Lock()
			w.closes[r.URL.Path] = websocket.CloseStatus(err) // -1: not a close frame
			w.mu.Unlock()
			return
		}
	}
}

// unhold answers the /hold/ requests.
func (w *arWeb) unhold() { w.relOnce.Do(func() { close(w.release) }) }

// holding is the number of /hold/ requests received.
func (w *arWeb) holding() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.held
}

// accepted is the number of TCP connections the server accepted.
func (w *arWeb) accepted() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.accept
}

// closeStatus waits (bounded) until the WebSocket at path ended on the
// server's side, and returns its close status.
func (w *arWeb) closeStatus(path string) (websocket.StatusCode, bool) {
	var code websocket.StatusCode
	ok := poll(waitLong, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		c, ok := w.closes[path]
		code = c
		return ok
	})
	return code, ok
}

// arStartEcho starts a plain TCP echo server (behind the tcp route).
func arStartEcho(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := newConnGroup(t, "echo server")
	g.serve(ln, func(c net.Conn) { _, _ = io.Copy(c, c) })
	t.Cleanup(g.stop)
	return ln.Addr().String()
}

// ---------------------------------------------------------------- config and tlsedge

// arPolicy is the client certificate policy of routes a.example.com (http)
// and t.example.com (tcp).
type arPolicy struct {
	allow  []any    // nil: no allow key
	cas    []string // client_ca: "A", "B"; nil: A
	reauth *bool    // reauthorize_on_reload; nil: not set (true)
}

// arConfig: one listener; a.example.com and t.example.com with pol;
// b.example.com (http, CA A, partner-b's globex only) never changes.
func arConfig(f *arFiles, admin, web, echo string, pol arPolicy) cfgMap {
	route := func(sni, protocol, backend string, cas []string, allow []any, reauth *bool) cfgMap {
		var caFiles []any
		for _, c := range cas {
			caFiles = append(caFiles, f.ca[c])
		}
		r := cfgMap{"sni": []any{sni}, "mode": "terminate", "protocol": protocol, "backend": backend,
			"tls": cfgMap{"cert": f.edgeCert, "key": f.edgeKey, "client_auth": "require", "client_ca": caFiles}}
		if allow != nil {
			r["allow"] = allow
		}
		if reauth != nil {
			r["reauthorize_on_reload"] = *reauth
		}
		return r
	}
	cas := pol.cas
	if cas == nil {
		cas = []string{"A"}
	}
	return cfgMap{
		"log":   cfgMap{"level": "info", "format": "json", "access": true, "failure_burst": 0},
		"certs": cfgMap{"storage": filepath.Join(f.dir, "data")},
		"admin": cfgMap{"address": admin},
		"listeners": []any{cfgMap{"name": "public", "address": "", "routes": []any{
			route("a.example.com", "http", "web", cas, pol.allow, pol.reauth),
			route("t.example.com", "tcp", "echo", cas, pol.allow, pol.reauth),
			route("b.example.com", "http", "web", []string{"A"}, []any{arGlobex}, nil),
		}}},
		"backends": []any{httpBackendCfg("web", web), httpBackendCfg("echo", echo)},
	}
}

// arEdge is tlsedge running arConfig, with its servers and its admin API
// (the connection directory gives each held connection's id).
type arEdge struct {
	*edgeProc
	f         *arFiles
	web       *arWeb
	echo      string
	adminAddr string
	admin     *adminClient
}

func arStart(t *testing.T, pol arPolicy) *arEdge {
	t.Helper()
	e := &arEdge{f: arWriteFiles(t), web: arStartWeb(t), echo: arStartEcho(t), adminAddr: freeAddr(t)}
	e.edgeProc = runEdge(t, arConfig(e.f, e.adminAddr, e.web.addr, e.echo, pol))
	e.admin = newAdmin(t, e.adminAddr)
	return e
}

// reload writes the config with pol, sends SIGHUP and waits (bounded) for
// one more "config reloaded" line with the new file's hash (the file
// watch may have reloaded it first). Every "connection no longer
// authorized" line is written before it.
func (e *arEdge) reload(t *testing.T, pol arPolicy) {
	t.Helper()
	cfg := arConfig(e.f, e.adminAddr, e.web.addr, e.echo, pol)
	listenerCfg(t, cfg, 0)["address"] = e.addr
	hash := yamlHash(t, cfg)
	done := func(l logLine) bool { return l.msg() == "config reloaded" && l.str("hash") == hash }
	before := len(e.findLogs(done))
	rewriteConfig(t, e.cfgPath, cfg)
	e.signal(syscall.SIGHUP)
	e.waitLogs(t, before+1, "config reloaded with hash "+hash, done)
}

// warnLines are the "connection no longer authorized" lines so far of
// the connection id (0: of every connection).
func (e *arEdge) warnLines(id uint64) []logLine {
	return e.findLogs(func(l logLine) bool { return l.msg() == arWarnMsg && (id == 0 || l.num("id") == float64(id)) })
}

// ---------------------------------------------------------------- held connections

// arStream is one connection a client holds through tlsedge.
type arStream interface {
	local() string             // the client's address, as tlsedge logs it
	exchange(tag string) error // one message (or request) there and back
	ended(reason string) error // nil when tlsedge ended it as a refused client's
}

// arHeld is a held connection and what the test knows of it.
type arHeld struct {
	what, client, route string
	path                string // a WebSocket's path on the server
	id                  uint64 // its id in tlsedge's connection directory
	lines               int    // access lines of its address when opened
	s                   arStream
}

// open connects client to route sni as kind ("ws", "ka" or "tcp"),
// exchanges a first message and returns the connection (closed by
// t.Cleanup).
func (e *arEdge) open(t *testing.T, kind, sni, client string) *arHeld {
	t.Helper()
	cert := thePKI.ar.leaves[client].TLS
	h := &arHeld{what: fmt.Sprintf("%s's %s on %s", client, kind, sni), client: client, route: sni}
	switch kind {
	case "ws":
		h.path = "/ws/" + client + "/" + sni
		c, _, local := wsDialCert(t, e.addr, sni, h.path, cert)
		h.s = &arWS{c: c, addr: local}
	case "ka", "tcp":
		var alpn []string
		if kind == "ka" {
			alpn = []string{"http/1.1"}
		}
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: waitLong}, "tcp", e.addr, &tls.Config{ServerName: sni,
			RootCAs: thePKI.serverCA.Pool(), Certificates: []tls.Certificate{cert}, NextProtos: alpn})
		if err != nil {
			t.Fatalf("%s: %v", h.what, err)
		}
		t.Cleanup(func() { c.Close() })
		if kind == "ka" {
			h.s = &arKA{c: c, br: bufio.NewReader(c), host: sni}
		} else {
			h.s = &arTCP{c: c, br: bufio.NewReader(c)}
		}
	}
	h.lines = e.accessCount(h.s.local())
	if err := h.s.exchange("opened"); err != nil {
		t.Fatalf("%s: %v", h.what, err)
	}
	cs := e.admin.connections("source=" + h.s.local())
	if len(cs) != 1 || cs[0].Route != sni {
		t.Fatalf("%s: the connection directory lists %+v for source %s; want this one connection", h.what, cs, h.s.local())
	}
	h.id = cs[0].ID
	return h
}

// arWS is a WebSocket (github.com/coder/websocket) to the echo server.
type arWS struct {
	c    *websocket.Conn
	addr string
}

func (w *arWS) local() string { return w.addr }

func (w *arWS) exchange(tag string) error {
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	msg := "ar " + tag
	if err := w.c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		return err
	}
	typ, got, err := w.c.Read(ctx)
	if err != nil {
		return err
	}
	if typ != websocket.MessageText || string(got) != msg {
		return fmt.Errorf("echo %v %q; want text %q", typ, got, msg)
	}
	return nil
}

// ended: the next read is a close frame with 1008 (policy violation) and
// the reason.
func (w *arWS) ended(reason string) error {
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	_, _, err := w.c.Read(ctx)
	var ce websocket.CloseError
	if websocket.CloseStatus(err) != websocket.StatusPolicyViolation || !errors.As(err, &ce) || ce.Reason != reason {
		return fmt.Errorf("read %v; want a close frame 1008 (StatusPolicyViolation) with reason %q", err, reason)
	}
	return nil
}

// arKA is an HTTP/1.1 keep-alive connection.
type arKA struct {
	c    *tls.Conn
	br   *bufio.Reader
	host string
}

func (k *arKA) local() string { return k.c.LocalAddr().String() }

func (k *arKA) exchange(tag string) error {
	_ = k.c.SetDeadline(time.Now().Add(waitLong))
	path := "/ka/" + tag
	if _, err := fmt.Fprintf(k.c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, k.host); err != nil {
		return err
	}
	resp, err := http.ReadResponse(k.br, nil)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || string(body) != "ar "+path+"\n" || resp.Close {
		return fmt.Errorf("status %d, body %q, Connection: close %v; want 200 %q, kept alive", resp.StatusCode, body, resp.Close, "ar "+path+"\n")
	}
	return nil
}

// ended: the idle connection is closed by tlsedge (close_notify, then EOF).
func (k *arKA) ended(string) error {
	_ = k.c.SetReadDeadline(time.Now().Add(waitLong))
	if b, err := k.br.ReadByte(); err != io.EOF {
		return fmt.Errorf("read %q, %v; want io.EOF (closed by tlsedge with close_notify)", b, err)
	}
	return nil
}

// arTCP is a byte stream to the echo server (protocol tcp).
type arTCP struct {
	c  *tls.Conn
	br *bufio.Reader
}

func (s *arTCP) local() string { return s.c.LocalAddr().String() }

func (s *arTCP) exchange(tag string) error {
	_ = s.c.SetDeadline(time.Now().Add(waitLong))
	msg := "ar " + tag + "\n"
	if _, err := io.WriteString(s.c, msg); err != nil {
		return err
	}
	if got, err := s.br.ReadString('\n'); err != nil || got != msg {
		return fmt.Errorf("echo %q, %v; want %q", got, err, msg)
	}
	return nil
}

// ended: the next read is io.EOF (crypto/tls: close_notify, or a FIN at
// a record boundary; the openssl stream tells them apart).
func (s *arTCP) ended(string) error {
	_ = s.c.SetReadDeadline(time.Now().Add(waitLong))
	if b, err := s.br.ReadByte(); err != io.EOF {
		return fmt.Errorf("read %q, %v; want io.EOF", b, err)
	}
	return nil
}

// ---------------------------------------------------------------- checks

// wantEnded checks that tlsedge ended h for reason: as its client saw it
// (ended), in its one warn line (its id, route, the client's address as
// in every other line, its subject as client_cert) and its access line; a
// WebSocket's server got the close 1008 too.
func (e *arEdge) wantEnded(t *testing.T, h *arHeld, reason string) {
	t.Helper()
	if err := h.s.ended(reason); err != nil {
		t.Errorf("%s after the reload: %v", h.what, err)
	}
	subject := "CN=" + arCN[h.client]
	l := e.nextAccessLine(t, h.s.local(), h.lines)
	if l.str("reason") != reason || l.str("route") != h.route || l.str("client_cert") != subject {
		t.Errorf("%s: access line %v; want reason %q, route %s, client_cert %s", h.what, l, reason, h.route, subject)
	}
	warns := e.warnLines(h.id)
	if len(warns) != 1 {
		t.Errorf("%s (id %d): %d %q lines: %v; want exactly one", h.what, h.id, len(warns), arWarnMsg, warns)
	}
	for _, w := range warns {
		if w.str("level") != "warn" || w.str("route") != h.route || w.str("reason") != reason {
			t.Errorf("%s: %v; want level warn, route %s, reason %q", h.what, w, h.route, reason)
		}
		if w.str("client") != h.s.local() || w.str("client_cert") != subject {
			t.Errorf("%s: %q line with client %q, client_cert %q; want client %s (its address, as its access line and every "+
				"other line name the client: the id is in no other line) and client_cert %s", h.what, arWarnMsg,
				w.str("client"), w.str("client_cert"), h.s.local(), subject)
		}
	}
	if h.path != "" {
		if code, ok := e.web.closeStatus(h.path); !ok || code != websocket.StatusPolicyViolation {
			t.Errorf("%s: the server's side ended with close status %v (ended: %v); want 1008 (StatusPolicyViolation)", h.what, code, ok)
		}
	}
}

// wantUntouched checks that every h still exchanges messages (requests on
// the same socket) and that none has an access line, i.e. none ended.
func (e *arEdge) wantUntouched(t *testing.T, round string, hs ...*arHeld) {
	t.Helper()
	for _, h := range hs {
		if err := h.s.exchange(round); err != nil {
			t.Errorf("%s after the reload: %v; want it untouched", h.what, err)
		}
		if n := e.accessCount(h.s.local()); n != h.lines {
			t.Errorf("%s: %d access lines since it was opened; want none (open)", h.what, n-h.lines)
		}
		if w := e.warnLines(h.id); len(w) != 0 {
			t.Errorf("%s (id %d): %v; want no %q line", h.what, h.id, w, arWarnMsg)
		}
	}
}

// wantWarnLines checks that there are n "no longer authorized" lines.
func (e *arEdge) wantWarnLines(t *testing.T, n int) {
	t.Helper()
	if got := e.warnLines(0); len(got) != n {
		t.Errorf("%d %q lines: %v; want %d", len(got), arWarnMsg, got, n)
	}
}

// wantRefusedNew checks that a new connection of client is refused with
// alert 49: openssl s_client to a.example.com prints "alert access denied",
// Go's client to t.example.com gets "access denied".
func (e *arEdge) wantRefusedNew(t *testing.T, client string) {
	t.Helper()
	c := startCommand(t, 30*time.Second, "openssl", "s_client", "-connect", e.addr, "-servername", "a.example.com",
		"-CAfile", thePKI.serverCAFile, "-verify_return_error", "-cert", e.f.cert[client], "-key", e.f.key[client])
	c.waitOutput("SSL alert number", waitLong) // TLS 1.3: the alert comes after the client's handshake
	_ = c.wait(t, waitLong)
	if out := c.out.String(); !strings.Contains(out, "alert access denied") || !strings.Contains(out, "SSL alert number 49") {
		t.Errorf("new %s connection to a.example.com: want alert 49 \"alert access denied\"; openssl printed:\n%s", client, out)
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: waitLong}, "tcp", e.addr, &tls.Config{ServerName: "t.example.com",
		RootCAs: thePKI.serverCA.Pool(), Certificates: []tls.Certificate{thePKI.ar.leaves[client].TLS}})
	if err == nil {
		_ = conn.SetDeadline(time.Now().Add(waitLong))
		_, _ = io.WriteString(conn, "ar refused?\n")
		_, err = bufio.NewReader(conn).ReadString('\n')
		conn.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "tls: access denied") {
		t.Errorf("new %s connection to t.example.com: %v; want the alert \"tls: access denied\"", client, err)
	}
}

// opensslStream is a tcp stream to t.example.com held by openssl s_client
// -msg, which prints every TLS message it receives: it shows the
// close_notify that a Go client cannot tell from a bare FIN.
func (e *arEdge) opensslStream(t *testing.T, client string) *command {
	t.Helper()
	c := startCommand(t, 2*time.Minute, "openssl", "s_client", "-connect", e.addr, "-servername", "t.example.com",
		"-CAfile", thePKI.serverCAFile, "-verify_return_error", "-cert", e.f.cert[client], "-key", e.f.key[client], "-msg")
	_, _ = io.WriteString(c.stdin, "ar openssl ping\n")
	if !c.waitOutput("ar openssl ping", waitLong) {
		t.Fatalf("openssl s_client as %s to t.example.com: no echo within %v:\n%s", client, waitLong, c.out.String())
	}
	return c
}

// wantClosedNotify checks that tlsedge ended openssl's stream with
// close_notify and that openssl saw the end of the stream and exited.
func (e *arEdge) wantClosedNotify(t *testing.T, c *command) {
	t.Helper()
	const notify = "<<< TLS 1.3, Alert [length 0002], warning close_notify"
	c.waitOutput(notify, waitLong)
	select {
	case <-c.done:
	case <-time.After(waitLong):
	}
	out := c.out.String()
	if !strings.Contains(out, notify) || !strings.Contains(out, "\nclosed\n") {
		t.Errorf("openssl's tcp stream after the reload: want %q received, then \"closed\"; openssl printed:\n%s", notify, out)
	}
}

// ---------------------------------------------------------------- tests

// A reload removes partner-a from the allow list of a.example.com (http)
// and t.example.com (tcp): its WebSocket gets close 1008 with the reason
// (and its server too), its idle keep-alive connection is closed, its tcp
// streams read EOF after close_notify; each has the warn line and an
// access line "access denied after reload: no longer on the route's allow
// list". partner-b's connections on the same routes (checked again, still
// admitted) and on b.example.com (unchanged) go on; a new partner-a
// connection gets alert 49.
func TestAuthzReloadRemovedFromAllow(t *testing.T) {
	t.Parallel()
	needTools(t, "openssl")
	e := arStart(t, arPolicy{allow: []any{arAcme, arGlobex}})
	var gone []*arHeld
	for _, k := range [][2]string{{"ws", "a.example.com"}, {"ka", "a.example.com"}, {"tcp", "t.example.com"}} {
		gone = append(gone, e.open(t, k[0], k[1], arA))
	}
	ssl := e.opensslStream(t, arA)
	var kept []*arHeld
	for _, k := range [][2]string{{"ws", "a.example.com"}, {"ka", "a.example.com"}, {"tcp", "t.example.com"}, {"ka", "b.example.com"}} {
		kept = append(kept, e.open(t, k[0], k[1], arB))
	}

	e.reload(t, arPolicy{allow: []any{arGlobex}})
	for _, h := range gone {
		e.wantEnded(t, h, arNotAllowed)
	}
	e.wantClosedNotify(t, ssl)
	e.wantWarnLines(t, len(gone)+1)
	if n := len(e.findLogs(func(l logLine) bool {
		return l.msg() == "connection" && l.str("route") == "t.example.com" && l.str("reason") == arNotAllowed
	})); n != 2 {
		t.Errorf("%d access lines on t.example.com with reason %q; want 2 (the Go and the openssl stream)", n, arNotAllowed)
	}
	e.wantUntouched(t, "after", kept...)
	e.wantRefusedNew(t, arA)
}

// A reload that reorders partner-a's allow entry and adds another checks
// its connections again and leaves them alone: the WebSocket and the tcp
// stream echo, the keep-alive connection serves the next request on the
// same socket, through the route's kept proxy (no new connection to the
// server).
func TestAuthzReloadStillAdmitted(t *testing.T) {
	t.Parallel()
	e := arStart(t, arPolicy{allow: []any{arAcme, arGlobex}})
	ws := e.open(t, "ws", "a.example.com", arA)
	ka := e.open(t, "ka", "a.example.com", arA)
	tcp := e.open(t, "tcp", "t.example.com", arA)
	servers := e.web.accepted()

	e.reload(t, arPolicy{allow: []any{arGlobex, cfgMap{"cn": "initech-*"}, arAcme}})
	e.wantWarnLines(t, 0)
	// arKA never reconnects: a request served is served on the same socket.
	e.wantUntouched(t, "after", ws, ka, tcp)
	if n := e.web.accepted(); n != servers {
		t.Errorf("the server accepted %d connections after the reload; want none (the request on the kept proxy's connection)", n-servers)
	}
}

// reauthorize_on_reload: false: a reload that removes partner-a from the
// allow list leaves its open connections alone (they echo, the keep-alive
// connection serves the next request), while a new partner-a connection
// gets alert 49.
func TestAuthzReloadOff(t *testing.T) {
	t.Parallel()
	needTools(t, "openssl")
	off := false
	e := arStart(t, arPolicy{allow: []any{arAcme, arGlobex}, reauth: &off})
	ws := e.open(t, "ws", "a.example.com", arA)
	ka := e.open(t, "ka", "a.example.com", arA)
	tcp := e.open(t, "tcp", "t.example.com", arA)

	e.reload(t, arPolicy{allow: []any{arGlobex}, reauth: &off})
	e.wantWarnLines(t, 0)
	e.wantUntouched(t, "after", ws, ka, tcp)
	e.wantRefusedNew(t, arA)
}

// A reload that replaces the client_ca [A, B] of a.example.com and
// t.example.com by [B]: partner-a's connections (CA A) are ended with
// "access denied after reload: certificate no longer verifies against the
// route's client_ca"; partner-c's (CA B) WebSocket and tcp stream go on.
// Its idle keep-alive connection is drained as on any reload that changes
// a route's TLS, not refused.
func TestAuthzReloadClientCA(t *testing.T) {
	t.Parallel()
	e := arStart(t, arPolicy{cas: []string{"A", "B"}})
	var gone, kept []*arHeld
	for _, k := range [][2]string{{"ws", "a.example.com"}, {"ka", "a.example.com"}, {"tcp", "t.example.com"}} {
		gone = append(gone, e.open(t, k[0], k[1], arA))
		kept = append(kept, e.open(t, k[0], k[1], arC))
	}

	e.reload(t, arPolicy{cas: []string{"B"}})
	for _, h := range gone {
		e.wantEnded(t, h, arNotVerified)
	}
	e.wantWarnLines(t, len(gone))
	e.wantUntouched(t, "after", kept[0], kept[2])
	drained := kept[1]
	if err := drained.s.ended(""); err != nil {
		t.Errorf("%s after the reload that changed its route's TLS: %v; want drained", drained.what, err)
	}
	if l := e.nextAccessLine(t, drained.s.local(), drained.lines); l.str("reason") != "closed: the route changed in a reload (closed when idle)" {
		t.Errorf("%s: access line %v; want the reload's drain as the reason, not a refusal nor \"client closed\"", drained.what, l)
	}
}

// partner-a's keep-alive connection has a request in flight (its server
// holds it) across a reload that removes partner-a and a second reload:
// the request is answered, then the connection is closed with the reason,
// and its "no longer authorized" line is written once, not again by the
// second reload.
func TestAuthzReloadRequestInFlight(t *testing.T) {
	t.Parallel()
	e := arStart(t, arPolicy{allow: []any{arAcme, arGlobex}})
	h := e.open(t, "ka", "a.example.com", arA)
	ka := h.s.(*arKA)
	_ = ka.c.SetDeadline(time.Now().Add(4 * waitLong)) // two reloads while the request is held
	if _, err := io.WriteString(ka.c, "GET /hold/in-flight HTTP/1.1\r\nHost: a.example.com\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if !poll(waitLong, func() bool { return e.web.holding() == 1 }) {
		t.Fatalf("the server did not get the request within %v", waitLong)
	}

	e.reload(t, arPolicy{allow: []any{arGlobex}})
	e.reload(t, arPolicy{allow: []any{arGlobex, cfgMap{"cn": "initech-*"}}})
	if n := e.accessCount(h.s.local()); n != h.lines {
		t.Errorf("%s ended with its request in flight; want it answered first", h.what)
	}
	e.web.unhold()
	resp, err := http.ReadResponse(ka.br, nil)
	if err != nil {
		t.Fatalf("the request in flight during the reload: %v; want it answered", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || string(body) != "ar /hold/in-flight\n" {
		t.Errorf("the request in flight: status %d, body %q, %v; want 200 \"ar /hold/in-flight\\n\"", resp.StatusCode, body, err)
	}
	e.wantEnded(t, h, arNotAllowed)
}
