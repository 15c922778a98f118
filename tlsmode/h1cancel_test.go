package tlsmode

import (
	"context"
	"io"
	"testing"
	"time"
)

// A client that goes away while its request waits for the server's answer
// cancels it on the lean forward: the proxy closes the server connection
// (the h1 request's onCancel fires the request's upAbort) and ServeConn
// returns. Without the cancel nothing would end the wait: no
// response_header_timeout is set.
func TestLfClientGoneCancelsRequest(t *testing.T) {
	t.Parallel()
	got := make(chan struct{})
	srv := lfListen(t, func(ss *lfSess) error {
		if _, err := ss.br.ReadString('\n'); err != nil {
			return err
		}
		close(got)
		return ss.untilEOF() // no answer: the proxy must close
	})
	p := lfProxy(t, HTTPOptions{}, srv.addr)
	lc := lfConnect(t, p)
	if _, err := io.WriteString(lc.tc, lfGet); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-time.After(lfWait):
		t.Fatal("the request did not reach the server")
	}
	lc.tc.Close()
	if err := srv.waitEnd(t, 1); err != nil {
		t.Errorf("server connection: %v; want it closed by the proxy", err)
	}
	select {
	case <-lc.done:
	case <-time.After(lfWait):
		t.Fatal("ServeConn did not return")
	}
}

// onCancel on a request cancelled already fires the abort at once (a
// client gone before the forward, or between two attempts); stopCancel
// of an earlier attempt leaves a later one's hook.
func TestH1OnCancel(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	w := &h1Response{cancel: cancel}
	w.cancelRequest()
	ab := &upAbort{}
	w.onCancel(ab)
	if !ab.cancelled() || ctx.Err() == nil {
		t.Fatalf("after cancelRequest, onCancel: abort fired %v, context %v; want both ended", ab.cancelled(), ctx.Err())
	}

	w2 := &h1Response{cancel: func() {}}
	first, second := &upAbort{}, &upAbort{}
	w2.onCancel(first)
	first.stop()
	w2.onCancel(second)
	w2.stopCancel(first) // late: must not clear second's
	w2.cancelRequest()
	if !second.cancelled() {
		t.Fatal("the second attempt's abort did not fire")
	}
	if first.cancelled() {
		t.Fatal("the stopped first attempt's abort fired")
	}
}
