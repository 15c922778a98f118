package tlsmode

import (
	"crypto/rand"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/tlsedge/tlsedge/affinity"
)

// CloseGrace bounds how long a WebSocket ended by Shutdown may take to
// answer the close frame before both sockets are closed.
const CloseGrace = 2 * time.Second

// upgradedConn is the server side of an upgraded connection (the 101
// response's body, which ReverseProxy copies from and to). For WebSockets it
// follows frame boundaries both ways, so that shutdown can put a close
// frame (1001 going away) between two frames: into the stream to the client
// (as data its copier reads) and onto the server connection.
type upgradedConn struct {
	rwc     io.ReadWriteCloser
	server  net.Conn // under rwc: read deadlines wake a blocked Read
	client  net.Conn // the client's socket: closed when the grace is over
	ws      bool
	release func()

	// The shallow wait of WriteTo (upgrade_copy.go): wait blocks until the
	// server's socket is readable (nil: not known how); quiet reports
	// that nothing read from it waits above the socket (nil: always);
	// buffered: rwc may hold bytes read already, the first read must not
	// wait.
	wait     func() error
	quiet    func() bool
	buffered bool
	// wake resumes a server side parked by the lean relay (nil: none);
	// shutdown calls it once it has set closing and its deadline, and
	// after it closed the sockets.
	wake func()

	// server -> client, used by one reading goroutine at a time (the lean
	// relay hands the copy from one to the next through its parking)
	in      frameTracker
	inject  []byte // the close frame still to hand out
	eof     bool
	closing atomic.Bool
	reason  atomic.Pointer[string]

	// client -> server
	wclose  atomic.Bool // shutdown asked for a close frame to the server
	wmu     sync.Mutex
	out     frameTracker
	wclosed bool // our close frame went to the server: drop what follows
}

func (u *upgradedConn) Read(p []byte) (int, error) {
	if u.eof {
		return 0, io.EOF
	}
	if len(u.inject) > 0 {
		n := copy(p, u.inject)
		if u.inject = u.inject[n:]; len(u.inject) == 0 {
			u.eof = true
		}
		return n, nil
	}
	if u.closing.Load() && u.ws && !u.in.broken {
		if u.in.atBoundary() {
			return u.startInject(p)
		}
		// Read no further than the end of the current frame, or a server
		// that never pauses would always have begun the next one.
		p = p[:min(uint64(len(p)), u.in.left())]
	}
	n, err := u.rwc.Read(p)
	if u.ws && !u.in.broken {
		u.in.feed(p[:n])
	}
	if err != nil && n == 0 && u.closing.Load() && isTimeout(err) && !u.in.broken {
		if u.in.atBoundary() {
			return u.startInject(p)
		}
		// Mid-frame: let the frame finish, within a bound.
		_ = u.server.SetReadDeadline(time.Now().Add(time.Second))
		return 0, nil
	}
	return n, err
}

// startInject begins handing out the close frame to the client.
func (u *upgradedConn) startInject(p []byte) (int, error) {
	if !u.ws {
		return 0, io.EOF
	}
	u.inject = closeFrame(u.closeReason(), false)
	return u.Read(p)
}

func (u *upgradedConn) Write(p []byte) (int, error) {
	u.wmu.Lock()
	defer u.wmu.Unlock()
	all := len(p)
	if !u.wclosed && u.wclose.Load() && !u.out.broken {
		// A close frame is due: forward the rest of the client's frame
		// in progress, then ours.
		n := int(min(uint64(len(p)), u.out.left()))
		if n > 0 {
			if _, err := u.rwc.Write(p[:n]); err != nil {
				return 0, err
			}
			u.out.feed(p[:n])
			p = p[n:]
		}
		u.sendCloseLocked()
	}
	if u.wclosed {
		// Our close frame went first; what the client sends now (its
		// answer to the close) is for us, not the server.
		if u.out.feed(p) {
			u.client.Close() // close handshake done
		}
		return all, nil
	}
	n, err := u.rwc.Write(p)
	if u.ws && !u.out.broken {
		u.out.feed(p[:n])
	}
	return n, err
}

// sendCloseLocked sends the masked close frame to the server when the
// client's stream is between two frames (else a later Write does). wmu
// must be held.
func (u *upgradedConn) sendCloseLocked() {
	if u.wclosed || !u.out.atBoundary() {
		return
	}
	_ = u.server.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = u.rwc.Write(closeFrame(u.closeReason(), true))
	u.wclosed = true
}

func (u *upgradedConn) Close() error {
	defer u.release()
	return u.rwc.Close()
}

func (u *upgradedConn) closeReason() string {
	if r := u.reason.Load(); r != nil {
		return *r
	}
	return "going away"
}

// shutdown ends the stream: for a WebSocket, a close frame to the server
// (between two client frames: at once, or as the frame in progress ends),
// one to the client between two server frames, and both sockets closed
// within CloseGrace; otherwise both sockets closed at once.
func (u *upgradedConn) shutdown(reason string) {
	if !u.ws {
		u.rwc.Close()
		u.client.Close()
		u.kick()
		return
	}
	u.reason.Store(&reason)
	u.wclose.Store(true)
	if u.wmu.TryLock() { // not while a client write is blocked on the server
		u.sendCloseLocked() // or, mid-frame, the Write that ends the frame sends it
		u.wmu.Unlock()
	}
	u.closing.Store(true)
	_ = u.server.SetReadDeadline(time.Now()) // wake the reader
	u.kick()                                 // or resume it, parked
	time.AfterFunc(CloseGrace, func() {
		u.rwc.Close()
		u.client.Close()
		u.kick()
	})
}

