package tlsmode

// WebSocket failover's dials: tlsedge's own WebSocket to one server with
// the client's handshake (wfDial), the first server as RoundTrip picks one
// (wfFirst), and a server's refusal passed on to the client (wfRefusal).

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/tlsedge/tlsedge/affinity"
)

const (
	// wfRefusalMax bounds the body of a server's refusal (an answer that
	// is not a 101) passed on to the client: the bytes beyond it are not.
	wfRefusalMax = 1 << 20
	// wfRefusalTime bounds the time the refusal's body may take to read
	// from the server, from the end of its head.
	wfRefusalTime = 30 * time.Second
)

// wfCapture keeps a server's answer that is not a 101 whole for the
// caller (websocket.Dial would keep 1 KiB of its body): Dial gets a copy
// without a body.
type wfCapture struct {
	rt   http.RoundTripper
	resp *http.Response
}

func (t *wfCapture) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.rt.RoundTrip(req)
	if err != nil || resp.StatusCode == http.StatusSwitchingProtocols {
		return resp, err
	}
	t.resp = resp
	cp := *resp
	cp.Body = http.NoBody
	return &cp, nil
}

// wfBody is a refusal's body: closing it also ends the dial's context,
// which the body's reads need until then (the transport cancels them once
// it is done).
type wfBody struct {
	io.ReadCloser
	stop func()
}

func (b *wfBody) Close() error {
	err := b.ReadCloser.Close()
	b.stop()
	return err
}

// wfDial opens a WebSocket to server s with the handshake hs, offering
// protos. A server that answers without switching returns its answer
// (resp, to be closed by the caller: its body is readable for
// wfRefusalTime) with an error. ctx carries the request's values (connKey,
// reqKey) and bounds the dial.
func (p *HTTPProxy) wfDial(ctx context.Context, c *Conn, s *affinity.Server, hs *wfRequest, protos []string) (*wfLeg, *http.Response, error) {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return p.dial(ctx, network, s.Address) // the URL's host is a placeholder
		},
		DisableKeepAlives:      true,
		ResponseHeaderTimeout:  p.limits.ResponseHeaderTimeout,
		MaxResponseHeaderBytes: int64(p.limits.MaxResponseHeader),
	}
	scheme := "ws"
	if up := p.opt.Upstream; up != nil {
		scheme = "wss"
		sni := ""
		if up.ServerName == "" && c.Hello != nil {
			sni = c.Hello.ServerName // verified for the client's name, as transportFor does
		}
		tr.DialTLSContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return p.dialUpstreamTLS(ctx, network, s.Address, sni, false) // UpstreamTLS told too
		}
	}
	capt := &wfCapture{rt: tr}
	client := &http.Client{
		Transport:     capt,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	// The dial is bounded by a timer, not a deadline, so that a refusal's
	// body can be given its own time once the head is in.
	dctx, cancel := context.WithCancel(ctx)
	timer := time.AfterFunc(p.opt.ConnectTimeout+DefaultHandshakeTimeout+p.limits.ResponseHeaderTimeout, cancel)
	ws, resp, err := websocket.Dial(dctx, scheme+"://server.invalid"+hs.uri, &websocket.DialOptions{
		HTTPClient:   client,
		HTTPHeader:   hs.header,
		Host:         hs.host,
		Subprotocols: protos,
	})
	timer.Stop()
	if err != nil {
		if r := capt.resp; r != nil {
			body := time.AfterFunc(wfRefusalTime, cancel)
			r.Body = &wfBody{ReadCloser: r.Body, stop: sync.OnceFunc(func() { body.Stop(); cancel() })}
			return nil, r, fmt.Errorf("server %s answered the WebSocket handshake with %d", s.Address, r.StatusCode)
		}
		cancel()
		if resp != nil && resp.Body != nil {
			resp.Body.Close()
		}
		return nil, nil, err
	}
	// A WebSocket's connection outlives the dial's context (the library
	// hijacks it): the context only bounded the handshake.
	cancel()
	return newWFLeg(s, ws), resp, nil
}

// wfRefusal passes a server's refusal of the upgrade (its answer that is
// not a 101) on to the client: status, fields and body, the body up to
// wfRefusalMax bytes (its Content-Length kept when within that; a longer
// body is cut there and the client's connection closed after it).
func (p *HTTPProxy) wfRefusal(w http.ResponseWriter, resp *http.Response, rs *reqState) {
	defer resp.Body.Close()
	rs.status = resp.StatusCode
	p.cookieResponse(resp, rs)
	wfCopyHeader(w.Header(), resp.Header, []string{"Content-Length"})
	whole := resp.ContentLength >= 0 && resp.ContentLength <= wfRefusalMax
	if whole {
		w.Header().Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	} else {
		w.Header().Set("Connection", "close")
	}
	w.WriteHeader(resp.StatusCode)
	n, err := io.Copy(w, io.LimitReader(resp.Body, wfRefusalMax))
	switch {
	case err != nil:
		rs.err = fmt.Errorf("server's refusal of the WebSocket upgrade: body cut after %d bytes: %w", n, err)
	case !whole && n == wfRefusalMax:
		rs.err = fmt.Errorf("server's refusal of the WebSocket upgrade: body cut at %d bytes", wfRefusalMax)
	}
}

// wfFirst connects the client's WebSocket to a first server as RoundTrip
// picks one: a slot on a server of the backend, other servers tried when a
// connect fails (retries). A server's answer that is not a 101 is returned
// (resp) for the client.
func (p *HTTPProxy) wfFirst(r *http.Request, c *Conn, rs *reqState, hs *wfRequest) (*wfLeg, *http.Response, error) {
	var leg *wfLeg
	var resp *http.Response
	err := p.tryServers(r, c, p.opt.Retries+1, nil, func(s *affinity.Server) (bool, error) {
		c.live.last.Store(s)
		rs.server = s
		l, re, err := p.wfDial(r.Context(), c, s, hs, hs.protos)
		resp = re
		if err == nil {
			p.cookieResponse(re, rs)
			leg = l
			return false, nil
		}
		s.Release()
		// A server's answer (a refusal) goes to the client; a connect that
		// failed lets another server be tried.
		return re == nil && isConnectError(err) && r.Context().Err() == nil, err
	})
	if err != nil {
		return nil, resp, err
	}
	return leg, resp, nil
}
