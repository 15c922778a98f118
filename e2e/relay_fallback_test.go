package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// rlInjectedEMFILE matches a pipe2(2) that strace made fail with EMFILE.
var rlInjectedEMFILE = regexp.MustCompile(`pipe2\(.*= -1 EMFILE .*\(INJECTED\)`)

// At the descriptor limit no pipe can be made (every pipe2 fails with
// EMFILE, injected by strace): splicing is an optimisation, so a
// passthrough stream that fills its reads goes on through the relay's
// buffers. 16 MiB echo back whole through the binary, the connection
// ends "client closed" with its bytes counted; before the fix the relay
// reset such a stream ("client error: pipe2: too many open files").
func TestRlPassthroughNoPipeFallsBack(t *testing.T) {
	t.Parallel()
	needTools(t, "strace")
	api := startBackend(t, "nopipe-1")
	cfg := loadYAML(t, "testdata/nodefault.yaml")
	mapServers(t, cfg, map[string]string{"127.0.0.1:9001": api.Addr()})
	addr := freeAddr(t)
	listenerCfg(t, cfg, 0)["address"] = addr
	path := writeConfig(t, cfg)
	trace := filepath.Join(t.TempDir(), "strace.out")
	e := startEdge(t, path, addr, []string{"strace", "-f", "--seccomp-bpf", "-e", "trace=pipe2",
		"-e", "inject=pipe2:error=EMFILE", "-o", trace})

	const size = 16 << 20
	payload := make([]byte, size)
	if _, err := rand.Read(payload); err != nil {
		t.Fatal(err)
	}
	c := mustDial(t, e.addr, clientOpts{SNI: "api.example.com", Deadline: time.Minute})
	_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		werr <- err
	}()
	h := sha256.New()
	n, err := io.CopyN(h, c.r, size)
	if err != nil {
		t.Fatalf("reading the echo of 16 MiB: %v after %d bytes", err, n)
	}
	if err := <-werr; err != nil {
		t.Fatalf("writing 16 MiB: %v", err)
	}
	want := sha256.Sum256(payload)
	if !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatal("the 16 MiB came back different")
	}
	l := e.closeAndLog(t, c)
	// The client closes; the echo server answers its FIN with its own, and
	// on a loaded machine (under strace) the relay may read that end first.
	if got := l.str("reason"); got != "client closed" && got != "server closed" {
		t.Errorf("access line reason: got %q; want client closed or server closed", got)
	}
	if up, _ := l["bytes_up"].(float64); up < size {
		t.Errorf("access line bytes_up = %v; want >= %d", l["bytes_up"], size)
	}
	if down, _ := l["bytes_down"].(float64); down < size {
		t.Errorf("access line bytes_down = %v; want >= %d", l["bytes_down"], size)
	}
	e.stop() // strace writes its file completely when tlsedge exits

	out, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	// The fault was met: the relay asked for a pipe and got EMFILE.
	if !rlInjectedEMFILE.Match(out) {
		t.Errorf("strace saw no pipe2 failing with an injected EMFILE: the relay never tried to splice\n%.2000s", out)
	}
	// The relay said so once (its loop logs at most once a minute).
	noPipe := e.findLogs(func(l logLine) bool { return strings.Contains(l.msg(), "no pipe for splice") })
	if len(noPipe) != 1 || !strings.Contains(noPipe[0].str("error"), "pipe2: too many open files") {
		t.Errorf("relay's fallback warning: got %v; want one line with error pipe2: too many open files", noPipe)
	}
	if crashed := e.findLogs(func(l logLine) bool { return l["panic"] != nil }); len(crashed) != 0 {
		t.Errorf("tlsedge logged a panic: %v", crashed)
	}
}
