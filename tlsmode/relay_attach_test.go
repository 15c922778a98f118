//go:build linux

package tlsmode

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The goroutine that starts a stream registers its sockets itself: no
// command for the loop, the stream in the loop's table at once, and no
// event until a peer sends (the sockets count as writable without
// EPOLLOUT). A loop that never runs shows it: what its epoll reports is
// what the loop would have been woken for.
func TestRelayAttachWakesNothing(t *testing.T) {
	l, err := rlNewLoop()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.closeFDs)
	relay := &rlRelay{loops: []*rlLoop{l}}
	client, edgeClient := tcpPair(t)
	edgeServer, server := tcpPair(t)
	t.Cleanup(func() { client.Close(); server.Close() })
	ended := make(chan string, 1)
	rc := relay.start(&Conn{Conn: edgeClient}, edgeServer, 0, func(_, _ int64, reason string) { ended <- reason })
	if rc == nil {
		t.Fatal("the relay did not take the stream")
	}
	l.mu.Lock()
	queued, got := len(l.queue), l.table.get(rc.slot)
	l.mu.Unlock()
	if queued != 0 {
		t.Errorf("%d commands queued for the loop; want none (the stream registered by its starter)", queued)
	}
	if got != rc {
		t.Errorf("table slot %d holds %p; want the stream %p", rc.slot, got, rc)
	}
	if rc.ready != [2]uint8{rlWritable, rlWritable} {
		t.Errorf("ready %v; want both sides writable", rc.ready)
	}
	events := make([]unix.EpollEvent, 8)
	time.Sleep(20 * time.Millisecond)
	if n, err := rlPoll(l.epfd, events); n != 0 || err != nil {
		t.Errorf("epoll reports %d events (%v) before any byte; want none: the loop would wake for nothing", n, err)
	}
	if _, err := server.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	var n int
	for end := time.Now().Add(rlWaitLong); n == 0 && time.Now().Before(end); time.Sleep(time.Millisecond) {
		n, _ = rlPoll(l.epfd, events)
	}
	if n != 1 || events[0].Fd != rc.slot<<1|rlServer || events[0].Events&unix.EPOLLIN == 0 {
		t.Errorf("after the server wrote: %d events %+v; want EPOLLIN of slot %d's server side", n, events[:n], rc.slot)
	}
	rc.close() // the loop never runs: close as it would
	if r := <-ended; r == "" {
		t.Error("no close reason")
	}
	if l.table.get(rc.slot) != nil {
		t.Error("the closed stream is still in the table")
	}
}
