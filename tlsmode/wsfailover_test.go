package tlsmode

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"
)

// Only the reasons about the server (drain, rebalance) move a failover
// WebSocket; every other Shutdown reason ends it, the admin API's close
// included.
func TestWFMoves(t *testing.T) {
	for _, r := range []string{ReasonDrained, ReasonRebalanced} {
		if !wfMoves(r) {
			t.Errorf("wfMoves(%q) = false; want true", r)
		}
	}
	for _, r := range []string{ReasonAdminClose, "shutting down", "idle timeout", ReasonAccessDenied + " after reload: revoked",
		"client timeout: read nothing for write_timeout 30s", "closed: the route changed in a reload (closed when idle)", ""} {
		if wfMoves(r) {
			t.Errorf("wfMoves(%q) = true; want false", r)
		}
	}
}

// setDivert: a diverted Shutdown records nothing and does not call the
// ender; another reason ends the connection as before; once the divert is
// removed, every reason ends it.
func TestWFDivert(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := &Conn{Conn: a}
	ended := 0
	c.SetEnder(func() { ended++ })
	var offered []string
	c.setDivert(func(reason string) bool {
		offered = append(offered, reason)
		return wfMoves(reason)
	})
	if !c.Shutdown(ReasonDrained) {
		t.Error("Shutdown(drained) = false; want true (the connection is being moved)")
	}
	if got := c.ShutdownReason(); got != "" || ended != 0 {
		t.Errorf("after a diverted Shutdown: reason %q, ender called %d times; want \"\" and 0", got, ended)
	}
	if !c.Shutdown("shutting down") || ended != 1 || c.ShutdownReason() != "shutting down" {
		t.Errorf("Shutdown(shutting down): ender called %d times, reason %q; want 1 and shutting down", ended, c.ShutdownReason())
	}
	if c.Shutdown(ReasonRebalanced) {
		t.Error("Shutdown after the connection ended = true; want false")
	}
	if strings.Join(offered, "|") != ReasonDrained+"|shutting down" {
		t.Errorf("reasons offered to divert: %q", offered)
	}

	c2 := &Conn{Conn: b}
	c2.setDivert(func(string) bool { return true })
	c2.setDivert(nil)
	ended2 := 0
	c2.SetEnder(func() { ended2++ })
	if !c2.Shutdown(ReasonDrained) || ended2 != 1 {
		t.Errorf("without a divert, Shutdown(drained) ended it %d times; want 1", ended2)
	}
}

// wfCut keeps a close reason within a close frame (123 bytes) and valid
// UTF-8.
func TestWFCut(t *testing.T) {
	if got := cutCloseReason("going away"); got != "going away" {
		t.Errorf("short reason changed: %q", got)
	}
	long := strings.Repeat("a", 122) + "é" + "tail" // é straddles byte 123
	got := cutCloseReason(long)
	if len(got) != 122 || !utf8.ValidString(got) {
		t.Errorf("wfCut: %d bytes, valid UTF-8 %v; want the 122 bytes before é", len(got), utf8.ValidString(got))
	}
	if got := cutCloseReason(strings.Repeat("b", 200)); len(got) != 123 {
		t.Errorf("wfCut of 200 ASCII bytes: %d; want 123", len(got))
	}
}

// A handshake that is not a valid WebSocket one is refused before any
// server is asked.
func TestWFCheckRequest(t *testing.T) {
	const key = "dGhlIHNhbXBsZSBub25jZQ==" // RFC 6455's example: 16 bytes
	req := func(method, version string, keys ...string) *http.Request {
		r, _ := http.NewRequest(method, "https://d1.example.com/ws", nil)
		r.Header.Set("Sec-WebSocket-Version", version)
		for _, k := range keys {
			r.Header.Add("Sec-WebSocket-Key", k)
		}
		return r
	}
	for _, tt := range []struct {
		name string
		r    *http.Request
		want string
	}{
		{"valid", req("GET", "13", key), ""},
		{"post", req("POST", "13", key), "a WebSocket handshake must be a GET"},
		{"version 8", req("GET", "8", key), "Sec-WebSocket-Version must be 13"},
		{"no key", req("GET", "13"), "exactly one Sec-WebSocket-Key is required"},
		{"two keys", req("GET", "13", key, key), "exactly one Sec-WebSocket-Key is required"},
		{"short key", req("GET", "13", "c2hvcnQ="), "Sec-WebSocket-Key must be 16 bytes in base64"},
		{"not base64", req("GET", "13", "!!!!"), "Sec-WebSocket-Key must be 16 bytes in base64"},
	} {
		if got := wfCheckRequest(tt.r); got != tt.want {
			t.Errorf("%s: %q; want %q", tt.name, got, tt.want)
		}
	}
}

