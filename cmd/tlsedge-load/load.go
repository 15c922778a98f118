package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

const (
	dialTimeout = 5 * time.Second  // TCP connect
	opTimeout   = 10 * time.Second // one handshake or one round trip
	chunk       = 64 << 10         // throughput write size
)

// worker is one load goroutine's tally; merged into a result at the end.
type worker struct {
	id        int
	ops, errs int64
	firstErr  error
	lat       hist
}

func (w *worker) fail(err error) {
	w.errs++
	if w.firstErr == nil {
		w.firstErr = err
	}
}

// runner holds what every worker of one load shares.
type runner struct {
	o     *options
	tls   *tls.Config
	start time.Time
	end   time.Time
	bytes atomic.Int64 // payload read back (throughput, echo) or response bodies (http modes)

	conns           atomic.Int64 // TLS connections opened
	wireIn, wireOut atomic.Int64 // bytes on the wire, TLS and TCP payload

	stateOnce sync.Once
	state     tls.ConnectionState

	// http and handshake-http
	url             string
	transports      []*http.Transport
	firstOnce       sync.Once
	proto, identity string // of the first good response

	// idle-ws: the client of the WebSocket handshakes
	wsClient *http.Client
}

// load runs o.mode with o.conc workers for o.dur and sums them up. It returns
// an error only for a config that cannot start.
func load(ctx context.Context, o *options) (*result, error) {
	cfg, err := clientConfig(o)
	if err != nil {
		return nil, err
	}
	var work func(*runner, context.Context, *worker)
	switch o.mode {
	case "handshake":
		work = (*runner).handshakes
	case "throughput":
		work = (*runner).throughput
	case "echo":
		work = (*runner).echoes
	case "http", "handshake-http":
		work = (*runner).httpRequests
	}
	r := &runner{o: o, tls: cfg}
	nworkers := o.conc
	if isIdle(o.mode) {
		if o.mode == "idle-http" || o.mode == "idle-ws" {
			r.tls.NextProtos = []string{"http/1.1"}
		}
		if o.mode == "idle-ws" {
			if err := r.wsSetup(); err != nil {
				return nil, err
			}
		}
		r.start = time.Now()
		r.end = r.start.Add(o.dur)
		ctx, cancel := context.WithDeadline(ctx, r.end)
		defer cancel()
		res := &result{Mode: o.mode, Label: o.label, Addr: o.addr, SNI: r.tls.ServerName, Concurrency: o.conc}
		r.idleRun(ctx, res, idleGiveUp, o.ready)
		return res, nil
	}
	if work == nil {
		return nil, fmt.Errorf("-mode %q: no such mode", o.mode)
	}
	if o.mode == "http" || o.mode == "handshake-http" {
		if err := r.httpSetup(); err != nil {
			return nil, err
		}
		defer r.httpClose()
		if o.h2 {
			nworkers = o.conc * o.streams
		}
	}
	r.start = time.Now()
	r.end = r.start.Add(o.dur)
	ctx, cancel := context.WithDeadline(ctx, r.end)
	defer cancel()

	workers := make([]worker, nworkers)
	var wg sync.WaitGroup
	for i := range workers {
		workers[i].id = i
		wg.Go(func() { work(r, ctx, &workers[i]) })
	}
	wg.Wait()
	elapsed := time.Since(r.start)
	if elapsed > o.dur && ctx.Err() == context.DeadlineExceeded {
		elapsed = o.dur // workers stopped at the deadline; what ran after is cleanup
	}

	res := &result{
		Mode: o.mode, Label: o.label, Addr: o.addr, SNI: r.tls.ServerName,
		Concurrency: o.conc, Size: int64(o.size), Seconds: elapsed.Seconds(),
		Bytes: r.bytes.Load(), Conns: r.conns.Load(),
		WireIn: r.wireIn.Load(), WireOut: r.wireOut.Load(),
		Proto: r.proto, Identity: r.identity,
	}
	if o.h2 {
		res.Streams = o.streams
	}
	var all hist
	for i := range workers {
		w := &workers[i]
		res.Ops += w.ops
		res.Errors += w.errs
		if res.FirstError == "" && w.firstErr != nil {
			res.FirstError = w.firstErr.Error()
		}
		all.merge(&w.lat)
	}
	res.fill(&all, r.state)
	return res, nil
}

