package e2e

import (
	"bufio"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
)

// Hostile ClientHellos, black-box on the built binary (issue "a hostile e2e
// suite"): each subtest is named by its attack and asserts the exact
// outcome: which server saw the hello (routed), or what tlsedge sent back
// (a TLS alert record from tlsmode/alert.go, or nothing) and the reason on
// the connection's warn line, with no server contacted. Related, and not
// repeated here: TestFragmentedClientHello (openssl -max_send_frag),
// TestSlowAndNonTLSClients, TestSNINormalization (passthrough_test.go).
// The passthrough servers (htServer) are in hostile_slow_test.go; htSend is
// also used by hostile_proxy_test.go.

// ---------------------------------------------------------------- the edge under attack

// htHelloEdge is one listener (clienthello_timeout 5s, the default; every
// failure line logged) with a passthrough route pass.example.com -> server pass-1, a
// terminate http route term.example.com -> HTTP server term-1 and, when
// asked, the default route "*" (passthrough) -> server dflt-1.
type htHelloEdge struct {
	*edgeProc
	pass, dflt *htServer
	term       *httpBackend
}

func htStartHelloEdge(t *testing.T, withDefault bool) *htHelloEdge {
	t.Helper()
	p := writeTermFiles(t)
	e := &htHelloEdge{pass: htStartServer(t, "pass-1"), dflt: htStartServer(t, "dflt-1"), term: startHTTPBackend(t, "term-1")}
	routes := []any{
		cfgMap{"sni": []any{"pass.example.com"}, "mode": "passthrough", "backend": "pass"},
		termRoute(p, "term.example.com", "terminate", "http", "term", "", nil),
	}
	if withDefault {
		routes = append(routes, cfgMap{"sni": []any{"*"}, "mode": "passthrough", "backend": "dflt"})
	}
	cfg := cfgMap{
		"log":       cfgMap{"level": "info", "format": "json", "access": true, "failure_burst": 0},
		"listeners": []any{cfgMap{"name": "public", "address": "", "routes": routes}},
		"backends": []any{
			cfgMap{"name": "pass", "servers": servers(e.pass.addr)},
			cfgMap{"name": "dflt", "servers": servers(e.dflt.addr)},
			cfgMap{"name": "term", "servers": servers(e.term.Addr())},
		},
	}
	useTermFiles(t, cfg, p) // also health: none, so only tlsedge's forwards count
	e.edgeProc = runEdge(t, cfg)
	return e
}

// contacts is what every server got so far: TCP connections of pass-1 and
// dflt-1, connections and requests of term-1.
func (e *htHelloEdge) contacts() string {
	c, r := contacts(e.term)
	return fmt.Sprintf("pass-1 %d, dflt-1 %d, term-1 %d/%d", e.pass.Accepted(), e.dflt.Accepted(), c, r)
}

// ---------------------------------------------------------------- hellos built by hand

// htHello describes a TLS 1.3 ClientHello built by hand (htHelloMsg): a
// server behind a passthrough route answers it with its ServerHello.
type htHello struct {
	sni     [][]string // one server_name extension per element, with these host_name entries; nil = none
	padding int        // bytes of a padding extension (RFC 7685); 0 = none
}

var htKeyShare = func() []byte {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return k.PublicKey().Bytes()
}()

// htHelloMsg is the handshake message (header included) of h.
func htHelloMsg(h htHello) []byte {
	ext := func(b *cryptobyte.Builder, typ uint16, body func(*cryptobyte.Builder)) {
		b.AddUint16(typ)
		b.AddUint16LengthPrefixed(body)
	}
	var b cryptobyte.Builder
	b.AddUint8(1) // client_hello
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddUint16(0x0303)          // legacy_version
		b.AddBytes(make([]byte, 32)) // random
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(make([]byte, 32)) })
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint16(0x1301) }) // TLS_AES_128_GCM_SHA256
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint8(0) })        // null compression
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, names := range h.sni { // RFC 6066 §3
				ext(b, 0, func(b *cryptobyte.Builder) {
					b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
						for _, n := range names {
							b.AddUint8(0) // host_name
							b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(n)) })
						}
					})
				})
			}
			ext(b, 10, func(b *cryptobyte.Builder) { // supported_groups: x25519
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint16(29) })
			})
			ext(b, 13, func(b *cryptobyte.Builder) { // signature_algorithms
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
					b.AddUint16(0x0403)
					b.AddUint16(0x0804)
					b.AddUint16(0x0807)
				})
			})
			ext(b, 43, func(b *cryptobyte.Builder) { // supported_versions: TLS 1.3
				b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint16(0x0304) })
			})
			ext(b, 51, func(b *cryptobyte.Builder) { // key_share: x25519
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
					b.AddUint16(29)
					b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(htKeyShare) })
				})
			})
			if h.padding > 0 {
				ext(b, 21, func(b *cryptobyte.Builder) { b.AddBytes(make([]byte, h.padding)) })
			}
		})
	})
	return b.BytesOrPanic()
}

