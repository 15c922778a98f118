package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// spliceResult matches a finished splice(2) in strace -f output, also the
// "<... splice resumed>" half of a call strace printed in two parts.
var spliceResult = regexp.MustCompile(`(?m)(?:splice\(|<\.\.\. splice resumed>).*\)\s+=\s+(-?\d+)`)

// Design, "Fast paths": "Passthrough must splice: ... io.Copy between the raw
// *net.TCPConns ... so Linux moves bytes with splice(2) and no copy through
// user space"; pitfall "a passthrough path that copies through user space
// and so cannot splice".
func TestPassthroughSplices(t *testing.T) {
	t.Parallel()
	e, _, trace := straceEcho16MiB(t, "bulk-1", "-e", "trace=splice")
	e.stop() // strace writes its file completely when tlsedge exits

	out, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	var calls int
	var moved int64
	for _, m := range spliceResult.FindAllSubmatch(out, -1) {
		if k, _ := strconv.ParseInt(string(m[1]), 10, 64); k > 0 {
			calls++
			moved += k
		}
	}
	t.Logf("strace: %d successful splice calls moved %d bytes", calls, moved)
	// Each byte is spliced twice (socket -> pipe, pipe -> socket), and
	// 16 MiB went each way (plus TLS records' overhead). The relay copies
	// the start of each direction through its buffer until it sees bulk:
	// at most 64 KiB and one 16 KiB read (tlsmode rlBulkAfter), so up to
	// 80 KiB a direction, counted twice, are not spliced.
	const size, unspliced = 16 << 20, 2 * 2 * 80 << 10
	if moved < 4*size-unspliced {
		t.Errorf("strace saw %d successful splice calls moving %d bytes; want at least %d (16 MiB each way, spliced in and out, but for the relay's first 80 KiB a direction)\n%.2000s",
			calls, moved, 4*size-unspliced, out)
	}
}

// straceEcho16MiB runs tlsedge under strace (with straceArgs, e.g. the
// syscalls to trace and faults to inject) on a passthrough route to an echo
// server named server, sends 16 MiB through it and checks they come back
// whole, then closes and returns the edge, the connection's access line
// (bytes_up and bytes_down checked to be at least 16 MiB) and the trace's
// path (complete once e.stop() has returned).
func straceEcho16MiB(t *testing.T, server string, straceArgs ...string) (*edgeProc, logLine, string) {
	t.Helper()
	needTools(t, "strace")
	api := startBackend(t, server)
	cfg := loadYAML(t, "testdata/nodefault.yaml")
	mapServers(t, cfg, map[string]string{"127.0.0.1:9001": api.Addr()})
	addr := freeAddr(t)
	listenerCfg(t, cfg, 0)["address"] = addr
	path := writeConfig(t, cfg)
	trace := filepath.Join(t.TempDir(), "strace.out")
	e := startEdge(t, path, addr, append(append([]string{"strace", "-f", "--seccomp-bpf"}, straceArgs...), "-o", trace))

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
	// The client ends as a careful TLS client does: its close_notify, then
	// the server's read to the end, then close. A client that closed at
	// once could have the server's close_notify unread in its socket when
	// it closes (its goroutine descheduled between the alert and close, on
	// a loaded machine), and its kernel would answer with a reset: the
	// access line would then say "client reset", rightly.
	if err := c.CloseWrite(); err != nil {
		t.Fatalf("sending close_notify: %v", err)
	}
	if _, err := io.Copy(io.Discard, c.r); err != nil {
		t.Fatalf("reading to the server's close_notify: %v", err)
	}
	l := e.closeAndLog(t, c)
	if up, _ := l["bytes_up"].(float64); up < size {
		t.Errorf("access line bytes_up = %v; want >= %d", l["bytes_up"], size)
	}
	if down, _ := l["bytes_down"].(float64); down < size {
		t.Errorf("access line bytes_down = %v; want >= %d", l["bytes_down"], size)
	}
	return e, l, trace
}
