package e2e

import (
	"crypto/tls"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// passthroughEdge is examples/passthrough.yaml running against four backends:
// api-1, api-2 (backend "api", roundrobin, weights 1 and 2) and dev-1, dev-2
// (backend "devices", leastconn).
type passthroughEdge struct {
	*edgeProc
	backends map[string]*backend
}

// startPassthrough runs examples/passthrough.yaml; mod may change the config
// map before it is written.
func startPassthrough(t *testing.T, mod func(cfg cfgMap)) *passthroughEdge {
	t.Helper()
	bs := map[string]*backend{}
	for _, n := range []string{"api-1", "api-2", "dev-1", "dev-2"} {
		bs[n] = startBackend(t, n)
	}
	cfg := loadExample(t, "passthrough.yaml")
	mapServers(t, cfg, map[string]string{
		"127.0.0.1:9001": bs["api-1"].Addr(),
		"127.0.0.1:9002": bs["api-2"].Addr(),
		"127.0.0.1:9011": bs["dev-1"].Addr(),
		"127.0.0.1:9012": bs["dev-2"].Addr(),
	})
	if mod != nil {
		mod(cfg)
	}
	return &passthroughEdge{edgeProc: runEdge(t, cfg), backends: bs}
}

// opensslArgs is s_client towards addr with sni, trusting the server CA,
// with the client certificate unless noCert.
func opensslArgs(addr, sni string, noCert bool, extra ...string) []string {
	args := []string{"s_client", "-connect", addr, "-CAfile", thePKI.serverCAFile, "-verify_return_error"}
	if sni != "" {
		args = append(args, "-servername", sni)
	}
	if !noCert {
		args = append(args, "-cert", thePKI.clientCert, "-key", thePKI.clientKey)
	}
	return append(args, extra...)
}

// firstCertPEM returns the first PEM certificate printed in out.
func firstCertPEM(t *testing.T, out string) []byte {
	t.Helper()
	i := strings.Index(out, "-----BEGIN CERTIFICATE-----")
	if i < 0 {
		t.Fatalf("openssl printed no certificate:\n%s", out)
	}
	blk, _ := pem.Decode([]byte(out[i:]))
	if blk == nil {
		t.Fatalf("cannot decode the certificate openssl printed:\n%s", out)
	}
	return pem.EncodeToMemory(blk)
}

// bannerRE is a backend's banner line, "<backend> CN=<cn>".
var bannerRE = regexp.MustCompile(`(?m)^\s*([a-z]+-[0-9]+) CN=(\S*)\s*$`)

// bannerIn returns the backend and client CN of the banner in out.
func bannerIn(out string) (name, cn string, ok bool) {
	m := bannerRE.FindStringSubmatch(out)
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

// Spec: "passthrough: tlsedge routes by SNI and never decrypts. Client and
// servers run TLS (here: mutual TLS) end to end; the servers verify client
// certificates" (examples/passthrough.yaml, design "Fast paths").
func TestPassthroughMTLSWithOpenSSL(t *testing.T) {
	t.Parallel()
	needTools(t, "openssl")
	e := startPassthrough(t, nil)

	const text = "hello through tlsedge"
	c := startCommand(t, 30*time.Second, "openssl", opensslArgs(e.addr, "api.example.com", false)...)
	if _, err := io.WriteString(c.stdin, text+"\n"); err != nil {
		t.Fatal(err)
	}
	if !c.waitOutput(text, waitLong) {
		t.Fatalf("the echo %q did not come back within %v; openssl:\n%s", text, waitLong, c.out.String())
	}
	if err := c.wait(t, waitLong); err != nil {
		t.Errorf("openssl s_client: %v, want exit 0\n%s", err, c.out.String())
	}
	out := c.out.String()

	name, cn, ok := bannerIn(out)
	if !ok {
		t.Fatalf("no backend banner in the openssl output:\n%s", out)
	}
	b := e.backends[name]
	if b == nil || b.name != "api-1" && b.name != "api-2" {
		t.Fatalf("route api.example.com reached backend %q; want api-1 or api-2", name)
	}
	if cn != "device-42" {
		t.Errorf("backend banner says client CN %q; want device-42", cn)
	}
	// The certificate served is exactly the backend's: tlsedge has none.
	want, _ := thePKI.serverCert(name)
	if got := firstCertPEM(t, out); string(got) != string(want.CertPEM) {
		t.Errorf("served certificate is not backend %s's:\ngot  %s\nwant %s", name, got, want.CertPEM)
	}
	if !strings.Contains(out, "subject=CN = backend "+name) {
		t.Errorf("openssl output lacks %q:\n%s", "subject=CN = backend "+name, out)
	}
	if !strings.Contains(out, "Verify return code: 0 (ok)") {
		t.Errorf("openssl output lacks \"Verify return code: 0 (ok)\":\n%s", out)
	}
	conns := b.Conns()
	if len(conns) != 1 || conns[0].CN != "device-42" {
		t.Errorf("backend %s recorded %+v; want one connection with CN device-42", name, conns)
	}
	if len(conns) == 1 && conns[0].SNI != "api.example.com" {
		t.Errorf("backend saw SNI %q; want api.example.com (the hello replayed verbatim)", conns[0].SNI)
	}
	l := e.waitLog(t, "access line for api.example.com", func(l logLine) bool {
		return l.msg() == "connection" && l.str("sni") == "api.example.com"
	})
	if l.str("mode") != "passthrough" || l.str("backend") != "api" || l.str("server") != b.Addr() || l.str("route") != "api.example.com" {
		t.Errorf("access line %v: want mode passthrough, route api.example.com, backend api, server %s", l, b.Addr())
	}
	if up, _ := l["bytes_up"].(float64); up <= float64(len(text)) {
		t.Errorf("access line bytes_up = %v; want more than the %d bytes of text (the hello counts)", l["bytes_up"], len(text))
	}
	if n := len(e.findLogs(func(l logLine) bool { return l.msg() == "connection" && l.str("sni") == "api.example.com" })); n != 1 {
		t.Errorf("%d access lines for one connection; want exactly 1", n)
	}
}

// Spec: "require = a client cert is required AND verified" is the SERVER's
// policy in passthrough: "Without a client certificate, the server (not
// tlsedge) refuses the handshake" (tlsedge demo); its alert reaches the client.
func TestPassthroughNoClientCertGetsBackendAlert(t *testing.T) {
	t.Parallel()
	needTools(t, "openssl")
	e := startPassthrough(t, nil)

	c := startCommand(t, 30*time.Second, "openssl", opensslArgs(e.addr, "api.example.com", true)...)
	_, _ = io.WriteString(c.stdin, "anyone there?\n")
	if !c.waitOutput("alert certificate required", waitLong) {
		t.Fatalf("openssl did not report the backend's certificate_required alert within %v:\n%s", waitLong, c.out.String())
	}
	_ = c.wait(t, waitLong)
	out := c.out.String()
	if !strings.Contains(out, "SSL alert number 116") {
		t.Errorf("openssl output lacks \"SSL alert number 116\" (certificate_required):\n%s", out)
	}
	if name, _, ok := bannerIn(out); ok {
		t.Errorf("backend %s served a client without a certificate", name)
	}
	var fails []string
	ok := poll(waitLong, func() bool {
		fails = nil
		for _, n := range []string{"api-1", "api-2"} {
			for _, f := range e.backends[n].Failures() {
				if strings.Contains(f, "client didn't provide a certificate") {
					fails = append(fails, n+": "+f)
				}
			}
		}
		return len(fails) > 0
	})
	if !ok {
		t.Errorf("no api backend recorded a handshake failure for the missing client certificate; failures: %q %q",
			e.backends["api-1"].Failures(), e.backends["api-2"].Failures())
	}
	for _, n := range []string{"api-1", "api-2"} {
		if got := e.backends[n].Conns(); len(got) != 0 {
			t.Errorf("backend %s completed %d handshakes; want 0", n, len(got))
		}
	}
}

// Spec: "No matching route: TLS alert unrecognized_name (112), close, log."
func TestUnknownSNIWithoutDefaultRoute(t *testing.T) {
	t.Parallel()
	needTools(t, "openssl")
	api := startBackend(t, "api-1")
	cfg := loadYAML(t, "testdata/nodefault.yaml")
	mapServers(t, cfg, map[string]string{"127.0.0.1:9001": api.Addr()})
	e := runEdge(t, cfg)

	c := startCommand(t, 30*time.Second, "openssl", opensslArgs(e.addr, "unknown.example.com", false)...)
	if !c.waitOutput("SSL alert number 112", waitLong) {
		t.Fatalf("openssl did not report alert 112 (unrecognized_name) within %v:\n%s", waitLong, c.out.String())
	}
	if err := c.wait(t, waitLong); err == nil {
		t.Errorf("openssl s_client exited 0 on a refused handshake:\n%s", c.out.String())
	}
	l := e.waitLog(t, `access line with reason "no route for server name"`, func(l logLine) bool {
		return l.msg() == "connection" && l.str("reason") == "no route for server name"
	})
	if got := l.str("sni"); got != "unknown.example.com" {
		t.Errorf("access line sni = %q; want unknown.example.com (line %v)", got, l)
	}
	if got := l.str("server"); got != "" {
		t.Errorf("access line server = %q; want none", got)
	}
	if got := api.Conns(); len(got) != 0 {
		t.Errorf("the backend completed %d handshakes for an unknown name; want 0", len(got))
	}
	// The known name still works on the same listener.
	if name := oneShot(t, e.addr, clientOpts{SNI: "api.example.com"}); name != "api-1" {
		t.Errorf("api.example.com reached %q; want api-1", name)
	}
}

// Spec: `"*" alone = default route, also for a ClientHello without SNI or
// with an IP literal as SNI`.
func TestDefaultRouteTakesUnknownAndMissingSNI(t *testing.T) {
	t.Parallel()
	needTools(t, "openssl")
	e := startPassthrough(t, nil)
	isAPI := func(n string) bool { return n == "api-1" || n == "api-2" }

	for _, sni := range []string{"unknown.example.com", ""} {
		name, l := e.served(t, clientOpts{SNI: sni})
		if !isAPI(name) {
			t.Errorf("sni %q reached backend %q; want the default backend api (api-1 or api-2)", sni, name)
		}
		if l.str("route") != "*" || l.str("backend") != "api" || l.str("sni") != sni {
			t.Errorf("sni %q: access line %v; want route \"*\", backend api, sni %q", sni, l, sni)
		}
	}

	// openssl without SNI at all.
	c := startCommand(t, 30*time.Second, "openssl", opensslArgs(e.addr, "", false, "-noservername")...)
	_, _ = io.WriteString(c.stdin, "no sni here\n")
	if !c.waitOutput("no sni here", waitLong) {
		t.Fatalf("openssl -noservername: no echo within %v:\n%s", waitLong, c.out.String())
	}
	_ = c.wait(t, waitLong)
	if name, cn, ok := bannerIn(c.out.String()); !ok || !isAPI(name) || cn != "device-42" {
		t.Errorf("openssl -noservername reached %q (CN %q); want api-1 or api-2 with CN device-42:\n%s", name, cn, c.out.String())
	}
}

// captureHello accepts one connection on a fresh listener after start has
// started a real client towards it (start must not block), reads the client's first flight up to the end of
// the ClientHello and returns the number of TLS records it took and its size.
func captureHello(t *testing.T, start func(addr string)) (records, size int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	start(ln.Addr().String())
	_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(waitLong))
	c, err := ln.Accept()
	if err != nil {
		t.Fatalf("capturing a ClientHello: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(waitLong))
	var hs []byte
	for {
		hdr := make([]byte, 5)
		if _, err := io.ReadFull(c, hdr); err != nil {
			t.Fatalf("capturing a ClientHello: %v", err)
		}
		if hdr[0] != 22 {
			t.Fatalf("record type %d; want handshake (22)", hdr[0])
		}
		body := make([]byte, binary.BigEndian.Uint16(hdr[3:]))
		if _, err := io.ReadFull(c, body); err != nil {
			t.Fatalf("capturing a ClientHello: %v", err)
		}
		records++
		size += 5 + len(body)
		hs = append(hs, body...)
		if len(hs) >= 4 && len(hs) >= 4+int(hs[1])<<16|int(hs[2])<<8|int(hs[3]) {
			return records, size
		}
	}
}

// longALPN is n protocol names of 40 bytes each.
func longALPN(n int) []string {
	var ps []string
	for i := range n {
		ps = append(ps, fmt.Sprintf("proto-%02d-%s", i, strings.Repeat("x", 31)))
	}
	return ps
}

// Design: "multiple records reassembled up to a hard cap"; pitfall "a
// ClientHello split across records read as no SNI". A hello fragmented into
// 512-byte records routes by its real SNI and mTLS completes.
func TestFragmentedClientHello(t *testing.T) {
	t.Parallel()
	needTools(t, "openssl")
	// The default route goes to "devices", so landing on an api server
	// proves the real SNI was read, not the default taken.
	e := startPassthrough(t, func(cfg cfgMap) { routeCfg(t, cfg, 0, "*")["backend"] = "devices" })
	alpn := longALPN(40)
	extra := []string{"-max_send_frag", "512", "-alpn", strings.Join(alpn, ",")}

	// Precondition: this openssl command really sends a large hello in
	// several records.
	recs, size := captureHello(t, func(addr string) {
		startCommand(t, 30*time.Second, "openssl", opensslArgs(addr, "api.example.com", false, extra...)...)
	})
	t.Logf("openssl -max_send_frag 512 sent a %d-byte ClientHello in %d records", size, recs)
	if recs < 3 || size < 1536 {
		t.Fatalf("openssl sent its hello in %d record(s), %d bytes; want >= 3 records and > 1.5 KB", recs, size)
	}

	const text = "fragmented hello made it"
	c := startCommand(t, 30*time.Second, "openssl", opensslArgs(e.addr, "api.example.com", false, extra...)...)
	_, _ = io.WriteString(c.stdin, text+"\n")
	if !c.waitOutput(text, waitLong) {
		t.Fatalf("no echo within %v:\n%s", waitLong, c.out.String())
	}
	_ = c.wait(t, waitLong)
	out := c.out.String()
	name, cn, ok := bannerIn(out)
	if !ok || (name != "api-1" && name != "api-2") || cn != "device-42" {
		t.Fatalf("fragmented hello for api.example.com reached %q (CN %q); want api-1/api-2 with CN device-42:\n%s", name, cn, out)
	}
	if !strings.Contains(out, "Verify return code: 0 (ok)") {
		t.Errorf("openssl output lacks \"Verify return code: 0 (ok)\":\n%s", out)
	}
	l := e.waitLog(t, "access line of the fragmented hello", func(l logLine) bool {
		return l.msg() == "connection" && l.str("sni") == "api.example.com"
	})
	if got, _ := l["alpn"].([]any); len(got) != len(alpn) || got[len(got)-1] != alpn[len(alpn)-1] {
		t.Errorf("access line alpn has %d names (%v); want all %d offered", len(got), got, len(alpn))
	}

	// A post-quantum key share makes Go's hello large too.
	pq := clientOpts{SNI: "api.example.com", Curves: []tls.CurveID{tls.X25519MLKEM768}}
	h := clientHello(t, pq)
	t.Logf("Go's X25519MLKEM768 ClientHello: %d bytes", len(h))
	if len(h) < 1200 {
		t.Fatalf("X25519MLKEM768 hello is %d bytes; want a large one (> 1200)", len(h))
	}
	gc := mustDial(t, e.addr, pq)
	if gc.Backend != "api-1" && gc.Backend != "api-2" {
		t.Errorf("X25519MLKEM768 client reached %q; want api-1 or api-2", gc.Backend)
	}
	if cs := gc.ConnectionState(); cs.CurveID != tls.X25519MLKEM768 {
		t.Errorf("key exchange %v; want X25519MLKEM768", cs.CurveID)
	}
}

// clientHello returns the first record a Go client with o sends.
func clientHello(t *testing.T, o clientOpts) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer b.Close()
	go func() {
		_ = tls.Client(a, tlsClientConfig(o)).Handshake()
		a.Close()
	}()
	_ = b.SetDeadline(time.Now().Add(waitLong))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(b, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, binary.BigEndian.Uint16(hdr[3:]))
	if _, err := io.ReadFull(b, body); err != nil {
		t.Fatal(err)
	}
	return append(hdr, body...)
}

// Spec: "clienthello_timeout: time allowed to receive the whole ClientHello";
// design rule 5 "Bound every read a peer controls, in time and size". A
// client that stalls mid-hello is closed after the timeout, with no harm to
// other connections; bytes that are not TLS are closed as "not TLS".
func TestSlowAndNonTLSClients(t *testing.T) {
	t.Parallel()
	e := startPassthrough(t, func(cfg cfgMap) { listenerCfg(t, cfg, 0)["clienthello_timeout"] = "1s" })

	hello := clientHello(t, clientOpts{SNI: "api.example.com"})
	start := time.Now()
	slow, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	slowLines := e.accessCount(slow.LocalAddr().String())
	if _, err := slow.Write(hello[:10]); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() {
		_ = slow.SetReadDeadline(time.Now().Add(waitLong))
		_, err := slow.Read(make([]byte, 1))
		closed <- err
	}()

	// Meanwhile another client is served normally.
	otherStart := time.Now()
	other, err := dialTLS(e.addr, clientOpts{SNI: "api.example.com"})
	if err != nil {
		t.Fatalf("a client connecting next to a stalled one: %v", err)
	}
	if err := other.echo("still fine\n"); err != nil {
		t.Fatalf("a client connecting next to a stalled one: %v", err)
	}
	select {
	case err := <-closed:
		t.Fatalf("the stalled connection ended (%v) before the parallel client was served; want it open until the timeout", err)
	default:
	}

	err = <-closed
	elapsed := time.Since(start)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("tlsedge did not close a client that stalled mid-hello within %v", waitLong)
	}
	if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) && !isReset(err) {
		t.Errorf("stalled client: read error %v; want EOF or reset", err)
	}
	if elapsed < 900*time.Millisecond {
		t.Errorf("stalled client closed after %v; want after clienthello_timeout 1s", elapsed)
	}
	l := e.nextAccessLine(t, slow.LocalAddr().String(), slowLines)
	if got := l.str("reason"); got != "clienthello timeout" {
		t.Errorf("stalled client's reason = %q; want \"clienthello timeout\"", got)
	}
	// The parallel client still works after the stalled one was closed,
	// and after its own clienthello_timeout has passed: the deadline was
	// cleared once it was routed (design pitfall "a read deadline left set
	// after routing").
	if d := 1500*time.Millisecond - time.Since(otherStart); d > 0 {
		time.Sleep(d)
	}
	if err := other.echo("and still fine\n"); err != nil {
		t.Errorf("parallel client after the timeout: %v", err)
	}
	other.Close()

	// Plain HTTP is not TLS: closed, logged as such.
	plain, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	plainLines := e.accessCount(plain.LocalAddr().String())
	if _, err := io.WriteString(plain, "GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = plain.SetReadDeadline(time.Now().Add(waitLong))
	got, err := io.ReadAll(plain)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("tlsedge did not close a plain HTTP client within %v", waitLong)
	}
	if len(got) != 0 {
		t.Errorf("tlsedge answered plain HTTP with %q; want nothing", got)
	}
	if got := e.nextAccessLine(t, plain.LocalAddr().String(), plainLines).str("reason"); got != "not TLS" {
		t.Errorf("plain HTTP client's reason = %q; want \"not TLS\"", got)
	}
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe"))
}

