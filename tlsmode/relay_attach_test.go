//go:build linux

package tlsmode

import (
	"io"
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

// A stream the loop closed before its starter attached it (an abort that
// came first) is not registered: its descriptor numbers may be other
// sockets' by then.
func TestRelayAttachAfterClose(t *testing.T) {
	l, err := rlNewLoop()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.closeFDs)
	client, edgeClient := tcpPair(t)
	edgeServer, server := tcpPair(t)
	t.Cleanup(func() { client.Close(); edgeClient.Close(); edgeServer.Close(); server.Close() })
	cfd, _, ok1 := rlDup(edgeClient)
	sfd, _, ok2 := rlDup(edgeServer)
	if !ok1 || !ok2 {
		t.Fatal("no descriptors")
	}
	ended := make(chan string, 2)
	rc := &rlConn{c: &Conn{Conn: edgeClient}, loop: l, fd: [2]int32{int32(cfd), int32(sfd)}, slot: -1, first: -1,
		ready: [2]uint8{rlWritable, rlWritable}, onEnd: func(_, _ int64, reason string) { ended <- reason }}
	rc.close() // the loop's abort
	<-ended
	a, b := tcpPair(t) // sockets that may reuse the numbers (the lowest free ones)
	t.Cleanup(func() { a.Close(); b.Close() })
	l.attach(rc)
	l.mu.Lock()
	made, queued := l.table.made, len(l.queue)
	l.mu.Unlock()
	if made != 0 || queued != 0 {
		t.Errorf("after attach of a closed stream: %d slots taken, %d commands; want none", made, queued)
	}
	for _, fd := range rc.fd {
		if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, int(fd), nil); err != unix.ENOENT && err != unix.EBADF {
			t.Errorf("descriptor %d: EPOLL_CTL_DEL says %v; want it never registered", fd, err)
		}
	}
	select {
	case r := <-ended:
		t.Errorf("the stream ended twice (%q)", r)
	case <-time.After(20 * time.Millisecond):
	}
}

// A slot cleared in a batch is given out only after the batch: an event of
// that batch for the closed stream then finds no stream, never a new one.
func TestRelayTableReusesAfterBatch(t *testing.T) {
	var tb rlTable
	a, b, c := &rlConn{}, &rlConn{}, &rlConn{}
	if !tb.take(a) || !tb.take(b) || a.slot != 0 || b.slot != 1 {
		t.Fatalf("slots %d, %d; want 0, 1", a.slot, b.slot)
	}
	tb.clear(a.slot)
	if tb.get(0) != nil {
		t.Error("a cleared slot still holds its stream")
	}
	if !tb.take(c) || c.slot == 0 {
		t.Errorf("a slot cleared in this batch given out again (slot %d)", c.slot)
	}
	tb.release()
	d := &rlConn{}
	if !tb.take(d) || d.slot != 0 || tb.get(0) != d {
		t.Errorf("after the batch: slot %d; want the freed 0", d.slot)
	}
	for slot := int32(1 << rlChunkBits); slot > 0; slot-- { // a second chunk is made when needed
		if !tb.take(&rlConn{}) {
			t.Fatal("table full")
		}
	}
	if tb.chunks[1].Load() == nil {
		t.Error("no second chunk after more than a chunk of slots")
	}
}

// The loop may serve the side register added first before the other is
// added; a write to that other side that finds no room asks for its
// EPOLLOUT only once register is done (under the loop's lock), not on a
// socket epoll does not know yet (ENOENT: the stream would end).
func TestRelayWantOutWaitsForRegister(t *testing.T) {
	relay := rlTestRelay(t, 1, nil)
	relay.loops[0].betweenAdds = func() { time.Sleep(200 * time.Millisecond) }
	client, edgeClient := tcpPair(t)
	edgeServer, server := tcpPair(t)
	t.Cleanup(func() { client.Close(); server.Close() })
	if err := edgeServer.SetWriteBuffer(4096); err != nil {
		t.Fatal(err)
	}
	if err := server.SetReadBuffer(4096); err != nil {
		t.Fatal(err)
	}
	const size = 64 << 10 // more than the server side takes at once
	go func() { _, _ = client.Write(make([]byte, size)) }()
	time.Sleep(50 * time.Millisecond) // the client's bytes wait at the relay's socket
	ended := make(chan rlEnd, 1)
	if relay.start(&Conn{Conn: edgeClient}, edgeServer, 0, func(up, down int64, reason string) { ended <- rlEnd{up, down, reason} }) == nil {
		t.Fatal("the relay did not take the stream")
	}
	time.Sleep(300 * time.Millisecond) // the loop found the server side full meanwhile
	_ = server.SetReadDeadline(time.Now().Add(rlWaitLong))
	got, err := io.ReadFull(server, make([]byte, size))
	if err != nil || got != size {
		select {
		case e := <-ended:
			t.Fatalf("server read %d bytes (%v); the stream ended: %+v", got, err, e)
		default:
			t.Fatalf("server read %d bytes (%v); want %d", got, err, size)
		}
	}
	client.Close()
	server.Close()
	if e := <-ended; e.up != size {
		t.Errorf("onEnd: %+v; want %d bytes up", e, size)
	}
}
