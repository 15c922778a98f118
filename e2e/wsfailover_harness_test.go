package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// The harness of wsfailover_test.go (WebSocket failover with the built
// binary): WebSocket servers that answer each message with their own id and
// can be killed (listener and connections reset) or fail their health
// check, and a real WebSocket client (github.com/coder/websocket) sending a
// message every 100 ms.

// wfServer is a WebSocket server that answers each text message m with
// "<id> m", closes with 1000 "bye from <id>" when it gets "close", and
// records each handshake's header and how each of its WebSockets ended.
type wfServer struct {
	id    string
	ln    net.Listener
	srv   *http.Server
	mu    sync.Mutex
	raw   map[net.Conn]struct{} // every accepted TCP connection, for kill
	hdrs  []http.Header         // the handshake requests' headers
	ends  []error               // each WebSocket's last read error
	sick  atomic.Bool           // GET /healthz answers 503
	peers []string              // the CN of each handshake's client certificate (TLS servers)
}

// wfStartServer starts server id: plain, or over TLS with conf (nil: plain).
func wfStartServer(t *testing.T, id string, conf *tls.Config) *wfServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &wfServer{id: id, ln: ln, raw: map[net.Conn]struct{}{}}
	var serveLn net.Listener = ln
	if conf != nil {
		serveLn = tls.NewListener(ln, conf)
	}
	s.srv = &http.Server{
		Handler: http.HandlerFunc(s.serve),
		ConnState: func(c net.Conn, st http.ConnState) {
			if st == http.StateNew {
				s.mu.Lock()
				s.raw[c] = struct{}{}
				s.mu.Unlock()
			}
		},
	}
	go func() { _ = s.srv.Serve(serveLn) }()
	t.Cleanup(s.kill)
	return s
}

func (s *wfServer) addr() string { return s.ln.Addr().String() }

func (s *wfServer) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" {
		if s.sick.Load() {
			http.Error(w, "sick", http.StatusServiceUnavailable)
		}
		return
	}
	s.mu.Lock()
	s.hdrs = append(s.hdrs, r.Header.Clone())
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		s.peers = append(s.peers, r.TLS.PeerCertificates[0].Subject.CommonName)
	}
	s.mu.Unlock()
	w.Header().Set("X-Backend", s.id)
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	ctx := context.Background()
	for {
		typ, msg, err := c.Read(ctx)
		if err != nil {
			s.mu.Lock()
			s.ends = append(s.ends, err)
			s.mu.Unlock()
			return
		}
		if string(msg) == "close" {
			_ = c.Close(websocket.StatusNormalClosure, "bye from "+s.id)
			return
		}
		if err := c.Write(ctx, typ, []byte(s.id+" "+string(msg))); err != nil {
			return
		}
	}
}

// kill closes the listener and resets every connection (SO_LINGER 0): the
// server is gone without a close frame.
func (s *wfServer) kill() {
	_ = s.ln.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.raw {
		if tc, ok := c.(*tls.Conn); ok {
			c = tc.NetConn()
		}
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = c.Close()
	}
}

// handshakes returns the handshake headers the server got so far.
func (s *wfServer) handshakes() []http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]http.Header(nil), s.hdrs...)
}

// endings returns how the server's WebSockets ended so far.
func (s *wfServer) endings() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]error(nil), s.ends...)
}

// wfReply is one answer the client got: which server, which message.
type wfReply struct {
	server string
	seq    int
}

// wfClient sends "m<seq>" every 100 ms on a WebSocket through tlsedge and
// records the answers, until the connection fails or the test ends.
type wfClient struct {
	ws      *websocket.Conn
	first   string // the X-Backend of the 101
	mu      sync.Mutex
	replies []wfReply
	err     error // the read error that ended the client, nil while it runs
	done    chan struct{}
}

func wfDialClient(t *testing.T, addr, path string) *wfClient {
	t.Helper()
	ws, backend, _ := wsDialCert(t, addr, "d1.devices.example.com", path, thePKI.term.clients[cliValid].TLS)
	ws.SetReadLimit(1 << 16)
	c := &wfClient{ws: ws, first: backend, done: make(chan struct{})}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // reader
		defer wg.Done()
		defer close(c.done)
		for {
			_, msg, err := ws.Read(context.Background())
			if err != nil {
				c.mu.Lock()
				c.err = err
				c.mu.Unlock()
				return
			}
			id, m, _ := strings.Cut(string(msg), " ")
			seq, _ := strconv.Atoi(strings.TrimPrefix(m, "m"))
			c.mu.Lock()
			c.replies = append(c.replies, wfReply{server: id, seq: seq})
			c.mu.Unlock()
		}
	}()
	go func() { // writer: a message every 100 ms
		defer wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), waitLong)
			err := ws.Write(ctx, websocket.MessageText, []byte(fmt.Sprintf("m%d", i)))
			cancel()
			if err != nil {
				return
			}
			select {
			case <-tick.C:
			case <-stop:
				return
			case <-c.done:
				return
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		_ = ws.CloseNow()
		wg.Wait()
	})
	return c
}

