package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// The idle modes open -c connections, do one round trip on each (idle: a
// 1-byte echo; idle-http: one HTTP/1.1 keep-alive GET of -path; idle-ws: a
// WebSocket upgrade of -path, then one message echoed), hold them without a
// goroutine each, print idleReady on stderr once every connection
// is up (or given up on), and wait for SIGINT/SIGTERM or the end of -d. Then
// they do one more round trip on every held connection: those that answer
// are the connections the server (or balancer) held, the result's held.
//
// While the connections are held, a script reads the balancer's RSS and file
// descriptors (compare.sh does).

// idleReady starts the stderr line that says the connections are up.
const idleReady = "tlsedge-load: idle ready:"

// idleOpTimeout bounds one dial, handshake and round trip of the idle modes,
// and each round trip of the final check.
const idleOpTimeout = 10 * time.Second

// idleGiveUp is how many dials in a row may fail before the idle modes stop
// opening connections: a server out of file descriptors would otherwise cost
// a timeout per remaining connection.
const idleGiveUp = 200

// idleConn is one held connection: the TLS conn and, for idle-http, the
// reader its response came through (it may hold read-ahead bytes); for
// idle-ws the WebSocket alone (it owns its connection).
type idleConn struct {
	c  *tls.Conn
	br *bufio.Reader
	ws *websocket.Conn
}

// close closes the connection.
func (ic idleConn) close() {
	if ic.ws != nil {
		ic.ws.CloseNow()
		return
	}
	ic.c.Close()
}

// wsMessage is the message idle-ws sends on each WebSocket, and wants back.
var wsMessage = []byte("idle")

// idleTally is what the idle modes count.
type idleTally struct {
	mu        sync.Mutex
	conns     []idleConn
	failed    int64
	firstErr  error
	attempted atomic.Int64
	failRun   atomic.Int64 // failures in a row
	lat       hist         // dial to the end of the first round trip
}

func (t *idleTally) add(ic idleConn, d time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.conns = append(t.conns, ic)
	t.lat.record(d)
}

func (t *idleTally) fail(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failed++
	if t.firstErr == nil {
		t.firstErr = err
	}
}

// idleRun runs the idle modes into res (see the comment above). giveUp is
// idleGiveUp but for tests. ready is called once the connections are up.
func (r *runner) idleRun(ctx context.Context, res *result, giveUp int64, ready func(up, failed int64)) {
	n := int64(r.o.conc)
	dialers := min(int64(r.o.dialers), n)
	var t idleTally
	var next atomic.Int64
	var wg sync.WaitGroup
	for range dialers {
		wg.Go(func() {
			for ctx.Err() == nil && t.failRun.Load() < giveUp {
				if next.Add(1) > n {
					return
				}
				t.attempted.Add(1)
				t0 := time.Now()
				ic, err := r.idleOpen(ctx)
				if err != nil {
					if ctx.Err() == nil {
						t.fail(err)
						t.failRun.Add(1)
					}
					continue
				}
				t.failRun.Store(0)
				t.add(ic, time.Since(t0))
			}
		})
	}
	wg.Wait()
	up := int64(len(t.conns))
	res.Seconds = time.Since(r.start).Seconds() // the time to open them
	res.Ops, res.Errors, res.Attempted = up, t.failed, t.attempted.Load()
	if t.firstErr != nil {
		res.FirstError = t.firstErr.Error()
	}
	if t.failRun.Load() >= giveUp {
		res.GaveUp = true
	}
	if ready != nil {
		ready(up, t.failed)
	}
	<-ctx.Done()

	// The check: one more round trip on each held connection.
	var held atomic.Int64
	jobs := make(chan idleConn)
	var cw sync.WaitGroup
	for range dialers {
		cw.Go(func() {
			for ic := range jobs {
				if r.idleTrip(ic) == nil {
					held.Add(1)
				}
				ic.close()
			}
		})
	}
	for _, ic := range t.conns {
		jobs <- ic
	}
	close(jobs)
	cw.Wait()
	res.Held = held.Load()
	res.Conns, res.Bytes = r.conns.Load(), r.bytes.Load()
	res.WireIn, res.WireOut = r.wireIn.Load(), r.wireOut.Load()
	res.Proto, res.Identity = r.proto, r.identity
	res.fill(&t.lat, r.state) // ops_per_sec: connections opened a second
}

