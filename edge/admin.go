package edge

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
)

// adminServer is the admin endpoint on one address: /healthz, /readyz,
// /metrics and the JSON API under /api/v1 (admin_api.go). A reload that
// keeps the address keeps the listener and swaps only its TLS settings
// (certificate and client CAs are read again each time, so a certificate
// renewed in place is served after a reload).
type adminServer struct {
	address string
	ln      net.Listener // the raw TCP listener
	srv     *http.Server
	tls     atomic.Pointer[tls.Config] // nil = plain HTTP
}

// adminPlan is what a config asks of the admin endpoint: which server (the
// running one, a new one, or none) with which TLS.
type adminPlan struct {
	server *adminServer
	tls    *tls.Config
	fresh  bool // server was bound by this plan
}

// prepareAdmin reads the admin TLS files of cfg and binds the admin
// endpoint when its address changed. It changes nothing that runs:
// swapAdmin applies the plan, abort undoes it.
func (e *Edge) prepareAdmin(cfg *Config) (*adminPlan, error) {
	a := cfg.Admin
	if a.Address == "" {
		return &adminPlan{}, nil
	}
	var tc *tls.Config
	if a.TLS.Cert != "" {
		pair, err := cfg.keyPair(a.TLS.Cert, a.TLS.Key)
		if err != nil {
			return nil, fmt.Errorf("admin: loading %s with key %s: %w", a.TLS.Cert, a.TLS.Key, err)
		}
		tc = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
		if a.TLS.ClientAuth == "require" {
			pool, _, err := cfg.caPool(a.TLS.ClientCA)
			if err != nil {
				return nil, fmt.Errorf("admin: %w", err)
			}
			tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
		}
	}
	if e.admin != nil && e.admin.address == a.Address {
		return &adminPlan{server: e.admin, tls: tc}, nil
	}
	ln, err := net.Listen("tcp", a.Address)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	s := &adminServer{address: a.Address, ln: ln}
	s.srv = &http.Server{
		Handler:           e.adminHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          stdlog.New(warnWriter{e.log}, "", 0),
	}
	return &adminPlan{server: s, tls: tc, fresh: true}, nil
}

// abort undoes a plan that will not be applied.
func (p *adminPlan) abort() {
	if p != nil && p.fresh {
		p.server.ln.Close()
	}
}

// swapAdmin applies a plan: the TLS settings, and a new endpoint started
// and the old one stopped when the address changed. Requests in flight on
// the old one (such as the reload that replaced it) finish.
func (e *Edge) swapAdmin(p *adminPlan) {
	if p.server != nil {
		p.server.tls.Store(p.tls)
	}
	if p.server == e.admin {
		return
	}
	if s := p.server; s != nil {
		go func() { _ = s.srv.Serve(adminListener{s}) }()
		e.log.Info().Str("address", s.ln.Addr().String()).Bool("tls", p.tls != nil).Msg("admin API listening")
	}
	if old := e.admin; old != nil {
		go old.shutdown()
	}
	e.admin = p.server
}

// adminListener serves TLS or plain HTTP as the endpoint's settings say at
// each accept.
type adminListener struct{ s *adminServer }

func (l adminListener) Accept() (net.Conn, error) {
	c, err := l.s.ln.Accept()
	if err != nil {
		return nil, err
	}
	if tc := l.s.tls.Load(); tc != nil {
		return tls.Server(c, tc), nil
	}
	return c, nil
}

func (l adminListener) Close() error   { return l.s.ln.Close() }
func (l adminListener) Addr() net.Addr { return l.s.ln.Addr() }

// startAdmin serves the admin endpoint of cfg before anything else, so
// /readyz answers 503 while the rest starts.
func (e *Edge) startAdmin(cfg *Config) error {
	p, err := e.prepareAdmin(cfg)
	if err != nil {
		return err
	}
	e.swapAdmin(p)
	return nil
}

func (e *Edge) stopAdmin() {
	if e.admin != nil {
		e.admin.shutdown()
		e.admin = nil
	}
}

func (s *adminServer) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		s.srv.Close()
	}
}

// warnWriter sends net/http's own error lines of the admin endpoint (TLS
// handshakes refused to clients without a certificate, ...) to the log at
// warn, as JSON like every other line: on the admin API they are worth
// seeing.
type warnWriter struct{ log zerolog.Logger }

func (w warnWriter) Write(b []byte) (int, error) {
	w.log.Warn().Str("source", "admin").Msg(strings.TrimSpace(string(b)))
	return len(b), nil
}

// AdminAddr returns the bound address of the admin endpoint, or nil.
func (e *Edge) AdminAddr() net.Addr {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.admin == nil {
		return nil
	}
	return e.admin.ln.Addr()
}

// NotReady makes /readyz answer 503 from now on (shutdown begins: a
// balancer in front stops sending first).
func (e *Edge) NotReady() { e.ready.Store(false) }

// adminHandler routes the admin endpoint. Every answer is JSON but
// /metrics and /debug/pprof/ (Go's profiles, as net/http/pprof serves
// them; ?gc=1 on /debug/pprof/heap runs a GC first); errors are
// {"error": "..."} with 400, 404, 405, 409 or 422.
func (e *Edge) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "alive"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if e.ready.Load() {
			writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
			return
		}
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready: starting or shutting down"})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(e.m.reg, promhttp.HandlerOpts{}))
	// Profiles only here: the admin endpoint is loopback or mTLS (validate).
	mux.HandleFunc("GET /debug/pprof/", pprof.Index) // heap, goroutine, allocs, block, mutex, ...
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	e.apiRoutes(mux)
	statusRoutes(mux)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern == "" {
			// Not found, or a method not allowed: the mux's plain text
			// answer, as JSON.
			cw := &statusCapture{header: http.Header{}}
			h, _ := mux.Handler(r)
			h.ServeHTTP(cw, r)
			if allow := cw.header.Get("Allow"); allow != "" {
				w.Header().Set("Allow", allow)
			}
			code := cw.status
			if code == 0 {
				code = http.StatusNotFound
			}
			writeError(w, code, fmt.Errorf("%s %s: %s", r.Method, r.URL.Path, http.StatusText(code)))
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// statusCapture takes a handler's status and headers, dropping its body.
type statusCapture struct {
	header http.Header
	status int
}

func (c *statusCapture) Header() http.Header         { return c.header }
func (c *statusCapture) Write(b []byte) (int, error) { return len(b), nil }
func (c *statusCapture) WriteHeader(code int)        { c.status = code }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// APIError is the body of every admin API error.
type APIError struct {
	Error    string   `json:"error"`
	Problems []string `json:"problems,omitempty"` // 422: every line validate prints
}

func writeError(w http.ResponseWriter, status int, err error) {
	body := APIError{Error: strings.TrimPrefix(err.Error(), "edge: ")}
	var ps *Problems
	if errors.As(err, &ps) {
		body.Error = "config refused; the old config keeps serving"
		for _, p := range ps.List {
			body.Problems = append(body.Problems, p.String())
		}
	}
	writeJSON(w, status, body)
}
