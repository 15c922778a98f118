package edge

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/tlsmode"
)

// listenerNamed returns e's listener of that name.
func listenerNamed(t *testing.T, e *Edge, name string) *listener {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, l := range e.listeners {
		if l.state.Load().name == name {
			return l
		}
	}
	t.Fatalf("no listener %q", name)
	return nil
}

// acceptedConns returns the conns l holds, as accepted.
func acceptedConns(l *listener) []net.Conn {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []net.Conn
	for c := range l.conns {
		out = append(out, c)
	}
	return out
}

// A listener whose routes are all passthrough accepts raw sockets
// (FDConn: no netpoller, no dup when the relay takes them); one with
// another mode accepts net's conns. Streams go through either way, also
// when the client's hello comes late (the FDConn's read waits for
// fdPoller).
func TestAcceptRawForStreamsOnly(t *testing.T) {
	dir := t.TempDir()
	ca, leaf := edgeCert(t, dir, "*.example.com")
	srv, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{leaf.TLS}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() { // echo
		for {
			c, err := srv.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	path := writeConfigIn(t, dir, fmt.Sprintf(`
log: {level: error, access: false}
listeners:
  - name: streams
    address: "127.0.0.1:0"
    routes:
      - {sni: [pt.example.com], mode: passthrough, backend: echo}
  - name: mixed
    address: "127.0.0.2:0"
    routes:
      - {sni: [pt.example.com], mode: passthrough, backend: echo}
      - {sni: [t.example.com], mode: terminate, backend: echo, tls: {cert: edge.pem, key: edge-key.pem}}
backends:
  - name: echo
    health: {type: none}
    servers: [{address: %q}]
`, srv.Addr().String()))
	e := startEdge(t, path)

	for _, tt := range []struct {
		listener string
		raw      bool
	}{{"streams", true}, {"mixed", false}} {
		l := listenerNamed(t, e, tt.listener)
		c, err := net.Dial("tcp", e.Addr(tt.listener).String())
		if err != nil {
			t.Fatal(err)
		}
		var got []net.Conn
		for deadline := time.Now().Add(5 * time.Second); len(got) == 0 && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
			got = acceptedConns(l)
		}
		if len(got) != 1 {
			t.Fatalf("%s: %d conns held, want the one opened", tt.listener, len(got))
		}
		if _, isFD := got[0].(*tlsmode.FDConn); isFD != tt.raw {
			t.Errorf("%s: accepted a %T; raw wanted: %v", tt.listener, got[0], tt.raw)
		}
		// TCP_NODELAY either way: a raw accept has it from the listening
		// socket (and found it so), net's Accept sets it.
		if !noDelayOn(got[0].(syscall.Conn), false) {
			t.Errorf("%s: accepted socket without TCP_NODELAY", tt.listener)
		}
		if tt.raw && l.noDelay != noDelayInherited {
			t.Errorf("%s: noDelay %d after the first raw accept; want %d (inherited)", tt.listener, l.noDelay, noDelayInherited)
		}
		c.Close()
		for deadline := time.Now().Add(5 * time.Second); len(acceptedConns(l)) > 0 && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
	}

	// Streams through both listeners, the hello at once or late.
	for _, name := range []string{"streams", "mixed"} {
		for _, late := range []bool{false, true} {
			raw, err := net.Dial("tcp", e.Addr(name).String())
			if err != nil {
				t.Fatal(err)
			}
			if late {
				time.Sleep(100 * time.Millisecond) // accepted, its first read finds nothing
			}
			c := tls.Client(raw, &tls.Config{ServerName: "pt.example.com", RootCAs: ca.Pool()})
			c.SetDeadline(time.Now().Add(10 * time.Second))
			msg := fmt.Sprintf("%s late=%v", name, late)
			if _, err := c.Write([]byte(msg)); err != nil {
				t.Fatalf("%s: %v", msg, err)
			}
			b := make([]byte, len(msg))
			if _, err := io.ReadFull(c, b); err != nil || string(b) != msg {
				t.Fatalf("%s: echo %q, %v", msg, b, err)
			}
			c.Close()
		}
	}
}
