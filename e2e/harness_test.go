// Package e2e builds the tlsedge binary once (with -race, so data races in the
// server fail the suite too) and drives it as a user would: config files from
// examples/ rewritten to free local ports, real mTLS backends written with
// crypto/tls, and real clients (openssl s_client, curl, Go's crypto/tls).
// Nothing here imports tlsedge internals to fake a path; package certs is used
// only to mint a throwaway PKI (pki_test.go).
//
// Every wait is bounded and every process or server a test starts, the test
// stops in t.Cleanup.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// Shared by every test, set up once in TestMain.
var (
	binPath     string   // the tlsedge binary, built with -race
	moduleRoot  string   // the module's root folder (..)
	builtCommit string   // the git commit the binary was built from (-X main.commit)
	thePKI      *testPKI // the throwaway PKI (pki_test.go)
)

// waitLong bounds every wait for something that should happen ("within 10 s").
const waitLong = 10 * time.Second

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "tlsedge-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	moduleRoot, err = filepath.Abs("..")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: the go command is not in PATH:", err)
		return 1
	}
	binPath = filepath.Join(dir, "tlsedge")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// As the Makefile does: the commit built goes into `tlsedge version`.
	head, err := exec.Command("git", "-C", moduleRoot, "rev-parse", "HEAD").Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: git rev-parse HEAD:", err)
		return 1
	}
	builtCommit = strings.TrimSpace(string(head))
	build := exec.CommandContext(ctx, goBin, "build", "-race", "-ldflags", "-X main.commit="+builtCommit, "-o", binPath, "./cmd/tlsedge")
	build.Dir = moduleRoot
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build -race ./cmd/tlsedge failed: %v\n%s", err, out)
		return 1
	}
	thePKI, err = newPKI(filepath.Join(dir, "pki"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: making the throwaway PKI:", err)
		return 1
	}
	return m.Run()
}

// needTools fails the test (never skips: CI installs them) when a tool is missing.
func needTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is required by the e2e tests and is not installed: %v", tool, err)
		}
	}
}

// ---------------------------------------------------------------- output capture

// syncBuffer is a goroutine-safe bytes.Buffer for a child's stdout/stderr.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// poll calls cond every 10-50 ms until it is true or d has passed.
func poll(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	sleep := 10 * time.Millisecond
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(sleep)
		if sleep < 50*time.Millisecond {
			sleep += 10 * time.Millisecond
		}
	}
}

// ---------------------------------------------------------------- configs

// cfgMap is a config file read generically, to be rewritten and written back.
type cfgMap = map[string]any

// loadYAML reads a YAML config (path relative to the e2e folder) into a map.
func loadYAML(t testing.TB, path string) cfgMap {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m cfgMap
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

// loadExample reads examples/<name>.
func loadExample(t testing.TB, name string) cfgMap {
	return loadYAML(t, filepath.Join(moduleRoot, "examples", name))
}

func asList(t testing.TB, v any, what string) []any {
	t.Helper()
	l, ok := v.([]any)
	if !ok {
		t.Fatalf("config: %s is %T, want a list", what, v)
	}
	return l
}

func asMap(t testing.TB, v any, what string) cfgMap {
	t.Helper()
	m, ok := v.(cfgMap)
	if !ok {
		t.Fatalf("config: %s is %T, want a map", what, v)
	}
	return m
}

// listenerCfg returns listeners[i].
func listenerCfg(t testing.TB, cfg cfgMap, i int) cfgMap {
	t.Helper()
	ls := asList(t, cfg["listeners"], "listeners")
	if i >= len(ls) {
		t.Fatalf("config has %d listeners, want index %d", len(ls), i)
	}
	return asMap(t, ls[i], fmt.Sprintf("listeners[%d]", i))
}

// backendCfg returns the backend called name.
func backendCfg(t testing.TB, cfg cfgMap, name string) cfgMap {
	t.Helper()
	for i, b := range asList(t, cfg["backends"], "backends") {
		m := asMap(t, b, fmt.Sprintf("backends[%d]", i))
		if m["name"] == name {
			return m
		}
	}
	t.Fatalf("config has no backend %q", name)
	return nil
}

// routeCfg returns the route of listeners[li] whose sni list holds pattern.
func routeCfg(t testing.TB, cfg cfgMap, li int, pattern string) cfgMap {
	t.Helper()
	for j, r := range asList(t, listenerCfg(t, cfg, li)["routes"], "routes") {
		m := asMap(t, r, fmt.Sprintf("routes[%d]", j))
		for _, p := range asList(t, m["sni"], "sni") {
			if p == pattern {
				return m
			}
		}
	}
	t.Fatalf("listeners[%d] has no route for %q", li, pattern)
	return nil
}

// mapServers rewrites every backends[].servers[].address through addrs
// (old address -> new); an address without a mapping fails the test, so a
// config cannot silently point at a real port on the machine.
func mapServers(t testing.TB, cfg cfgMap, addrs map[string]string) {
	t.Helper()
	for i, b := range asList(t, cfg["backends"], "backends") {
		bm := asMap(t, b, fmt.Sprintf("backends[%d]", i))
		for j, s := range asList(t, bm["servers"], "servers") {
			sm := asMap(t, s, fmt.Sprintf("backends[%d].servers[%d]", i, j))
			old, _ := sm["address"].(string)
			nu, ok := addrs[old]
			if !ok {
				t.Fatalf("config: no new address for server %q of backend %v", old, bm["name"])
			}
			sm["address"] = nu
		}
	}
}

// writeConfig writes cfg as YAML into a new temp folder and returns its path.
func writeConfig(t testing.TB, cfg cfgMap) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "edge.yaml")
	rewriteConfig(t, path, cfg)
	return path
}

