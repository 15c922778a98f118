package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The flooded tlsedge of TestFlood, built without -race, with its servers;
// and its established traffic: 50 mTLS streams to an echo server
// exchanging a line every flStreamEvery, and steady HTTP requests every
// flRequestGap on one keep-alive mTLS connection. Each round trip is
// bounded (waitLong) and timed by phase.

// ---------------------------------------------------------------- tlsedge without -race

// flBuildPlain builds tlsedge without -race into a temp folder (the
// build cache makes this quick) and returns the binary's path.
func flBuildPlain(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tlsedge")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/tlsedge")
	build.Dir = moduleRoot
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/tlsedge (without -race): %v\n%s", err, out)
	}
	return bin
}

// flRunEdge is runEdge (harness_test.go) with another binary: it writes
// cfg with a free listener address, starts `bin run -c`, waits until the
// listener accepts and "tlsedge started" is logged, and stops it (checked
// by edgeProc.stop) in t.Cleanup.
func flRunEdge(t *testing.T, bin string, cfg cfgMap) *edgeProc {
	t.Helper()
	addr := freeAddr(t)
	listenerCfg(t, cfg, 0)["address"] = addr
	path := writeConfig(t, cfg)
	p := &edgeProc{t: t, cmd: exec.Command(bin, "run", "-c", path), stderr: &syncBuffer{}, stdout: &syncBuffer{},
		done: make(chan struct{}), addr: addr, cfgPath: path}
	p.cmd.Stderr, p.cmd.Stdout, p.cmd.Env = p.stderr, p.stdout, cleanEnv()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	p.pid = func() int { return p.cmd.Process.Pid }
	go func() {
		p.exitErr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.stop)
	if !poll(waitLong, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil || p.exited()
	}) || p.exited() {
		t.Fatalf("tlsedge did not accept on %s within %v (exited: %v)\nstderr:\n%s", addr, waitLong, p.exited(), p.stderr.String())
	}
	p.waitLog(t, "tlsedge started", func(l logLine) bool { return l.msg() == "tlsedge started" })
	return p
}

// flEdge is the flooded tlsedge: one listener with two routes requiring
// client certificates, api.example.com (terminate, http, to an HTTP
// server) and stream.example.com (terminate, tcp, to a TCP echo server),
// with 2 s timeouts so that tlsedge itself ends the junk quickly, and the
// admin endpoint on loopback.
type flEdge struct {
	*edgeProc
	admin *adminClient
	api   *httpBackend
	cert  tls.Certificate // the client certificate (CA A, CN=device-42)
}

func flStart(t *testing.T, bin string) *flEdge {
	t.Helper()
	p := writeTermFiles(t)
	api := startHTTPBackend(t, "api-1")
	echo := newConnGroup(t, "echo server")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	echo.serve(ln, func(c net.Conn) { _, _ = io.Copy(c, c) })
	t.Cleanup(echo.stop)

	httpRoute := termRoute(p, "api.example.com", "terminate", "http", "api", "require", nil)
	httpRoute["http"] = cfgMap{"read_header_timeout": "2s"}
	cfg := cfgMap{
		"certs": cfgMap{"storage": filepath.Join(p.dir, "data")},
		"listeners": []any{cfgMap{
			"name": "public", "address": "127.0.0.1:0",
			"clienthello_timeout": "2s", "handshake_timeout": "2s",
			"routes": []any{httpRoute, termRoute(p, "stream.example.com", "terminate", "tcp", "echo", "require", nil)},
		}},
		"backends": []any{
			cfgMap{"name": "api", "servers": servers(api.Addr()), "health": cfgMap{"type": "none"}},
			cfgMap{"name": "echo", "servers": servers(ln.Addr().String()), "health": cfgMap{"type": "none"}},
		},
	}
	adminAddr := withAdmin(t, cfg)
	e := flRunEdge(t, bin, cfg)
	return &flEdge{edgeProc: e, admin: newAdmin(t, adminAddr), api: api, cert: thePKI.term.clients[cliValid].TLS}
}

