package tlsmode

import (
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
