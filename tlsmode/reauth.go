package tlsmode

// What a reload's re-authorization needs from a live connection: its
// client's TLS state, and a way to end it that lets an HTTP request in
// flight finish.

import (
	"crypto/tls"
	"strings"
)

// SetTLSState records the client's TLS connection state.
func (c *Conn) SetTLSState(cs *tls.ConnectionState) { c.live.tls.Store(cs) }

// TLSState is the client's TLS connection state (terminate and reencrypt
// routes, after the handshake), or nil.
func (c *Conn) TLSState() *tls.ConnectionState { return c.live.tls.Load() }

// setHTTPEnd sets how EndGracefully ends a (not upgraded) HTTP connection;
// nil clears it.
func (c *Conn) setHTTPEnd(f func(why string)) {
	c.live.mu.Lock()
	c.live.httpEnd = f
	c.live.mu.Unlock()
}

// EndGracefully ends the connection for reason: an HTTP connection closes
// once its requests in flight are answered (HTTP/2: GOAWAY), an upgraded
// stream or a tcp/passthrough one ends at once as Shutdown ends it
// (WebSocket close frames, close_notify and FIN). It does not wait: the
// reason is recorded before it returns, the ending goes on meanwhile.
func (c *Conn) EndGracefully(reason string) {
	c.live.mu.Lock()
	httpEnd, ender, closed := c.live.httpEnd, c.live.ender, c.live.closedBy != ""
	c.live.mu.Unlock()
	if closed {
		return
	}
	if httpEnd != nil && ender == nil {
		httpEnd(reason)
		return
	}
	c.shutdown(reason, true)
}

// wsCloseCode is the WebSocket close code for a stream ended for reason.
func wsCloseCode(reason string) uint16 {
	if strings.HasPrefix(reason, ReasonAccessDenied) {
		return 1008 // policy violation
	}
	return 1001 // going away
}

// MarkEnding marks the connection as being ended by its caller; it returns
// false when it already was, or when it is already closing, so a
// connection is ended (and logged) once even when reloads come quickly one
// after another.
func (c *Conn) MarkEnding() bool {
	c.live.mu.Lock()
	defer c.live.mu.Unlock()
	if c.live.ending || c.live.closedBy != "" {
		return false
	}
	c.live.ending = true
	return true
}