// ---------------------------------------------------------------- established traffic

// Phases of the established traffic (latencies are reported for the
// measured ones, not the warm-up).
const (
	flWarmup int32 = iota
	flBefore
	flDuring
	flAfter
	flPhases
)

var flPhaseNames = [flPhases]string{"in the warm-up", "before the flood", "during the flood", "after the flood"}

// flTraffic is the established traffic while it runs.
type flTraffic struct {
	phase   atomic.Int32
	lat     flLatencies
	streams []*flStream
	errs    []error // by stream: the first error
	stop    chan struct{}
	wg      sync.WaitGroup
}

// startTraffic opens the streams and starts them and steady's requests
// in phase p.
func (f *flEdge) startTraffic(t *testing.T, steady *flSteady, p int32) *flTraffic {
	t.Helper()
	tr := &flTraffic{streams: make([]*flStream, flStreamCount), errs: make([]error, flStreamCount), stop: make(chan struct{})}
	tr.phase.Store(p)
	for i := range tr.streams {
		s, err := flDialStream(f.addr, f.cert)
		if err != nil {
			t.Fatalf("opening stream %d: %v", i, err)
		}
		tr.streams[i] = s
		t.Cleanup(func() { s.Close() })
	}
	for i, s := range tr.streams {
		tr.wg.Add(1)
		go func() {
			defer tr.wg.Done()
			tr.errs[i] = s.run(i, tr.stop, &tr.phase, &tr.lat)
		}()
	}
	tr.wg.Add(1)
	go func() {
		defer tr.wg.Done()
		steady.run(tr.stop, &tr.phase, &tr.lat)
	}()
	return tr
}

// end stops the traffic, closes the streams and fails the test for each
// stream that saw an error.
func (tr *flTraffic) end(t *testing.T) {
	t.Helper()
	close(tr.stop)
	if !waitBounded(tr.wg.Wait) {
		t.Fatalf("the established traffic did not stop within %v", waitLong)
	}
	for _, s := range tr.streams {
		s.Close()
	}
	for i, err := range tr.errs {
		if err != nil {
			t.Errorf("established stream %d: %v", i, err)
		}
	}
}

// flLatencies are round-trip times of the established traffic by phase.
type flLatencies struct {
	mu       sync.Mutex
	requests [flPhases][]time.Duration
	messages [flPhases][]time.Duration
}

func (l *flLatencies) add(request bool, phase int32, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if request {
		l.requests[phase] = append(l.requests[phase], d)
	} else {
		l.messages[phase] = append(l.messages[phase], d)
	}
}

// report is p50, p99 and max of each measured phase.
func (l *flLatencies) report() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, kind := range []struct {
		name string
		ds   *[flPhases][]time.Duration
	}{{"requests", &l.requests}, {"stream messages", &l.messages}} {
		for p := flBefore; p < flPhases; p++ {
			ds := slices.Clone(kind.ds[p])
			slices.Sort(ds)
			if len(ds) == 0 {
				continue
			}
			pct := func(q float64) time.Duration { return ds[int(q*float64(len(ds)-1))].Round(10 * time.Microsecond) }
			fmt.Fprintf(&b, "  %-15s %-16s n=%4d p50 %v p99 %v max %v\n", kind.name, flPhaseNames[p], len(ds), pct(.5), pct(.99), ds[len(ds)-1].Round(10*time.Microsecond))
		}
	}
	return strings.TrimRight(b.String(), "\n")
}

// flStream is an established mTLS stream to the echo server.
type flStream struct {
	*tls.Conn
	r *bufio.Reader
}

func flDialStream(addr string, cert tls.Certificate) (*flStream, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: waitLong}, Config: &tls.Config{ServerName: "stream.example.com",
		RootCAs: thePKI.serverCA.Pool(), Certificates: []tls.Certificate{cert}}}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &flStream{Conn: c.(*tls.Conn), r: bufio.NewReader(c)}, nil
}