// snapshot returns the replies so far and the error that ended the client.
func (c *wfClient) snapshot() ([]wfReply, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]wfReply(nil), c.replies...), c.err
}

// count is the number of replies from server id so far.
func (c *wfClient) count(id string) int {
	rs, _ := c.snapshot()
	n := 0
	for _, r := range rs {
		if r.server == id {
			n++
		}
	}
	return n
}

// waitReplies waits (bounded) until n replies came from server id; it fails
// the test when the client's connection ends first or the wait runs out.
func (c *wfClient) waitReplies(t *testing.T, id string, n int, what string) {
	t.Helper()
	ok := poll(3*waitLong, func() bool {
		_, err := c.snapshot()
		return err != nil || c.count(id) >= n
	})
	rs, err := c.snapshot()
	if err != nil {
		t.Fatalf("%s: the client's WebSocket ended: %v (replies %v)", what, err, rs)
	}
	if !ok {
		t.Fatalf("%s: %d replies from %s within %v; want %d (replies %v)", what, c.count(id), id, 3*waitLong, n, rs)
	}
}

// wfSetup starts servers ids, and tlsedge with one terminate route
// *.devices.example.com (client certificates of CA A, identity headers
// X-Device-Subject and X-Device-Serial) to a leastconn backend "ws" of
// those servers; failover as given; mod, when not nil, changes the config
// last. It returns tlsedge, the servers by id and the admin address.
func wfSetup(t *testing.T, failover bool, ids ...string) (*edgeProc, map[string]*wfServer, string) {
	return wfSetupMod(t, failover, nil, ids...)
}

func wfSetupMod(t *testing.T, failover bool, mod func(cfg cfgMap), ids ...string) (*edgeProc, map[string]*wfServer, string) {
	return wfSetupFull(t, failover, false, mod, ids...)
}

// wfSetupFull is wfSetupMod; with reencrypt the route is mode reencrypt
// and the servers speak TLS (a *.example.com certificate of the harness's
// server CA) and require tlsedge's client certificate.
func wfSetupFull(t *testing.T, failover, reencrypt bool, mod func(cfg cfgMap), ids ...string) (*edgeProc, map[string]*wfServer, string) {
	t.Helper()
	p := writeTermFiles(t)
	var conf *tls.Config
	if reencrypt {
		srv, err := thePKI.serverCert("ws-internal")
		if err != nil {
			t.Fatal(err)
		}
		conf = &tls.Config{Certificates: []tls.Certificate{srv.TLS}, ClientAuth: tls.RequireAndVerifyClientCert,
			ClientCAs: thePKI.clientCA.Pool(), NextProtos: []string{"http/1.1"}}
	}
	servers := map[string]*wfServer{}
	var list []any
	for _, id := range ids {
		s := wfStartServer(t, id, conf)
		servers[id] = s
		list = append(list, cfgMap{"address": s.addr()})
	}
	route := cfgMap{
		"sni": []any{"*.devices.example.com"}, "mode": "terminate", "protocol": "http", "backend": "ws",
		"tls":      cfgMap{"cert": p.edgeCert, "key": p.edgeKey, "client_auth": "require", "client_ca": []any{p.caA}},
		"identity": cfgMap{"X-Device-Subject": "subject", "X-Device-Serial": "serial"},
	}
	if failover {
		route["websocket"] = cfgMap{"failover": true}
	}
	backend := cfgMap{
		"name": "ws", "balance": "leastconn", "health": cfgMap{"type": "none"},
		"drain_timeout": "1s", "servers": list,
	}
	if reencrypt {
		route["mode"] = "reencrypt"
		backend["tls"] = cfgMap{"ca": p.serverCA, "server_name": "ws-internal.example.com", "cert": p.upCert, "key": p.upKey}
	}
	cfg := cfgMap{
		"certs":     cfgMap{"storage": filepath.Join(p.dir, "data")},
		"log":       cfgMap{"level": "info"},
		"shutdown":  cfgMap{"grace": "1s"},
		"listeners": []any{cfgMap{"name": "public", "routes": []any{route}}},
		"backends":  []any{backend},
	}
	admin := withAdmin(t, cfg)
	if mod != nil {
		mod(cfg)
	}
	return runEdge(t, cfg), servers, admin
}

// wfOther is the one id of ids that is not id.
func wfOther(ids []string, id string) string {
	for _, x := range ids {
		if x != id {
			return x
		}
	}
	return ""
}
