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
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
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
	// The WebSockets it accepted (upgrades), the messages it echoed, and
	// those open now; closed tells new upgrades the server is stopping.
	wsAccepted, wsEchoed atomic.Int64
	wsMu                 sync.Mutex
	wsOpen               map[*websocket.Conn]struct{}
	closed               bool
}

// ServeHTTP answers httpBody (with ?bytes=N: N zero bytes instead), and in the X-Load-Identity header who the
// client is: "tls CN=..." from a verified client certificate (HTTPS),
// "xfcc 1234B Subject=..." from an X-Forwarded-Client-Cert a balancer set,
// or "none". A WebSocket upgrade (Upgrade: websocket) is accepted, with the
// same header on its 101 answer, and every message on it is echoed back.
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
	h[identityHeader] = []string{id}
	if headerHasToken(r.Header, "Upgrade", "websocket") {
		s.serveWebSocket(w, r)
		return
	}
	h["Content-Type"] = []string{"text/plain; charset=utf-8"}
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

// headerHasToken says whether one of the comma-separated values of header
// name is token (case-insensitive), as in Upgrade: websocket.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// serveWebSocket accepts the upgrade (coder/websocket checks the request and
// answers 101) and echoes each message back as it came, text or binary,
// until the client or stop closes the WebSocket. An echo that cannot be
// written within opTimeout ends it.
func (s *httpServer) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return // Accept answered the client with the reason
	}
	if !s.trackWebSocket(c, true) {
		c.CloseNow()
		return
	}
	defer s.trackWebSocket(c, false)
	defer c.CloseNow()
	s.wsAccepted.Add(1)
	ctx := context.Background()
	for {
		typ, msg, err := c.Read(ctx)
		if err != nil {
			return
		}
		wctx, cancel := context.WithTimeout(ctx, opTimeout)
		err = c.Write(wctx, typ, msg)
		cancel()
		if err != nil {
			return
		}
		s.wsEchoed.Add(1)
	}
}

// trackWebSocket adds c to the open WebSockets (false once the server is
// stopping) or removes it.
func (s *httpServer) trackWebSocket(c *websocket.Conn, add bool) bool {
	s.wsMu.Lock()
	defer s.wsMu.Unlock()
	if !add {
		delete(s.wsOpen, c)
		return true
	}
	if s.closed {
		return false
	}
	if s.wsOpen == nil {
		s.wsOpen = map[*websocket.Conn]struct{}{}
	}
	s.wsOpen[c] = struct{}{}
	return true
}

// openWebSockets is the number of WebSockets open now.
func (s *httpServer) openWebSockets() int {
	s.wsMu.Lock()
	defer s.wsMu.Unlock()
	return len(s.wsOpen)
}

// closeWebSockets ends every open WebSocket (http.Server.Close does not know
// the connections it handed over) and refuses new ones.
func (s *httpServer) closeWebSockets() {
	s.wsMu.Lock()
	s.closed = true
	open := make([]*websocket.Conn, 0, len(s.wsOpen))
	for c := range s.wsOpen {
		open = append(open, c)
	}
	// Closed below: no longer open, whenever their handlers get to
	// untrack them (openWebSockets is 0 once stop returns).
	clear(s.wsOpen)
	s.wsMu.Unlock()
	for _, c := range open {
		c.CloseNow()
	}
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

// stop closes the listener and every connection, WebSockets included.
func (h *httpServing) stop() {
	h.srv.Close()
	h.s.closeWebSockets()
}

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
	fmt.Fprintf(os.Stderr, "tlsedge-load: HTTP server stopped: %d requests answered, %d with a client identity, %d WebSockets accepted, %d messages echoed\n",
		h.s.requests.Load(), h.s.withIdentity.Load(), h.s.wsAccepted.Load(), h.s.wsEchoed.Load())
	return nil
}
