//go:build !linux

package edge

import (
	"context"
	"net"

	"github.com/tlsedge/tlsedge/affinity"
)

// dialStream connects to server s for a passthrough stream (net's dialer:
// the raw connect of pool_dial_linux.go needs the relay).
func (p *Pool) dialStream(s *affinity.Server) (net.Conn, error) {
	return p.dialServer(context.Background(), &p.dialer, s)
}