// htRecords cuts msg into handshake records of at most frag bytes each.
func htRecords(msg []byte, frag int) []byte {
	var out []byte
	for len(msg) > 0 {
		n := min(frag, len(msg))
		out = append(out, 22, 3, 1, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

// htHelloOfSize is a hello in one record of exactly size bytes, header
// included (tlsedge's cap counts every byte read).
func htHelloOfSize(size int) []byte {
	base := len(htHelloMsg(htHello{sni: [][]string{{"pass.example.com"}}, padding: 1})) - 1
	msg := htHelloMsg(htHello{sni: [][]string{{"pass.example.com"}}, padding: size - 5 - base})
	return htRecords(msg, len(msg))
}

// htFragConn re-cuts a real client's first record (its ClientHello) into
// records of frag bytes (0: as it is), and sends it one byte per TCP write
// when byteWrites is set. Later writes pass through.
type htFragConn struct {
	net.Conn
	frag       int
	byteWrites bool
	done       bool
}

func (c *htFragConn) Write(p []byte) (int, error) {
	if c.done {
		return c.Conn.Write(p)
	}
	c.done = true
	if len(p) < 5 || p[0] != 22 || int(binary.BigEndian.Uint16(p[3:5])) != len(p)-5 {
		return 0, fmt.Errorf("htFragConn: the first write is not one handshake record (%d bytes)", len(p))
	}
	out := p
	if c.frag > 0 {
		out = htRecords(p[5:], c.frag)
	}
	if !c.byteWrites {
		_, err := c.Conn.Write(out)
		return len(p), err
	}
	for i := range out {
		// Each byte its own segment (TCP_NODELAY is Go's default); a pause
		// every 10 so that tlsedge reads the hello in many pieces.
		if _, err := c.Conn.Write(out[i : i+1]); err != nil {
			return 0, err
		}
		if i%10 == 9 {
			time.Sleep(time.Millisecond)
		}
	}
	return len(p), nil
}

// ---------------------------------------------------------------- clients

// htRealClient runs a Go crypto/tls handshake with sni through an
// htFragConn and returns the connection; X25519 only keeps the hello small.
func htRealClient(t *testing.T, addr, sni string, frag int, byteWrites bool) *tls.Conn {
	t.Helper()
	raw, err := net.DialTimeout("tcp", addr, waitLong)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	_ = raw.SetDeadline(time.Now().Add(waitLong))
	tc := tls.Client(&htFragConn{Conn: raw, frag: frag, byteWrites: byteWrites}, &tls.Config{ServerName: sni,
		RootCAs: thePKI.serverCA.Pool(), CurvePreferences: []tls.CurveID{tls.X25519}, NextProtos: []string{"http/1.1"}})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS handshake with SNI %q through tlsedge: %v", sni, err)
	}
	return tc
}

// htPassEcho checks that a client reached server want (its banner) and
// that the stream echoes.
func htPassEcho(t *testing.T, c *tls.Conn, want string) {
	t.Helper()
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil || line != want+"\n" {
		t.Fatalf("banner %q (%v); want %q", line, err, want+"\n")
	}
	if _, err := io.WriteString(c, "echo me\n"); err != nil {
		t.Fatal(err)
	}
	if got, err := br.ReadString('\n'); err != nil || got != "echo me\n" {
		t.Fatalf("echo %q (%v); want \"echo me\\n\"", got, err)
	}
}

// htTermGet sends GET path over c and checks term-1's answer.
func htTermGet(t *testing.T, c *tls.Conn, host, path string) {
	t.Helper()
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, host)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "term-1 GET "+path+"\n" {
		t.Fatalf("GET %s: %d %q; want 200 %q", path, resp.StatusCode, body, "term-1 GET "+path+"\n")
	}
}

// htAttack is what a raw client got: every byte tlsedge sent until it
// closed the connection, and the connection's log line.
type htAttack struct {
	got  []byte
	line logLine
}

// htSend connects to addr (from localIP, "" = any), writes payload (on its
// own goroutine: tlsedge may stop reading), half-closes when halfClose, and
// reads until tlsedge closes (EOF or reset; failing after waitLong).
func htSend(t *testing.T, e *edgeProc, addr, localIP string, payload []byte, halfClose bool) htAttack {
	t.Helper()
	return htSendAs(t, e, addr, localIP, payload, halfClose, "")
}

// htSendAs is htSend for a connection whose line names client (the
// address a trusted PROXY header gave) instead of the TCP peer ("").
func htSendAs(t *testing.T, e *edgeProc, addr, localIP string, payload []byte, halfClose bool, client string) htAttack {
	t.Helper()
	// The local address is chosen, and its lines counted, before the
	// connect: tlsedge may refuse and log before the first byte is sent.
	if localIP == "" {
		localIP = "127.0.0.1"
	}
	local := freeAddr(t)
	if ip, port, _ := net.SplitHostPort(local); ip != localIP {
		local = net.JoinHostPort(localIP, port)
	}
	if client == "" {
		client = local
	}
	n := e.accessCount(client)
	la, _ := net.ResolveTCPAddr("tcp", local)
	d := net.Dialer{Timeout: waitLong, LocalAddr: la}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() {
		_, _ = c.Write(payload)
		if halfClose {
			_ = c.(*net.TCPConn).CloseWrite()
		}
	}()
	_ = c.SetReadDeadline(time.Now().Add(waitLong))
	got, err := io.ReadAll(c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("tlsedge did not close the connection within %v (got %x)", waitLong, got)
	}
	if err != nil && !isReset(err) {
		t.Fatalf("reading until tlsedge closes: %v", err)
	}
	return htAttack{got: got, line: e.nextAccessLine(t, client, n)}
}

// htSendRouted sends a hand-built hello and returns the type of the first
// record that came back (22: a server's ServerHello) and the log line.
func htSendRouted(t *testing.T, e *edgeProc, hello []byte) (byte, logLine) {
	t.Helper()
	c, err := net.DialTimeout("tcp", e.addr, waitLong)
	if err != nil {
		t.Fatal(err)
	}
	n := e.accessCount(c.LocalAddr().String())
	_ = c.SetDeadline(time.Now().Add(waitLong))
	if _, err := c.Write(hello); err != nil {
		t.Fatal(err)
	}
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(c, hdr); err != nil {
		t.Fatalf("reading the answer to the hello: %v", err)
	}
	c.Close()
	return hdr[0], e.nextAccessLine(t, c.LocalAddr().String(), n)
}

// ---------------------------------------------------------------- the attacks

// htAlert is the record tlsedge sends before closing: a fatal alert desc.
func htAlert(desc byte) []byte { return []byte{21, 3, 3, 0, 2, 2, desc} }

// htRefusal is one attack tlsedge must refuse before any server is contacted.
type htRefusal struct {
	name      string
	payload   []byte
	halfClose bool   // the client ends its side after the payload
	alert     byte   // the alert record expected before the close; 0 = nothing at all
	reason    string // on the connection's warn line (which has no sni: no hello was parsed)
}

func htRefusals() []htRefusal {
	malformed := "malformed client hello: "
	one := func(names ...string) []byte { return htRecords(htHelloMsg(htHello{sni: [][]string{names}}), 1<<14) }
	big := htHelloMsg(htHello{sni: [][]string{{"pass.example.com"}}, padding: 20 << 10})
	junk := make([]byte, 512)
	_, _ = mrand.NewChaCha8([32]byte{7}).Read(junk)
	junk[0] = 0x42 // never a handshake record
	// RFC 5246 E.2: 2-byte length with the high bit set, CLIENT-HELLO,
	// version 3.1, 21 bytes of cipher specs, no session id, 16-byte challenge.
	sslv2 := append([]byte{0x80, 46, 1, 3, 1, 0, 21, 0, 0, 0, 16}, make([]byte, 37)...)
	serverHello := htRecords([]byte{2, 0, 0, 4, 3, 3, 0, 0}, 100) // a handshake record whose message is a ServerHello
	// A 100-byte head of a hello whose record header announces all of it.
	truncated := htRecords(htHelloMsg(htHello{sni: [][]string{{"pass.example.com"}}}), 1<<14)[:100]
	// An alert record after the hello's first 60-byte record.
	interleaved := htRecords(htHelloMsg(htHello{sni: [][]string{{"pass.example.com"}}}), 60)
	interleaved = append(append(interleaved[:65:65], htAlert(0)...), interleaved[65:]...)
	return []htRefusal{
		{"oversized_hello_20KiB_in_two_records", htRecords(big, 1<<14), false, 50, "client hello too large"},
		{"hello_one_byte_over_16KiB", htHelloOfSize(16<<10 + 1), false, 50, "client hello too large"},
		{"one_byte_records_past_16KiB", htRecords(htHelloMsg(htHello{sni: [][]string{{"pass.example.com"}}, padding: 3000}), 1), false, 50, "client hello too large"},
		{"record_longer_than_2^14", append([]byte{22, 3, 1, 0x40, 0x01}, make([]byte, 100)...), false, 50, malformed + "record length 16385 exceeds 2^14"},
		{"alert_record_inside_the_hello", interleaved, false, 50, malformed + "record of type 21 inside the client hello"},
		{"truncated_hello_then_close", truncated, true, 0, "client closed before its hello was complete"},
		{"truncated_hello_then_silence", truncated, false, 0, "clienthello timeout"},
		{"sslv2_format_hello", sslv2, false, 0, "not TLS"},
		{"http_get", []byte("GET / HTTP/1.1\r\nHost: pass.example.com\r\n\r\n"), false, 0, "not TLS"},
		{"random_junk", junk, false, 0, "not TLS"},
		{"handshake_record_without_client_hello", serverHello, false, 0, "not TLS"},
		{"two_server_name_extensions", htRecords(htHelloMsg(htHello{sni: [][]string{{"pass.example.com"}, {"term.example.com"}}}), 1<<14), false, 50, malformed + "duplicate extension 0"},
		{"server_name_list_with_two_host_names", one("pass.example.com", "term.example.com"), false, 50, malformed + "several host_name entries"},
		{"sni_trailing_dot", one("pass.example.com."), false, 50, malformed + "server name with a trailing dot"},
		{"sni_empty_name", one(""), false, 50, malformed + "bad server_name entry"},
		{"sni_nul_byte", one("pass.example.com\x00.evil"), false, 50, malformed + "byte 0x00 in server name"},
	}
}

// Every hostile hello on a listener with a passthrough, a terminate and a
// default route. Refused ones get exactly the alert (or nothing), the
// reason on a warn line, and reach no server, the default route included
// (a malformed hello must never fall back to it). Routed ones reach the
// server their real name selects. Subtests run one after another, so the
// servers' counters belong to one attack at a time.
func TestHostileHello(t *testing.T) {
	t.Parallel()
	e := htStartHelloEdge(t, true)

	for _, tc := range htRefusals() {
		t.Run(tc.name, func(t *testing.T) {
			before := e.contacts()
			res := htSend(t, e.edgeProc, e.addr, "", tc.payload, tc.halfClose)
			var want []byte
			if tc.alert != 0 {
				want = htAlert(tc.alert)
			}
			if string(res.got) != string(want) {
				t.Errorf("tlsedge sent %x before closing; want %x", res.got, want)
			}
			l := res.line
			if l.str("reason") != tc.reason || l.str("level") != "warn" || l.str("server") != "" {
				t.Errorf("line %v: want reason %q at warn, no server", l, tc.reason)
			}
			if sni, ok := l["sni"]; ok {
				t.Errorf("line %v: sni %q; want none", l, sni)
			}
			if after := e.contacts(); after != before {
				t.Errorf("servers contacted: before %s, after %s; want no change", before, after)
			}
		})
	}

	// Real clients (Go crypto/tls) whose hello is cut up on the way.
	for _, tc := range []struct {
		name, sni, route string
		frag             int
		byteWrites       bool
	}{
		{"fragmented_over_64_byte_records", "pass.example.com", "pass.example.com", 64, false},
		{"fragmented_over_1_byte_records", "pass.example.com", "pass.example.com", 1, false},
		{"fragmented_over_many_tcp_writes", "pass.example.com", "pass.example.com", 0, true},
		{"fragmented_over_records_and_tcp_writes", "pass.example.com", "pass.example.com", 16, true},
		{"sni_upper_case", "PASS.Example.COM", "pass.example.com", 0, false},
		{"terminate/fragmented_over_64_byte_records", "term.example.com", "term.example.com", 64, false},
		{"terminate/fragmented_over_1_byte_records", "term.example.com", "term.example.com", 1, false},
		{"terminate/fragmented_over_many_tcp_writes", "term.example.com", "term.example.com", 0, true},
		{"terminate/sni_upper_case", "TERM.Example.COM", "term.example.com", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pass, dflt := e.pass.Accepted(), e.dflt.Accepted()
			c := htRealClient(t, e.addr, tc.sni, tc.frag, tc.byteWrites)
			if tc.route == "term.example.com" {
				path := "/hello/" + tc.name
				htTermGet(t, c, tc.sni, path)
				if got, _ := findRequest(t, path, e.term); got.Host != tc.sni {
					t.Errorf("term-1 got Host %q; want %q", got.Host, tc.sni)
				}
			} else {
				htPassEcho(t, c, "pass-1")
				pass++ // this one
				if got := e.pass.lastSNI(); got != tc.sni {
					t.Errorf("pass-1 saw SNI %q; want %q (the hello replayed verbatim)", got, tc.sni)
				}
			}
			l := e.closeAndLog(t, c.NetConn())
			if l.str("route") != tc.route || l.str("sni") != tc.route {
				t.Errorf("line %v: want route and sni %q", l, tc.route)
			}
			if e.pass.Accepted() != pass || e.dflt.Accepted() != dflt {
				t.Errorf("pass-1 and dflt-1 accepted %d, %d; want %d, %d", e.pass.Accepted(), e.dflt.Accepted(), pass, dflt)
			}
		})
	}

	// Hand-built hellos that route: the server answers with its ServerHello.
	for _, tc := range []struct {
		name           string
		hello          []byte
		server         *htServer
		serverSaw      string // the name crypto/tls read in the replayed hello
		route, lineSNI string
	}{
		{"hello_of_exactly_16KiB", htHelloOfSize(16 << 10), e.pass, "pass.example.com", "pass.example.com", "pass.example.com"},
		{"sni_ip_literal_takes_default_route", htRecords(htHelloMsg(htHello{sni: [][]string{{"127.0.0.1"}}}), 1<<14), e.dflt, "127.0.0.1", "*", ""},
		{"sni_ipv6_literal_takes_default_route", htRecords(htHelloMsg(htHello{sni: [][]string{{"::1"}}}), 1<<14), e.dflt, "::1", "*", ""},
		{"no_sni_takes_default_route", htRecords(htHelloMsg(htHello{}), 1<<14), e.dflt, "", "*", ""},
		{"unknown_sni_takes_default_route", htRecords(htHelloMsg(htHello{sni: [][]string{{"nope.example.com"}}}), 1<<14), e.dflt, "nope.example.com", "*", "nope.example.com"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := tc.server.Accepted()
			typ, l := htSendRouted(t, e.edgeProc, tc.hello)
			if typ != 22 {
				t.Errorf("first record back: type %d; want 22 (the server's ServerHello)", typ)
			}
			if got := tc.server.Accepted(); got != n+1 {
				t.Errorf("%s accepted %d connections; want %d", tc.server.name, got, n+1)
			}
			if got := tc.server.lastSNI(); got != tc.serverSaw {
				t.Errorf("%s saw SNI %q; want %q", tc.server.name, got, tc.serverSaw)
			}
			if l.str("route") != tc.route || l.str("sni") != tc.lineSNI || l.str("server") != tc.server.addr {
				t.Errorf("line %v: want route %q, sni %q, server %s", l, tc.route, tc.lineSNI, tc.server.addr)
			}
		})
	}
}

