package tlsmode

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
)

// Pipe copies bytes both ways between client and server until both
// directions are done, then closes both conns. Each direction has its own
// named copier goroutine (so stack dumps read well) and, when its source
// ends cleanly, half-closes its destination (CloseWrite) so protocols that
// half-close work. When one direction fails, both conns are closed at once.
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
		dir int
	}
	const (
		dirUp = iota
		dirDown
	)
	done := make(chan result, 2)
	go copyClientToServer(server, client, func(n int64, err error) { done <- result{n, err, dirUp} })
	go copyServerToClient(client, server, func(n int64, err error) { done <- result{n, err, dirDown} })

	for i := 0; i < 2; i++ {
		r := <-done
		if r.dir == dirUp {
			up = r.n
		} else {
			down = r.n
		}
		if i == 0 {
			reason = closeReason(r.dir == dirUp, r.err)
		}
		if r.err != nil {
			// A broken direction ends the other one too.
			client.Close()
			server.Close()
		}
	}
	client.Close()
	server.Close()
	return up, down, reason
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

func closeReason(upFirst bool, err error) string {
	side := "server"
	if upFirst {
		side = "client"
	}
	switch {
	case err == nil:
		return side + " closed"
	case errors.Is(err, net.ErrClosed):
		return "closed"
	case errors.Is(err, syscall.ECONNRESET):
		return side + " reset"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return side + " timeout"
	default:
		return side + " error: " + err.Error()
	}
}
