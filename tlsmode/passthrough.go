package tlsmode

import (
	"context"
	"fmt"
	"net"
)

// Passthrough never decrypts: it replays the peeked ClientHello to a server
// and splices raw TLS both ways, so client and server run (mutual) TLS end
// to end.
type Passthrough struct {
	Backend Backend
}

// Serve implements Handler.
func (p *Passthrough) Serve(ctx context.Context, c *Conn) error {
	up, err := p.Backend.Connect(ctx, c)
	if err != nil {
		c.Conn.Close()
		c.Reason = connectFailure(err)
		return err
	}
	c.Server = up.Server.Address
	defer up.Close()
	c.Bind(up.Server)
	defer c.Bind(nil)
	c.SetEnder(func() { endStream(c.Conn, up.Conn) }) // FIN both ways
	defer c.SetEnder(nil)
	first := net.Buffers{c.Peeked}
	if up.Proxy != 0 {
		h, err := proxyHeader(up.Proxy, c)
		if err != nil {
			c.Conn.Close()
			c.Reason = "internal error: " + err.Error()
			return err
		}
		first = net.Buffers{h, c.Peeked}
	}
	// One write (writev) for the PROXY header and the hello.
	if _, err := first.WriteTo(up.Conn); err != nil {
		c.Conn.Close()
		c.Reason = "server error: writing client hello: " + err.Error()
		return fmt.Errorf("replaying client hello: %w", err)
	}
	if c.WatchAfterReplay != nil {
		c.WatchAfterReplay()
	}
	up2, down, reason := Pipe(c.Conn, up.Conn)
	c.BytesUp = int64(len(c.Peeked)) + up2
	c.BytesDown = down
	c.Reason = reason
	return nil
}
