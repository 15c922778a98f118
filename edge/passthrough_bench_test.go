package edge_test

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tlsedge/tlsedge/certs"
	"github.com/tlsedge/tlsedge/edge"
)

// These benchmarks put a real crypto/tls client and a real mutual-TLS server
// on loopback and compare talking to the server directly with talking to it
// through an in-process edge in passthrough mode:
//
//	go test ./edge -run '^$' -bench Passthrough -benchtime 3s
//
// The server speaks one tiny protocol: after the handshake it reads and
// discards everything until the client's close_notify, then writes the count
// of bytes it read (8 bytes, big endian) and closes. The count is the barrier
// that ends a throughput measurement (every byte arrived) and, for
// handshakes, proof that the server finished its side too (in TLS 1.3 the
// client is done before the server has checked the client certificate).

const benchSNI = "bench.tlsedge.test"

// benchEnv is a throwaway PKI, a sink server and an edge in front of it.
type benchEnv struct {
	client *tls.Config
	direct string // the sink server
	edge   string // the edge's listener
}

func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	ca, err := certs.NewAuthority("bench CA")
	if err != nil {
		b.Fatal(err)
	}
	srvCert, err := ca.Issue(certs.Leaf{CommonName: benchSNI, DNSNames: []string{benchSNI}, Server: true})
	if err != nil {
		b.Fatal(err)
	}
	cliCert, err := ca.Issue(certs.Leaf{CommonName: "bench client", Client: true})
	if err != nil {
		b.Fatal(err)
	}
	sink := startSink(b, &tls.Config{
		Certificates:           []tls.Certificate{srvCert.TLS},
		ClientCAs:              ca.Pool(),
		ClientAuth:             tls.RequireAndVerifyClientCert,
		SessionTicketsDisabled: true,
	})

	dir := b.TempDir()
	cfgPath := filepath.Join(dir, "edge.yaml")
	yaml := fmt.Sprintf(`log:
  level: error
  access: false
listeners:
  - name: bench
    address: "127.0.0.1:0"
    # One client address opens every connection: the per-address limits
    # (100 new connections a second by default) would refuse a benchmark.
    max_connections_per_ip: 0
    connection_rate_per_ip: 0
    max_handshakes: 0
    routes:
      - sni: [%q]
        mode: passthrough
        backend: sink
backends:
  - name: sink
    servers:
      - address: %q
    health:
      type: none
`, benchSNI, sink)
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
	b.Cleanup(func() {
		e.Shutdown(2 * time.Second)
		cancel()
	})
	addr := e.Addr("bench")
	if addr == nil {
		b.Fatal("edge has no listener named bench")
	}
	return &benchEnv{
		client: &tls.Config{
			ServerName:   benchSNI,
			RootCAs:      ca.Pool(),
			Certificates: []tls.Certificate{cliCert.TLS},
			// No ClientSessionCache: every handshake is a full one.
		},
		direct: sink,
		edge:   addr.String(),
	}
}

func (env *benchEnv) targets() []struct{ name, addr string } {
	return []struct{ name, addr string }{{"direct", env.direct}, {"edge", env.edge}}
}

// dial connects and completes the client side of a full handshake.
func (env *benchEnv) dial(addr string) (*tls.Conn, error) {
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c := tls.Client(raw, env.client)
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	if err := c.Handshake(); err != nil {
		raw.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	return c, nil
}

// finish sends close_notify and reads the server's count of bytes received.
func finish(c *tls.Conn) (uint64, error) {
	if err := c.CloseWrite(); err != nil {
		return 0, err
	}
	var n [8]byte
	if _, err := io.ReadFull(c, n[:]); err != nil {
		return 0, fmt.Errorf("reading the server's count: %w", err)
	}
	return binary.BigEndian.Uint64(n[:]), nil
}

// BenchmarkPassthroughThroughput streams 64 KiB writes over one mutual-TLS
// connection to a sink, directly and through the edge. MB/s is payload.
func BenchmarkPassthroughThroughput(b *testing.B) {
	env := newBenchEnv(b)
	buf := make([]byte, 64<<10)
	for _, t := range env.targets() {
		b.Run(t.name, func(b *testing.B) {
			c, err := env.dial(t.addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Minute))
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			got, err := finish(c)
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			if want := uint64(b.N) * uint64(len(buf)); got != want {
				b.Fatalf("server got %d bytes; want %d", got, want)
			}
		})
	}
}

// BenchmarkPassthroughHandshake does full mutual-TLS handshakes one after
// another (dial, handshake, close_notify, the server's reply, close),
// directly and through the edge: ns/op is the latency of one connection.
func BenchmarkPassthroughHandshake(b *testing.B) {
	env := newBenchEnv(b)
	for _, t := range env.targets() {
		b.Run(t.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c, err := env.dial(t.addr)
				if err != nil {
					b.Fatal(err)
				}
				_, err = finish(c)
				c.Close()
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
		})
	}
}

// startSink runs the counting sink server until the benchmark ends and
// returns its address.
func startSink(b *testing.B, cfg *tls.Config) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Go(func() {
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					c.Close()
				}()
				sinkConn(tls.Server(c, cfg))
			})
		}
	})
	b.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// sinkConn reads until close_notify, then writes how many bytes it read.
func sinkConn(c *tls.Conn) {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := c.Handshake(); err != nil {
		return
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Minute))
	n, err := io.Copy(io.Discard, c)
	if err != nil && !errors.Is(err, io.EOF) {
		return
	}
	var out [8]byte
	binary.BigEndian.PutUint64(out[:], uint64(n))
	_, _ = c.Write(out[:])
	_ = c.CloseWrite()
}
