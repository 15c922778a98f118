package tlsmode

// The lean relay of upgraded streams (WebSocket). The lean forward
// (h1forward.go) sends an upgrade request on a new server connection and
// reads the 101 itself; switchProtocols then writes the 101 to the client
// and hands both sockets to an upRelay, and the handler returns: the
// request's state, its buffers and the frames of the HTTP loop go. The
// goroutine that served the connection (ServeConn) relays what the client
// sends, waiting for the client's socket on a shallow stack holding no
// buffer (a pooled 16 KiB one is taken per read), as the idle HTTP/1 loop
// does (h1idle.go). What the server sends is relayed by a goroutine that
// waits 50 ms for more, then parks the server's socket in a shared epoll
// set and ends (upgrade_park_linux.go); the next bytes start another. An
// idle WebSocket holds its two sockets, the TLS state and one small
// goroutine. (A TLS record that carries no data, a KeyUpdate or a late
// session ticket, leaves the read after the wait inside crypto/tls with its
// buffer until data comes: correct, not lean.) The rules are
// ReverseProxy's: the 101 only for the protocol asked for, its fields
// passed as they are, the stream over when the client's side ends, a
// server's EOF passed on as close_notify; shutdown (drain, reload, idle
// timeout) sends close frames both ways first (upgrade.go).

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"time"

	"github.com/tlsedge/tlsedge/affinity"
)

// h1ResponseOf is the HTTP/1 response under w's wrappers, nil when w is
// not one (HTTP/2).
func h1ResponseOf(w http.ResponseWriter) *h1Response {
	for {
		switch x := w.(type) {
		case *h1Response:
			return x
		case interface{ Unwrap() http.ResponseWriter }:
			w = x.Unwrap()
		default:
			return nil
		}
	}
}

// switchProtocols relays the server's 101 (on uc, for the request r whose
// slot on server s it holds) to the client and sets up the stream's relay,
// which ServeConn runs once the handler has returned. fl is the request in
// flight, ended here: a drain ends a WebSocket with close frames, not
// with CancelRequest.
func (p *HTTPProxy) switchProtocols(w http.ResponseWriter, r *http.Request, cs *connState, rs *reqState,
	resp *http.Response, uc *upConn, ab *upAbort, s *affinity.Server, fl *inflight) {
	c := cs.c
	cancelled := !ab.stop() // its deadline may be set on uc
	p.endRequest(fl)
	fail := func(err error) {
		uc.c.Close()
		s.Release()
		p.errorHandler(w, r, err)
	}
	if cancelled {
		err := r.Context().Err()
		if err == nil {
			err = errDrainCancelled // CancelRequest came first
		}
		fail(err)
		return
	}
	rs.status = resp.StatusCode
	upType := upgradeType(resp.Header)
	p.cookieResponse(resp, rs)
	hr := h1ResponseOf(w)
	conn, brw, err := hr.Hijack()
	if err != nil {
		fail(fmt.Errorf("Hijack failed on protocol switch: %v", err))
		return
	}
	if rs.closeUnless101 != nil {
		// Switching: the "Connection: close" set for any other answer
		// must not go into the 101.
		rs.closeUnless101.Del("Connection")
		rs.closeUnless101 = nil
	}
	// The 101 with the server's fields as they are (ReverseProxy's).
	hd := w.Header()
	for k, vv := range resp.Header {
		hd[k] = append(hd[k], vv...)
	}
	resp.Header, resp.Body = hd, nil
	if err = resp.Write(brw); err == nil {
		err = brw.Flush()
	}
	clientPending := hr.h.handOff()
	if err != nil {
		rs.err = fmt.Errorf("response write: %v", err)
		conn.Close()
		uc.c.Close()
		s.Release()
		return
	}

	u := &upgradedConn{
		rwc:    &upStream{c: uc.c, pending: uc.handOff()},
		server: uc.c,
		client: c.Conn,
		ws:     sameToken(upType, "websocket"),
	}
	u.buffered = len(u.rwc.(*upStream).pending) > 0
	raw := uc.c
	if tc, ok := uc.c.(*tls.Conn); ok {
		raw = nil
		if rec, ok := tc.NetConn().(*recConn); ok {
			raw, u.quiet = rec.Conn, rec.idle
		}
	}
	if raw != nil {
		u.wait = upReadWaiter(raw)
	}
	h := hr.h
	relay := &upRelay{
		p: p, cs: cs, rs: rs, u: u,
		client:  conn,
		guard:   h.g,
		pending: clientPending,
		rec:     h.rec,
		wait:    h.idleWait,
		// What the access line needs of the request, without its fields.
		method: r.Method, path: r.URL.Path, rawPath: r.URL.RawPath, proto: r.Proto,
		dn:   newUpDown(u, conn),
		done: make(chan struct{}),
	}
	if sc, ok := raw.(syscall.Conn); ok && u.wait != nil {
		if pk := upTheParker(); pk != nil {
			if relay.pw = pk.waiter(sc, relay.fromServer); relay.pw != nil {
				u.wake = relay.pw.kick // before the Ender: shutdown reads it
			}
		}
	}
	rs.up = u
	u.attach(cs, s, upType)
	cs.relay = relay
	rs.logAtEnd = true
	// No request follows on this connection: its formatted identity
	// headers (the XFCC value alone is most of a KiB) go.
	cs.id = nil
}

