package edge_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tlsedge/tlsedge/certs"
	"github.com/tlsedge/tlsedge/edge"
)

// BenchmarkIdle measures what an idle connection costs the edge: it opens
// idleConns connections, lets them go idle, runs the GC and reports per
// connection the growth of the heap, the goroutine stacks and the goroutine
// count, and what was allocated while they were set up:
//
//	go test ./edge -run XXX -bench Idle -benchtime 1x
//	IDLE_PROFILE_DIR=/tmp/idle go test ./edge -run XXX -bench Idle -benchtime 1x
//
// The clients and every server behind the edge run in a child process (this
// test binary again, TestIdleHelperProcess), so the figures are the edge's
// alone, as `make compare` measures them. With IDLE_PROFILE_DIR set, every
// allocation is sampled (runtime.MemProfileRate = 1) and each case writes
// there NAME-base.pprof and NAME-held.pprof (heap profiles after GC, before
// and with the connections held: compare them with
// `go tool pprof -sample_index=inuse_space -diff_base NAME-base.pprof NAME-held.pprof`)
// and NAME-goroutines.txt (the goroutine dump with the connections held).
//
// How to read the metrics (all per idle connection):
//   - heapB/conn: HeapInuse growth (spans in use: what the heap holds),
//     liveB/conn: HeapAlloc growth (the live objects themselves);
//   - stackB/conn: StackInuse growth after 5 GCs (each GC may halve a
//     goroutine's stack that uses under a quarter of it), stack1B/conn the
//     same after the first GC (a stack a handshake grew, not shrunk yet);
//   - goroutines/conn: goroutines added;
//   - rssB/conn: resident set growth of the process (includes memory freed
//     but not yet returned to the OS);
//   - setupB/conn, setupAllocs/conn: bytes and objects allocated while the
//     connections were opened and used once (GC'd or not).
//
// Cases: calib-* are bare crypto/tls servers (no edge) blocked in a 1-byte
// Read after a TLS 1.3 handshake, the calibration of issue 8: the handshake
// on the serving goroutine, on a short-lived one, and with a verified
// client certificate. The others go through one edge: terminate protocol
// http after the mutual TLS handshake only (read_header_timeout is raised
// to 10m for it: by default such a connection is closed after 10s), after
// one keep-alive GET, with an upgraded WebSocket (one frame each way);
// reencrypt after one GET and with a WebSocket; passthrough after one echo.

const (
	idleConns   = 2000             // idle connections per case
	idleWorkers = 16               // the client's connections opened at once
	idleGCs     = 5                // GCs before a measurement
	idleWait    = 60 * time.Second // bounds every wait
	idleEnv     = "TLSEDGE_IDLE_HELPER"
	idleProfEnv = "IDLE_PROFILE_DIR"
)

// idleCase is one measurement: calib names a bare server of the parent
// ("serve", "short", "mtls"), otherwise the connections go to the edge
// with sni; kind is what the client does on each connection.
type idleCase struct{ name, calib, sni, kind string }

var idleCases = []idleCase{
	{"calib-tls-serving-goroutine", "serve", "bare.idle.test", "tls"},
	{"calib-tls-short-handshake-goroutine", "short", "bare.idle.test", "tls"},
	{"calib-mtls-serving-goroutine", "mtls", "bare.idle.test", "mtls"},
	{"terminate-handshake-only", "", "hs.idle.test", "mtls"},
	{"terminate-get", "", "term.idle.test", "get"},
	{"terminate-websocket", "", "term.idle.test", "ws"},
	{"reencrypt-get", "", "reenc.idle.test", "get"},
	{"reencrypt-websocket", "", "reenc.idle.test", "ws"},
	{"passthrough", "", "pass.idle.test", "echo"},
}

// idleStats is one snapshot of the process after idleGCs GCs.
type idleStats struct {
	heapInuse, heapAlloc, stack, stack1, total, mallocs, rss int64
	goroutines                                               int
}

func idleSnapshot(b *testing.B) idleStats {
	b.Helper()
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	s := idleStats{stack1: int64(ms.StackInuse)}
	for range idleGCs - 1 {
		runtime.GC()
	}
	runtime.ReadMemStats(&ms)
	s.heapInuse, s.heapAlloc, s.stack = int64(ms.HeapInuse), int64(ms.HeapAlloc), int64(ms.StackInuse)
	s.total, s.mallocs = int64(ms.TotalAlloc), int64(ms.Mallocs)
	s.goroutines = runtime.NumGoroutine()
	f, err := os.ReadFile("/proc/self/statm")
	if err == nil {
		if pages, err := strconv.ParseInt(strings.Fields(string(f))[1], 10, 64); err == nil {
			s.rss = pages * int64(os.Getpagesize())
		}
	}
	return s
}

