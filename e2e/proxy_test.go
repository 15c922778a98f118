package e2e

import (
	"net"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

// Spec: `proxy_protocol: required`, `trusted_proxies: CIDRs allowed to send a
// PROXY header`, backend `proxy_protocol: v2` ("v2 also carries the SNI
// (AUTHORITY) and ALPN TLVs"); design rule 14 "PROXY only from trusted CIDRs".
// examples/proxy-protocol.yaml trusts 127.0.0.1/32.
func TestProxyProtocolInAndOut(t *testing.T) {
	t.Parallel()
	app := startProxyBackend(t, "app-1")
	cfg := loadExample(t, "proxy-protocol.yaml")
	mapServers(t, cfg, map[string]string{"127.0.0.1:9001": app.Addr()})
	e := runEdge(t, cfg)

	src := &net.TCPAddr{IP: net.ParseIP("203.0.113.7"), Port: 4242}
	dst := &net.TCPAddr{IP: net.ParseIP("198.51.100.10"), Port: 443}
	viaProxy := func(localIP string) (*edgeConn, net.Conn, error) {
		d := net.Dialer{Timeout: waitLong, LocalAddr: &net.TCPAddr{IP: net.ParseIP(localIP)}}
		raw, err := d.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { raw.Close() })
		_ = raw.SetDeadline(time.Now().Add(waitLong))
		if _, err := proxyproto.HeaderProxyFromAddrs(2, src, dst).WriteTo(raw); err != nil {
			t.Fatal(err)
		}
		c, err := handshakeOver(raw, clientOpts{SNI: "app.example.com"}, waitLong)
		return c, raw, err
	}

	// From the trusted 127.0.0.1: the backend sees the real client.
	c, _, err := viaProxy("127.0.0.1")
	if err != nil {
		t.Fatalf("PROXY v2 + mTLS from a trusted address: %v", err)
	}
	if err := c.echo("behind the NLB\n"); err != nil {
		t.Fatal(err)
	}
	if c.Backend != "app-1" || c.CN != "device-42" {
		t.Errorf("banner: backend %q CN %q; want app-1 CN device-42", c.Backend, c.CN)
	}
	conns := app.Conns()
	if len(conns) != 1 {
		t.Fatalf("backend recorded %d handshakes; want 1 (failures: %q)", len(conns), app.Failures())
	}
	got := conns[0]
	if got.Proxy == nil {
		t.Fatal("backend got no PROXY header")
	}
	if got.Proxy.Version != 2 {
		t.Errorf("PROXY header version %d; want 2", got.Proxy.Version)
	}
	if s := got.Proxy.SourceAddr.String(); s != "203.0.113.7:4242" {
		t.Errorf("PROXY source %s; want 203.0.113.7:4242", s)
	}
	if d := got.Proxy.DestinationAddr.String(); d != "198.51.100.10:443" {
		t.Errorf("PROXY destination %s; want 198.51.100.10:443 (the one the front balancer sent)", d)
	}
	authority := ""
	for _, tlv := range got.TLVs {
		if tlv.Type == proxyproto.PP2_TYPE_AUTHORITY {
			authority = string(tlv.Value)
		}
	}
	if authority != "app.example.com" {
		t.Errorf("PROXY AUTHORITY TLV = %q; want the SNI app.example.com (TLVs %v)", authority, got.TLVs)
	}
	if got.CN != "device-42" {
		t.Errorf("backend verified client CN %q; want device-42", got.CN)
	}
	c.Close()
	l := e.waitLog(t, "access line of the proxied client", func(l logLine) bool {
		return l.msg() == "connection" && l.str("client") == "203.0.113.7:4242"
	})
	if l.str("sni") != "app.example.com" || l.str("server") != app.Addr() {
		t.Errorf("access line %v: want sni app.example.com, server %s", l, app.Addr())
	}

	// From 127.0.0.2, not trusted: refused before any backend is contacted.
	if c, raw, err := viaProxy("127.0.0.2"); err == nil {
		c.Close()
		t.Fatalf("a PROXY header from untrusted 127.0.0.2 was accepted (reached %s)", c.Backend)
	} else {
		// The only connection from 127.0.0.2 to this tlsedge: its first line.
		l := e.nextAccessLine(t, raw.LocalAddr().String(), 0)
		if got := l.str("reason"); got != "PROXY header from untrusted address" {
			t.Errorf("untrusted client: reason %q; want \"PROXY header from untrusted address\" (line %v)", got, l)
		}
	}
	if n := len(app.Conns()); n != 1 {
		t.Errorf("backend recorded %d handshakes after the untrusted client; want still 1", n)
	}
}