// Without a default route, a hello with no usable name (no server_name, an
// IP literal) or an unknown one gets alert 112 (unrecognized_name) and the
// warn line "no route for server name"; no server is contacted.
func TestHostileHelloNoDefaultRoute(t *testing.T) {
	t.Parallel()
	e := htStartHelloEdge(t, false)
	for _, tc := range []struct {
		name string
		sni  [][]string
		line string // the sni field of the warn line
	}{
		{"no_sni", nil, ""},
		{"sni_ip_literal", [][]string{{"127.0.0.1"}}, ""},
		{"sni_ipv6_literal", [][]string{{"::1"}}, ""},
		{"unknown_sni", [][]string{{"nope.example.com"}}, "nope.example.com"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.contacts()
			res := htSend(t, e.edgeProc, e.addr, "", htRecords(htHelloMsg(htHello{sni: tc.sni}), 1<<14), false)
			if want := htAlert(112); string(res.got) != string(want) {
				t.Errorf("tlsedge sent %x before closing; want %x", res.got, want)
			}
			l := res.line
			if l.str("reason") != "no route for server name" || l.str("level") != "warn" || l.str("server") != "" || l.str("sni") != tc.line {
				t.Errorf("line %v: want reason \"no route for server name\" at warn, sni %q, no server", l, tc.line)
			}
			if after := e.contacts(); after != before {
				t.Errorf("servers contacted: before %s, after %s; want no change", before, after)
			}
		})
	}
	// The named route still works on the same listener.
	c := htRealClient(t, e.addr, "pass.example.com", 0, false)
	htPassEcho(t, c, "pass-1")
}