// rewriteConfig replaces the file at path atomically (write + rename), as an
// editor or a ConfigMap update would, so tlsedge never reads half a file.
func rewriteConfig(t testing.TB, path string, cfg cfgMap) {
	t.Helper()
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment
// ago, for tlsedge (or a test server started later) to listen on.
func freeAddr(t testing.TB) string {
	t.Helper()
	for range 1000 {
		port := freePorts.next()
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue // taken by another program: the next one
		}
		addr := l.Addr().String()
		l.Close()
		return addr
	}
	t.Fatal("no free port in 20000-32767")
	return ""
}

// freePorts hands out ports below Linux's ephemeral range (32768-60999 by
// default), each once per run: a port freeAddr closed for tlsedge to bind
// cannot be taken meanwhile by a client socket's ephemeral port (the suite
// opens thousands) or be handed to another parallel test.
var freePorts = &portSeq{n: 20000 + os.Getpid()%5000}

type portSeq struct {
	mu sync.Mutex
	n  int
}

func (p *portSeq) next() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	if p.n > 32767 {
		p.n = 20000
	}
	return p.n
}

// ---------------------------------------------------------------- the tlsedge process

// edgeProc is one running `tlsedge run`.
type edgeProc struct {
	t       testing.TB
	cmd     *exec.Cmd
	stderr  *syncBuffer
	stdout  *syncBuffer
	done    chan struct{} // closed when the process has exited
	exitErr error         // set before done is closed
	addr    string        // listeners[0].address
	cfgPath string
	pid     func() int // the pid to signal (the tlsedge process, also under strace)
	stopped atomic.Bool
}

// runEdge sets listeners[0].address of cfg to a free port, writes it, starts
// `tlsedge run -c` on it, and waits until the listener accepts.
func runEdge(t testing.TB, cfg cfgMap) *edgeProc {
	t.Helper()
	addr := freeAddr(t)
	listenerCfg(t, cfg, 0)["address"] = addr
	path := writeConfig(t, cfg)
	return startEdge(t, path, addr, nil)
}

// startEdge starts `tlsedge run -c path`, prefixed by wrap (e.g. strace) when
// wrap is not empty, and waits (bounded) until addr accepts connections. It
// registers a cleanup that stops the process with SIGTERM and fails the test
// when tlsedge exited early, did not exit cleanly, or reported a data race.
func startEdge(t testing.TB, path, addr string, wrap []string) *edgeProc {
	t.Helper()
	p := launchEdge(t, path, addr, wrap)
	p.waitReady(t)
	return p
}

