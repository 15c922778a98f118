package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// endRecorder is a plaintext TCP server that echoes and records how each
// connection's reading ended: io.EOF (an orderly FIN) or an error (a reset).
type endRecorder struct {
	ln   net.Listener
	mu   sync.Mutex
	ends []error
}

func startEndRecorder(t *testing.T) *endRecorder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &endRecorder{ln: ln}
	g := newConnGroup(t, "end recorder")
	g.serve(ln, r.echo)
	t.Cleanup(g.stop)
	return r
}

// echo echoes what c sends and records how the reading ended.
func (r *endRecorder) echo(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(waitLong))
	buf := make([]byte, 1024)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			_, _ = c.Write(buf[:n])
		}
		if err != nil {
			r.mu.Lock()
			r.ends = append(r.ends, err)
			r.mu.Unlock()
			return
		}
	}
}

func (r *endRecorder) endings() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.ends...)
}

// Issue, directory: "DELETE /api/v1/connections/{id} closes one ...
// passthrough and tcp get FIN both ways": through a terminate route of
// protocol tcp, the client gets close_notify and EOF, the server an
// orderly FIN (not a reset).
func TestCloseTerminateTCPWithFIN(t *testing.T) {
	t.Parallel()
	p := writeTermFiles(t)
	srv := startEndRecorder(t)
	cfg := cfgMap{
		"log": cfgMap{"level": "info", "format": "json", "access": true},
		"listeners": []any{cfgMap{"name": "public", "address": "", "routes": []any{
			termRoute(p, "raw.example.com", "terminate", "tcp", "raw", "", nil)}}},
		"backends": []any{cfgMap{"name": "raw", "servers": servers(srv.ln.Addr().String()), "health": cfgMap{"type": "none"}}},
	}
	adminAddr := withAdmin(t, cfg)
	e := runEdge(t, cfg)
	admin := newAdmin(t, adminAddr)

	c, err := tls.Dial("tcp", e.addr, &tls.Config{ServerName: "raw.example.com", RootCAs: thePKI.serverCA.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(waitLong))
	if _, err := io.WriteString(c, "ping"); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "ping" {
		t.Fatalf("echo through the tcp route: %q, %v", got, err)
	}
	conns := admin.connections("sni=raw.example.com")
	if len(conns) != 1 || conns[0].Mode != "terminate" || conns[0].Protocol != "tcp" {
		t.Fatalf("directory: %+v; want one terminate tcp connection", conns)
	}
	if st := admin.do(http.MethodDelete, "/api/v1/connections/"+strconv.FormatUint(conns[0].ID, 10), nil, nil); st != http.StatusOK {
		t.Fatalf("DELETE: status %d", st)
	}
	if n, err := c.Read(got); err != io.EOF {
		t.Errorf("the client's read after DELETE: %d bytes, %v; want io.EOF (close_notify)", n, err)
	}
	var ends []error
	if !poll(waitLong, func() bool { ends = srv.endings(); return len(ends) == 1 }) {
		t.Fatalf("the server's connection did not end")
	}
	if ends[0] != io.EOF {
		t.Errorf("the server's read ended with %v; want io.EOF (a FIN, not a reset)", ends[0])
	}
}

// Shutdown: past shutdown.grace, the streams still open are ended as a
// drain ends them: a WebSocket gets close 1001 with the reason, and the
// process exits cleanly.
func TestShutdownGraceEndsWebSockets(t *testing.T) {
	t.Parallel()
	p := writeTermFiles(t)
	b := startHTTPBackend(t, "sd-1")
	cfg := cfgMap{
		"log":      cfgMap{"level": "info", "format": "json", "access": true},
		"shutdown": cfgMap{"grace": "1s"},
		"listeners": []any{cfgMap{"name": "public", "address": "", "routes": []any{
			termRoute(p, "ws.example.com", "terminate", "http", "ws", "require", "xfcc")}}},
		"backends": []any{cfgMap{"name": "ws", "servers": servers(b.Addr()), "health": cfgMap{"type": "none"}}},
	}
	e := runEdge(t, cfg)
	ws, _ := wsDial(t, e.addr, "ws.example.com", "/hold", cliValid)

	e.stopped.Store(true) // this test stops it
	e.signal(syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_, _, err := ws.Read(ctx)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusGoingAway || !strings.Contains(ce.Reason, "shutting down") {
		t.Errorf("the WebSocket's read at shutdown: %v; want close 1001 \"shutting down\"", err)
	}
	select {
	case <-e.done:
	case <-time.After(20 * time.Second):
		t.Fatal("tlsedge did not exit within 20 s of SIGTERM (grace 1s)")
	}
	if e.exitErr != nil || strings.Contains(e.stderr.String(), "WARNING: DATA RACE") {
		t.Errorf("exit: %v; want a clean exit\n%s", e.exitErr, e.stderr.String())
	}
	// The WebSocket's access line is in the log once the process is gone.
	if lines := e.findLogs(func(l logLine) bool { return l.msg() == "connection" && l.str("sni") == "ws.example.com" }); len(lines) != 1 {
		t.Errorf("%d access lines of the WebSocket in the log after exit, want 1 (queued lines written before exit)\n%s", len(lines), e.stderr.String())
	}
}

// A config that validates but cannot start (its listener's address is
// taken) ends the process with exit code 1 and one JSON line that names the
// config and the address: the line is written before the process exits
// (the log's writer is flushed on the way out).
func TestStartFailureLogged(t *testing.T) {
	t.Parallel()
	p := writeTermFiles(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	path := writeConfig(t, cfgMap{
		"listeners": []any{cfgMap{"name": "public", "address": taken.Addr().String(), "routes": []any{
			termRoute(p, "app.example.com", "terminate", "http", "app", "require", "xfcc")}}},
		"backends": []any{cfgMap{"name": "app", "servers": servers("127.0.0.1:9"), "health": cfgMap{"type": "none"}}},
	})
	cmd := exec.Command(binPath, "run", "-c", path)
	cmd.Env = cleanEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("tlsedge run with its address taken: %v, want exit code 1\n%s", err, stderr.String())
	}
	p2 := &edgeProc{stderr: &syncBuffer{}}
	p2.stderr.Write(stderr.Bytes())
	lines := p2.findLogs(func(l logLine) bool { return l.msg() == "cannot start" })
	if len(lines) != 1 || lines[0].str("config") != path || !strings.Contains(lines[0].str("error"), taken.Addr().String()) {
		t.Errorf("want one \"cannot start\" line naming %s and %s; stderr:\n%s", path, taken.Addr(), stderr.String())
	}
}
