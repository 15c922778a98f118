package tlsmode

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// A drain's CancelRequest while the request's server connection is still
// being dialled ends the dial: the client gets the drain's 503, and the
// drained server sees no connection.
func TestLfDrainDuringDial(t *testing.T) {
	srv := lfListen(t, lfReplyOnce("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
	dialing := make(chan struct{})
	ended := make(chan error, 1)
	opt := HTTPOptions{Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		close(dialing)
		select {
		case <-ctx.Done():
			ended <- ctx.Err()
			return nil, ctx.Err()
		case <-time.After(lfWait):
			ended <- nil
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}
	}}
	p := lfProxy(t, opt, srv.addr)
	lc := lfConnect(t, p)
	if _, err := io.WriteString(lc.tc, lfGet); err != nil {
		t.Fatal(err)
	}
	<-dialing
	if !p.CancelRequest(srv.addr) {
		t.Fatal("CancelRequest found no request in flight")
	}
	if err := <-ended; err == nil {
		t.Fatal("the dial went on after the drain")
	}
	resp, err := http.ReadResponse(lc.br, nil)
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("client got %v, %v; want the drain's 503", resp, err)
	}
	if n := srv.accepts.Load(); n != 0 {
		t.Errorf("the drained server saw %d connections", n)
	}
}

// A 101 to a plain request on the fallback transport (a chunked POST)
// leaves no request in flight for a later drain to find.
func TestLfFallback101NotInFlight(t *testing.T) {
	srv := lfListen(t, func(ss *lfSess) error {
		if _, err := ss.read(); err != nil {
			return err
		}
		if err := ss.write("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"); err != nil {
			return err
		}
		return ss.untilEOF()
	})
	p := lfProxy(t, HTTPOptions{}, srv.addr)
	lc := lfConnect(t, p)
	if _, err := io.WriteString(lc.tc, "POST / HTTP/1.1\r\nHost: a.example.com\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = lc.tc.SetReadDeadline(time.Now().Add(lfWait))
	if _, err := http.ReadResponse(lc.br, nil); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(lfWait); ; time.Sleep(10 * time.Millisecond) {
		p.reqMu.Lock()
		left := len(p.requests[srv.addr])
		p.reqMu.Unlock()
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d request(s) still in flight after the answer", left)
		}
	}
	if p.CancelRequest(srv.addr) {
		t.Error("CancelRequest found a request that had ended")
	}
}
