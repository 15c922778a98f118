package tlsmode

// WebSocket failover (websocket.failover on a protocol http route): tlsedge
// ends the client's WebSocket and holds its own to a server, relays whole
// messages between them, and when the server goes away opens a new
// WebSocket to another server with the client's original handshake request
// (wsfailover_relay.go). This file opens the WebSockets: the handshake
// request sent to every server, the dial to one server, and the first
// server's answer to the client. wsfailover_dial.go dials the servers.

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/coder/websocket"

	"github.com/tlsedge/tlsedge/affinity"
)

// WSFailoverMaxMessage bounds one WebSocket message, either way, on a route
// with failover: tlsedge holds each message whole before passing it on. A
// client's larger message closes its WebSocket with 1009 (message too big);
// a server's closes the client's with 1011 (internal error).
const WSFailoverMaxMessage = 1 << 20

// Reasons the edge gives Shutdown. Drain and rebalance concern a
// connection's server, not its client: a WebSocket with failover moves to
// another server for them instead of ending. The admin API's close ends
// it (the operator's word on this connection). The edge uses these very
// strings.
const (
	ReasonDrained    = "drained: drain_timeout passed"
	ReasonRebalanced = "rebalanced"
	ReasonAdminClose = "closed by the admin API"
)

// wfMoves reports whether Shutdown's reason moves a failover WebSocket to
// another server (true) or ends it (shutdown, reload, idle timeout, access
// denied, a client timeout, the admin API: false).
func wfMoves(reason string) bool {
	return reason == ReasonDrained || reason == ReasonRebalanced
}

// WSFailoverEvents is implemented by Events that count WebSocket failovers
// (optional: the edge's metrics).
type WSFailoverEvents interface {
	// WSFailover: a failover WebSocket of c left server from for server to
	// (to == nil: no server was left and the client was closed with 1013).
	WSFailover(c *Conn, from, to *affinity.Server, reason string)
}

// wfRequest is the handshake request sent to every server of one client's
// WebSocket: the client's request as the proxy forwards it (rewrite:
// identity headers from the verified chain, X-Forwarded-*, stripped
// headers), computed once, so a new server sees what the first one saw.
type wfRequest struct {
	header http.Header // without the handshake's own fields (Dial sets them)
	host   string      // the client's Host
	uri    string      // path and query
	protos []string    // the subprotocols the client offered
}

// wfHopHeaders are removed from the forwarded request, as ReverseProxy does.
var wfHopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// wfHandshakeHeaders are the WebSocket handshake's own fields: Dial sets
// them for each server (a new key each time; subprotocols from protos; no
// compression).
var wfHandshakeHeaders = []string{
	"Sec-WebSocket-Key", "Sec-WebSocket-Version", "Sec-WebSocket-Extensions",
	"Sec-WebSocket-Protocol", "Sec-WebSocket-Accept",
}

// wfNewRequest builds the handshake request of r as the proxy would forward
// it.
func (p *HTTPProxy) wfNewRequest(r *http.Request) *wfRequest {
	out := r.Clone(r.Context())
	wfDropHop(out.Header)
	for _, h := range []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
		out.Header.Del(h)
	}
	p.rewrite(&httputil.ProxyRequest{In: r, Out: out})
	for _, h := range wfHandshakeHeaders {
		out.Header.Del(h)
	}
	if ca := p.opt.Cookie; ca != nil {
		// The affinity cookie is tlsedge's, never the server's: out is a
		// copy made before acquireServer strips it from r.
		ckStrip(out.Header, ca.Name())
	}
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header.Set("User-Agent", "") // as ReverseProxy: no Go default
	}
	var protos []string
	for _, v := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, tok := range strings.Split(v, ",") {
			if tok = strings.TrimSpace(tok); tok != "" {
				protos = append(protos, tok)
			}
		}
	}
	return &wfRequest{header: out.Header, host: r.Host, uri: r.URL.RequestURI(), protos: protos}
}

// wfDropHop removes the hop-by-hop fields of h, those Connection names
// included.
func wfDropHop(h http.Header) {
	for _, v := range h.Values("Connection") {
		for _, tok := range strings.Split(v, ",") {
			if tok = strings.TrimSpace(tok); tok != "" {
				h.Del(tok)
			}
		}
	}
	for _, k := range wfHopHeaders {
		h.Del(k)
	}
}

