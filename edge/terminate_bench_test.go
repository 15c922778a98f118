package edge_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tlsedge/tlsedge/certs"
	"github.com/tlsedge/tlsedge/edge"
)

// These benchmarks compare HTTPS with client certificates served directly by
// a Go net/http server (tls.RequireAndVerifyClientCert) with the same
// requests through an in-process edge in terminate mode (protocol http,
// client_auth require, identity xfcc) in front of a plain HTTP server:
//
//	go test ./edge -run '^$' -bench Terminate -benchtime 3s
//
// The client is net/http's Transport over crypto/tls with a client
// certificate, offering only X25519 (as tlsedge-load's compare-terminate.sh
// does, so the handshakes are the same classical key exchange everywhere),
// HTTP/1.1 only. Every server answers a 100 byte body. allocs/op and B/op
// count the whole process (client, edge and servers); the difference between
// edge and direct is what the edge and the extra hop add.

const termParallelism = 8 // goroutines per GOMAXPROCS in BenchmarkTerminateHTTP

var termBody = []byte("ok " + strings.Repeat("-", 96) + "\n")

// termEnv is a throwaway PKI, a plain HTTP server with an edge in front of
// it, and an HTTPS server with client certificates required.
type termEnv struct {
	client *tls.Config
	direct string // the HTTPS server
	edge   string // the edge's listener
}

func newTermEnv(b *testing.B) *termEnv {
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
	dir := b.TempDir()
	certPath, keyPath, err := srvCert.WriteFiles(dir, "server")
	if err != nil {
		b.Fatal(err)
	}
	caPath := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caPath, ca.PEM, 0o644); err != nil {
		b.Fatal(err)
	}

	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The edge must have sent the verified identity.
		if r.TLS == nil && r.Header.Get("X-Forwarded-Client-Cert") == "" {
			http.Error(w, "no X-Forwarded-Client-Cert", http.StatusForbidden)
			return
		}
		w.Header()["Content-Type"] = []string{"text/plain; charset=utf-8"}
		_, _ = w.Write(termBody)
	})
	plain := startHTTPServer(b, &http.Server{Handler: handler})
	direct := startHTTPServer(b, &http.Server{Handler: handler, TLSConfig: &tls.Config{
		Certificates: []tls.Certificate{srvCert.TLS},
		ClientCAs:    ca.Pool(),
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}})

	cfgPath := filepath.Join(dir, "edge.yaml")
	yaml := fmt.Sprintf(`log:
  level: error
  access: false
certs:
  storage: %q
listeners:
  - name: bench
    address: "127.0.0.1:0"
    connection_rate_per_ip: 0 # every handshake comes from 127.0.0.1: no per-address rate in a benchmark
    routes:
      - sni: [%q]
        mode: terminate
        protocol: http
        backend: plain
        identity: xfcc
        tls:
          cert: %q
          key: %q
          client_auth: require
          client_ca: %q
backends:
  - name: plain
    servers:
      - address: %q
    health:
      type: none
`, filepath.Join(dir, "certmagic"), benchSNI, certPath, keyPath, caPath, plain)
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
	return &termEnv{
		client: &tls.Config{
			ServerName:       benchSNI,
			RootCAs:          ca.Pool(),
			Certificates:     []tls.Certificate{cliCert.TLS},
			CurvePreferences: []tls.CurveID{tls.X25519},
			NextProtos:       []string{"http/1.1"},
			// No ClientSessionCache: every handshake is a full one.
		},
		direct: direct,
		edge:   addr.String(),
	}
}

func (env *termEnv) targets() []struct{ name, addr string } {
	return []struct{ name, addr string }{{"direct", env.direct}, {"edge", env.edge}}
}

// transport is an HTTP/1.1 client that dials addr whatever the URL says and
// counts the connections it opens.
func (env *termEnv) transport(addr string, conns int, dials *atomic.Int64) *http.Transport {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			dials.Add(1)
			return d.DialContext(ctx, network, addr)
		},
		TLSClientConfig:     env.client,
		MaxConnsPerHost:     conns,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		DisableCompression:  true,
		DisableKeepAlives:   conns == 0,
	}
}

// get does one GET and reads the whole answer.
func get(t *http.Transport, req *http.Request) error {
	resp, err := t.RoundTrip(req)
	if err != nil {
		return err
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch {
	case err != nil:
		return err
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("status %s", resp.Status)
	case n != int64(len(termBody)):
		return fmt.Errorf("body of %d bytes; want %d", n, len(termBody))
	}
	return nil
}

// BenchmarkTerminateHTTP sends GETs over keep-alive HTTP/1.1 connections
// with a client certificate, from GOMAXPROCS*termParallelism goroutines, one
// connection each, directly and through the edge. ns/op is the inverse of
// the request rate; conns is the connections opened (the handshakes happen
// before the timer starts, so the figure is requests alone).
func BenchmarkTerminateHTTP(b *testing.B) {
	env := newTermEnv(b)
	url := "https://" + benchSNI + "/"
	for _, tg := range env.targets() {
		b.Run(tg.name, func(b *testing.B) {
			conc := termParallelism * runtime.GOMAXPROCS(0)
			var dials atomic.Int64
			t := env.transport(tg.addr, conc, &dials)
			defer t.CloseIdleConnections()
			// Open every connection first, so the timed loop is requests only.
			warm := make(chan error, conc)
			for range conc {
				go func() {
					req, _ := http.NewRequest(http.MethodGet, url, nil)
					warm <- get(t, req)
				}()
			}
			for range conc {
				if err := <-warm; err != nil {
					b.Fatal(err)
				}
			}
			var failed atomic.Value
			b.SetParallelism(termParallelism)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				for pb.Next() {
					if err := get(t, req); err != nil {
						failed.CompareAndSwap(nil, err)
						return
					}
				}
			})
			b.StopTimer()
			if err, _ := failed.Load().(error); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
			b.ReportMetric(float64(dials.Load()), "conns")
		})
	}
}

// BenchmarkTerminateHandshake does one GET per new connection (full
// mutual-TLS handshake, no resumption, Connection: close), one after
// another, directly and through the edge: ns/op is the latency of one
// connection from dial to the end of its response.
func BenchmarkTerminateHandshake(b *testing.B) {
	env := newTermEnv(b)
	url := "https://" + benchSNI + "/"
	for _, tg := range env.targets() {
		b.Run(tg.name, func(b *testing.B) {
			var dials atomic.Int64
			t := env.transport(tg.addr, 0, &dials)
			defer t.CloseIdleConnections()
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			b.ReportAllocs()
			for b.Loop() {
				if err := get(t, req); err != nil {
					b.Fatal(err)
				}
			}
			if got := dials.Load(); got < int64(b.N) {
				b.Fatalf("%d connections for %d requests: keep-alive was not off", got, b.N)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
		})
	}
}

// startHTTPServer serves srv on a loopback port until the benchmark ends
// (HTTPS when srv.TLSConfig is set) and returns its address.
func startHTTPServer(b *testing.B, srv *http.Server) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv.ReadHeaderTimeout = 10 * time.Second
	srv.ErrorLog = stdlog.New(io.Discard, "", 0) // handshakes cut short at cleanup
	done := make(chan struct{})
	go func() {
		defer close(done)
		var err error
		if srv.TLSConfig != nil {
			err = srv.ServeTLS(ln, "", "")
		} else {
			err = srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			b.Error(err)
		}
	}()
	b.Cleanup(func() {
		srv.Close()
		<-done
	})
	return ln.Addr().String()
}