// exchange sends msg (one line) and reads it back, within waitLong.
func (s *flStream) exchange(msg string) error {
	_ = s.SetDeadline(time.Now().Add(waitLong))
	if _, err := io.WriteString(s, msg); err != nil {
		return err
	}
	got, err := s.r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("reading the echo: %w", err)
	}
	if got != msg {
		return fmt.Errorf("echo %q; want %q", got, msg)
	}
	return nil
}

// run exchanges a message every flStreamEvery until stop, and returns
// the first error.
func (s *flStream) run(i int, stop <-chan struct{}, phase *atomic.Int32, lat *flLatencies) error {
	tick := time.NewTicker(flStreamEvery)
	defer tick.Stop()
	for n := 0; ; n++ {
		p, start := phase.Load(), time.Now()
		if err := s.exchange(fmt.Sprintf("stream %d message %d\n", i, n)); err != nil {
			return fmt.Errorf("message %d (%s): %w", n, flPhaseNames[p], err)
		}
		lat.add(false, p, time.Since(start))
		select {
		case <-stop:
			return nil
		case <-tick.C:
		}
	}
}

// flSteady sends the steady requests: one at a time, on one keep-alive
// connection (MaxConnsPerHost 1), counting the dials.
type flSteady struct {
	client *http.Client
	base   string
	dials  atomic.Int32

	mu    sync.Mutex
	n     int // requests sent; request n asks for /steady/<n>
	errs  []string
	addrs []string // the client addresses of the connections dialled
}

func (f *flEdge) newSteady(t *testing.T) *flSteady {
	s := &flSteady{base: "https://api.example.com:" + portOf(f.addr)}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			s.dials.Add(1)
			var d net.Dialer
			c, err := d.DialContext(ctx, network, f.addr)
			if err == nil {
				s.mu.Lock()
				s.addrs = append(s.addrs, c.LocalAddr().String())
				s.mu.Unlock()
			}
			return c, err
		},
		TLSClientConfig: &tls.Config{ServerName: "api.example.com", RootCAs: thePKI.serverCA.Pool(),
			Certificates: []tls.Certificate{f.cert}, NextProtos: []string{"http/1.1"}},
		MaxConnsPerHost: 1,
	}
	s.client = &http.Client{Transport: tr, Timeout: waitLong}
	t.Cleanup(tr.CloseIdleConnections)
	return s
}

// get requests path and checks the answer.
func (s *flSteady) get(path string) (time.Duration, error) {
	start := time.Now()
	resp, err := s.client.Get(s.base + path)
	if err != nil {
		return 0, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	d := time.Since(start)
	if err != nil {
		return d, fmt.Errorf("%s: reading the body: %w", path, err)
	}
	if want := "api-1 GET " + path + "\n"; resp.StatusCode != http.StatusOK || string(body) != want {
		return d, fmt.Errorf("%s: %d %q; want 200 %q", path, resp.StatusCode, body, want)
	}
	return d, nil
}

// run requests every flRequestGap until stop.
func (s *flSteady) run(stop <-chan struct{}, phase *atomic.Int32, lat *flLatencies) {
	tick := time.NewTicker(flRequestGap)
	defer tick.Stop()
	for {
		s.mu.Lock()
		n := s.n
		s.n++
		s.mu.Unlock()
		p := phase.Load()
		d, err := s.get(fmt.Sprintf("/steady/%d", n))
		s.mu.Lock()
		if err != nil {
			s.errs = append(s.errs, fmt.Sprintf("(%s) %v", flPhaseNames[p], err))
		}
		s.mu.Unlock()
		if err == nil {
			lat.add(true, p, d)
		}
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
}

func (s *flSteady) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// locals are the client addresses of the connections dialled.
func (s *flSteady) locals() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.addrs)
}

func (s *flSteady) failures() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.errs)
}