// wfCheckRequest checks the client's handshake request before any server is
// asked (the answer websocket.Accept would give, without dialing first):
// "" when it is a valid WebSocket handshake.
func wfCheckRequest(r *http.Request) string {
	if r.Method != http.MethodGet {
		return "a WebSocket handshake must be a GET"
	}
	if r.Header.Get("Sec-WebSocket-Version") != "13" {
		return "Sec-WebSocket-Version must be 13"
	}
	keys := r.Header.Values("Sec-WebSocket-Key")
	if len(keys) != 1 {
		return "exactly one Sec-WebSocket-Key is required"
	}
	if k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(keys[0])); err != nil || len(k) != 16 {
		return "Sec-WebSocket-Key must be 16 bytes in base64"
	}
	return ""
}

// wfLeg is tlsedge's WebSocket to one server, holding a slot on it.
type wfLeg struct {
	s       *affinity.Server
	ws      *websocket.Conn
	release func() // gives the server's slot back, once
	// why is the first failure a writer saw on the leg (the reader's
	// error may then only say that the connection was closed).
	why atomic.Pointer[string]
}

func newWFLeg(s *affinity.Server, ws *websocket.Conn) *wfLeg {
	ws.SetReadLimit(WSFailoverMaxMessage)
	return &wfLeg{s: s, ws: ws, release: sync.OnceFunc(s.Release)}
}

// fail records why the leg failed, if nothing was recorded yet.
func (l *wfLeg) fail(why string) { l.why.CompareAndSwap(nil, &why) }

// wfSkipResponse are the fields of a server's 101 that tlsedge's own 101 to
// the client sets itself (or that belong to the server's connection).
var wfSkipResponse = []string{
	"Connection", "Upgrade", "Keep-Alive", "Transfer-Encoding", "Content-Length",
	"Sec-WebSocket-Accept", "Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions",
}

// wfCopyHeader copies a server's response fields to the client's answer,
// without hop-by-hop ones and those in skip.
func wfCopyHeader(dst, src http.Header, skip []string) {
	h := src.Clone()
	wfDropHop(h)
	for _, k := range skip {
		h.Del(k)
	}
	for k, v := range h {
		dst[k] = v
	}
}

// serveWSFailover serves a WebSocket upgrade on a route with failover: it
// connects to a server first (a failure answers 502/503 as the proxy
// does; a server's refusal is passed on), then accepts the client's
// WebSocket with the server's subprotocol and relays messages until
// either side ends it, moving to another server when the server goes away
// (wsfailover_relay.go). It returns when the WebSocket is over.
func (p *HTTPProxy) serveWSFailover(w http.ResponseWriter, r *http.Request, cs *connState, rs *reqState) {
	c := cs.c
	if why := wfCheckRequest(r); why != "" {
		rs.err = errors.New("bad request: " + why)
		http.Error(w, "400 bad request: "+why, http.StatusBadRequest)
		return
	}
	hs := p.wfNewRequest(r)
	leg, resp, err := p.wfFirst(r, c, rs, hs)
	if err != nil {
		if resp != nil {
			p.wfRefusal(w, resp, rs) // the server refused the upgrade
			return
		}
		p.errorHandler(w, r, err)
		return
	}
	wfCopyHeader(w.Header(), resp.Header, wfSkipResponse)
	opts := &websocket.AcceptOptions{
		InsecureSkipVerify: true, // the Origin is the server's to judge: it got it
		CompressionMode:    websocket.CompressionDisabled,
	}
	if sp := leg.ws.Subprotocol(); sp != "" {
		opts.Subprotocols = []string{sp}
	}
	client, err := websocket.Accept(w, r, opts)
	if err != nil {
		_ = leg.ws.CloseNow()
		leg.release()
		rs.err = fmt.Errorf("websocket accept: %w", err)
		return
	}
	rs.status = http.StatusSwitchingProtocols
	client.SetReadLimit(WSFailoverMaxMessage)
	s := newWFSession(p, cs, rs, r, hs, client, leg)
	s.run()
}
