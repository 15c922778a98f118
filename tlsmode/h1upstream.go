package tlsmode

// The keep-alive pools of HTTP/1.1 connections to servers that the lean
// forward (h1forward.go) uses: per server (and, for reencrypt without a
// fixed server_name, per client name, as transportFor), at most
// upMaxIdle idle connections each, closed after upIdleTimeout unused. An
// idle connection holds no buffer: readers and writers are pooled and
// taken per request.

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"sync"
	"time"
)

const (
	upMaxIdle     = 64               // idle connections kept per server (http.Transport's MaxIdleConnsPerHost here)
	upIdleTimeout = 90 * time.Second // http.Transport's IdleConnTimeout here
)

// upConn is one connection to a server.
type upConn struct {
	c      net.Conn
	key    transportKey
	br     *bufio.Reader // while a request is in flight
	remain int64         // response head bytes still allowed
	reused bool
	idleAt time.Time
	// deadlineLeft: a read deadline may be set on c (the response head's,
	// left after an answer read whole); the next response read sets or
	// clears it first. For TLS, get's idle check clears it anyway
	// (tlsBuffered): nothing is saved there, and nothing is lost.
	deadlineLeft bool
}

// upSrc is what a response is read from: the connection, within the
// response head's limit.
type upSrc struct{ u *upConn }

func (s upSrc) Read(p []byte) (int, error) {
	u := s.u
	if u.remain <= 0 {
		return 0, errUpHeadTooLarge
	}
	if int64(len(p)) > u.remain {
		p = p[:u.remain]
	}
	n, err := u.c.Read(p)
	u.remain -= int64(n)
	return n, err
}

// upPools is the proxy's set of idle server connections.
type upPools struct {
	mu     sync.Mutex
	idle   map[transportKey][]*upConn
	sweep  *time.Timer
	closed bool
}

// get takes an idle connection for key (the most recently used), or nil.
// One the server closed while it was idle is dropped (a request sent on
// it would fail before any answer, and a POST could not be sent again).
func (u *upPools) get(key transportKey) *upConn {
	for {
		u.mu.Lock()
		list := u.idle[key]
		if len(list) == 0 {
			delete(u.idle, key)
			u.mu.Unlock()
			return nil
		}
		uc := list[len(list)-1]
		u.idle[key] = list[:len(list)-1]
		u.mu.Unlock()
		if time.Since(uc.idleAt) < upIdleTimeout && !upIdleClosed(uc.c) {
			uc.reused = true
			return uc
		}
		uc.c.Close()
	}
}

// put keeps uc for the next request to its server, or closes it.
func (u *upPools) put(uc *upConn) {
	if uc.br != nil {
		if uc.br.Buffered() > 0 {
			uc.c.Close() // the server sent more than its answer
			return
		}
		uc.br.Reset(nil)
		upReaders.Put(uc.br)
		uc.br = nil
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	list := u.idle[uc.key]
	if u.closed || len(list) >= upMaxIdle {
		uc.c.Close()
		return
	}
	if u.idle == nil {
		u.idle = map[transportKey][]*upConn{}
	}
	if _, ok := u.idle[uc.key]; !ok && len(u.idle) >= maxTransports {
		for k, l := range u.idle { // an arbitrary pool goes, as transportFor's
			for _, c := range l {
				c.c.Close()
			}
			delete(u.idle, k)
			break
		}
	}
	uc.idleAt = time.Now()
	u.idle[uc.key] = append(list, uc)
	if u.sweep == nil {
		u.sweep = time.AfterFunc(upIdleTimeout, u.sweepIdle)
	}
}

// sweepIdle closes the connections idle for upIdleTimeout, and comes back
// while any are left.
func (u *upPools) sweepIdle() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.sweep = nil
	for k, list := range u.idle {
		kept := list[:0]
		for _, uc := range list {
			if time.Since(uc.idleAt) >= upIdleTimeout {
				uc.c.Close()
			} else {
				kept = append(kept, uc)
			}
		}
		if len(kept) == 0 {
			delete(u.idle, k)
		} else {
			u.idle[k] = kept
		}
	}
	if len(u.idle) > 0 {
		u.sweep = time.AfterFunc(upIdleTimeout/2, u.sweepIdle)
	}
}

// closeIdle closes the idle connections to the server at addr ("" for
// every server; close: and keeps none from now on).
func (u *upPools) closeIdle(addr string, close bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.closed = u.closed || close
	for k, list := range u.idle {
		if addr == "" || k.addr == addr {
			for _, uc := range list {
				uc.c.Close()
			}
			delete(u.idle, k)
		}
	}
}

// tlsBuffered reports whether an idle TLS connection has something read
// already (a record past the last answer, an alert): a read with its
// deadline passed returns what crypto/tls holds, or a timeout when it
// holds nothing (then the connection is as it was).
func tlsBuffered(tc *tls.Conn) bool {
	var one [1]byte
	_ = tc.SetReadDeadline(aLongTimeAgo)
	n, err := tc.Read(one[:])
	_ = tc.SetReadDeadline(time.Time{})
	return n > 0 || !isTimeout(err)
}

var upReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}

// dialUp opens a connection to the server at addr for key: plain, or TLS
// for reencrypt (dialUpstreamTLS, with its passive-ejection hook; records:
// with a record reader under crypto/tls, for an upgrade's stream, which
// waits for the server on a shallow stack).
func (p *HTTPProxy) dialUp(ctx context.Context, key transportKey, records bool) (*upConn, error) {
	var c net.Conn
	var err error
	if p.opt.Upstream != nil {
		c, err = p.dialUpstreamTLS(ctx, "tcp", key.addr, key.sni, records)
	} else {
		c, err = p.dial(ctx, "tcp", key.addr)
		c = rawTCPOf(c)
	}
	if err != nil {
		return nil, err
	}
	return &upConn{c: c, key: key}, nil
}

// reader gives uc a pooled reader for its response, with the head limit.
func (uc *upConn) reader(maxHead int) *bufio.Reader {
	if uc.br == nil {
		uc.br = upReaders.Get().(*bufio.Reader)
		uc.br.Reset(upSrc{uc})
	}
	uc.remain = int64(maxHead)
	if uc.remain <= 0 {
		uc.remain = 1 << 20
	}
	return uc.br
}

// errUpHeadTooLarge: the server's response head is over max_response_header_bytes.
var errUpHeadTooLarge = &upHeadError{}

type upHeadError struct{}

func (*upHeadError) Error() string { return "the server's response head is too large" }

var _ io.Reader = upSrc{}
