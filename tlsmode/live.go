package tlsmode

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tlsedge/tlsedge/affinity"
	"github.com/tlsedge/tlsedge/tlsmode/identity"
)

// Events receives what happens to a live connection that the edge indexes
// (the connection directory, drain, rebalance) and measures (metrics). Its
// methods run on the connection's own goroutines: they must be quick, must
// not block and must not call back into the Conn's Shutdown.
type Events interface {
	// Bound: the connection now holds a stream to server new (passthrough,
	// tcp, an upgraded WebSocket), or none (new == nil); old is the previous.
	Bound(c *Conn, old, new *affinity.Server)
	// Identified: the connection's verified client identity is known.
	Identified(c *Conn)
	// Handshake: the client TLS handshake ended after d; err nil = success.
	Handshake(c *Conn, d time.Duration, err error)
	// Request: one HTTP request was answered with status after d; server
	// is the one that answered, nil when none did (503, 421, 413).
	Request(c *Conn, server *affinity.Server, status int, d time.Duration)
}

// ClientIdentity is the verified client certificate of a terminated
// connection: what the connection directory shows and indexes.
type ClientIdentity struct {
	Subject  string    `json:"subject"` // RFC 2253 DN
	Issuer   string    `json:"issuer"`
	CN       string    `json:"cn,omitempty"`
	URIs     []string  `json:"uri,omitempty"`
	DNSNames []string  `json:"dns,omitempty"`
	Emails   []string  `json:"email,omitempty"`
	Serial   string    `json:"serial"` // hex
	SHA256   string    `json:"sha256"` // hex of the DER
	NotAfter time.Time `json:"not_after"`
}

// NewClientIdentity describes a verified leaf certificate.
func NewClientIdentity(leaf *x509.Certificate) *ClientIdentity {
	sum := sha256.Sum256(leaf.Raw)
	id := &ClientIdentity{
		Subject:  identity.DN(leaf.RawSubject),
		Issuer:   identity.DN(leaf.RawIssuer),
		CN:       leaf.Subject.CommonName,
		DNSNames: leaf.DNSNames,
		Emails:   leaf.EmailAddresses,
		Serial:   leaf.SerialNumber.Text(16),
		SHA256:   hex.EncodeToString(sum[:]),
		NotAfter: leaf.NotAfter,
	}
	for _, u := range leaf.URIs {
		id.URIs = append(id.URIs, u.String())
	}
	return id
}

// Keys returns the values a directory lookup by client matches: the CN,
// every URI and DNS SAN, and the SHA-256.
func (id *ClientIdentity) Keys() []string {
	keys := make([]string, 0, 2+len(id.URIs)+len(id.DNSNames))
	if id.CN != "" {
		keys = append(keys, id.CN)
	}
	keys = append(keys, id.URIs...)
	keys = append(keys, id.DNSNames...)
	return append(keys, id.SHA256)
}

// live is the part of a Conn read by other goroutines while it runs.
type live struct {
	server   atomic.Pointer[affinity.Server] // bound stream's server
	last     atomic.Pointer[affinity.Server] // last HTTP request's server
	identity atomic.Pointer[ClientIdentity]
	tls      atomic.Pointer[tls.ConnectionState] // the client's TLS (terminate, reencrypt)
	requests atomic.Int64
	upgrade  atomic.Pointer[string] // the protocol an HTTP connection switched to
	up, down atomic.Int64           // counted bytes, when counting
	counting atomic.Bool
	relay    atomic.Pointer[rlConn] // the relay's stream, once passthrough handed it over
	closeNow atomic.Bool            // CloseNow was called: a stream handed to the relay later is aborted
	parked   atomic.Pointer[upPark] // an idle HTTP/1 connection's waiter: kicked when closed from outside (h1park.go)

	mu       sync.Mutex
	ender    func()           // ends the connection gracefully; nil = close the socket
	httpEnd  func(why string) // an HTTP connection's: close after the requests in flight
	closedBy string           // the reason given to the first Shutdown
	ending   bool             // MarkEnding: someone is ending it gracefully
	idle     *time.Timer
	hs       *time.Timer // WatchHandshake's

	// divert, when set, is offered each Shutdown reason first (see
	// setDivert): a WebSocket with failover moves to another server
	// instead of ending (wsfailover.go).
	divert func(reason string) bool
}