// setReadDeadline sets the server's read deadline for a wait or a probe
// of the copy, and reports whether shutdown has begun: shutdown sets
// closing and then a deadline of now to wake the reader, so a deadline set
// here after that is put back to now.
func (u *upgradedConn) setReadDeadline(t time.Time) (closing bool) {
	_ = u.server.SetReadDeadline(t)
	if u.closing.Load() {
		_ = u.server.SetReadDeadline(time.Now())
		return true
	}
	return false
}

// kick resumes a parked server side (see wake).
func (u *upgradedConn) kick() {
	if u.wake != nil {
		u.wake()
	}
}

// attach makes u the connection's upgraded stream to proto: it counts as a
// request of cs and keeps the connection bound to s until released (Close
// gives s's slot back), and Shutdown ends it (close frames first). Set
// u.wake before: the Ender may run at once.
func (u *upgradedConn) attach(cs *connState, s *affinity.Server, proto string) {
	c := cs.c
	var once sync.Once
	cs.begin()
	u.release = func() {
		once.Do(func() {
			c.SetEnder(nil)
			c.Bind(nil)
			s.Release()
			cs.end()
		})
	}
	c.setUpgrade(strings.ToLower(proto))
	c.Bind(s)
	c.SetEnder(func() { go u.shutdown(c.ShutdownReason()) })
}

// closeFrame is a WebSocket close frame (RFC 6455 §5.5.1) with status 1001
// "going away" (1008 "policy violation" for an access denied) and reason (cut to fit a control frame, between two UTF-8
// characters: the reason must stay valid UTF-8); masked for frames to a
// server.
func closeFrame(reason string, masked bool) []byte {
	reason = cutCloseReason(reason)
	payload := make([]byte, 2+len(reason))
	binary.BigEndian.PutUint16(payload, wsCloseCode(reason))
	copy(payload[2:], reason)
	f := []byte{0x88, byte(len(payload))}
	if masked {
		var key [4]byte
		_, _ = rand.Read(key[:])
		f[1] |= 0x80
		f = append(f, key[:]...)
		for i := range payload {
			payload[i] ^= key[i%4]
		}
	}
	return append(f, payload...)
}

// cutCloseReason cuts a close reason to what a close frame holds (123
// bytes after the code), between two UTF-8 characters. closeFrame and the
// failover relay (wsfailover_*.go) use it.
func cutCloseReason(reason string) string {
	if len(reason) <= 123 {
		return reason
	}
	n := 123
	for n > 0 && !utf8.RuneStart(reason[n]) {
		n--
	}
	return reason[:n]
}

// frameTracker follows WebSocket frame boundaries (RFC 6455 §5.2) in one
// direction of a stream, without keeping any payload.
type frameTracker struct {
	hdr    [14]byte
	hn     int    // header bytes collected
	need   int    // header length, once the second byte is known
	remain uint64 // payload bytes left in the current frame
	opcode byte
	broken bool // a length that is not WebSocket framing: stop tracking
}

// atBoundary reports whether the stream is between two frames.
func (f *frameTracker) atBoundary() bool { return f.hn == 0 && f.remain == 0 }

// left is how many bytes of the current frame are still to come, as far as
// known (a header whose length field is not read yet counts to its known
// part); 0 at a boundary.
func (f *frameTracker) left() uint64 {
	switch {
	case f.remain > 0:
		return f.remain
	case f.hn == 0:
		return 0
	case f.hn < 2:
		return uint64(2 - f.hn)
	}
	return uint64(f.need - f.hn)
}

// feed follows p; it reports whether a close frame ended in it.
func (f *frameTracker) feed(p []byte) (closed bool) {
	for len(p) > 0 && !f.broken {
		if f.remain > 0 {
			n := min(uint64(len(p)), f.remain)
			f.remain -= n
			p = p[n:]
			if f.remain == 0 && f.opcode == 8 {
				closed = true
			}
			continue
		}
		f.hdr[f.hn] = p[0]
		f.hn++
		p = p[1:]
		if f.hn == 2 {
			f.need = 2
			switch f.hdr[1] & 0x7f {
			case 126:
				f.need += 2
			case 127:
				f.need += 8
			}
			if f.hdr[1]&0x80 != 0 {
				f.need += 4
			}
		}
		if f.hn < 2 || f.hn < f.need {
			continue
		}
		var n uint64
		switch l := f.hdr[1] & 0x7f; l {
		case 126:
			n = uint64(binary.BigEndian.Uint16(f.hdr[2:4]))
		case 127:
			n = binary.BigEndian.Uint64(f.hdr[2:10])
			if n>>63 != 0 {
				f.broken = true
				return closed
			}
		default:
			n = uint64(l)
		}
		f.opcode = f.hdr[0] & 0x0f
		f.remain, f.hn, f.need = n, 0, 0
		if n == 0 && f.opcode == 8 {
			closed = true
		}
	}
	return closed
}