// handOff gives the buffers of a hijacked connection back to their pools
// and returns a copy of what its reader held (bytes the client sent after
// its request head), nil for none.
func (h *h1Conn) handOff() []byte {
	var held []byte
	if h.br != nil {
		if n := h.br.Buffered(); n > 0 {
			b, _ := h.br.Peek(n)
			held = bytes.Clone(b)
		}
		h.br.Reset(nil)
		h1Readers.Put(h.br)
		h.br = nil
	}
	if h.bw != nil {
		h.bw.Reset(nil)
		h1Writers.Put(h.bw)
		h.bw = nil
	}
	return held
}

// handOff gives uc's reader back to its pool and returns a copy of what it
// held past the response head (the server's first bytes of the stream).
func (uc *upConn) handOff() []byte {
	if uc.br == nil {
		return nil
	}
	var held []byte
	if n := uc.br.Buffered(); n > 0 {
		b, _ := uc.br.Peek(n)
		held = bytes.Clone(b)
	}
	uc.br.Reset(nil)
	upReaders.Put(uc.br)
	uc.br = nil
	return held
}

// upStream is the server side of a lean upgraded stream: what the
// response reader held past the 101's head, then the connection.
type upStream struct {
	c       net.Conn
	pending []byte
}

func (s *upStream) Read(p []byte) (int, error) {
	if len(s.pending) > 0 {
		return upTake(p, &s.pending), nil
	}
	return s.c.Read(p)
}

// upTake copies what it can of *pending into p and drops it from there.
func upTake(p []byte, pending *[]byte) int {
	n := copy(p, *pending)
	if *pending = (*pending)[n:]; len(*pending) == 0 {
		*pending = nil
	}
	return n
}

func (s *upStream) Write(p []byte) (int, error) { return s.c.Write(p) }
func (s *upStream) Close() error                { return s.c.Close() }

// upRelay is one lean upgraded stream: the client's side (its socket as
// hijacked, through the guard and crypto/tls) and the server's (u).
type upRelay struct {
	p       *HTTPProxy
	cs      *connState
	rs      *reqState
	u       *upgradedConn
	client  net.Conn
	guard   *h1Guard
	pending []byte       // what the client sent after its head, not relayed yet
	rec     *recConn     // the record reader under the client's crypto/tls; nil: unknown
	wait    func() error // waits for the client's socket to become readable; nil: cannot

	// The request as the access line at the end names it.
	method, path, rawPath, proto string

	// The server's side: its copy, resumed by the parker while the server
	// is quiet (pw nil: it waits on its goroutine); done is closed when
	// the copy is over.
	dn   *upDown
	pw   *upPark
	done chan struct{}
}

