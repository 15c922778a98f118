package e2e

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/tlsedge/tlsedge/certs"
)

// The connection directory (GET/DELETE /api/v1/connections), end to end:
// real devices with their own certificates, real WebSocket servers, and
// the admin API as an operator calls it.

// reasonAdminAPI is the close reason of a connection ended by DELETE
// /api/v1/connections/{id}, in its access line.
const reasonAdminAPI = "closed by the admin API"

// device is a client certificate of CA A (which the routes of termRoute
// trust): CN device-<i>, a URI SAN, and the SHA-256 of its DER computed
// here, independently of tlsedge.
type device struct {
	name   string // the CN
	uri    string // the URI SAN
	sha256 string // lowercase hex of the DER's SHA-256
	cert   tls.Certificate
}

// issueDevices makes n client certificates device-0 .. device-(n-1).
func issueDevices(t testing.TB, n int) []device {
	t.Helper()
	m := pkMint(t)
	out := make([]device, n)
	for i := range out {
		name := fmt.Sprintf("device-%d", i)
		u := mustURL(fmt.Sprintf("spiffe://example.org/fleet/%s", name))
		is := m.issue(thePKI.term.caA, certs.Leaf{CommonName: name, Client: true, URIs: []*url.URL{u}})
		sum := sha256.Sum256(is.TLS.Certificate[0])
		out[i] = device{name: name, uri: u.String(), sha256: hex.EncodeToString(sum[:]), cert: is.TLS}
	}
	return out
}

// opensslFingerprint writes a SHA-256 as `openssl x509 -fingerprint
// -sha256` does: uppercase pairs separated by colons.
func opensslFingerprint(h string) string {
	var pairs []string
	for i := 0; i+1 < len(h); i += 2 {
		pairs = append(pairs, strings.ToUpper(h[i:i+2]))
	}
	return strings.Join(pairs, ":")
}

// wsDevice is one device holding a WebSocket, echoing a message every
// 50 ms until stopped or until the connection fails.
type wsDevice struct {
	device
	c       *websocket.Conn
	backend string // the backend that answered the upgrade
	local   string // the client's address
	echoed  atomic.Int64
	done    chan struct{}
	err     error // why run ended (read after done)
}

func (d *wsDevice) run(stop <-chan struct{}) {
	defer close(d.done)
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		case <-time.After(50 * time.Millisecond):
		}
		msg := fmt.Sprintf("%s message %d", d.name, i)
		// Not the test's context: cancelling a coder/websocket call closes the connection.
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		err := d.c.Write(ctx, websocket.MessageText, []byte(msg))
		var typ websocket.MessageType
		var got []byte
		if err == nil {
			typ, got, err = d.c.Read(ctx)
		}
		cancel()
		if err == nil && (typ != websocket.MessageText || string(got) != msg) {
			err = fmt.Errorf("echo: got %v %q; want text %q", typ, got, msg)
		}
		if err != nil {
			d.err = err
			return
		}
		d.echoed.Add(1)
	}
}

// directoryEntry returns the one entry of GET /api/v1/connections?query,
// failing the test when there are more or none.
func directoryEntry(t testing.TB, admin *adminClient, query string) apiConn {
	t.Helper()
	got := admin.connections(query)
	if len(got) != 1 {
		t.Fatalf("GET /api/v1/connections?%s: got %d entries %+v; want exactly 1", query, len(got), got)
	}
	return got[0]
}

