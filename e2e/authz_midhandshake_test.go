package e2e

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Authorization of a handshake that a reload overtakes, on the built
// binary (tlsmode/terminate.go Terminate.Recheck, edge/reauth.go recheck):
// the reload's re-authorization pass only sees connections whose handshake
// is done, so a handshake still in progress during the reload is judged,
// once it ends, by the route now in force. partner-a dials t.example.com
// (tcp) with Go's crypto/tls over mhGate, which holds its second flight
// (Certificate, CertificateVerify, Finished) until the reload is in force.

// mhGate is the client's socket: its first Write (the ClientHello) goes
// out, the second waits until open is called; held is closed once the
// second Write is waiting, i.e. the client has read the server's whole
// first flight and the server waits for the client's certificate.
type mhGate struct {
	net.Conn
	mu       sync.Mutex
	writes   int
	held     chan struct{}
	release  chan struct{}
	openOnce sync.Once
}

func (g *mhGate) Write(p []byte) (int, error) {
	g.mu.Lock()
	g.writes++
	n := g.writes
	g.mu.Unlock()
	if n == 2 {
		close(g.held)
		<-g.release
	}
	return g.Conn.Write(p)
}

// open lets the held Write (and every later one) through.
func (g *mhGate) open() { g.openOnce.Do(func() { close(g.release) }) }

// mhEcho is the TCP echo server behind t.example.com, counting the
// connections it accepts.
type mhEcho struct {
	addr   string
	mu     sync.Mutex
	accept int
}

func mhStartEcho(t *testing.T) *mhEcho {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &mhEcho{addr: raw.Addr().String()}
	g := newConnGroup(t, "echo server")
	g.serve(&countingListener{Listener: raw, count: func() { s.mu.Lock(); s.accept++; s.mu.Unlock() }},
		func(c net.Conn) { _, _ = io.Copy(c, c) })
	t.Cleanup(g.stop)
	return s
}

func (s *mhEcho) accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accept
}

// mhConfig is arConfig with a listener handshake_timeout long enough that
// the held handshake outlives a reload on a loaded machine.
func mhConfig(t *testing.T, e *arEdge, pol arPolicy) cfgMap {
	t.Helper()
	cfg := arConfig(e.f, e.adminAddr, e.web.addr, e.echo, pol)
	listenerCfg(t, cfg, 0)["handshake_timeout"] = "2m"
	return cfg
}

// mhStart starts tlsedge on mhConfig with pol, the echo server mhEcho.
func mhStart(t *testing.T, pol arPolicy) (*arEdge, *mhEcho) {
	t.Helper()
	echo := mhStartEcho(t)
	e := &arEdge{f: arWriteFiles(t), web: arStartWeb(t), echo: echo.addr, adminAddr: freeAddr(t)}
	e.edgeProc = runEdge(t, mhConfig(t, e, pol))
	return e, echo
}

// mhReload is arEdge.reload on mhConfig: it waits (bounded) for one more
// "config reloaded" line with the new file's hash.
func mhReload(t *testing.T, e *arEdge, pol arPolicy) {
	t.Helper()
	cfg := mhConfig(t, e, pol)
	listenerCfg(t, cfg, 0)["address"] = e.addr
	hash := yamlHash(t, cfg)
	done := func(l logLine) bool { return l.msg() == "config reloaded" && l.str("hash") == hash }
	before := len(e.findLogs(done))
	rewriteConfig(t, e.cfgPath, cfg)
	e.signal(syscall.SIGHUP)
	e.waitLogs(t, before+1, "config reloaded with hash "+hash, done)
}

