package edge

import (
	"context"
	"net"
	"net/netip"
	"time"

	"github.com/tlsedge/tlsedge/affinity"
	"github.com/tlsedge/tlsedge/tlsmode"
)

// dialStream connects to server s for a passthrough stream. An address
// of an IP and a port is connected with raw system calls
// (tlsmode.DialStream: the relay then takes the socket as it is); a host
// name, an IPv6 zone, or a process whose relay could not start (the
// stream is copied by Pipe then) goes through net's dialer.
func (p *Pool) dialStream(s *affinity.Server) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(s.Address)
	if err != nil || ap.Addr().Zone() != "" || !tlsmode.RelayReady() {
		return p.dialServer(context.Background(), &p.dialer, s)
	}
	var setup func(fd int)
	if ka := p.keepalive; ka.Enable {
		setup = func(fd int) { socketKeepalive(uintptr(fd), ka) }
	}
	start := time.Now()
	conn, err := tlsmode.DialStream(ap, p.dialer.Timeout, setup)
	p.dialed(s, start, err)
	return conn, err
}
