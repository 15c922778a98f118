package e2e

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

// Forged and broken PROXY protocol headers, black-box on the built binary
// (edge/listener.go reads a PROXY header only from listeners[].trusted_proxies;
// TestProxyProtocolInAndOut in proxy_test.go covers the well-formed header
// from a trusted and an untrusted address on a `required` listener). Every
// case asserts the exact outcome: what the client got (nothing: no TLS
// alert is sent), the reason on the warn line, the client address tlsedge
// logged (the TCP peer, never a forged one) and that no server was
// contacted; for connections that are served, that the forged address is
// not what the server is told (X-Forwarded-For, the PROXY header tlsedge
// sends). No forged address appears anywhere in tlsedge's log.

// htTrustedIP is the only address trusted_proxies holds; the attackers
// connect from 127.0.0.1.
const htTrustedIP = "127.0.0.9"

// htProxyEdge has three listeners with the same routes: "required"
// (proxy_protocol required), "optional" (optional), both trusting only
// htTrustedIP, and "plain" (no proxy_protocol, no trusted_proxies). Routes:
// pass.example.com passthrough -> pp-1 (backend proxy_protocol v2),
// term.example.com terminate http -> web-1, tcp.example.com terminate tcp
// -> a PROXY v1 reading echo server.
type htProxyEdge struct {
	*edgeProc
	addrs map[string]string // listener name -> address
	pp    *backend
	web   *httpBackend
	tcp   *ppBackend
}

func htStartProxyEdge(t *testing.T) *htProxyEdge {
	t.Helper()
	p := writeTermFiles(t)
	e := &htProxyEdge{addrs: map[string]string{}, pp: startProxyBackend(t, "pp-1"), web: startHTTPBackend(t, "web-1"), tcp: startPPBackend(t, "tcp-1")}
	var ls []any
	for _, name := range []string{"required", "optional", "plain"} {
		l := cfgMap{"name": name, "address": freeAddr(t), "clienthello_timeout": "3s", "routes": []any{
			cfgMap{"sni": []any{"pass.example.com"}, "mode": "passthrough", "backend": "pp"},
			termRoute(p, "term.example.com", "terminate", "http", "web", "", nil),
			termRoute(p, "tcp.example.com", "terminate", "tcp", "tcp", "", nil),
		}}
		if name != "plain" {
			l["proxy_protocol"], l["trusted_proxies"] = name, []any{htTrustedIP + "/32"}
		}
		ls = append(ls, l)
	}
	cfg := cfgMap{
		"log":       cfgMap{"level": "info", "format": "json", "access": true, "failure_burst": 0},
		"listeners": ls,
		"backends": []any{
			cfgMap{"name": "pp", "proxy_protocol": "v2", "servers": servers(e.pp.Addr())},
			cfgMap{"name": "web", "servers": servers(e.web.Addr())},
			cfgMap{"name": "tcp", "proxy_protocol": "v1", "servers": servers(e.tcp.Addr())},
		},
	}
	useTermFiles(t, cfg, p)
	e.edgeProc = runEdge(t, cfg)
	for i, name := range []string{"required", "optional", "plain"} {
		e.addrs[name] = listenerCfg(t, cfg, i)["address"].(string)
	}
	return e
}

// contacts is what the servers got so far.
func (e *htProxyEdge) contacts() string {
	c, r := contacts(e.web)
	return fmt.Sprintf("pp-1 %d handshakes %d failures, web-1 %d/%d, tcp-1 %d", len(e.pp.Conns()), len(e.pp.Failures()), c, r, len(e.tcp.Seen()))
}

