package e2e

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"time"
)

// The junk side of TestFlood: connections an attacker opens from many
// 127.x.y.z source addresses, six kinds mixed, each ending within its own
// bound (flJunkBound) and tallied by kind. They run in the test process,
// next to the measured clients: at most flJunkHandshakes of them do TLS
// handshake work at a time (the rest hold their TCP connection open
// meanwhile), so that the measured clients do not queue behind hundreds of
// CPU-bound goroutines in the test's own Go scheduler (under -race); the
// latency reported is then tlsedge's, not the test's.

// flKind is one kind of junk connection.
type flKind int

const (
	flSilent  flKind = iota // connect and send nothing
	flPartial               // send the first half of a real ClientHello, then stall
	flRandom                // send random bytes
	flNoCert                // complete a TLS handshake without a client certificate
	flDribble               // complete mTLS, then send an HTTP head one byte at a time
	flReset                 // connect and reset (SO_LINGER 0)
	flKinds                 // the number of kinds
)

var flKindNames = [flKinds]string{"silent", "partial hello", "random bytes", "no client cert", "dribbled head", "reset"}

// flCurves is the junk's key exchange: X25519 alone, the cheapest for the
// attacker (no ML-KEM).
var flCurves = []tls.CurveID{tls.X25519}

// flJunkBound bounds each junk connection (connect, handshake, wait for
// tlsedge to close it): tlsedge's own timeouts in the test are 2 s, this
// is 15 times that for a loaded machine.
const flJunkBound = 30 * time.Second

// flJunkHandshakes is how many junk connections do TLS handshake work at
// once (see above).
const flJunkHandshakes = 2

// flDribbleEvery is the pace of the dribbled head: one byte at a time.
const flDribbleEvery = 200 * time.Millisecond

// flSources is the number of source addresses the junk comes from: 2,000
// connections from 200 addresses is 10 per address, far below the per-IP
// defaults (1,000 open, 100/s with a burst of 200), so the flood itself is
// measured, not those limits.
const flSources = 200

// flSourceIP is the source address of junk connection i: 127.2.0.1 ...
// 127.11.19.1 (loopback answers for all of 127/8).
func flSourceIP(i int) net.IP {
	k := i % flSources
	return net.IPv4(127, byte(2+k%10), byte(k/10), 1)
}

// flJunkTally counts the outcomes of junk connections by kind.
type flJunkTally struct {
	mu         sync.Mutex
	started    [flKinds]int
	dialErrs   [flKinds]int    // the connect itself failed
	dialErr    [flKinds]string // one example each
	closed     [flKinds]int    // tlsedge ended it (EOF, reset, alert) within the bound
	notClosed  [flKinds]int    // still open at the bound: tlsedge never closed it
	hsEnded    int             // dribblers whose mTLS handshake tlsedge ended (max_handshakes, handshake_timeout)
	violations []string        // a junk connection got what it must not (application data)
	answers    map[string]int  // the first line a dribbler got before the close ("" = none)
	took       time.Duration   // from the first connect to the end of the last
}

// add runs f under the tally's lock.
func (j *flJunkTally) add(f func()) {
	j.mu.Lock()
	defer j.mu.Unlock()
	f()
}

func (j *flJunkTally) violation(k flKind, format string, args ...any) {
	j.add(func() {
		if len(j.violations) < 20 {
			j.violations = append(j.violations, flKindNames[k]+": "+fmt.Sprintf(format, args...))
		}
	})
}

// report is the tally as one line per kind.
func (j *flJunkTally) report() string {
	var b strings.Builder
	for k := range flKinds {
		fmt.Fprintf(&b, "  %-15s started %4d, connect errors %d, closed by tlsedge %4d, still open at %v: %d",
			flKindNames[k], j.started[k], j.dialErrs[k], j.closed[k], flJunkBound, j.notClosed[k])
		if j.dialErr[k] != "" {
			fmt.Fprintf(&b, " (connect error e.g. %s)", j.dialErr[k])
		}
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "  dribblers: %d ended by tlsedge in their handshake; first line answered to the rest: %v", j.hsEnded, j.answers)
	return b.String()
}

// flJunk is what the junk connections need: tlsedge's address, the
// first half of a real ClientHello, the server CA and the client
// certificate of the dribblers, and the semaphore of flJunkHandshakes.
type flJunk struct {
	addr      string
	halfHello []byte
	roots     *x509.CertPool
	cert      tls.Certificate
	work      chan struct{}
}

// handshake runs tc's handshake holding one of the flJunkHandshakes
// slots.
func (j *flJunk) handshake(tc *tls.Conn) error {
	j.work <- struct{}{}
	defer func() { <-j.work }()
	return tc.Handshake()
}

// flClientHello returns the first TLS record a Go client sends for
// api.example.com: a real ClientHello, captured on a pipe.
func flClientHello() ([]byte, error) {
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	go func() {
		// Ends with an error once the pipe is closed.
		_ = tls.Client(c1, &tls.Config{ServerName: "api.example.com", InsecureSkipVerify: true}).Handshake()
	}()
	_ = c2.SetReadDeadline(time.Now().Add(waitLong))
	buf := make([]byte, 1<<14)
	n, err := c2.Read(buf) // the client writes its hello record in one Write
	if err != nil {
		return nil, err
	}
	if n < 100 || buf[0] != 0x16 {
		return nil, fmt.Errorf("captured %d bytes starting %x: not a ClientHello record", n, buf[:min(n, 5)])
	}
	return buf[:n], nil
}