// Bind records that the connection now streams to server s (nil = none).
func (c *Conn) Bind(s *affinity.Server) {
	if s != nil {
		c.live.last.Store(s)
	}
	old := c.live.server.Swap(s)
	if old != s && c.Events != nil {
		c.Events.Bound(c, old, s)
	}
}

// BoundServer is the server the connection streams to, or nil.
func (c *Conn) BoundServer() *affinity.Server { return c.live.server.Load() }

// LastServer is the bound server or else the last one bound or used by an
// HTTP request; nil when none yet.
func (c *Conn) LastServer() *affinity.Server {
	if s := c.live.server.Load(); s != nil {
		return s
	}
	return c.live.last.Load()
}

// SetIdentity records the verified client certificate.
func (c *Conn) SetIdentity(id *ClientIdentity) {
	c.live.identity.Store(id)
	if c.Events != nil {
		c.Events.Identified(c)
	}
}

// Identity is the verified client certificate, or nil.
func (c *Conn) Identity() *ClientIdentity { return c.live.identity.Load() }

func (c *Conn) setUpgrade(proto string) { c.live.upgrade.Store(&proto) }

// Upgrade is the protocol an HTTP connection switched to ("websocket"), or "".
func (c *Conn) Upgrade() string {
	if p := c.live.upgrade.Load(); p != nil {
		return *p
	}
	return ""
}

// RequestCount is the number of HTTP requests served so far.
func (c *Conn) RequestCount() int64 { return c.live.requests.Load() }

// LiveBytes returns the bytes received from the client (up) and sent to it
// (down) so far, TLS records included: counted by terminating handlers and
// by the passthrough relay, and read from the kernel (TCP_INFO) for streams
// copied by Pipe.
func (c *Conn) LiveBytes() (up, down int64) {
	if c.live.counting.Load() {
		return c.live.up.Load(), c.live.down.Load()
	}
	if tc, ok := c.Conn.(syscall.Conn); ok { // a TCP socket: *net.TCPConn or *FDConn
		if in, out, ok := socketBytes(tc); ok {
			return in, out
		}
	}
	c.live.mu.Lock() // dropPeeked writes Peeked under it
	defer c.live.mu.Unlock()
	if c.live.counting.Load() {
		return c.live.up.Load(), c.live.down.Load()
	}
	return int64(len(c.Peeked)), 0
}

// dropPeeked switches the live byte counts to counting (from the bytes read
// before routing) and lets go of the peeked bytes, which the relay never
// needs again: an idle stream should not hold its hello.
func (c *Conn) dropPeeked() {
	c.live.mu.Lock()
	c.live.up.Store(int64(len(c.Peeked)))
	c.live.counting.Store(true)
	c.Peeked = nil
	if c.Hello != nil {
		c.Hello.Raw = nil
	}
	c.live.mu.Unlock()
}

// forgetHello drops the ClientHello's bytes once a terminating handler's
// handshake has read them (the byte counts are kept by the counting conn):
// an idle connection keeps none.
func (c *Conn) forgetHello() {
	c.live.mu.Lock()
	c.Peeked = nil
	if c.Hello != nil {
		c.Hello.Raw = nil
	}
	c.live.mu.Unlock()
}

// CloseNow closes the connection at once, without a graceful end: the
// client socket, and both sockets of a relayed passthrough stream (the
// last resort of a shutdown). The handler still finishes as usual.
func (c *Conn) CloseNow() {
	c.live.closeNow.Store(true) // before relay is loaded: see rlStart
	c.Conn.Close()
	if rc := c.live.relay.Load(); rc != nil {
		rc.abort()
	}
	c.live.parked.Load().kick() // a closed socket leaves the parking set without an event
}

// SetEnder sets how Shutdown ends the connection gracefully (a WebSocket
// close frame first); nil restores the default, closing the client socket.
func (c *Conn) SetEnder(f func()) {
	c.live.mu.Lock()
	c.live.ender = f
	c.live.mu.Unlock()
}

