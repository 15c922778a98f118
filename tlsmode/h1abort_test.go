package tlsmode

import (
	"context"
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// upAbort: the request's context and a drain fire it until it is stopped;
// stop says whether it fired (the connection must not be pooled then); a
// drain after stop leaves the connection (back in the pool) alone.
func TestUpAbort(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	ab := &upAbort{}
	ab.after = context.AfterFunc(ctx, ab.fire)
	ab.set(a)
	cancel()
	for deadline := time.Now().Add(5 * time.Second); !ab.cancelled(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the context's end did not fire the abort")
		}
	}
	if _, err := a.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read after firing: %v, want the deadline passed", err)
	}
	if ab.wasDrained() || ab.stop() {
		t.Error("a context abort counted as a drain, or stop said it did not fire")
	}

	ab2 := &upAbort{}
	a2, b2 := net.Pipe()
	defer b2.Close()
	ab2.set(a2)
	ab2.drain()
	if !ab2.wasDrained() || ab2.stop() {
		t.Error("drain: not recorded, or stop said it did not fire")
	}

	ab3 := &upAbort{}
	a3, b3 := net.Pipe()
	defer b3.Close()
	ab3.set(a3)
	if !ab3.stop() {
		t.Fatal("stop of an abort that never fired said it fired")
	}
	ab3.drain() // too late: the connection may be another request's now
	go b3.Write([]byte("x"))
	a3.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := a3.Read(make([]byte, 1)); err != nil {
		t.Errorf("a drain after stop touched the connection: %v", err)
	}
}