// idleSettle waits until the goroutine count has not changed for a second
// (the edge finished the handshakes and requests the client saw complete).
func idleSettle(b *testing.B) {
	b.Helper()
	last, same := -1, 0
	for end := time.Now().Add(idleWait); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if g := runtime.NumGoroutine(); g == last {
			if same++; same == 10 {
				return
			}
		} else {
			last, same = g, 0
		}
	}
	b.Fatalf("goroutine count still changing after %v", idleWait)
}

func BenchmarkIdle(b *testing.B) {
	profDir := os.Getenv(idleProfEnv)
	if profDir != "" {
		runtime.MemProfileRate = 1
		if err := os.MkdirAll(profDir, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	dir := b.TempDir()
	idleWritePKI(b, dir)
	h := startIdleHelper(b, dir)
	edgeAddr := startIdleEdge(b, dir, h.backends)
	var calibDone atomic.Int64
	calib := map[string]string{}
	for _, mode := range []string{"serve", "short", "mtls"} {
		calib[mode] = startIdleBare(b, dir, mode, &calibDone)
	}
	for _, tc := range idleCases {
		b.Run(tc.name, func(b *testing.B) {
			addr := edgeAddr
			if tc.calib != "" {
				addr = calib[tc.calib]
			}
			open := func(n int) {
				calibDone.Store(0)
				h.do(b, fmt.Sprintf("open %s %s %s %d", tc.kind, addr, tc.sni, n))
				if tc.calib != "" {
					idleWaitFor(b, "bare handshakes", func() bool { return calibDone.Load() == int64(n) })
				}
				idleSettle(b)
			}
			// Warm up: shared buffers, pools, server connections.
			open(idleWorkers)
			h.do(b, "close")
			idleSettle(b)
			var sum [8]float64
			for range b.N {
				s0 := idleSnapshot(b)
				idleWriteProfile(b, profDir, tc.name+"-base.pprof", "heap", 0)
				open(idleConns)
				s1 := idleSnapshot(b)
				idleWriteProfile(b, profDir, tc.name+"-held.pprof", "heap", 0)
				idleWriteProfile(b, profDir, tc.name+"-goroutines.txt", "goroutine", 1)
				h.do(b, "close")
				idleSettle(b)
				n := float64(idleConns)
				for i, d := range []int64{s1.heapInuse - s0.heapInuse, s1.heapAlloc - s0.heapAlloc, s1.stack - s0.stack,
					s1.stack1 - s0.stack, int64(s1.goroutines - s0.goroutines), s1.rss - s0.rss, s1.total - s0.total, s1.mallocs - s0.mallocs} {
					sum[i] += float64(d) / n
				}
			}
			for i, unit := range []string{"heapB/conn", "liveB/conn", "stackB/conn", "stack1B/conn", "goroutines/conn", "rssB/conn", "setupB/conn", "setupAllocs/conn"} {
				b.ReportMetric(sum[i]/float64(b.N), unit)
			}
		})
	}
}

// idleWriteProfile writes the named pprof profile to dir/file ("" = none).
func idleWriteProfile(b *testing.B, dir, file, name string, debug int) {
	b.Helper()
	if dir == "" {
		return
	}
	f, err := os.Create(filepath.Join(dir, file))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup(name).WriteTo(f, debug); err != nil {
		b.Fatal(err)
	}
}

func idleWaitFor(b *testing.B, what string, ok func() bool) {
	b.Helper()
	for end := time.Now().Add(idleWait); !ok(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			b.Fatalf("%s: not done after %v", what, idleWait)
		}
	}
}

// idleWritePKI writes a throwaway CA (ca.pem), a server certificate for
// every name of the benchmark (server.pem, server-key.pem) and a client
// certificate (client.pem, client-key.pem) into dir.
func idleWritePKI(b *testing.B, dir string) {
	b.Helper()
	ca, err := certs.NewAuthority("idle CA")
	if err != nil {
		b.Fatal(err)
	}
	srv, err := ca.Issue(certs.Leaf{CommonName: "idle server", DNSNames: []string{"*.idle.test"}, Server: true})
	if err != nil {
		b.Fatal(err)
	}
	cli, err := ca.Issue(certs.Leaf{CommonName: "idle client", Client: true})
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), ca.PEM, 0o644); err != nil {
		b.Fatal(err)
	}
	for name, is := range map[string]*certs.Issued{"server": srv, "client": cli} {
		if _, _, err := is.WriteFiles(dir, name); err != nil {
			b.Fatal(err)
		}
	}
}

// idleTLS loads the PKI of dir: the CA pool and the named key pair.
func idleTLS(dir, name string) (*x509.CertPool, tls.Certificate, error) {
	pool := x509.NewCertPool()
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	pool.AppendCertsFromPEM(caPEM)
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem"))
	return pool, cert, err
}