// htPP is a PROXY header (version 1 or 2) naming src as the client.
func htPP(t *testing.T, version byte, src string) []byte {
	t.Helper()
	h := proxyproto.HeaderProxyFromAddrs(version, &net.TCPAddr{IP: net.ParseIP(src), Port: 4242},
		&net.TCPAddr{IP: net.ParseIP("198.51.100.10"), Port: 443})
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// htV2 is the PROXY v2 signature followed by rest.
func htV2(rest ...byte) []byte {
	return append([]byte("\r\n\r\n\x00\r\nQUIT\n"), rest...)
}

func TestHostileProxy(t *testing.T) {
	t.Parallel()
	e := htStartProxyEdge(t)
	hello := clientHello(t, clientOpts{SNI: "pass.example.com"})
	var forged []string // every forged client address sent

	// A PROXY header from a peer that is not trusted: refused before any
	// read on "required"; read as the start of a ClientHello elsewhere, so
	// "not TLS". Subtests run one after another: the servers' counters
	// belong to one case at a time.
	i := 0
	for _, l := range []struct{ name, reason string }{
		{"required", "PROXY header from untrusted address"},
		{"optional", "not TLS"},
		{"plain", "not TLS"},
	} {
		for _, v := range []byte{1, 2} {
			i++
			src := fmt.Sprintf("203.0.113.%d", 100+i)
			forged = append(forged, src)
			t.Run(fmt.Sprintf("untrusted_peer_v%d_on_%s", v, l.name), func(t *testing.T) {
				before := e.contacts()
				res := htSend(t, e.edgeProc, e.addrs[l.name], "127.0.0.1", append(htPP(t, v, src), hello...), false)
				htProxyRefused(t, res, l.name, "127.0.0.1:", l.reason)
				if after := e.contacts(); after != before {
					t.Errorf("servers contacted: before %s, after %s; want no change", before, after)
				}
			})
		}
	}

	// Garbage and truncated headers from the trusted peer: refused with a
	// reason saying the header was bad, on both listeners that read one.
	// (Forged addresses are three-digit, so none is a prefix of another.)
	garbage := []struct {
		name      string
		payload   []byte // a ClientHello follows unless the header is truncated
		halfClose bool
		reason    string
	}{
		{"v1_bad_address", []byte("PROXY TCP4 203.0.113.301 198.51.100.10 4242 443\r\n"), false,
			`bad PROXY header: reading client hello: proxyproto: invalid address: ParseAddr("203.0.113.301"): IPv4 field has value >255`},
		{"v1_six_tokens_wanted", []byte("PROXY TCP4 203.0.113.202\r\n"), false, "bad PROXY header: reading client hello: proxyproto: can't read address family or protocol"},
		{"v1_without_cr", []byte("PROXY TCP4 203.0.113.203 198.51.100.10 4242 443\n"), false, "bad PROXY header: reading client hello: proxyproto: version 1 header is invalid, must end with \\r\\n"},
		{"v1_longer_than_107_bytes", []byte("PROXY TCP4 " + strings.Repeat("9", 120)), false, "bad PROXY header: reading client hello: proxyproto: version 1 header must be 107 bytes or less"},
		{"v2_unsupported_command", htV2(0x2f, 0x11, 0, 12), false, "bad PROXY header: reading client hello: proxyproto: unsupported proxy protocol version and command"},
		{"v2_undefined_family_0x13", htV2(0x21, 0x13, 0, 12, 203, 0, 113, 204), false, "bad PROXY header: reading client hello: proxyproto: unsupported address family and protocol"},
		{"v2_truncated_then_close", htV2(0x21, 0x11, 0, 12, 203, 0, 113, 205), true, "bad PROXY header: client closed before its hello was complete"},
		{"v2_truncated_then_silence", htV2(0x21, 0x11, 0, 12, 203, 0, 113, 206), false, "bad PROXY header: clienthello timeout"},
	}
	for _, l := range []string{"required", "optional"} {
		for _, g := range garbage {
			t.Run("trusted_peer_"+g.name+"_on_"+l, func(t *testing.T) {
				before := e.contacts()
				payload := append([]byte{}, g.payload...)
				if !strings.Contains(g.name, "truncated") {
					payload = append(payload, hello...)
				}
				res := htSend(t, e.edgeProc, e.addrs[l], htTrustedIP, payload, g.halfClose)
				htProxyRefused(t, res, l, htTrustedIP+":", g.reason)
				if after := e.contacts(); after != before {
					t.Errorf("servers contacted: before %s, after %s; want no change", before, after)
				}
			})
		}
	}
	// (203.0.113.301 is no address: the trusted peer's garbage, quoted in
	// the reason.)
	forged = append(forged, "203.0.113.202", "203.0.113.203", "203.0.113.204", "203.0.113.205", "203.0.113.206")

	// A trusted balancer's header followed by one the client wrote itself:
	// only the first is read; the second is not a ClientHello.
	t.Run("client_header_behind_trusted_header", func(t *testing.T) {
		forged = append(forged, "203.0.113.207")
		before := e.contacts()
		payload := append(append(htPP(t, 2, "198.51.100.8"), htPP(t, 1, "203.0.113.207")...), hello...)
		res := htSendAs(t, e.edgeProc, e.addrs["optional"], htTrustedIP, payload, false, "198.51.100.8:4242")
		htProxyRefused(t, res, "optional", "198.51.100.8:4242", "not TLS")
		if after := e.contacts(); after != before {
			t.Errorf("servers contacted: before %s, after %s; want no change", before, after)
		}
	})

	// Served connections from untrusted peers: the server is told the TCP
	// peer (X-Forwarded-For, the PROXY header tlsedge sends), never what
	// the client claims (its own X-Forwarded-For, Forwarded, X-Real-IP, a
	// PROXY line inside the stream). The control: a trusted balancer's
	// header is what the server is told.
	for _, tc := range []struct {
		name, listener, local string
		header                []byte // sent before the ClientHello
		want                  string // the client address the servers must see
	}{
		{"untrusted_on_optional", "optional", "127.0.0.1", nil, "127.0.0.1"},
		{"untrusted_on_plain", "plain", "127.0.0.1", nil, "127.0.0.1"},
		{"control_trusted_header_on_optional", "optional", htTrustedIP, htPP(t, 2, "198.51.100.7"), "198.51.100.7"},
		{"control_trusted_header_on_required", "required", htTrustedIP, htPP(t, 1, "198.51.100.7"), "198.51.100.7"},
	} {
		t.Run("served/"+tc.name, func(t *testing.T) {
			src := fmt.Sprintf("203.0.113.%d", 130+len(forged))
			forged = append(forged, src)
			path := "/xff/" + tc.name
			c := htProxyDial(t, e.addrs[tc.listener], tc.local, tc.header, "term.example.com", []string{"http/1.1"})
			fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: term.example.com\r\nX-Forwarded-For: %s\r\nForwarded: for=%s\r\nX-Real-IP: %s\r\nConnection: close\r\n\r\n", path, src, src, src)
			if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil || resp.StatusCode != 200 {
				t.Fatalf("GET %s: %v, %v; want 200", path, resp, err)
			}
			got, _ := findRequest(t, path, e.web)
			if xff, fw, rip := got.Header.Values("X-Forwarded-For"), got.Header.Get("Forwarded"), got.Header.Get("X-Real-IP"); len(xff) != 1 || xff[0] != tc.want || fw != "" || rip != "" {
				t.Errorf("web-1 got X-Forwarded-For %q, Forwarded %q, X-Real-IP %q; want %q and no other", xff, fw, rip, tc.want)
			}

			n := len(e.tcp.Seen())
			tcpc := htProxyDial(t, e.addrs[tc.listener], tc.local, tc.header, "tcp.example.com", nil)
			line := string(htPP(t, 1, src))
			if _, err := io.WriteString(tcpc, line); err != nil {
				t.Fatal(err)
			}
			if echo, err := bufio.NewReader(tcpc).ReadString('\n'); err != nil || echo != line {
				t.Fatalf("tcp route: echo %q, %v; want the client's own line %q back as data", echo, err, line)
			}
			seen := e.tcp.Seen()
			if len(seen) != n+1 || seen[n].Header == nil || seen[n].Header.SourceAddr.(*net.TCPAddr).IP.String() != tc.want {
				t.Fatalf("tcp-1 saw %+v; want one PROXY header from tlsedge naming %s", seen[n:], tc.want)
			}

			m := len(e.pp.Conns())
			raw := htProxyRaw(t, e.addrs[tc.listener], tc.local, tc.header)
			pc, err := handshakeOver(raw, clientOpts{SNI: "pass.example.com"}, waitLong)
			if err != nil {
				t.Fatalf("passthrough through the %s listener: %v", tc.listener, err)
			}
			pc.Close()
			conns := e.pp.Conns()
			if len(conns) != m+1 || conns[m].Proxy.SourceAddr.(*net.TCPAddr).IP.String() != tc.want {
				t.Errorf("pp-1 saw %+v; want one PROXY header from tlsedge naming %s", conns[m:], tc.want)
			}
		})
	}

	t.Run("forged_addresses_never_logged", func(t *testing.T) {
		logs := e.stderr.String()
		for _, src := range forged {
			if strings.Contains(logs, src) {
				t.Errorf("tlsedge's log mentions the forged address %s", src)
			}
		}
	})
}

// htProxyRefused checks a refused connection: nothing sent back, a warn
// line of listener with reason, whose client starts with client (the TCP
// peer, or the address a trusted header named), and no server.
func htProxyRefused(t *testing.T, res htAttack, listener, client, reason string) {
	t.Helper()
	if len(res.got) != 0 {
		t.Errorf("tlsedge sent %x; want nothing", res.got)
	}
	l := res.line
	if l.str("reason") != reason || l.str("level") != "warn" || l.str("listener") != listener || l.str("server") != "" {
		t.Errorf("line %v: want reason %q at warn, listener %s, no server", l, reason, listener)
	}
	if !strings.HasPrefix(l.str("client"), client) {
		t.Errorf("line %v: client %q; want %s...", l, l.str("client"), client)
	}
}

// htProxyRaw connects to addr from local and writes header (nil: none).
func htProxyRaw(t *testing.T, addr, local string, header []byte) net.Conn {
	t.Helper()
	raw := rawDialFrom(t, addr, local)
	if header != nil {
		if _, err := raw.Write(header); err != nil {
			t.Fatal(err)
		}
	}
	return raw
}

// htProxyDial is htProxyRaw followed by a TLS handshake with sni (a
// terminate route: tlsedge's certificate).
func htProxyDial(t *testing.T, addr, local string, header []byte, sni string, alpn []string) *tls.Conn {
	t.Helper()
	raw := htProxyRaw(t, addr, local, header)
	c := tls.Client(raw, &tls.Config{ServerName: sni, RootCAs: thePKI.serverCA.Pool(), NextProtos: alpn})
	_ = c.SetDeadline(time.Now().Add(waitLong))
	if err := c.Handshake(); err != nil {
		t.Fatalf("TLS with %s through the listener at %s: %v", sni, addr, err)
	}
	return c
}