// Spec, routes.sni: "case-insensitive"; "An SNI with a trailing dot is
// malformed (RFC 6066): alert decode_error (50)"; `"*" alone = default route,
// also for a ClientHello ... with an IP literal as SNI`. openssl sends the
// name exactly as given.
func TestSNINormalization(t *testing.T) {
	t.Parallel()
	needTools(t, "openssl")
	// Default route to "devices", so that api-* proves the exact name matched.
	e := startPassthrough(t, func(cfg cfgMap) { routeCfg(t, cfg, 0, "*")["backend"] = "devices" })

	cases := []struct {
		sni       string
		want      string // "api", "devices" or an alert number
		wantRoute string // in the access line
		wantSNI   string // in the access line: lowercased; "" for an IP literal
	}{
		{"API.Example.COM", "api", "api.example.com", "api.example.com"},
		{"127.0.0.1", "devices", "*", ""},
		{"api.example.com.", "alert 50", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.sni, func(t *testing.T) {
			c := startCommand(t, 30*time.Second, "openssl", opensslArgs(e.addr, tc.sni, false)...)
			_, _ = io.WriteString(c.stdin, "sni "+tc.sni+"\n")
			if strings.HasPrefix(tc.want, "alert ") {
				n := strings.TrimPrefix(tc.want, "alert ")
				if !c.waitOutput("SSL alert number "+n, waitLong) {
					t.Fatalf("openssl -servername %s: no %s within %v:\n%s", tc.sni, tc.want, waitLong, c.out.String())
				}
				_ = c.wait(t, waitLong)
				l := e.waitLog(t, "access line for sni "+tc.sni, func(l logLine) bool {
					return l.msg() == "connection" && strings.HasPrefix(l.str("reason"), "malformed client hello")
				})
				if l.str("server") != "" {
					t.Errorf("access line %v: a malformed hello reached a server", l)
				}
				return
			}
			if !c.waitOutput("sni "+tc.sni, waitLong) {
				t.Fatalf("openssl -servername %s: no echo within %v:\n%s", tc.sni, waitLong, c.out.String())
			}
			_ = c.wait(t, waitLong)
			name, _, ok := bannerIn(c.out.String())
			prefix := map[string]string{"api": "api-", "devices": "dev-"}[tc.want]
			if !ok || !strings.HasPrefix(name, prefix) {
				t.Errorf("openssl -servername %s reached %q; want a server of backend %s", tc.sni, name, tc.want)
			}
			e.waitLog(t, fmt.Sprintf("access line with route %q, sni %q, backend %s", tc.wantRoute, tc.wantSNI, tc.want), func(l logLine) bool {
				return l.msg() == "connection" && l.str("route") == tc.wantRoute && l.str("sni") == tc.wantSNI && l.str("backend") == tc.want
			})
		})
	}
}