// idleOpen dials, handshakes and does the first round trip.
func (r *runner) idleOpen(ctx context.Context) (idleConn, error) {
	ctx, cancel := context.WithTimeout(ctx, idleOpTimeout)
	defer cancel()
	if r.o.mode == "idle-ws" {
		return r.wsOpen(ctx)
	}
	c, err := r.dial(ctx)
	if err != nil {
		return idleConn{}, err
	}
	ic := idleConn{c: c}
	if r.o.mode == "idle-http" {
		if p := c.ConnectionState().NegotiatedProtocol; p != "" && p != "http/1.1" {
			c.Close()
			return idleConn{}, fmt.Errorf("server negotiated %q with ALPN; want http/1.1", p)
		}
		ic.br = bufio.NewReaderSize(c, 4<<10)
	}
	if err := r.idleTrip(ic); err != nil {
		c.Close()
		return idleConn{}, err
	}
	return ic, nil
}

// idleTrip is one round trip on a held connection: a byte echoed, or a GET
// answered 200 with its whole body (the connection stays open).
func (r *runner) idleTrip(ic idleConn) error {
	if ic.ws != nil {
		return r.wsTrip(ic.ws)
	}
	_ = ic.c.SetDeadline(time.Now().Add(idleOpTimeout))
	defer ic.c.SetDeadline(time.Time{})
	if ic.br == nil {
		b := [1]byte{'i'}
		if _, err := ic.c.Write(b[:]); err != nil {
			return fmt.Errorf("echo: %w", err)
		}
		if _, err := io.ReadFull(ic.c, b[:]); err != nil {
			return fmt.Errorf("echo: %w", err)
		}
		r.bytes.Add(1)
		return nil
	}
	if _, err := fmt.Fprintf(ic.c, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: tlsedge-load\r\n\r\n", r.o.path, r.tls.ServerName); err != nil {
		return fmt.Errorf("request: %w", err)
	}
	resp, err := http.ReadResponse(ic.br, nil)
	if err != nil {
		return fmt.Errorf("response: %w", err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	r.bytes.Add(n)
	switch {
	case err != nil:
		return fmt.Errorf("response body: %w", err)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("response: %s", resp.Status)
	case resp.Close:
		return fmt.Errorf("response: the server closes the connection (Connection: close)")
	}
	r.firstOnce.Do(func() {
		r.proto = resp.Proto
		r.identity = resp.Header.Get(identityHeader)
	})
	return nil
}

// wsSetup prepares idle-ws: the wss:// URL of -path and the HTTP client of
// the handshakes, whose every request dials its own connection (dialTLS:
// counted, HTTP/1.1 by ALPN) and hands it to the WebSocket.
func (r *runner) wsSetup() error {
	var err error
	if r.url, err = r.targetURL("wss"); err != nil {
		return err
	}
	protos := new(http.Protocols)
	protos.SetHTTP1(true)
	r.wsClient = &http.Client{Transport: &http.Transport{
		DialTLSContext:        r.dialTLS,
		Protocols:             protos,
		DisableKeepAlives:     true,
		DisableCompression:    true,
		ResponseHeaderTimeout: idleOpTimeout,
	}}
	return nil
}

// wsOpen is idleOpen for idle-ws: the WebSocket handshake (coder/websocket
// checks the 101 and its Sec-WebSocket-Accept), then one message echoed.
func (r *runner) wsOpen(ctx context.Context) (idleConn, error) {
	ws, resp, err := websocket.Dial(ctx, r.url, &websocket.DialOptions{HTTPClient: r.wsClient})
	if err != nil {
		return idleConn{}, err
	}
	ic := idleConn{ws: ws}
	if err := r.wsTrip(ws); err != nil {
		ws.CloseNow()
		return idleConn{}, err
	}
	r.firstOnce.Do(func() {
		r.proto = resp.Proto
		r.identity = resp.Header.Get(identityHeader)
	})
	return ic, nil
}

// wsTrip sends wsMessage as a text message and wants it back as it went.
func (r *runner) wsTrip(ws *websocket.Conn) error {
	ctx, cancel := context.WithTimeout(context.Background(), idleOpTimeout)
	defer cancel()
	if err := ws.Write(ctx, websocket.MessageText, wsMessage); err != nil {
		return fmt.Errorf("websocket write: %w", err)
	}
	typ, msg, err := ws.Read(ctx)
	if err != nil {
		return fmt.Errorf("websocket read: %w", err)
	}
	if typ != websocket.MessageText || !bytes.Equal(msg, wsMessage) {
		return fmt.Errorf("websocket: got %v %q back; want text %q", typ, msg, wsMessage)
	}
	r.bytes.Add(int64(len(msg)))
	return nil
}

// printReady is the idle modes' ready line on stderr.
func printReady(up, failed int64) {
	fmt.Fprintf(os.Stderr, "%s %d connections up, %d failed\n", idleReady, up, failed)
}