// startIdleEdge starts an edge with one listener without connection
// limits (as `make compare` configures it): hs. and term.idle.test
// terminate protocol http (hs. with a 10m read_header_timeout), reenc.
// reencrypts, pass. passes through; mutual TLS everywhere.
func startIdleEdge(b *testing.B, dir string, backends []string) string {
	b.Helper()
	route := func(sni, mode, backend, extra string) string {
		return fmt.Sprintf(`      - sni: [%q]
        mode: %s
        protocol: http
        backend: %s
        identity: xfcc
        tls: {cert: %q, key: %q, client_auth: require, client_ca: %q}
%s`, sni, mode, backend, filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem"), filepath.Join(dir, "ca.pem"), extra)
	}
	yaml := `log: {level: error, access: false}
certs: {storage: ` + strconv.Quote(filepath.Join(dir, "certmagic")) + `}
listeners:
  - name: idle
    address: "127.0.0.1:0"
    max_connections: 0
    max_connections_per_ip: 0
    connection_rate_per_ip: 0
    max_handshakes: 0
    routes:
` + route("hs.idle.test", "terminate", "plain", "        http: {read_header_timeout: 10m}\n") +
		route("term.idle.test", "terminate", "plain", "") +
		route("reenc.idle.test", "reencrypt", "secure", "") + `      - sni: ["pass.idle.test"]
        mode: passthrough
        backend: echo
backends:
  - {name: plain, health: {type: none}, servers: [{address: "` + backends[0] + `"}]}
  - {name: secure, health: {type: none}, tls: {ca: ` + strconv.Quote(filepath.Join(dir, "ca.pem")) + `}, servers: [{address: "` + backends[1] + `"}]}
  - {name: echo, health: {type: none}, servers: [{address: "` + backends[2] + `"}]}
`
	cfgPath := filepath.Join(dir, "edge.yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o644); err != nil {
		b.Fatal(err)
	}
	cfg, err := edge.LoadFile(cfgPath)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := edge.New(ctx, zerolog.Nop())
	if err := e.Start(cfg); err != nil {
		cancel()
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Shutdown(2 * time.Second); cancel() })
	return e.Addr("idle").String()
}

// startIdleBare starts a bare crypto/tls server (the calibration): after
// its handshake each connection blocks in a 1-byte Read, on the goroutine
// that did the handshake ("serve", "mtls": client certificate required)
// or on a new one while the handshake's goroutine ends ("short"). done
// counts the handshakes completed.
func startIdleBare(b *testing.B, dir, mode string, done *atomic.Int64) string {
	b.Helper()
	pool, cert, err := idleTLS(dir, "server")
	if err != nil {
		b.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	if mode == "mtls" {
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	b.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				tc := tls.Server(c, cfg)
				if err := tc.Handshake(); err != nil {
					c.Close()
					return
				}
				done.Add(1)
				read := func() {
					var one [1]byte
					_, _ = tc.Read(one[:])
					tc.Close()
				}
				if mode == "short" {
					go read()
					return
				}
				read()
			}()
		}
	})
	return ln.Addr().String()
}

// idleHelper is the child process: the clients and the edge's servers.
type idleHelper struct {
	in       io.WriteCloser
	lines    chan string
	backends []string // plain HTTP, HTTPS, TLS echo
}

func startIdleHelper(b *testing.B, dir string) *idleHelper {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestIdleHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), idleEnv+"="+dir)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	h := &idleHelper{in: in, lines: make(chan string, 16)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			h.lines <- sc.Text()
		}
		close(h.lines)
	}()
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	b.Cleanup(func() {
		in.Close() // the child exits at the end of its input
		select {
		case <-exited:
		case <-time.After(idleWait):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	h.backends = strings.Fields(h.reply(b, "backends"))
	if len(h.backends) != 3 {
		b.Fatalf("child's backends: %q", h.backends)
	}
	return h
}

// reply returns the rest of the child's next line starting with word.
func (h *idleHelper) reply(b *testing.B, word string) string {
	b.Helper()
	timeout := time.After(5 * idleWait)
	for {
		select {
		case l, ok := <-h.lines:
			if !ok {
				b.Fatalf("child exited before %q", word)
			}
			if rest, ok := strings.CutPrefix(l, "error "); ok {
				b.Fatalf("child: %s", rest)
			}
			if rest, ok := strings.CutPrefix(l, word); ok {
				return strings.TrimSpace(rest)
			}
		case <-timeout:
			b.Fatalf("no %q from the child", word)
		}
	}
}

// do sends a command to the child and waits for its answer.
func (h *idleHelper) do(b *testing.B, cmd string) {
	b.Helper()
	if _, err := io.WriteString(h.in, cmd+"\n"); err != nil {
		b.Fatal(err)
	}
	want := "ready"
	if cmd == "close" {
		want = "closed"
	}
	h.reply(b, want)
}
