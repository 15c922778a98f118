package edge

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/tlsedge/tlsedge/certs"
)

// A server that refuses connections goes down after `fall` checks and comes
// back after `rise` good ones once it listens again; each change is counted.
func TestHealthChecksDownAndUp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	go acceptAndClose(ln)

	e := New(context.Background(), zerolog.Nop())
	defer e.ops.stop()
	p, err := newPool(&BackendConfig{Name: "b", Balance: "roundrobin", Affinity: "none", Retries: new(int),
		Servers: []ServerConfig{{Address: addr, Weight: new(int)}},
		Health:  HealthCheckConfig{Type: "tcp", Interval: 20 * time.Millisecond, Timeout: 200 * time.Millisecond, Rise: 2, Fall: 2}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.m = e.m
	s := p.Servers[0]
	e.health.update(map[string]*Pool{"b": p})
	defer e.health.stop()

	ln.Close()
	waitFor(t, "server down", func() bool { return !s.Healthy() })
	if _, msg, _ := p.states[s].health(); !strings.Contains(msg, "refused") {
		t.Errorf("last check error %q; want the connect refused", msg)
	}
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listening again on %s: %v", addr, err)
	}
	defer ln.Close()
	go acceptAndClose(ln)
	waitFor(t, "server up", s.Healthy)
	for _, state := range []string{"down", "up"} {
		if n := counterValue(t, e.m.healthTrans.WithLabelValues("b", addr, state)); n != 1 {
			t.Errorf("transitions to %s: got %v; want 1", state, n)
		}
	}
}

// Each check type sees what it is meant to: tcp only the connect, tls a
// verified handshake, http the status.
func TestHealthCheckTypes(t *testing.T) {
	dir := t.TempDir()
	ca, leaf := edgeCert(t, dir, "backend.test")
	good := &tls.Config{Certificates: []tls.Certificate{leaf.TLS}}
	otherCA, _ := edgeCert(t, t.TempDir(), "other.test")

	plainTCP := listenTCP(t) // accepts, then closes: not TLS
	tlsSrv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/sick" {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if r.Host != "backend.test" {
			http.Error(w, "wrong host "+r.Host, http.StatusBadRequest)
			return
		}
	}))
	tlsSrv.TLS = good
	tlsSrv.StartTLS()
	defer tlsSrv.Close()
	tlsAddr := tlsSrv.Listener.Addr().String()
	plainHTTP := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/sick" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer plainHTTP.Close()
	httpAddr := plainHTTP.Listener.Addr().String()

	tlsTo := func(root *certs.Authority) *tls.Config {
		return &tls.Config{RootCAs: root.Pool(), ServerName: "backend.test", MinVersion: tls.VersionTLS12}
	}
	tests := []struct {
		name    string
		addr    string
		hc      HealthCheckConfig
		tls     *tls.Config
		wantErr string // "" = healthy
	}{
		{"tcp on a server that is not TLS", plainTCP, HealthCheckConfig{Type: "tcp"}, nil, ""},
		{"tls on a server that is not TLS", plainTCP, HealthCheckConfig{Type: "tls"}, tlsTo(ca), "tls:"},
		{"tls verified", tlsAddr, HealthCheckConfig{Type: "tls"}, tlsTo(ca), ""},
		{"tls with an untrusted certificate", tlsAddr, HealthCheckConfig{Type: "tls"}, tlsTo(otherCA), "certificate signed by unknown authority"},
		{"http over tls, 200", tlsAddr, HealthCheckConfig{Type: "http", Path: "/"}, tlsTo(ca), ""},
		{"http over tls, 503", tlsAddr, HealthCheckConfig{Type: "http", Path: "/sick"}, tlsTo(ca), "status 503"},
		{"http, 503 expected", httpAddr, HealthCheckConfig{Type: "http", Path: "/sick", ExpectStatus: []string{"503"}}, nil, ""},
		{"http, 503", httpAddr, HealthCheckConfig{Type: "http", Path: "/sick"}, nil, "status 503 (want 200-399)"},
		{"http, 2xx only", httpAddr, HealthCheckConfig{Type: "http", Path: "/", ExpectStatus: []string{"2xx"}}, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.hc.Timeout = 2 * time.Second
			p, err := newPool(&BackendConfig{Name: "b", Balance: "roundrobin", Affinity: "none", Retries: new(int),
				Servers: []ServerConfig{{Address: tt.addr, Weight: new(int)}}, Health: tt.hc}, nil)
			if err != nil {
				t.Fatal(err)
			}
			p.checkTLS = tt.tls
			err = p.check(context.Background(), p.Servers[0])
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("check: %v; want healthy", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("check: %v; want an error with %q", err, tt.wantErr)
			}
		})
	}
}

func listenTCP(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go acceptAndClose(ln)
	return ln.Addr().String()
}

func acceptAndClose(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10s for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func counterValue(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	return testutil.ToFloat64(c)
}