// setDivert sets a function offered each Shutdown (and EndGracefully)
// reason before the connection is ended: when it returns true, the
// connection is not ended and no reason is recorded (a WebSocket with
// failover moves to another server instead). It runs under the
// connection's lock: it must be quick and must not call the Conn's
// methods. nil removes it.
func (c *Conn) setDivert(f func(reason string) bool) {
	c.live.mu.Lock()
	c.live.divert = f
	c.live.mu.Unlock()
}

// Shutdown ends the connection from outside its handler (drain, rebalance,
// the admin API, an idle timeout). The first reason is kept for the access
// log; later calls do nothing and return false. Passthrough and tcp streams
// get a FIN both ways; an upgraded WebSocket gets a close frame first.
func (c *Conn) Shutdown(reason string) bool { return c.shutdown(reason, false) }

// shutdown is Shutdown; with async the graceful end (which may wait on a
// slow peer) runs on its own goroutine, the reason being set already.
func (c *Conn) shutdown(reason string, async bool) bool {
	c.live.mu.Lock()
	if c.live.closedBy != "" {
		c.live.mu.Unlock()
		return false
	}
	if d := c.live.divert; d != nil && d(reason) {
		// Moved, not ended (a failover WebSocket going to another
		// server): nothing is recorded, the connection goes on.
		c.live.mu.Unlock()
		return true
	}
	c.live.closedBy = reason
	end := c.live.ender
	if c.live.idle != nil {
		c.live.idle.Stop()
	}
	if c.live.hs != nil {
		c.live.hs.Stop()
	}
	c.live.mu.Unlock()
	if end == nil {
		end = func() { c.Conn.Close() }
	}
	if async {
		go end()
	} else {
		end()
	}
	c.live.parked.Load().kick() // a parked connection goes on, to find its socket closed
	return true
}

// ShutdownReason is the reason given to Shutdown, or "".
func (c *Conn) ShutdownReason() string {
	c.live.mu.Lock()
	defer c.live.mu.Unlock()
	return c.live.closedBy
}

// WatchIdle ends the connection with reason "idle timeout" once no byte has
// moved either way on the client's socket for d. It costs a timer, no
// goroutine: when it fires, the kernel says (TCP_INFO) how long the socket
// has been quiet (the relay, when it serves the stream, says when it last
// moved bytes), and the timer is set again for the rest. A second call
// replaces the first; d <= 0 stops watching.
func (c *Conn) WatchIdle(d time.Duration) {
	tc, ok := c.Conn.(syscall.Conn) // a TCP socket: *net.TCPConn or *FDConn
	c.live.mu.Lock()
	defer c.live.mu.Unlock()
	if c.live.idle != nil {
		c.live.idle.Stop()
		c.live.idle = nil
	}
	if d <= 0 || !ok || c.live.closedBy != "" {
		return
	}
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		quiet, ok := c.quiet(tc)
		if !ok { // closed meanwhile, or no TCP_INFO: nothing to watch
			return
		}
		if quiet >= d {
			c.Shutdown("idle timeout")
			return
		}
		c.live.mu.Lock()
		if c.live.idle == t && c.live.closedBy == "" { // not replaced or stopped meanwhile
			t.Reset(d - quiet)
		}
		c.live.mu.Unlock()
	})
	c.live.idle = t
}

// WatchHandshake ends the connection with reason ReasonHandshakeTimeout
// unless, within d, the client has sent more than consumed bytes on its
// socket: for passthrough, its next handshake flight after the hello
// (consumed = every byte read before routing, up to the hello's end). Like
// WatchIdle it costs a timer, no goroutine: when it fires, the kernel's
// TCP_INFO counts the bytes received, read or not. A second call replaces
// the first; d <= 0 stops watching. StopWatching stops it too.
func (c *Conn) WatchHandshake(d time.Duration, consumed int64) {
	tc, ok := c.Conn.(syscall.Conn) // a TCP socket: *net.TCPConn or *FDConn
	c.live.mu.Lock()
	defer c.live.mu.Unlock()
	if c.live.hs != nil {
		c.live.hs.Stop()
		c.live.hs = nil
	}
	if d <= 0 || !ok || c.live.closedBy != "" {
		return
	}
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		c.live.mu.Lock()
		current := c.live.hs == t
		c.live.mu.Unlock()
		if !current { // replaced or stopped meanwhile
			return
		}
		if rc := c.live.relay.Load(); rc != nil {
			if rc.wentOn() {
				return
			}
		} else if handedOver(tc) { // the relay is taking it: look again in a moment
			c.live.mu.Lock()
			if c.live.hs == t && c.live.closedBy == "" {
				t.Reset(time.Millisecond)
			}
			c.live.mu.Unlock()
			return
		} else if in, _, ok := socketBytes(tc); !ok || in > consumed { // closed meanwhile, or the client went on
			return
		}
		c.Shutdown(ReasonHandshakeTimeout)
	})
	c.live.hs = t
}

