package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// httpBody is every answer of the HTTP servers: "ok" and padding, 100 bytes.
var httpBody = []byte("ok " + strings.Repeat("-", 96) + "\n")

// xfccHeader is the identity header the HTTP server looks for on plain HTTP
// (set by tlsedge's identity: xfcc, and by the HAProxy of compare-terminate.sh).
const xfccHeader = "X-Forwarded-Client-Cert"

// httpServer is the HTTP backend of the load: plain HTTP behind a balancer,
// or the "direct" HTTPS server with client certificates required.
type httpServer struct {
	requests, withIdentity atomic.Int64
}

// ServeHTTP answers httpBody (with ?bytes=N: N zero bytes instead), and in the X-Load-Identity header who the
// client is: "tls CN=..." from a verified client certificate (HTTPS),
// "xfcc 1234B Subject=..." from an X-Forwarded-Client-Cert a balancer set,
// or "none".
func (s *httpServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	id := "none"
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		id = "tls CN=" + r.TLS.PeerCertificates[0].Subject.CommonName
	} else if v := r.Header.Get(xfccHeader); v != "" {
		id = "xfcc " + strconv.Itoa(len(v)) + "B"
		if i := strings.Index(v, `Subject="`); i >= 0 {
			id += " Subject=" + quoted(v[i+len(`Subject="`):])
		}
	}
	if id != "none" {
		s.withIdentity.Add(1)
	}
	h := w.Header()
	h["Content-Type"] = []string{"text/plain; charset=utf-8"}
	h[identityHeader] = []string{id}
	if n, ok := bulkSize(r); ok {
		// ?bytes=N: N bytes of zeros (the bulk runs of compare.sh).
		h["Content-Type"] = []string{"application/octet-stream"}
		h["Content-Length"] = []string{strconv.FormatInt(n, 10)}
		for n > 0 {
			m, err := w.Write(zeros[:min(n, int64(len(zeros)))])
			if err != nil {
				return
			}
			n -= int64(m)
		}
		return
	}
	_, _ = w.Write(httpBody)
}

// zeros is the bulk answer's buffer.
var zeros = make([]byte, 64<<10)

// maxBulk bounds ?bytes=.
const maxBulk = 1 << 40

// bulkSize is the N of a ?bytes=N query (0 to maxBulk), ok false without one.
func bulkSize(r *http.Request) (int64, bool) {
	v := r.URL.Query().Get("bytes")
	if v == "" {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > maxBulk {
		return 0, false
	}
	return n, true
}

// httpServing is a started HTTP server.
type httpServing struct {
	srv  *http.Server
	ln   net.Listener
	s    *httpServer
	what string
	errc chan error
}

// startHTTP listens on o.serveHTTP and serves: HTTPS with -cert and -key
// (HTTP/1.1 and HTTP/2, session tickets off as for the echo server; with
// -client-ca, tls.RequireAndVerifyClientCert), otherwise plain HTTP/1.1.
func startHTTP(o *options) (*httpServing, error) {
	var cfg *tls.Config
	if o.cert != "" || o.key != "" || o.clientCA != "" {
		var err error
		if cfg, err = serverConfig(o); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("tcp", o.serveHTTP)
	if err != nil {
		return nil, err
	}
	h := &httpServing{ln: ln, s: &httpServer{}, what: "plain HTTP", errc: make(chan error, 1)}
	h.srv = &http.Server{
		Handler:           h.s,
		TLSConfig:         cfg,
		ReadHeaderTimeout: handshakeTimeout,
		IdleTimeout:       5 * time.Minute,
		// Handshakes cut short at the end of a run are not worth a line.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	if cfg != nil {
		h.what = "HTTPS, no client certificates"
		if cfg.ClientAuth == tls.RequireAndVerifyClientCert {
			h.what = "HTTPS, client certificates required"
		}
	}
	go func() {
		if cfg != nil {
			h.errc <- h.srv.ServeTLS(ln, "", "")
		} else {
			h.errc <- h.srv.Serve(ln)
		}
	}()
	return h, nil
}

// stop closes the listener and every connection.
func (h *httpServing) stop() { h.srv.Close() }

// quoted is s up to its first " that no backslash escapes.
func quoted(s string) string {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return s[:i]
		}
	}
	return s
}

// serveHTTP runs the HTTP server (see startHTTP) until ctx ends or, when
// o.dur is set, for o.dur.
func serveHTTP(ctx context.Context, o *options) error {
	if o.dur > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.dur)
		defer cancel()
	}
	h, err := startHTTP(o)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "tlsedge-load: HTTP server on %s (%s)\n", h.ln.Addr(), h.what)
	select {
	case <-ctx.Done():
	case err := <-h.errc:
		if !errors.Is(err, http.ErrServerClosed) {
			h.stop()
			return err
		}
	}
	h.stop()
	fmt.Fprintf(os.Stderr, "tlsedge-load: HTTP server stopped: %d requests answered, %d with a client identity\n",
		h.s.requests.Load(), h.s.withIdentity.Load())
	return nil
}
