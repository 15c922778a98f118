package edge

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tlsedge/tlsedge/certs"
)

// adminServer is the admin endpoint of one admin config: /healthz,
// /readyz, /metrics and the JSON API under /api/v1 (admin_api.go).
type adminServer struct {
	cfg AdminConfig
	ln  net.Listener
	srv *http.Server
}

// prepareAdmin binds the admin endpoint of cfg when it differs from the
// running one; it returns the running one when unchanged, nil when cfg has
// none. It serves nothing yet (swapAdmin does).
func (e *Edge) prepareAdmin(cfg *Config) (*adminServer, error) {
	a := cfg.Admin
	if a.Address == "" {
		return nil, nil
	}
	if e.admin != nil && reflect.DeepEqual(e.admin.cfg, a) {
		return e.admin, nil
	}
	var tc *tls.Config
	if a.TLS.Cert != "" {
		pair, err := tls.LoadX509KeyPair(cfg.resolve(a.TLS.Cert), cfg.resolve(a.TLS.Key))
		if err != nil {
			return nil, fmt.Errorf("admin: loading %s with key %s: %w", a.TLS.Cert, a.TLS.Key, err)
		}
		tc = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
		if len(a.TLS.ClientCA) > 0 {
			pool, _, err := certs.LoadCAPool(cfg.resolveAll(a.TLS.ClientCA))
			if err != nil {
				return nil, fmt.Errorf("admin: %w", err)
			}
			tc.ClientCAs = pool
		}
		if a.TLS.ClientAuth == "require" {
			tc.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	ln, err := net.Listen("tcp", a.Address)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	if tc != nil {
		ln = tls.NewListener(ln, tc)
	}
	s := &adminServer{cfg: a, ln: ln}
	s.srv = &http.Server{
		Handler:           e.adminHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          nil,
	}
	return s, nil
}

// swapAdmin starts serving next and stops the running endpoint when next
// replaces it. Requests in flight on the old one (such as the reload that
// replaced it) finish.
func (e *Edge) swapAdmin(next *adminServer) {
	if next == e.admin {
		return
	}
	if next != nil {
		go func() { _ = next.srv.Serve(next.ln) }()
		e.log.Info().Str("address", next.ln.Addr().String()).Bool("tls", next.cfg.TLS.Cert != "").Msg("admin API listening")
	}
	if old := e.admin; old != nil {
		go old.shutdown()
	}
	e.admin = next
}

// startAdmin serves the admin endpoint of cfg before anything else, so
// /readyz answers 503 while the rest starts.
func (e *Edge) startAdmin(cfg *Config) error {
	next, err := e.prepareAdmin(cfg)
	if err != nil {
		return err
	}
	e.swapAdmin(next)
	return nil
}

func (e *Edge) stopAdmin() {
	if e.admin != nil {
		e.admin.shutdown()
		e.admin = nil
	}
}

func (s *adminServer) close() { s.ln.Close() }

func (s *adminServer) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		s.srv.Close()
	}
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
// /metrics; errors are {"error": "..."} with 400, 404, 405, 409 or 422.
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
	e.apiRoutes(mux)
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