// Issue, connection directory: "Directory: 20 clients with certificates
// CN=device-0..19 hold WebSockets (terminate, client_auth require,
// leastconn over 3 servers); GET /api/v1/connections?client=device-7
// returns exactly one entry naming its real server, CN and SHA-256; lookups
// by SHA-256 and URI SAN work too; DELETE on it: that client sees close
// code 1001, the other 19 go on", and the entry leaves the directory, the
// server sees its WebSocket end, the access line says "closed by the admin
// API", and DELETE of an unknown id is a 404 with a JSON error.
func TestDirectoryWebSockets(t *testing.T) {
	t.Parallel()
	p := writeTermFiles(t)
	bs := map[string]*httpBackend{}
	var addrs []string
	for _, n := range []string{"dir-1", "dir-2", "dir-3"} {
		bs[n] = startHTTPBackend(t, n)
		addrs = append(addrs, bs[n].Addr())
	}
	cfg := cfgMap{
		"certs": cfgMap{"storage": filepath.Join(p.dir, "data")},
		"log":   cfgMap{"level": "info", "format": "json", "access": true},
		"listeners": []any{cfgMap{"name": "public", "address": "", "routes": []any{
			termRoute(p, "ws.example.com", "terminate", "http", "fleet", "require", "xfcc")}}},
		"backends": []any{cfgMap{"name": "fleet", "balance": "leastconn", "servers": servers(addrs...), "health": cfgMap{"type": "none"}}},
	}
	adminAddr := withAdmin(t, cfg)
	e := runEdge(t, cfg)
	admin := newAdmin(t, adminAddr)

	const n = 20
	devs := make([]*wsDevice, n)
	for i, d := range issueDevices(t, n) {
		c, backend, local := wsDialCert(t, e.addr, "ws.example.com", "/ws/"+d.name, d.cert)
		if bs[backend] == nil {
			t.Fatalf("%s: the 101 came from backend %q; want one of dir-1..3", d.name, backend)
		}
		devs[i] = &wsDevice{device: d, c: c, backend: backend, local: local, done: make(chan struct{})}
	}
	stop := make(chan struct{})
	var stopOnce sync.Once
	stopAll := func() { stopOnce.Do(func() { close(stop) }) }
	defer stopAll()
	for _, d := range devs {
		go d.run(stop)
	}
	// Every device exchanges messages before anything else is checked.
	if !poll(waitLong, func() bool {
		for _, d := range devs {
			if d.echoed.Load() < 3 {
				return false
			}
		}
		return true
	}) {
		for _, d := range devs {
			t.Errorf("%s: %d messages echoed in %v", d.name, d.echoed.Load(), waitLong)
		}
		t.FailNow()
	}

	// leastconn spread the 20 over the 3 servers: 7, 7, 6; the directory
	// agrees with what each server holds.
	live := map[string]int{}
	for name, b := range bs {
		live[name] = b.LiveWebSockets()
	}
	lo, hi := n, 0
	for _, v := range live {
		lo, hi = min(lo, v), max(hi, v)
	}
	if hi-lo > 1 || live["dir-1"]+live["dir-2"]+live["dir-3"] != n {
		t.Errorf("live WebSockets per server %v; want the %d spread 7/7/6 by leastconn", live, n)
	}
	all := admin.connections("route=ws.example.com")
	if len(all) != n {
		t.Fatalf("GET /api/v1/connections?route=ws.example.com: got %d entries; want %d", len(all), n)
	}
	for name, b := range bs {
		if got := admin.connections("server=" + b.Addr()); len(got) != live[name] {
			t.Errorf("GET /api/v1/connections?server=%s (%s): got %d entries; want %d, the WebSockets it holds", b.Addr(), name, len(got), live[name])
		}
	}

	// device-7: one entry, its real server, its identity.
	d7 := devs[7]
	entry := directoryEntry(t, admin, "client=device-7")
	if entry.Server != bs[d7.backend].Addr() {
		t.Errorf("entry of device-7: server %q; want %q (%s answered its upgrade)", entry.Server, bs[d7.backend].Addr(), d7.backend)
	}
	if entry.Client == nil {
		t.Fatalf("entry of device-7 %+v: no client identity", entry)
	}
	if entry.Client.CN != "device-7" {
		t.Errorf("entry of device-7: cn %q; want %q", entry.Client.CN, "device-7")
	}
	if entry.Client.SHA256 != d7.sha256 {
		t.Errorf("entry of device-7: sha256 %q; want %q", entry.Client.SHA256, d7.sha256)
	}
	if len(entry.Client.URIs) != 1 || entry.Client.URIs[0] != d7.uri {
		t.Errorf("entry of device-7: uri %q; want [%q]", entry.Client.URIs, d7.uri)
	}
	for _, c := range []struct{ field, got, want string }{
		{"mode", entry.Mode, "terminate"},
		{"protocol", entry.Protocol, "websocket"},
		{"route", entry.Route, "ws.example.com"},
		{"sni", entry.SNI, "ws.example.com"},
		{"source", entry.Source, d7.local},
		{"closing", entry.Closing, ""},
	} {
		if c.got != c.want {
			t.Errorf("entry of device-7: %s %q; want %q", c.field, c.got, c.want)
		}
	}
	// The same entry by SHA-256 (also as openssl x509 -fingerprint prints
	// it), by URI SAN, by id; device-1 is not device-1x.
	for _, q := range []string{"client=" + d7.sha256, "client=" + url.QueryEscape(opensslFingerprint(d7.sha256)),
		"client=" + url.QueryEscape(d7.uri)} {
		if got := directoryEntry(t, admin, q); got.ID != entry.ID {
			t.Errorf("GET /api/v1/connections?%s: id %d; want %d (device-7)", q, got.ID, entry.ID)
		}
	}
	if got := directoryEntry(t, admin, "client=device-1"); got.Client == nil || got.Client.CN != "device-1" {
		t.Errorf("GET /api/v1/connections?client=device-1: got %+v; want the entry of device-1 only", got)
	}
	var byID apiConn
	if st := admin.get("/api/v1/connections/"+strconv.FormatUint(entry.ID, 10), &byID); st != http.StatusOK || byID.ID != entry.ID || byID.Client == nil || byID.Client.CN != "device-7" {
		t.Errorf("GET /api/v1/connections/%d: status %d, %+v; want 200 and the entry of device-7", entry.ID, st, byID)
	}

	// DELETE it.
	liveBefore := bs[d7.backend].LiveWebSockets()
	accessBefore := e.accessCount(d7.local)
	var closed apiConn
	if st := admin.do(http.MethodDelete, "/api/v1/connections/"+strconv.FormatUint(entry.ID, 10), nil, &closed); st != http.StatusOK {
		t.Fatalf("DELETE /api/v1/connections/%d: status %d; want 200", entry.ID, st)
	}
	if closed.ID != entry.ID || closed.Closing != reasonAdminAPI {
		t.Errorf("DELETE answered id %d, closing %q; want id %d, closing %q", closed.ID, closed.Closing, entry.ID, reasonAdminAPI)
	}
	select {
	case <-d7.done:
	case <-time.After(waitLong):
		t.Fatalf("device-7 still exchanging messages %v after DELETE", waitLong)
	}
	if st := websocket.CloseStatus(d7.err); st != websocket.StatusGoingAway {
		t.Errorf("device-7's WebSocket ended with %v (close status %d); want close status %d (going away)", d7.err, st, websocket.StatusGoingAway)
	}
	if !poll(waitLong, func() bool { return bs[d7.backend].LiveWebSockets() == liveBefore-1 }) {
		t.Errorf("server %s: %d live WebSockets after DELETE; want %d (device-7's ended)", d7.backend, bs[d7.backend].LiveWebSockets(), liveBefore-1)
	}
	l := e.nextAccessLine(t, d7.local, accessBefore)
	if got := l.str("reason"); got != reasonAdminAPI {
		t.Errorf("access line of device-7: reason %q; want %q (line %v)", got, reasonAdminAPI, l)
	}
	if !poll(waitLong, func() bool { return len(admin.connections("client=device-7")) == 0 }) {
		t.Errorf("GET /api/v1/connections?client=device-7 still lists %+v after its WebSocket ended", admin.connections("client=device-7"))
	}
	var gone apiError
	if st := admin.get("/api/v1/connections/"+strconv.FormatUint(entry.ID, 10), &gone); st != http.StatusNotFound || gone.Error == "" {
		t.Errorf("GET /api/v1/connections/%d after it ended: status %d, %+v; want 404 with an error", entry.ID, st, gone)
	}

	// The other 19 go on: each echoes more messages, none failed.
	counts := map[string]int64{}
	for _, d := range devs {
		counts[d.name] = d.echoed.Load()
	}
	if !poll(waitLong, func() bool {
		for i, d := range devs {
			if i != 7 && d.echoed.Load() < counts[d.name]+5 {
				return false
			}
		}
		return true
	}) {
		for i, d := range devs {
			if i != 7 && d.echoed.Load() < counts[d.name]+5 {
				t.Errorf("%s: %d messages echoed since the DELETE; want at least 5", d.name, d.echoed.Load()-counts[d.name])
			}
		}
	}
	if got := admin.connections("route=ws.example.com"); len(got) != n-1 {
		t.Errorf("after DELETE: %d entries for route ws.example.com; want %d", len(got), n-1)
	}

	// Unknown ids: 404 with a JSON error.
	for _, id := range []string{"999999999", strconv.FormatUint(entry.ID, 10)} {
		var apiErr apiError
		if st := admin.do(http.MethodDelete, "/api/v1/connections/"+id, nil, &apiErr); st != http.StatusNotFound || apiErr.Error == "" {
			t.Errorf("DELETE /api/v1/connections/%s: status %d, %+v; want 404 with {\"error\": ...}", id, st, apiErr)
		}
	}

	stopAll()
	var wg sync.WaitGroup
	for i, d := range devs {
		<-d.done
		if i == 7 {
			continue
		}
		if d.err != nil {
			t.Errorf("%s failed: %v; want it to go on until the test stopped it", d.name, d.err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = d.c.Close(websocket.StatusNormalClosure, "done")
		}()
	}
	wg.Wait()
}

// Issue, connection directory: a passthrough connection is listed with
// mode passthrough and its server; bytes_up and bytes_down grow as bytes
// flow (read from the kernel, TCP_INFO, as the stream is spliced); DELETE
// closes it both ways: the client reads EOF, the server's side ends, and
// the access line says "closed by the admin API".
func TestDirectoryPassthrough(t *testing.T) {
	t.Parallel()
	b := startBackend(t, "dirpass-1")
	cfg := cfgMap{
		"log": cfgMap{"level": "info", "format": "json", "access": true},
		"listeners": []any{cfgMap{"name": "public", "address": "", "routes": []any{
			cfgMap{"sni": []any{"pass.example.com"}, "mode": "passthrough", "backend": "pass"}}}},
		"backends": []any{cfgMap{"name": "pass", "balance": "leastconn", "servers": servers(b.Addr()), "health": cfgMap{"type": "none"}}},
	}
	adminAddr := withAdmin(t, cfg)
	e := runEdge(t, cfg)
	admin := newAdmin(t, adminAddr)

	c := mustDial(t, e.addr, clientOpts{SNI: "pass.example.com"})
	local := c.LocalAddr().String()
	entry := directoryEntry(t, admin, "source="+local)
	for _, f := range []struct{ field, got, want string }{
		{"mode", entry.Mode, "passthrough"},
		{"server", entry.Server, b.Addr()},
		{"route", entry.Route, "pass.example.com"},
		{"sni", entry.SNI, "pass.example.com"},
		{"source", entry.Source, local},
	} {
		if f.got != f.want {
			t.Errorf("entry of the passthrough connection: %s %q; want %q", f.field, f.got, f.want)
		}
	}
	if entry.Client != nil {
		t.Errorf("entry of a passthrough connection has client %+v; want none (tlsedge never sees its certificate)", entry.Client)
	}
	if entry.BytesUp <= 0 || entry.BytesDown <= 0 {
		t.Errorf("entry after the handshake and one echo: bytes_up %d, bytes_down %d; want both above 0", entry.BytesUp, entry.BytesDown)
	}

	// 256 KiB each way: the counters grow by at least that.
	const size = 256 << 10
	msg := make([]byte, size)
	for i := range msg {
		msg[i] = byte('a' + i%26)
	}
	_ = c.SetDeadline(time.Now().Add(waitLong))
	werr := make(chan error, 1)
	go func() { _, err := c.Write(msg); werr <- err }()
	got := make([]byte, size)
	if _, err := io.ReadFull(c.r, got); err != nil {
		t.Fatalf("reading the echo of %d bytes: %v", size, err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("writing %d bytes: %v", size, err)
	}
	if string(got) != string(msg) {
		t.Fatalf("the echo of %d bytes differs from what was sent", size)
	}
	_ = c.SetDeadline(time.Time{})
	var after apiConn
	if !poll(waitLong, func() bool {
		after = directoryEntry(t, admin, "source="+local)
		return after.BytesUp >= entry.BytesUp+size && after.BytesDown >= entry.BytesDown+size
	}) {
		t.Errorf("after %d bytes each way: bytes_up %d -> %d, bytes_down %d -> %d; want both to grow by at least %d",
			size, entry.BytesUp, after.BytesUp, entry.BytesDown, after.BytesDown, size)
	}

	accessBefore := e.accessCount(local)
	var closed apiConn
	if st := admin.do(http.MethodDelete, "/api/v1/connections/"+strconv.FormatUint(entry.ID, 10), nil, &closed); st != http.StatusOK {
		t.Fatalf("DELETE /api/v1/connections/%d: status %d; want 200", entry.ID, st)
	}
	if closed.Closing != reasonAdminAPI {
		t.Errorf("DELETE answered closing %q; want %q", closed.Closing, reasonAdminAPI)
	}
	_ = c.SetReadDeadline(time.Now().Add(waitLong))
	n, err := c.r.Read(make([]byte, 1))
	if n != 0 || !errors.Is(err, io.EOF) {
		t.Errorf("client read after DELETE: %d bytes, error %v; want EOF", n, err)
	}
	l := e.nextAccessLine(t, local, accessBefore)
	if got := l.str("reason"); got != reasonAdminAPI {
		t.Errorf("access line: reason %q; want %q (line %v)", got, reasonAdminAPI, l)
	}
	if l.str("server") != b.Addr() || l.num("bytes_up") < size || l.num("bytes_down") < size {
		t.Errorf("access line %v: want server %s and at least %d bytes each way", l, b.Addr(), size)
	}
	// The server's side ended too, and the directory forgot the connection.
	if !poll(waitLong, func() bool { return b.group.live() == 0 }) {
		t.Errorf("backend %s still holds the connection after DELETE", b.name)
	}
	if got := admin.connections("source=" + local); len(got) != 0 {
		t.Errorf("GET /api/v1/connections?source=%s after DELETE: %+v; want none", local, got)
	}
	if s := admin.server("pass", b.Addr()); s.Streams != 0 {
		t.Errorf("GET /api/v1/backends after DELETE: server %s holds %d streams; want 0", b.Addr(), s.Streams)
	}
}