// wfDropHop removes the hop-by-hop fields and those Connection names; the
// 101's copy keeps the server's own fields (a cookie) and drops the
// handshake's.
func TestWFHeaders(t *testing.T) {
	h := http.Header{
		"Connection":       {"Upgrade, X-Hop"},
		"Upgrade":          {"websocket"},
		"X-Hop":            {"1"},
		"Keep-Alive":       {"timeout=5"},
		"Te":               {"trailers"},
		"X-Device-Subject": {"CN=device-42"},
	}
	wfDropHop(h)
	if len(h) != 1 || h.Get("X-Device-Subject") != "CN=device-42" {
		t.Errorf("after wfDropHop: %v; want only X-Device-Subject", h)
	}
	dst := http.Header{}
	wfCopyHeader(dst, http.Header{
		"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Accept": {"x"},
		"Sec-Websocket-Protocol": {"v1"}, "Set-Cookie": {"s=1"}, "X-Backend": {"ws-a"},
	}, wfSkipResponse)
	if len(dst) != 2 || dst.Get("Set-Cookie") != "s=1" || dst.Get("X-Backend") != "ws-a" {
		t.Errorf("101 fields passed on: %v; want Set-Cookie and X-Backend only", dst)
	}
}

// divert never loses a move (L5): every drain or rebalance asked while one
// is pending is taken (true), the last one kept for run; other reasons and
// a session that is over are not diverted.
func TestWFDivertNeverFull(t *testing.T) {
	leg := &wfLeg{}
	s := &wfSession{moved: make(chan struct{}, 1), end: make(chan struct{}), done: make(chan struct{})}
	s.cur.Store(leg)
	for i := 0; i < 10; i++ {
		if !s.divert(ReasonRebalanced) {
			t.Fatalf("divert %d = false; want true (the move is recorded)", i)
		}
	}
	if !s.divert(ReasonDrained) {
		t.Fatal("divert(drained) = false; want true")
	}
	if s.divert("shutting down") {
		t.Error("divert(shutting down) = true; want false (it ends the WebSocket)")
	}
	<-s.moved
	if m := s.takeMove(); m == nil || m.leg != leg || m.why != ReasonDrained {
		t.Errorf("move taken %+v; want the last one (drained) off the current leg", m)
	}
	if m := s.takeMove(); m != nil {
		t.Errorf("second take %+v; want nil", m)
	}
	close(s.done)
	if s.divert(ReasonDrained) {
		t.Error("divert after the session = true; want false")
	}
}

// wfReadMessage reads a message whole, into a buffer no larger than the
// limit + 1, and refuses more than the limit.
func TestWFReadMessage(t *testing.T) {
	for _, n := range []int{0, 1, 4096, 4097, 100000, 1 << 20} {
		msg := strings.Repeat("x", n)
		got, err := wfReadMessage(strings.NewReader(msg), 1<<20)
		if err != nil || string(got) != msg || cap(got) > 1<<20+1 {
			t.Errorf("%d bytes: got %d (cap %d), error %v; want them all, cap at most %d", n, len(got), cap(got), err, 1<<20+1)
		}
	}
	if _, err := wfReadMessage(strings.NewReader(strings.Repeat("x", 1<<20+2)), 1<<20); err == nil {
		t.Error("a message of the limit + 2: no error")
	}
}
