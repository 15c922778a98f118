package e2e

import (
	"os"
	"regexp"
	"strings"
	"testing"
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
	e, l, trace := straceEcho16MiB(t, "nopipe-1", "-e", "trace=pipe2", "-e", "inject=pipe2:error=EMFILE")
	// The client sends close_notify; the echo server answers with its own
	// and closes, and the client closes once it read that: the relay may see
	// either end first.
	if got := l.str("reason"); got != "client closed" && got != "server closed" {
		t.Errorf("access line reason: got %q; want client closed or server closed", got)
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