// flood opens n junk connections at once, kinds mixed, plus silent more
// of kind flSilent, and returns their tally once all have ended; each is
// bounded, so this is too.
func (j *flJunk) flood(n, silent int) *flJunkTally {
	tally := &flJunkTally{answers: map[string]int{}}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n + silent {
		k := flKind(i % int(flKinds))
		if i >= n {
			k = flSilent
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			j.run(i, k, tally)
		}()
	}
	began := time.Now()
	close(start)
	wg.Wait()
	tally.took = time.Since(began)
	return tally
}

// run opens junk connection i of kind k and returns once it has ended,
// within about flJunkBound after the connect.
func (j *flJunk) run(i int, k flKind, tally *flJunkTally) {
	tally.add(func() { tally.started[k]++ })
	d := net.Dialer{Timeout: flJunkBound, LocalAddr: &net.TCPAddr{IP: flSourceIP(i)}}
	c, err := d.Dial("tcp", j.addr)
	if err != nil {
		tally.add(func() {
			tally.dialErrs[k]++
			tally.dialErr[k] = err.Error()
		})
		return
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(flJunkBound))
	var closed bool
	switch k {
	case flSilent:
		closed = flClosedByPeer(c)
	case flPartial:
		if _, err := c.Write(j.halfHello); err != nil {
			closed = true // tlsedge already closed it
			break
		}
		closed = flClosedByPeer(c)
	case flRandom:
		r := rand.New(rand.NewChaCha8([32]byte{byte(i), byte(i >> 8)}))
		junk := make([]byte, 64+r.IntN(448))
		for n := range junk {
			junk[n] = byte(r.Uint32())
		}
		if _, err := c.Write(junk); err != nil {
			closed = true
			break
		}
		closed = flClosedByPeer(c)
	case flNoCert:
		closed = j.noCert(k, c, tally)
	case flDribble:
		closed = j.dribble(c, tally)
	case flReset:
		_ = c.(*net.TCPConn).SetLinger(0)
		closed = true // we ended it; nothing to wait for
	}
	tally.add(func() {
		if closed {
			tally.closed[k]++
		} else {
			tally.notClosed[k]++
		}
	})
}

// flEnded reports whether err says the connection ended (EOF, a reset,
// an alert), not that our own deadline passed.
func flEnded(err error) bool {
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// flClosedByPeer reads until the peer ends the connection and reports
// whether that happened before c's deadline.
func flClosedByPeer(c net.Conn) bool {
	_, err := io.Copy(io.Discard, c)
	return flEnded(err)
}

// noCert completes a handshake without a client certificate on the
// route that requires one: TLS 1.3 lets the client finish first, then
// tlsedge sends certificate_required and closes. No application byte may
// come back.
func (j *flJunk) noCert(k flKind, c net.Conn, tally *flJunkTally) bool {
	tc := tls.Client(c, &tls.Config{ServerName: "api.example.com", RootCAs: j.roots,
		NextProtos: []string{"http/1.1"}, CurvePreferences: flCurves})
	if err := j.handshake(tc); err != nil {
		return flEnded(err)
	}
	if _, err := io.WriteString(tc, "GET /nocert HTTP/1.1\r\nHost: api.example.com\r\n\r\n"); err != nil {
		return true
	}
	buf := make([]byte, 512)
	n, err := tc.Read(buf)
	if n > 0 {
		tally.violation(k, "got %d bytes of application data without a client certificate: %q", n, buf[:n])
	}
	if err == nil {
		_, err = io.Copy(io.Discard, tc)
	}
	return flEnded(err)
}

// dribble completes mTLS, then sends a request head one byte every
// flDribbleEvery, never finishing it, until tlsedge gives up on it
// (read_header_timeout). The first line tlsedge answers before closing is
// tallied. A handshake tlsedge ends (max_handshakes, or handshake_timeout
// when the junk waited for a handshake slot of its own) counts as closed
// by tlsedge.
func (j *flJunk) dribble(c net.Conn, tally *flJunkTally) bool {
	tc := tls.Client(c, &tls.Config{ServerName: "api.example.com", RootCAs: j.roots,
		Certificates: []tls.Certificate{j.cert}, NextProtos: []string{"http/1.1"}, CurvePreferences: flCurves})
	if err := j.handshake(tc); err != nil {
		tally.add(func() { tally.hsEnded++ })
		return flEnded(err)
	}
	head := "GET /dribble HTTP/1.1\r\nHost: api.example.com\r\nX-Slow: " + strings.Repeat("s", 200) + "\r\n\r\n"
	end := time.Now().Add(flJunkBound)
	r := bufio.NewReader(tc)
	answer := ""
	closed := false
	for i := 0; i < len(head) && time.Now().Before(end); i++ {
		_ = c.SetWriteDeadline(end)
		if _, err := tc.Write([]byte{head[i]}); err != nil {
			closed = flEnded(err)
			break
		}
		// Wait one beat for tlsedge's answer or close.
		_ = c.SetReadDeadline(time.Now().Add(flDribbleEvery))
		line, err := r.ReadString('\n')
		if answer == "" && line != "" {
			answer = strings.TrimSpace(line)
		}
		if err != nil && flEnded(err) {
			closed = true
			break
		}
	}
	if answer != "" && !strings.HasPrefix(answer, "HTTP/1.1 408 ") {
		// docs/config.md: "a slow head is closed" (a 408 at most).
		tally.violation(flDribble, "answered %q to a head never finished", answer)
	}
	tally.add(func() { tally.answers[answer]++ })
	return closed
}
