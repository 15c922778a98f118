//go:build linux

package tlsmode

import (
	"io"
	"net"
	"testing"
)

// rlBenchStreams returns the relay (waiting in the netpoller, and blocking
// a thread in epoll_wait) and the Pipe variants of a stream: client and
// server ends, with the copier running between them.
func rlBenchStreams(b *testing.B) []struct {
	name           string
	client, server *net.TCPConn
} {
	relay := rlTestRelay(b, 1, nil)
	rlNetpoll = false
	blocking, err := rlNewRelay(1) // its loop blocks a thread in epoll_wait
	rlNetpoll = true
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(blocking.stop)
	s := rlNewStream(b, relay)
	s2 := rlNewStream(b, blocking)
	client, edgeClient := tcpPair(b)
	edgeServer, server := tcpPair(b)
	go Pipe(edgeClient, edgeServer)
	b.Cleanup(func() {
		client.Close()
		server.Close()
	})
	return []struct {
		name           string
		client, server *net.TCPConn
	}{{"relay", s.client, s.server}, {"relay-epollwait", s2.client, s2.server}, {"pipe", client, server}}
}

// BenchmarkRelayEcho is one 64-byte round trip (client -> server -> back)
// through the relay and through Pipe.
//
//	go test ./tlsmode -run '^$' -bench 'Relay(Echo|Bulk)' -benchmem
func BenchmarkRelayEcho(b *testing.B) {
	for _, v := range rlBenchStreams(b) {
		b.Run(v.name, func(b *testing.B) {
			go func() { _, _ = io.Copy(v.server, v.server) }()
			msg := make([]byte, 64)
			back := make([]byte, 64)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.client.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(v.client, back); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRelayBulk streams 1 MiB writes one way through the relay and
// through Pipe; MB/s is payload.
func BenchmarkRelayBulk(b *testing.B) {
	for _, v := range rlBenchStreams(b) {
		b.Run(v.name, func(b *testing.B) {
			const chunk = 1 << 20
			done := make(chan int64, 1)
			go func() {
				n, _ := io.CopyN(io.Discard, v.server, int64(b.N)*chunk)
				done <- n
			}()
			buf := make([]byte, chunk)
			b.SetBytes(chunk)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := v.client.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			if n := <-done; n != int64(b.N)*chunk {
				b.Fatalf("server got %d bytes; want %d", n, int64(b.N)*chunk)
			}
		})
	}
}
