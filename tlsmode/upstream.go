package tlsmode

import (
	"context"
	"errors"
	"fmt"
	"net"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/tlsedge/tlsedge/affinity"
)

// ErrNoServer means the pool had no available server for this connection.
var ErrNoServer = errors.New("tlsmode: no server available")

// ErrQueueTimeout means every server the connection could use was at its
// connection cap (max_connections_per_server) for the whole queue timeout.
// It is an ErrNoServer: errors.Is(err, ErrNoServer) holds, so HTTP answers
// 503.
var ErrQueueTimeout error = queueTimeout{}

type queueTimeout struct{}

func (queueTimeout) Error() string { return "tlsmode: server queue timeout" }
func (queueTimeout) Unwrap() error { return ErrNoServer }

// Backend is the pool a route sends its connections to.
type Backend interface {
	// Connect picks a server for c, dials it and, when a dial fails before any
	// byte was sent, tries other servers as the pool allows. The caller owns
	// the returned Upstream and must call its Close.
	Connect(ctx context.Context, c *Conn) (*Upstream, error)
	// AcquireServer chooses a server for c without dialing (HTTP requests
	// go through a keep-alive transport) and takes a slot on it; skip
	// excludes servers already tried. It may wait, bounded and until ctx
	// is done, for a server at its connection cap to free a slot. It
	// returns ErrNoServer (wrapped) when none is available. The caller
	// gives the slot back with the server's Release.
	AcquireServer(ctx context.Context, c *Conn, skip func(*affinity.Server) bool) (*affinity.Server, error)
}

// Upstream is a connected server.
type Upstream struct {
	Conn   net.Conn
	Server *affinity.Server
	// Proxy is the PROXY protocol version to send first: 0 none, 1 or 2.
	Proxy byte
	// Release is called once by Close, to give back the server's connection slot.
	Release func()
	closed  bool
}

// Close closes the server conn and releases the server's slot. It is safe
// to call more than once.
func (u *Upstream) Close() error {
	if u.closed {
		return nil
	}
	u.closed = true
	if u.Release != nil {
		u.Release()
	}
	return u.Conn.Close()
}

// proxyHeader formats the PROXY header of a passthrough connection: v2
// carries the SNI as PP2_TYPE_AUTHORITY and the first ALPN protocol offered
// as PP2_TYPE_ALPN (HAProxy sends the negotiated one; in passthrough only the
// offer is known). Both are the client's text: control bytes are
// percent-encoded as in the SSL TLVs (pp2Text).
func proxyHeader(version byte, c *Conn) ([]byte, error) {
	var tlvs []proxyproto.TLV
	if version == 2 && c.Hello != nil {
		if c.Hello.ServerName != "" {
			tlvs = append(tlvs, proxyproto.TLV{Type: proxyproto.PP2_TYPE_AUTHORITY, Value: []byte(pp2Text(c.Hello.ServerName))})
		}
		if len(c.Hello.ALPN) > 0 {
			tlvs = append(tlvs, proxyproto.TLV{Type: proxyproto.PP2_TYPE_ALPN, Value: []byte(pp2Text(c.Hello.ALPN[0]))})
		}
	}
	return proxyHeaderTLVs(version, c, tlvs)
}

// proxyHeaderTLVs formats a PROXY v1 or v2 header carrying the real client
// address, and for v2 the given TLVs.
func proxyHeaderTLVs(version byte, c *Conn, tlvs []proxyproto.TLV) ([]byte, error) {
	src := net.TCPAddrFromAddrPort(c.Source)
	dst := net.TCPAddrFromAddrPort(c.Dest)
	h := proxyproto.HeaderProxyFromAddrs(version, src, dst)
	if version == 2 && len(tlvs) > 0 {
		if err := h.SetTLVs(tlvs); err != nil {
			return nil, fmt.Errorf("building PROXY v2 TLVs: %w", err)
		}
	}
	b, err := h.Format()
	if err != nil {
		return nil, fmt.Errorf("formatting PROXY header: %w", err)
	}
	return b, nil
}
