package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// identityHeader is the response header the -serve-http servers answer with:
// who they think the client is (see serveHTTP). The load reports the value of
// its first response, so a run shows that the identity went through.
const identityHeader = "X-Load-Identity"

// countConn counts the bytes a connection moves on the wire (TLS records and
// all), for the bytes-per-connection figures.
type countConn struct {
	net.Conn
	in, out *atomic.Int64
}

func (c *countConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.Add(int64(n))
	return n, err
}

func (c *countConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.out.Add(int64(n))
	return n, err
}

// httpSetup prepares the http and handshake-http modes: the request URL and
// the transports the workers share (see the package comment).
func (r *runner) httpSetup() error {
	var err error
	if r.url, err = r.targetURL("https"); err != nil {
		return err
	}
	// ALPN offers only the protocol asked for, so a server that cannot speak
	// it fails the handshake or the check in dialTLS instead of quietly
	// measuring the other one.
	if r.o.h2 {
		r.tls.NextProtos = []string{"h2"}
	} else {
		r.tls.NextProtos = []string{"http/1.1"}
	}
	protos := new(http.Protocols)
	if r.o.h2 {
		protos.SetHTTP2(true)
	} else {
		protos.SetHTTP1(true)
	}
	newTransport := func(conns int) *http.Transport {
		return &http.Transport{
			DialTLSContext:        r.dialTLS,
			Protocols:             protos,
			MaxConnsPerHost:       conns,
			MaxIdleConns:          conns,
			MaxIdleConnsPerHost:   conns,
			DisableCompression:    true,
			ResponseHeaderTimeout: opTimeout,
		}
	}
	switch {
	case r.o.mode == "handshake-http":
		// A new connection (and full handshake) per request, closed after
		// its response: Connection: close, no idle pool.
		t := newTransport(0)
		t.DisableKeepAlives = true
		t.MaxIdleConns, t.MaxIdleConnsPerHost = 0, 0
		r.transports = []*http.Transport{t}
	case r.o.h2:
		// HTTP/2: one transport per connection, so there are -c of them
		// with -streams requests in flight on each.
		for range r.o.conc {
			r.transports = append(r.transports, newTransport(1))
		}
	default:
		// HTTP/1.1: one pool of -c keep-alive connections, one request in
		// flight on each.
		r.transports = []*http.Transport{newTransport(r.o.conc)}
	}
	return nil
}

// targetURL is scheme://server:port/path: the server name of the TLS config
// (Host and SNI), the port of -addr, -path. dialTLS goes to -addr whatever
// the URL names.
func (r *runner) targetURL(scheme string) (string, error) {
	host := r.tls.ServerName
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	_, port, err := net.SplitHostPort(r.o.addr)
	if err != nil {
		return "", fmt.Errorf("-addr %q: %w", r.o.addr, err)
	}
	return scheme + "://" + host + ":" + port + r.o.path, nil
}

// httpClose drops the transports' idle connections at the end.
func (r *runner) httpClose() {
	for _, t := range r.transports {
		t.CloseIdleConnections()
	}
}

// dialTLS is the transports' dialer: a counted TCP connection to -addr and
// a full handshake, whatever address the URL names.
func (r *runner) dialTLS(ctx context.Context, _, _ string) (net.Conn, error) {
	c, err := r.dial(ctx)
	if err != nil {
		return nil, err
	}
	if want := r.tls.NextProtos[0]; c.ConnectionState().NegotiatedProtocol != want {
		c.Close()
		return nil, fmt.Errorf("server did not negotiate %s with ALPN (got %q)", want, c.ConnectionState().NegotiatedProtocol)
	}
	return c, nil
}

// httpRequests (modes http and handshake-http): GET -path again and again,
// each timed from sending to the end of the response body. In http mode the
// connection is kept; in handshake-http each request dials its own.
func (r *runner) httpRequests(ctx context.Context, w *worker) {
	t := r.transports[0]
	if len(r.transports) > 1 {
		t = r.transports[w.id%len(r.transports)]
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url, nil)
	if err != nil {
		w.fail(err)
		return
	}
	buf := make([]byte, 64<<10)
	for ctx.Err() == nil {
		t0 := time.Now()
		n, err := r.get(t, req, buf)
		if err == nil {
			w.lat.record(time.Since(t0))
			w.ops++
			r.bytes.Add(n)
			continue
		}
		if !r.over(ctx) {
			w.fail(err)
			pause(ctx)
		}
	}
}

// get does one request, reads the whole body and checks the status.
func (r *runner) get(t *http.Transport, req *http.Request, buf []byte) (int64, error) {
	resp, err := t.RoundTrip(req)
	if err != nil {
		return 0, err
	}
	var n int64
	for {
		m, rerr := resp.Body.Read(buf)
		n += int64(m)
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			resp.Body.Close()
			return n, fmt.Errorf("reading the response body: %w", rerr)
		}
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return n, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(buf[:min(n, 200)])))
	}
	r.firstOnce.Do(func() {
		r.proto = resp.Proto
		r.identity = resp.Header.Get(identityHeader)
	})
	return n, nil
}
