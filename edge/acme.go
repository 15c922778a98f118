package edge

import (
	"context"
	"crypto/tls"
	"net"
	"time"

	"github.com/tlsedge/tlsedge/certs"
	"github.com/tlsedge/tlsedge/tlsmode"
)

// acmeChallengeTimeout bounds the handshake of a TLS-ALPN-01 validation.
const acmeChallengeTimeout = 10 * time.Second

// answerChallenge answers an ACME TLS-ALPN-01 validation: a hello that
// offers only acme-tls/1 for a name this listener's table routes to a
// route whose certificates come from ACME (one of an acme: true route's
// names, or a name its on-demand patterns match). Any other hello is
// routed as usual (a passthrough route's backend sees its own). The
// hello is replayed to a crypto/tls server whose certificate is
// certmagic's validation certificate (from memory, or from the shared
// storage when another instance placed the order); the handshake is
// bounded by acmeChallengeTimeout, then the connection is closed.
// tail is what was read past the hello (with it, or held by a PROXY
// header's buffer: readHello), replayed
// after it. ok is false (and c untouched) for every other hello; when ok,
// the connection is done, reason says how the validation went and
// answered whether the handshake completed.
func (l *listener) answerChallenge(c net.Conn, h *tlsmode.Hello, tail []byte) (reason string, answered, ok bool) {
	if len(h.ALPN) != 1 || h.ALPN[0] != certs.AcmeALPN || h.ServerName == "" {
		return "", false, false
	}
	m := l.e.certsLive.Load()
	if m == nil {
		return "", false, false
	}
	// Only when this listener routes the name to a route whose
	// certificates come from ACME: a passthrough route's backend may
	// answer its own validations.
	st := l.state.Load()
	if st == nil || st.table == nil {
		return "", false, false
	}
	rt := st.table.Match(h.ServerName)
	if rt == nil || !m.AcmeChallengeRoute(acmeRouteKey(rt.Listener, rt.Pattern), h.ServerName) {
		return "", false, false
	}
	cfg := m.AcmeChallengeTLS()
	if cfg == nil {
		return "", false, false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(acmeChallengeTimeout))
	ts := tls.Server(&acmeReplayConn{Conn: c, buf: append(h.Raw[:len(h.Raw):len(h.Raw)], tail...)}, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), acmeChallengeTimeout)
	defer cancel()
	if err := ts.HandshakeContext(ctx); err != nil {
		return "acme tls-alpn-01 validation for " + h.ServerName + " failed: " + err.Error(), false, true
	}
	_ = ts.Close()
	return "acme tls-alpn-01 validation for " + h.ServerName + " answered", true, true
}

// acmeReplayConn gives back the hello already read before reading on.
type acmeReplayConn struct {
	net.Conn
	buf []byte
}

func (c *acmeReplayConn) Read(p []byte) (int, error) {
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		c.buf = c.buf[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
