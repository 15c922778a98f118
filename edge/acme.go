package edge

import (
	"context"
	"crypto/tls"
	"net"
	"time"

	"github.com/tlsedge/tlsedge/certs"
	"github.com/tlsedge/tlsedge/tlsmode"
)

// refusedChallenge is the rejection kind of a connection that was an ACME
// TLS-ALPN-01 validation (answered, never routed).
const refusedChallenge = "acme_challenge"

// acmeChallengeTimeout bounds the handshake of a TLS-ALPN-01 validation.
const acmeChallengeTimeout = 10 * time.Second

// answerChallenge answers an ACME TLS-ALPN-01 validation: a hello that
// offers only acme-tls/1 for a name whose certificate tlsedge manages
// (an acme: true name, or one an on-demand route's patterns match). The
// hello is replayed to a crypto/tls server whose certificate is
// certmagic's validation certificate (from memory, or from the shared
// storage when another instance placed the order); the handshake is
// bounded by acmeChallengeTimeout, then the connection is closed.
// ok is false (and c untouched) for every other hello; when ok, the
// connection is done and reason says how the validation went.
func (l *listener) answerChallenge(c net.Conn, tc *tlsmode.Conn, h *tlsmode.Hello) (reason string, ok bool) {
	_ = tc
	if len(h.ALPN) != 1 || h.ALPN[0] != certs.AcmeALPN || h.ServerName == "" {
		return "", false
	}
	m := l.e.certsLive.Load()
	if m == nil || !m.AcmeChallengeName(h.ServerName) {
		return "", false
	}
	cfg := m.AcmeChallengeTLS()
	if cfg == nil {
		return "", false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(acmeChallengeTimeout))
	ts := tls.Server(&acmeReplayConn{Conn: c, buf: h.Raw}, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), acmeChallengeTimeout)
	defer cancel()
	if err := ts.HandshakeContext(ctx); err != nil {
		return "acme tls-alpn-01 validation for " + h.ServerName + " failed: " + err.Error(), true
	}
	_ = ts.Close()
	return "acme tls-alpn-01 validation for " + h.ServerName + " answered", true
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