// run relays the stream until it ends, then frees the server's slot and
// writes the access line. As ReverseProxy: when the client's side ends
// (EOF or an error) the stream ends; when the server's ends with EOF the
// client gets close_notify and its side goes on until it closes.
func (r *upRelay) run() {
	go r.fromServer()
	defer func() { // also when fromClient panics (ServeConn's caller recovers)
		r.client.Close()
		r.u.rwc.Close()
		r.pw.kick() // a closed socket leaves the parking set without an event
		<-r.done
		if r.pw != nil {
			r.pw.done()
		}
		r.u.Close()
		req := &http.Request{Method: r.method, URL: &url.URL{Path: r.path, RawPath: r.rawPath}, Proto: r.proto}
		r.p.accessLog(r.cs.c, req, &statusWriter{}, r.rs, r.rs.start)
	}()
	_ = r.fromClient()
}

// upQuietAfter: a server quiet this long has its side of the stream
// parked (a busy stream keeps its goroutine; one that pauses longer
// between messages parks after each, an epoll_ctl and a goroutine a
// message).
const upQuietAfter = h1QuietAfter

// fromServer copies what the server sends to the client until the server
// has been quiet for upQuietAfter (parked: the parker calls it again when
// the server sends, or a kick does) or the copy is over (r.done closed).
func (r *upRelay) fromServer() {
	defer func() {
		if v := recover(); v != nil {
			r.client.Close()
			r.u.rwc.Close()
			rlLogPanic("upgraded stream relay crashed", v)
			close(r.done)
		}
	}()
	for {
		parked, done, err := r.dn.step(r.waitOrPark)
		if parked {
			return
		}
		if done {
			if err != nil || closeWrite(r.client) != nil {
				r.client.Close()
				r.u.rwc.Close()
			} // else the client's side goes on
			close(r.done)
			return
		}
	}
}

// waitOrPark waits for the server's socket: on this goroutine for
// upQuietAfter, then parked (errUpParked); shutdown's wake-up (a deadline)
// and its flag are kept whatever this does with the deadline.
func (r *upRelay) waitOrPark() error {
	u := r.u
	if r.pw == nil {
		return u.wait()
	}
	u.setReadDeadline(time.Now().Add(upQuietAfter))
	err := u.wait()
	if u.setReadDeadline(time.Time{}) {
		return err
	}
	if err == nil || !isTimeout(err) {
		return err // readable, or closed: the read says which
	}
	if r.pw.park(u.closing.Load) {
		return errUpParked
	}
	return u.wait() // not parked (closed, or shutting down): the read says
}

// fromClient copies what the client sends to the server (through u, which
// follows WebSocket frames) until EOF or an error. While the client is
// quiet (nothing held above its socket: no pending bytes, nothing in the
// guard or the record reader, and crypto/tls's plaintext read out), it
// waits for the socket holding no buffer. crypto/tls has nothing left when
// a read that reached it came back short of its buffer, or when one that
// could not wait (the probe: a deadline in the past) found nothing; a read
// of the guard's or the hijacked reader's bytes says nothing of it (the
// head's record may carry more).
func (r *upRelay) fromClient() error {
	drained := false
	for {
		quiet := r.wait != nil && r.rec != nil && len(r.pending) == 0 && !r.guard.holds() && r.rec.idle()
		if quiet && drained {
			_ = r.wait() // an error (a close, a deadline) comes again from the read
		}
		probe := quiet && !drained // crypto/tls may hold plaintext: a read that cannot wait says
		direct := len(r.pending) == 0 && !r.guard.holds()
		buf := upCopyBufs.Get().(*[upCopyBuf]byte)
		if probe {
			_ = r.guard.Conn.SetReadDeadline(aLongTimeAgo)
		}
		n, err := r.read(buf[:])
		if probe {
			_ = r.guard.Conn.SetReadDeadline(time.Time{})
			if n == 0 && isTimeout(err) {
				upCopyBufs.Put(buf)
				drained = true
				continue
			}
		}
		drained = direct && n < len(buf)
		if n > 0 {
			m, werr := r.u.Write(buf[:n])
			if werr == nil && m < n {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				upCopyBufs.Put(buf)
				return werr
			}
		}
		upCopyBufs.Put(buf)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

func (r *upRelay) read(p []byte) (int, error) {
	if len(r.pending) > 0 {
		return upTake(p, &r.pending), nil
	}
	return r.client.Read(p)
}
