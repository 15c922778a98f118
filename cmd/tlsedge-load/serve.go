package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// handshakeTimeout bounds the echo server's handshakes.
const handshakeTimeout = 10 * time.Second

// echoServer is the TLS echo backend of the load. It owns every conn it
// accepts and closes them all when its context ends.
type echoServer struct {
	cfg *tls.Config
	ln  net.Listener

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup

	served, failed atomic.Int64
	firstFail      atomic.Value // string
}

// serve runs the echo server on o.serve until ctx ends or, when o.dur is
// set, for o.dur.
func serve(ctx context.Context, o *options) error {
	cfg, err := serverConfig(o)
	if err != nil {
		return err
	}
	if o.dur > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.dur)
		defer cancel()
	}
	ln, err := net.Listen("tcp", o.serve)
	if err != nil {
		return err
	}
	s := &echoServer{cfg: cfg, ln: ln, conns: map[net.Conn]struct{}{}}
	auth := "no client certificates"
	if cfg.ClientAuth == tls.RequireAndVerifyClientCert {
		auth = "client certificates required"
	}
	fmt.Fprintf(os.Stderr, "tlsedge-load: TLS echo on %s (%s)\n", ln.Addr(), auth)

	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				break
			}
			time.Sleep(10 * time.Millisecond) // EMFILE and friends: do not spin
			continue
		}
		s.track(c, true)
		s.wg.Go(func() { s.handle(c) })
	}
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	msg := fmt.Sprintf("tlsedge-load: echo server stopped: %d connections served, %d handshakes failed", s.served.Load(), s.failed.Load())
	if f, ok := s.firstFail.Load().(string); ok {
		msg += " (first: " + f + ")"
	}
	fmt.Fprintln(os.Stderr, msg)
	return nil
}

func (s *echoServer) track(c net.Conn, add bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		s.conns[c] = struct{}{}
	} else {
		delete(s.conns, c)
	}
}

// handle echoes until the client's close_notify or EOF, then closes.
func (s *echoServer) handle(raw net.Conn) {
	defer s.track(raw, false)
	defer raw.Close()
	c := tls.Server(raw, s.cfg)
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := c.Handshake(); err != nil {
		if s.failed.Add(1) == 1 {
			s.firstFail.Store(err.Error())
		}
		return
	}
	_ = c.SetDeadline(time.Time{})
	s.served.Add(1)
	buf := make([]byte, 32<<10) // a TLS record holds at most 16 KiB
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err == io.EOF {
				_ = c.CloseWrite()
			}
			return
		}
	}
}
