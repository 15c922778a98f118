package e2e

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/internal/dnszone"
)

// discHello returns the bytes of a real ClientHello for sni (one record),
// written by crypto/tls: sent as is, it is routed in passthrough without
// a handshake, so a thousand sources cost a thousand small writes.
func discHello(t testing.TB, sni string) []byte {
	t.Helper()
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	go tls.Client(c1, &tls.Config{ServerName: sni, InsecureSkipVerify: true}).Handshake() //nolint:errcheck // ends when the pipe closes
	_ = c2.SetReadDeadline(time.Now().Add(waitLong))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(c2, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(c2, body); err != nil {
		t.Fatal(err)
	}
	return append(hdr, body...)
}

// discNamer listens on addr and answers every connection with its name and
// a newline, then closes it.
func discNamer(t testing.TB, name, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("namer %s on %s: %v", name, addr, err)
	}
	g := newConnGroup(t, "namer "+name)
	g.serve(ln, func(c net.Conn) {
		defer c.Close()
		_, _ = io.WriteString(c, name+"\n")
	})
	t.Cleanup(g.stop)
}

// discPick connects to edge from source ip, sends hello and returns the
// name of the server that answered.
func discPick(edge, ip string, hello []byte) (string, error) {
	d := net.Dialer{Timeout: waitLong, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c, err := d.Dial("tcp", edge)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(waitLong))
	if _, err := c.Write(hello); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("from %s: %w", ip, err)
	}
	return strings.TrimSuffix(line, "\n"), nil
}

// discPicks returns, for 1,000 source addresses (127.1.x.y), the server
// edge picks, over 8 connections at a time.
func discPicks(t testing.TB, edge string, hello []byte) map[string]string {
	t.Helper()
	var mu sync.Mutex
	out := map[string]string{}
	ips := make(chan string)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ip := range ips {
				name, err := discPick(edge, ip, hello)
				mu.Lock()
				if err != nil {
					name = "error: " + err.Error()
				}
				out[ip] = name
				mu.Unlock()
			}
		}()
	}
	for i := range 1000 {
		ips <- fmt.Sprintf("127.1.%d.%d", i/250, i%250+1)
	}
	close(ips)
	wg.Wait()
	return out
}

// discAgree has two instances pick for the same 1,000 source addresses
// and fails the test unless every pick is the same (a connection error is
// a failure too); it returns the first instance's picks.
func discAgree(t *testing.T, phase string, e1, e2 *edgeProc, hello []byte) map[string]string {
	t.Helper()
	p1, p2 := discPicks(t, e1.addr, hello), discPicks(t, e2.addr, hello)
	differ, spread := 0, map[string]int{}
	for src, s1 := range p1 {
		if strings.HasPrefix(s1, "error") || strings.HasPrefix(p2[src], "error") {
			t.Fatalf("%s: source %s: %q and %q", phase, src, s1, p2[src])
		}
		if s1 != p2[src] {
			differ++
			if differ <= 5 {
				t.Errorf("%s: source %s: instance 1 picked %s, instance 2 %s", phase, src, s1, p2[src])
			}
		}
		spread[s1]++
	}
	if differ > 0 || len(p1) != 1000 || len(p2) != 1000 {
		t.Fatalf("%s: the instances disagree for %d of %d/%d sources; want 0 of 1000", phase, differ, len(p1), len(p2))
	}
	t.Logf("%s: spread %v", phase, spread)
	return p1
}

// Issue 11: "Two instances on the same config and the same DNS answer pick
// the same server for 1,000 source addresses, before and after a server is
// removed." The pool comes from A records (name:port: every address on one
// port), affinity source_ip; the sources are real (the client binds
// 127.1.x.y). Removing a server moves only the sources it had.
func TestDiscTwoInstancesAgree(t *testing.T) {
	t.Parallel()
	z := dnszone.Start(t)
	// One port free on 127.0.0.1, used on 127.0.0.2-5 too.
	_, portText, _ := net.SplitHostPort(freeAddr(t))
	port, _ := strconv.Atoi(portText)
	ips := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"}
	for _, ip := range ips {
		discNamer(t, ip, net.JoinHostPort(ip, portText))
	}
	z.SetAddrs("pool.disc.test", ips...)
	cfg := func() cfgMap {
		return cfgMap{
			"log": cfgMap{"level": "info", "format": "json", "access": false},
			"listeners": []any{cfgMap{"name": "public", "address": "", "connection_rate_per_ip": 0,
				"routes": []any{cfgMap{"sni": []any{"*"}, "backend": "pool"}}}},
			"backends": []any{cfgMap{"name": "pool", "affinity": "source_ip", "drain_timeout": "10m",
				"discovery": cfgMap{"dns": fmt.Sprintf("pool.disc.test:%d", port), "refresh": "1s", "resolver": z.Addr},
				"health":    cfgMap{"type": "none"}}},
		}
	}
	c1, c2 := cfg(), cfg()
	a1, a2 := newAdmin(t, withAdmin(t, c1)), newAdmin(t, withAdmin(t, c2))
	e1, e2 := runEdge(t, c1), runEdge(t, c2)
	want := []string{}
	for _, ip := range ips {
		want = append(want, fmt.Sprintf("%s:%d dns 1", ip, port))
	}
	discWaitServers(t, a1, e1, want...)
	discWaitServers(t, a2, e2, want...)
	hello := discHello(t, "agree.example.com")

	compare := func(phase string) map[string]string { return discAgree(t, phase, e1, e2, hello) }
	before := compare("before")

	// 127.0.0.3 leaves DNS: both instances drain it; the sources it had
	// move, and both move them to the same servers; no other source moves.
	z.SetAddrs("pool.disc.test", "127.0.0.2", "127.0.0.4", "127.0.0.5")
	gone := fmt.Sprintf("127.0.0.3:%d", port)
	for _, w := range []struct {
		a *adminClient
		e *edgeProc
	}{{a1, e1}, {a2, e2}} {
		w.e.waitLog(t, "127.0.0.3 gone from DNS", func(l logLine) bool {
			return l.msg() == "servers changed in DNS" && strings.Contains(fmt.Sprint(l["gone"]), gone)
		})
		discWaitServers(t, w.a, w.e, want[0], want[2], want[3])
	}
	after := compare("after")
	moved := 0
	for src, s := range before {
		switch {
		case after[src] == "127.0.0.3":
			t.Errorf("source %s still reaches 127.0.0.3 after it left DNS", src)
		case s == "127.0.0.3":
			moved++
		case after[src] != s:
			t.Errorf("source %s moved from %s to %s; only the sources of 127.0.0.3 may move", src, s, after[src])
		}
	}
	if moved == 0 {
		t.Errorf("no source had 127.0.0.3 before; want some (1,000 sources over 4 servers)")
	}
}
