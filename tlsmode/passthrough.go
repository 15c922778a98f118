package tlsmode

import (
	"context"
	"fmt"
	"net"
)

// Passthrough never decrypts: it replays the peeked ClientHello to a server
// and relays raw TLS both ways, so client and server run (mutual) TLS end
// to end. The bytes are moved by the relay (relay_linux.go: event loops
// over epoll, splice for bulk; an idle stream holds its two sockets and no
// goroutine), or by Pipe where the relay cannot take the sockets.
type Passthrough struct {
	Backend Backend
}

// Serve implements Handler. When the caller set c.Ended, Serve may return
// as soon as the relay has the stream (c.Detached() is then true) and
// c.Ended is called when it has ended; without c.Ended it returns when the
// stream has ended.
func (p *Passthrough) Serve(ctx context.Context, c *Conn) error {
	// Until the relay has the stream, undo (set by serve) is this
	// goroutine's to call: on every return and on a panic, after the
	// reason is set (the server's Release may read it).
	var undo func()
	defer func() {
		if undo != nil {
			undo()
		}
	}()
	err := p.serve(ctx, c, &undo)
	if r := reasonOf(err); r != "" { // a failure before the stream began
		c.Reason = r
	}
	return err
}

// serve is Serve but for the reason: a failure is returned as a *Failure;
// a stream's end sets c.Reason itself. Once connected, it sets *undo to
// what ends the server's side, and clears it when the relay takes that
// over.
func (p *Passthrough) serve(ctx context.Context, c *Conn, undo *func()) error {
	up, err := p.Backend.Connect(ctx, c)
	if err != nil {
		c.Conn.Close()
		return fail(KindConnect, SideServer, err)
	}
	c.Server = up.Server.Address
	c.Bind(up.Server)
	c.SetEnder(func() { c.endStream(up.Conn) }) // FIN both ways
	// done undoes the above once the stream has ended; each step runs
	// even when one before it panics (the server's slot above all).
	done := func() {
		defer up.Close()
		defer c.Bind(nil)
		c.SetEnder(nil)
	}
	*undo = done
	first := c.Peeked
	if up.Proxy != 0 {
		h, err := proxyHeader(up.Proxy, c)
		if err != nil {
			c.Conn.Close()
			return fail(KindInternal, SideServer, err)
		}
		first = append(h, c.Peeked...)
	}
	// One write for the PROXY header and the hello.
	if _, err := rawWriteAll(up.Conn, first); err != nil {
		c.Conn.Close()
		return fail(KindServerError, SideServer, fmt.Errorf("writing client hello: %w", err))
	}
	if c.WatchAfterReplay != nil {
		c.WatchAfterReplay()
	}

	peeked, base := int64(len(c.Peeked)), int64(len(c.Peeked))
	if c.Hello != nil && len(c.Hello.Raw) <= len(c.Peeked) {
		base = int64(len(c.Hello.Raw)) // bytes read past the hello count as the client going on
	}
	ended := c.Ended
	var wait chan struct{}
	if ended == nil {
		wait = make(chan struct{})
	}
	c.dropPeeked()
	rc := rlStart(c, up.Conn, base, func(upN, downN int64, reason string) {
		// The relay's goroutine: the caller learns of the end even when
		// done panics (the panic is logged, not the end of the process).
		defer func() {
			if ended != nil {
				ended()
			} else {
				close(wait)
			}
		}()
		defer func() {
			if r := recover(); r != nil {
				rlLogPanic("passthrough stream end crashed", r)
			}
		}()
		c.BytesUp, c.BytesDown, c.Reason = upN, downN, reason
		done()
	})
	if rc != nil {
		*undo = nil // the relay calls done
		if ended != nil {
			c.detached = true
			return nil
		}
		<-wait
		return nil
	}

	// No relay: copy on this goroutine and the one Pipe starts. The
	// counts go back to the kernel's (TCP_INFO).
	c.live.counting.Store(false)
	up2, down, reason := Pipe(c.Conn, up.Conn)
	c.BytesUp = peeked + up2
	c.BytesDown = down
	c.Reason = reason
	return nil
}

// endStream ends a passthrough stream from outside (Shutdown): through the
// relay when it has the stream, else on the Go conns.
func (c *Conn) endStream(server net.Conn) {
	if rc := c.live.relay.Load(); rc != nil {
		rc.end()
		return
	}
	endStream(c.Conn, server)
}

// Detached reports whether Serve returned while the connection goes on (a
// passthrough stream handed to the relay, a terminated HTTP connection on
// a goroutine of its own): c.Ended will be called when it has ended, after
// c.BytesUp, c.BytesDown, c.Reason and c.EndErr are set. Read it on
// the goroutine that called Serve, after Serve returned.
func (c *Conn) Detached() bool { return c.detached }