// launchEdge starts `tlsedge run -c path` (as startEdge) without waiting
// for it: several instances can start at the same moment. Call waitReady.
func launchEdge(t testing.TB, path, addr string, wrap []string) *edgeProc {
	t.Helper()
	args := append(append([]string{}, wrap...), binPath, "run", "-c", path)
	p := &edgeProc{
		t:       t,
		cmd:     exec.Command(args[0], args[1:]...),
		stderr:  &syncBuffer{},
		stdout:  &syncBuffer{},
		done:    make(chan struct{}),
		addr:    addr,
		cfgPath: path,
	}
	p.cmd.Stderr = p.stderr
	p.cmd.Stdout = p.stdout
	p.cmd.Env = cleanEnv()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting tlsedge: %v", err)
	}
	p.pid = func() int { return p.cmd.Process.Pid }
	if len(wrap) > 0 {
		p.pid = func() int { return childPid(t, p.cmd.Process.Pid) }
	}
	go func() {
		p.exitErr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.stop)
	return p
}

// waitReady waits (bounded) until the listener accepts and tlsedge logged
// that it started.
func (p *edgeProc) waitReady(t testing.TB) {
	t.Helper()
	addr := p.addr
	// Readiness: poll-connect the listener, bounded.
	ready := poll(waitLong, func() bool {
		select {
		case <-p.done:
			return true
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	select {
	case <-p.done:
		t.Fatalf("tlsedge exited while starting: %v\nstderr:\n%s", p.exitErr, p.stderr.String())
	default:
	}
	if !ready {
		t.Fatalf("tlsedge did not accept on %s within %v\nstderr:\n%s", addr, waitLong, p.stderr.String())
	}
	p.waitLog(t, "tlsedge started", func(l logLine) bool { return l.msg() == "tlsedge started" })
}

// cleanEnv is the environment without TLSEDGE_* variables, so a developer's
// own settings cannot change what the tests see.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TLSEDGE_") {
			env = append(env, kv)
		}
	}
	return env
}

func (p *edgeProc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := syscall.Kill(p.pid(), sig); err != nil {
		p.t.Errorf("sending %v to tlsedge: %v", sig, err)
	}
}

// childPid returns the pid of the (first) child of process pid, waiting a
// bounded time for it to appear: the tlsedge process started by a wrapper
// such as strace.
func childPid(t testing.TB, pid int) int {
	t.Helper()
	var child int
	path := fmt.Sprintf("/proc/%d/task/%d/children", pid, pid)
	poll(waitLong, func() bool {
		b, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			return false
		}
		child, _ = strconv.Atoi(f[0])
		return child > 0
	})
	if child == 0 {
		t.Fatalf("no child process of %d within %v", pid, waitLong)
	}
	return child
}

// exited reports whether the process has exited.
func (p *edgeProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits (bounded) for a clean exit.
func (p *edgeProc) stop() {
	if p.stopped.Swap(true) {
		return
	}
	t := p.t
	if p.exited() {
		t.Errorf("tlsedge exited before the test stopped it: %v\nstderr:\n%s", p.exitErr, p.stderr.String())
		return
	}
	_ = syscall.Kill(p.pid(), syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second): // shutdown grace is 10 s
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("tlsedge did not exit within 20 s of SIGTERM\nstderr:\n%s", p.stderr.String())
		return
	}
	errOut := p.stderr.String()
	if strings.Contains(errOut, "WARNING: DATA RACE") {
		t.Errorf("the race detector found a data race in tlsedge:\n%s", errOut)
	} else if p.exitErr != nil {
		t.Errorf("tlsedge exited with %v after SIGTERM, want a clean exit\nstderr:\n%s", p.exitErr, errOut)
	}
}

// logLine is one JSON log line of tlsedge.
type logLine map[string]any

func (l logLine) msg() string           { return l.str("message") }
func (l logLine) str(key string) string { s, _ := l[key].(string); return s }

