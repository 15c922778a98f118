package tlsmode

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

// A client write bigger than the socket takes at once: the part taken
// without a deadline (writeNow) and the rest, which waits for the peer
// under write_timeout, arrive whole and in order, and Write reports all
// of it. A peer that never reads is cut at write_timeout, with the reason.
func TestCountingConnWriteWaits(t *testing.T) {
	t.Parallel()
	a, b := tcpPair(t)
	defer a.Close()
	defer b.Close()
	c := &Conn{Conn: a}
	cc := c.counted(10 * time.Second).(*countingConn)
	p := bytes.Repeat([]byte("0123456789abcdef"), 1<<19) // 8 MiB: more than the socket buffers
	done := make(chan error, 1)
	go func() {
		n, err := cc.Write(p)
		if err == nil && n != len(p) {
			err = errors.New("short write reported as whole")
		}
		done <- err
	}()
	time.Sleep(100 * time.Millisecond) // the writer fills the socket and waits
	_ = b.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, err := io.ReadAll(io.LimitReader(b, int64(len(p))))
	if err != nil || !bytes.Equal(got, p) {
		t.Fatalf("the peer read %d bytes (%v); want the %d written, in order", len(got), err, len(p))
	}
	if err := <-done; err != nil {
		t.Fatalf("Write: %v", err)
	}
	if n := c.live.down.Load(); n != int64(len(p)) {
		t.Errorf("counted %d bytes down; want %d", n, len(p))
	}

	// A peer that stops reading.
	a2, b2 := tcpPair(t)
	defer a2.Close()
	defer b2.Close()
	c2 := &Conn{Conn: a2}
	cc2 := c2.counted(200 * time.Millisecond).(*countingConn)
	start := time.Now()
	stop := time.AfterFunc(30*time.Second, func() { a2.Close() }) // a Write that never ends must not hang the test
	defer stop.Stop()
	_, err = cc2.Write(p)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write to a peer that reads nothing: %v after %v; want the write_timeout deadline", err, time.Since(start))
	}
	if r := c2.ShutdownReason(); !strings.Contains(r, "write_timeout") {
		t.Errorf("shutdown reason %q; want the write_timeout's", r)
	}
}