// dial connects and handshakes within opTimeout, never past the end.
func (r *runner) dial(ctx context.Context) (*tls.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	d := net.Dialer{Timeout: dialTimeout}
	raw, err := d.DialContext(ctx, "tcp", r.o.addr)
	if err != nil {
		return nil, err
	}
	r.conns.Add(1)
	c := tls.Client(&countConn{Conn: raw, in: &r.wireIn, out: &r.wireOut}, r.tls)
	if err := c.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	r.stateOnce.Do(func() { r.state = c.ConnectionState() })
	return c, nil
}

// over reports whether the run's time is up, so an error is only the
// deadline cutting an operation short (the socket deadline can fire a moment
// before ctx reports it).
func (r *runner) over(ctx context.Context) bool {
	return ctx.Err() != nil || !time.Now().Before(r.end)
}

// pause backs off briefly after a failure, so a refused port does not spin.
func pause(ctx context.Context) {
	t := time.NewTimer(10 * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// handshakes: dial, full handshake, 1-byte echo, close; timed dial to echo.
func (r *runner) handshakes(ctx context.Context, w *worker) {
	var b [1]byte
	for ctx.Err() == nil {
		t0 := time.Now()
		c, err := r.dial(ctx)
		if err == nil {
			_ = c.SetDeadline(minTime(t0.Add(opTimeout), r.end))
			b[0] = 'h'
			if _, err = c.Write(b[:]); err == nil {
				_, err = io.ReadFull(c, b[:])
			}
			if err == nil {
				w.lat.record(time.Since(t0))
				w.ops++
			} else {
				err = fmt.Errorf("echo after handshake: %w", err)
			}
			c.Close()
		}
		if err != nil && !r.over(ctx) {
			w.fail(err)
			pause(ctx)
		}
	}
}

// throughput: per connection write -size bytes while reading the echo back.
func (r *runner) throughput(ctx context.Context, w *worker) {
	buf := make([]byte, chunk)
	rbuf := make([]byte, chunk)
	for ctx.Err() == nil {
		c, err := r.dial(ctx)
		if err != nil {
			if !r.over(ctx) {
				w.fail(err)
				pause(ctx)
			}
			continue
		}
		_ = c.SetDeadline(r.end)
		size := int64(r.o.size)
		werr := make(chan error, 1)
		go func() {
			var err error
			for left := size; left > 0 && err == nil; {
				n := min(left, int64(len(buf)))
				_, err = c.Write(buf[:n])
				left -= n
			}
			if err == nil {
				err = c.CloseWrite() // close_notify: the server ends its echo
			}
			werr <- err
		}()
		var got int64
		for got < size {
			n, rerr := c.Read(rbuf)
			got += int64(n)
			r.bytes.Add(int64(n))
			if rerr != nil {
				if rerr == io.EOF && got < size {
					rerr = fmt.Errorf("echo ended after %d of %d bytes", got, size)
				}
				err = rerr
				break
			}
		}
		c.Close() // unblocks the writer if the read side failed
		if e := <-werr; err == nil {
			err = e
		}
		switch {
		case err == nil || got == size:
			w.ops++
		case !r.over(ctx):
			w.fail(err)
			pause(ctx)
		}
	}
}

// echoes: one connection, -size byte round trips, each timed.
func (r *runner) echoes(ctx context.Context, w *worker) {
	out := make([]byte, r.o.size)
	for i := range out {
		out[i] = byte('a' + i%26)
	}
	in := make([]byte, len(out))
	for ctx.Err() == nil {
		c, err := r.dial(ctx)
		if err != nil {
			if !r.over(ctx) {
				w.fail(err)
				pause(ctx)
			}
			continue
		}
		_ = c.SetDeadline(r.end)
		for ctx.Err() == nil {
			t0 := time.Now()
			if _, err = c.Write(out); err == nil {
				_, err = io.ReadFull(c, in)
			}
			if err != nil {
				break
			}
			w.lat.record(time.Since(t0))
			w.ops++
			r.bytes.Add(int64(len(in)))
		}
		c.Close()
		if err != nil && !r.over(ctx) {
			w.fail(fmt.Errorf("round trip: %w", err))
			pause(ctx)
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