// logs returns every JSON line logged so far (other lines are skipped).
func (p *edgeProc) logs() []logLine {
	var out []logLine
	sc := bufio.NewScanner(strings.NewReader(p.stderr.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var l logLine
		if json.Unmarshal(line, &l) == nil {
			out = append(out, l)
		}
	}
	return out
}

// findLogs returns the lines matching pred.
func (p *edgeProc) findLogs(pred func(logLine) bool) []logLine {
	var out []logLine
	for _, l := range p.logs() {
		if pred(l) {
			out = append(out, l)
		}
	}
	return out
}

// waitLogs waits (bounded) until at least n lines match pred and returns them.
func (p *edgeProc) waitLogs(t testing.TB, n int, what string, pred func(logLine) bool) []logLine {
	t.Helper()
	var got []logLine
	ok := poll(waitLong, func() bool {
		got = p.findLogs(pred)
		return len(got) >= n || p.exited()
	})
	if !ok || len(got) < n {
		t.Fatalf("waited %v for %d log line(s): %s; got %d (tlsedge exited: %v)\nstderr:\n%s",
			waitLong, n, what, len(got), p.exited(), p.stderr.String())
	}
	return got
}

// waitLog waits (bounded) for one line matching pred and returns the first.
func (p *edgeProc) waitLog(t testing.TB, what string, pred func(logLine) bool) logLine {
	t.Helper()
	return p.waitLogs(t, 1, what, pred)[0]
}

// isAccess matches the access lines of the connection whose client address
// (as tlsedge saw it) is client.
func isAccess(client string) func(logLine) bool {
	return func(l logLine) bool { return l.msg() == "connection" && l.str("client") == client }
}

// accessCount is the number of access lines of client so far. Take it while
// the connection is still open, then wait with nextAccessLine: the kernel
// may reuse a source port, so "a line for this address" may be an old one.
func (p *edgeProc) accessCount(client string) int {
	return len(p.findLogs(isAccess(client)))
}

// nextAccessLine waits for access line n+1 of client and returns it.
func (p *edgeProc) nextAccessLine(t testing.TB, client string, n int) logLine {
	t.Helper()
	return p.waitLogs(t, n+1, "access line of client "+client, isAccess(client))[n]
}

// closeAndLog closes c, a connection through tlsedge, and returns its access
// line (written once tlsedge has released the server's slot).
func (p *edgeProc) closeAndLog(t testing.TB, c net.Conn) logLine {
	t.Helper()
	client := c.LocalAddr().String()
	n := p.accessCount(client)
	c.Close()
	return p.nextAccessLine(t, client, n)
}

// ---------------------------------------------------------------- running commands

// command is a child process (openssl, curl, tlsedge validate) with its
// combined output captured and stdin fed through a pipe the test controls.
type command struct {
	cmd   *exec.Cmd
	out   *syncBuffer
	stdin io.WriteCloser
	done  chan struct{}
	err   error
}

// startCommand starts name args with a hard deadline of limit.
func startCommand(t testing.TB, limit time.Duration, name string, args ...string) *command {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	c := &command{cmd: exec.CommandContext(ctx, name, args...), out: &syncBuffer{}, done: make(chan struct{})}
	c.cmd.Stdout = c.out
	c.cmd.Stderr = c.out
	c.cmd.Env = cleanEnv()
	c.cmd.WaitDelay = time.Second
	var err error
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		cancel()
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		c.err = c.cmd.Wait()
		cancel()
		close(c.done)
	}()
	t.Cleanup(func() {
		c.stdin.Close()
		select {
		case <-c.done:
		case <-time.After(5 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.done
		}
	})
	return c
}

// waitOutput waits (bounded) until the output contains s.
func (c *command) waitOutput(s string, d time.Duration) bool {
	return poll(d, func() bool {
		if strings.Contains(c.out.String(), s) {
			return true
		}
		select {
		case <-c.done:
			return strings.Contains(c.out.String(), s)
		default:
			return false
		}
	})
}

// wait closes stdin and waits (bounded) for the exit; it returns the exit
// error (nil for exit 0).
func (c *command) wait(t testing.TB, d time.Duration) error {
	t.Helper()
	c.stdin.Close()
	select {
	case <-c.done:
		return c.err
	case <-time.After(d):
		t.Fatalf("%s did not exit within %v\noutput:\n%s", c.cmd.Path, d, c.out.String())
		return nil
	}
}

// exitCode is the exit status of err from exec (0 for nil, -1 if not an exit).
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// runTlsedge runs the binary to completion (bounded) and returns stdout,
// stderr and the exit code.
func runTlsedge(t testing.TB, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runTlsedgeEnv(t, nil, args...)
}

// runTlsedgeEnv is runTlsedge with extra environment variables (KEY=value).
func runTlsedgeEnv(t testing.TB, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Env = append(cleanEnv(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("tlsedge %s did not finish within 30 s", strings.Join(args, " "))
	}
	code = exitCode(err)
	if code < 0 {
		t.Fatalf("tlsedge %s: %v", strings.Join(args, " "), err)
	}
	if strings.Contains(e.String(), "WARNING: DATA RACE") {
		t.Errorf("data race in tlsedge %s:\n%s", strings.Join(args, " "), e.String())
	}
	return o.String(), e.String(), code
}
