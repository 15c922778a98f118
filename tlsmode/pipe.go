package tlsmode

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"time"
)

// Pipe copies bytes both ways between client and server until both
// directions are done, then closes both conns. Each direction has its own
// named copier (so stack dumps read well): client->server on a new
// goroutine, server->client on the caller's, so an idle connection holds two
// goroutines in all. When a source ends cleanly its copier half-closes the
// destination (CloseWrite), so protocols that half-close work; when one
// direction fails, both conns are closed at once.
//
// Pass the raw *net.TCPConns: io.Copy between two of them uses splice(2) on
// Linux and never copies through user space.
//
// up counts client->server bytes, down server->client; reason says who ended
// the connection first.
func Pipe(client, server net.Conn) (up, down int64, reason string) {
	type result struct {
		n   int64
		err error
		seq int32 // 1 for the direction that ended first
	}
	var order atomic.Int32
	finish := func(n int64, err error) result {
		r := result{n, err, order.Add(1)} // before closing: the other side's error is ours
		if err != nil {
			// A broken direction ends the other one too.
			client.Close()
			server.Close()
		}
		return r
	}
	upDone := make(chan result, 1)
	go copyClientToServer(server, client, func(n int64, err error) { upDone <- finish(n, err) })
	var d result
	copyServerToClient(client, server, func(n int64, err error) { d = finish(n, err) })
	u := <-upDone
	client.Close()
	server.Close()
	if u.seq < d.seq {
		return u.n, d.n, closeReason(true, u.err)
	}
	return u.n, d.n, closeReason(false, d.err)
}

func copyClientToServer(dst, src net.Conn, done func(int64, error)) { copyHalf(dst, src, done) }
func copyServerToClient(dst, src net.Conn, done func(int64, error)) { copyHalf(dst, src, done) }

func copyHalf(dst, src net.Conn, done func(int64, error)) {
	n, err := io.Copy(dst, src)
	if err == nil {
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			if cerr := cw.CloseWrite(); cerr != nil && !errors.Is(cerr, net.ErrClosed) && !errors.Is(cerr, syscall.ENOTCONN) {
				err = cerr
			}
		} else {
			err = io.EOF // no half-close: end both directions
		}
	}
	done(n, err)
}

// endStream ends a stream from outside its copiers (Conn.Shutdown): each
// side gets a TLS close_notify when it speaks TLS, then a FIN, so both see
// an orderly end, and the copiers finish as the peers close; whatever is
// still open after CloseGrace is closed. It does not block: the sides are
// half-closed on goroutines of their own (a close_notify to a peer that
// does not read waits up to crypto/tls's 5 s).
func endStream(sides ...net.Conn) {
	for _, c := range sides {
		go halfClose(c)
	}
	time.AfterFunc(CloseGrace, func() {
		for _, c := range sides {
			c.Close()
		}
	})
}

// halfClose sends c's peer the end of the stream: close_notify for TLS,
// then a FIN.
func halfClose(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		_ = tc.CloseWrite()
		c = tc.NetConn()
	}
	if closeWrite(c) != nil {
		c.Close()
	}
}

// closeWrite half-closes c (a FIN) when it or what it wraps can.
func closeWrite(c net.Conn) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}