// quiet is how long the client socket has been quiet: the relay's count
// when it serves the stream (false once the relay has ended it), else the
// kernel's.
func (c *Conn) quiet(tc syscall.Conn) (time.Duration, bool) {
	if rc := c.live.relay.Load(); rc != nil {
		return rc.quiet()
	}
	if handedOver(tc) { // the relay has just taken it: look again later
		return 0, true
	}
	return socketQuiet(tc)
}

// StopWatching stops the idle and handshake watches, if any. Handlers'
// callers call it when the connection has ended.
func (c *Conn) StopWatching() {
	c.WatchIdle(0)
	c.WatchHandshake(0, 0)
}

// countingConn counts the bytes of a client socket under crypto/tls into
// the Conn's live counters and, with writeTimeout, gives every write that
// waits for the client that long: a client that stops reading is cut. A deadline its user sets
// (crypto/tls bounds its close_notify to 5 s) wins when it is sooner.
type countingConn struct {
	net.Conn
	c            *Conn
	writeTimeout time.Duration
	deadline     atomic.Int64 // the user's write deadline, Unix nanoseconds; 0 = none
	rw           net.Conn     // Conn, or for a TCP conn its rawTCP: raw system calls (rawio_linux.go)
}

func (cc *countingConn) SetWriteDeadline(t time.Time) error {
	cc.deadline.Store(unixNano(t))
	return cc.Conn.SetWriteDeadline(t)
}

func (cc *countingConn) SetDeadline(t time.Time) error {
	cc.deadline.Store(unixNano(t))
	return cc.Conn.SetDeadline(t)
}

// CloseWrite sends a FIN (see endStream).
func (cc *countingConn) CloseWrite() error { return closeWrite(cc.Conn) }

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func (cc *countingConn) Read(p []byte) (int, error) {
	n, err := cc.rw.Read(p)
	cc.c.live.up.Add(int64(n))
	return n, err
}

func (cc *countingConn) Write(p []byte) (int, error) {
	n := 0
	if cc.writeTimeout > 0 && cc.deadline.Load() == 0 {
		// What the socket takes now needs no deadline: only the rest
		// waits for the client, and it gets writeTimeout. A deadline of
		// an earlier write may be left on the socket, past or not: the
		// write that waits sets its own first.
		k, ok, err := writeNow(cc.rw, p)
		n = k
		if ok && (err != nil || n == len(p)) {
			cc.c.live.down.Add(int64(n))
			return n, err
		}
	}
	ours := false
	if cc.writeTimeout > 0 {
		d := time.Now().Add(cc.writeTimeout)
		if u := cc.deadline.Load(); u == 0 || d.UnixNano() < u {
			_ = cc.Conn.SetWriteDeadline(d)
			ours = true
		}
	}
	m, err := cc.rw.Write(p[n:])
	n += m
	cc.c.live.down.Add(int64(n))
	if err != nil && ours && errors.Is(err, os.ErrDeadlineExceeded) {
		// The client stopped reading. crypto/tls keeps a timed-out write
		// as a permanent error, so the connection is over: cut it now and
		// give the access line the reason (it would say "client closed").
		cc.c.Shutdown(fmt.Sprintf("client timeout: read nothing for write_timeout %v", cc.writeTimeout))
	}
	return n, err
}

// counted wraps the client socket of c so its bytes are counted (see
// countingConn).
func (c *Conn) counted(writeTimeout time.Duration) net.Conn {
	c.live.up.Store(int64(len(c.Peeked)))
	c.live.counting.Store(true)
	return &countingConn{Conn: c.Conn, c: c, writeTimeout: writeTimeout, rw: rawTCPOf(c.Conn)}
}