// mhDance dials t.example.com as partner-a (TLS 1.3), holds the client's
// certificate flight, reloads with pol while the server waits for it, then
// lets it go. It returns the client connection, its address as tlsedge
// logs it, its access lines before the handshake and the client's
// handshake result.
func mhDance(t *testing.T, e *arEdge, pol arPolicy) (c *tls.Conn, local string, lines int, hsErr error) {
	t.Helper()
	raw, err := net.DialTimeout("tcp", e.addr, waitLong)
	if err != nil {
		t.Fatal(err)
	}
	g := &mhGate{Conn: raw, held: make(chan struct{}), release: make(chan struct{})}
	t.Cleanup(func() { g.open(); raw.Close() })
	_ = raw.SetDeadline(time.Now().Add(4 * waitLong))
	local = raw.LocalAddr().String()
	lines = e.accessCount(local)
	c = tls.Client(g, &tls.Config{ServerName: "t.example.com", RootCAs: thePKI.serverCA.Pool(),
		Certificates: []tls.Certificate{thePKI.ar.leaves[arA].TLS}, MinVersion: tls.VersionTLS13, MaxVersion: tls.VersionTLS13})
	done := make(chan error, 1)
	go func() { done <- c.Handshake() }()
	select {
	case <-g.held:
	case err := <-done:
		t.Fatalf("partner-a's handshake ended (%v) before its certificate flight was written; want it held", err)
	case <-time.After(waitLong):
		t.Fatalf("partner-a's certificate flight not written within %v", waitLong)
	}

	mhReload(t, e, pol)
	g.open()
	select {
	case hsErr = <-done:
	case <-time.After(2 * waitLong):
		t.Fatalf("partner-a's handshake did not end within %v after its flight was let through", 2*waitLong)
	}
	return c, local, lines, hsErr
}

// A reload removes partner-a from t.example.com's allow list while its
// handshake waits for its certificate flight: the handshake completes on
// the client's side (TLS 1.3: done once its Finished is sent), then
// tlsedge closes the connection before any byte is relayed (the next read
// is io.EOF, no echo of the message written), with one warn access line
// "access denied after reload: no longer on the route's allow list" and no
// server; the echo server accepts no connection. No "connection no longer
// authorized" line: the reload's pass did not see the handshake (else the
// test did not hold it across the reload).
func TestAuthzMidHandshakeRemoved(t *testing.T) {
	t.Parallel()
	e, echo := mhStart(t, arPolicy{allow: []any{arAcme, arGlobex}})
	c, local, lines, hsErr := mhDance(t, e, arPolicy{allow: []any{arGlobex}})
	if hsErr != nil {
		t.Errorf("partner-a's handshake (client side): %v; want it complete (TLS 1.3), the refusal after it", hsErr)
	} else {
		_, _ = io.WriteString(c, "mh after reload\n") // may fail: tlsedge may have closed already
		if b, err := bufio.NewReader(c).ReadByte(); err != io.EOF {
			t.Errorf("partner-a's connection after the handshake: read %q, %v; want io.EOF (closed by tlsedge, no echo)", b, err)
		}
	}

	l := e.nextAccessLine(t, local, lines)
	if l.str("reason") != arNotAllowed || l.str("level") != "warn" || l.str("route") != "t.example.com" ||
		l.str("client_cert") != "CN="+arCN[arA] || l.str("server") != "" {
		t.Errorf("partner-a's access line %v; want level warn, reason %q, route t.example.com, client_cert CN=%s, no server",
			l, arNotAllowed, arCN[arA])
	}
	if n := echo.accepted(); n != 0 {
		t.Errorf("the echo server accepted %d connections; want none (partner-a refused before its stream was relayed)", n)
	}
	if w := e.warnLines(0); len(w) != 0 {
		t.Errorf("%q lines %v; want none: the handshake was held across the reload, the reload's pass cannot see it", arWarnMsg, w)
	}
}

// The same dance with a reload that keeps partner-a (its allow entry
// moved, another added): the handshake ends under the new route, which
// admits it: the stream echoes, the echo server accepted its one
// connection, no access line yet (open), no warn line.
func TestAuthzMidHandshakeKept(t *testing.T) {
	t.Parallel()
	e, echo := mhStart(t, arPolicy{allow: []any{arAcme, arGlobex}})
	c, local, lines, hsErr := mhDance(t, e, arPolicy{allow: []any{arGlobex, cfgMap{"cn": "initech-*"}, arAcme}})
	if hsErr != nil {
		t.Fatalf("partner-a's handshake: %v; want it complete", hsErr)
	}
	s := &arTCP{c: c, br: bufio.NewReader(c)}
	if err := s.exchange("kept"); err != nil {
		t.Errorf("partner-a's stream after the reload that keeps it: %v; want an echo", err)
	}
	if n := echo.accepted(); n != 1 {
		t.Errorf("the echo server accepted %d connections; want 1 (partner-a's stream)", n)
	}
	if n := e.accessCount(local); n != lines {
		t.Errorf("partner-a's connection has %d access lines; want none (open): %v", n-lines, e.findLogs(isAccess(local)))
	}
	if w := e.warnLines(0); len(w) != 0 {
		t.Errorf("%q lines %v; want none", arWarnMsg, w)
	}
}
