package e2e

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Authorization by client identity on the built binary (docs/config.md
// "Authorization by client identity", routes[].allow, authorize,
// allow_unauthenticated_paths): a verified certificate that no allow entry
// matches fails the handshake with alert 49 (access_denied), reaches no
// server and is logged with its subject; sessions resumed after a reload
// that removed the client are refused too. The HTTP path rules, clients
// without a certificate and validate are in authz_http_test.go. The client
// PKI is thePKI.az (pki_test.go); expected subjects, pins and DNs are
// printed by openssl.

// ---------------------------------------------------------------- PKI files

// azFiles are the PKI files of one test, in its own folder.
type azFiles struct {
	dir                 string
	partnersCA, otherCA string
	edgeCert, edgeKey   string
	cert, key           map[string]string // client files by name
}

// azWriteFiles writes the files of thePKI.az into a new temp folder.
func azWriteFiles(t testing.TB) *azFiles {
	t.Helper()
	p := thePKI.az
	f := &azFiles{dir: t.TempDir(), cert: map[string]string{}, key: map[string]string{}}
	f.partnersCA = pkWriteFile(t, f.dir, "partners-ca.pem", p.partnersCA.PEM)
	f.otherCA = pkWriteFile(t, f.dir, "other-ca.pem", p.otherCA.PEM)
	f.edgeCert, f.edgeKey = pkWritePair(t, f.dir, "edge", p.edge)
	for name, is := range p.leaves {
		f.cert[name], f.key[name] = pkWritePair(t, f.dir, name, is)
	}
	return f
}

// azX509 runs `openssl x509 -in file -noout args...` and returns the value
// after the first "=" of its one line ("subject=...", "SHA256
// Fingerprint=...").
func azX509(t testing.TB, file string, args ...string) string {
	t.Helper()
	needTools(t, "openssl")
	c := startCommand(t, 30*time.Second, "openssl", append([]string{"x509", "-in", file, "-noout"}, args...)...)
	if err := c.wait(t, 25*time.Second); err != nil {
		t.Fatalf("openssl x509 %v: %v\n%s", args, err, c.out.String())
	}
	_, v, ok := strings.Cut(strings.TrimSpace(c.out.String()), "=")
	if !ok {
		t.Fatalf("openssl x509 %v printed %q; want one name=value line", args, c.out.String())
	}
	return v
}

// azSubject is file's subject DN as openssl prints it in RFC 2253 form.
func azSubject(t testing.TB, file string) string {
	return azX509(t, file, "-subject", "-nameopt", "RFC2253")
}

// ---------------------------------------------------------------- configs and servers

// azConfig is one listener with routes, to backends; every failure is
// logged (failure_burst 0), so each refusal has its line.
func azConfig(f *azFiles, routes []any, backends ...any) cfgMap {
	return cfgMap{
		"log":       cfgMap{"level": "info", "format": "json", "access": true, "failure_burst": 0},
		"certs":     cfgMap{"storage": filepath.Join(f.dir, "data")},
		"listeners": []any{cfgMap{"name": "public", "address": "", "routes": routes}},
		"backends":  backends,
	}
}

// azRoute is a terminate route for <name> and *.<name> with the route
// certificate; with clientAuth, both test CAs are its client_ca. allow nil:
// no allow key.
func azRoute(f *azFiles, name, protocol, backend, clientAuth string, allow []any) cfgMap {
	tm := cfgMap{"cert": f.edgeCert, "key": f.edgeKey}
	if clientAuth != "" {
		tm["client_auth"] = clientAuth
		tm["client_ca"] = []any{f.partnersCA, f.otherCA}
	}
	r := cfgMap{"sni": []any{name, "*." + name}, "mode": "terminate", "protocol": protocol, "backend": backend, "tls": tm}
	if allow != nil {
		r["allow"] = allow
	}
	return r
}

// azEcho is a plain TCP server (behind protocol tcp routes) that counts
// the connections it accepted and echoes what it reads.
type azEcho struct {
	ln       net.Listener
	accepted atomic.Int64
}

func azStartEcho(t testing.TB, name string) *azEcho {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &azEcho{ln: ln}
	g := newConnGroup(t, "echo server "+name)
	g.serve(ln, func(c net.Conn) {
		e.accepted.Add(1)
		_ = c.SetDeadline(time.Now().Add(waitLong))
		_, _ = io.Copy(c, c)
	})
	t.Cleanup(g.stop)
	return e
}

func (e *azEcho) Addr() string { return e.ln.Addr().String() }

// ---------------------------------------------------------------- clients

// azExchange connects to route sni at TLS version v with cert (nil: none),
// sends one line and returns the line echoed back, or the error: of the
// handshake, or (TLS 1.3, where the client's handshake ends before the
// server has checked its certificate) of the first read, or of the write.
func azExchange(addr, sni string, cert *tls.Certificate, v uint16) (string, error) {
	conf := &tls.Config{ServerName: sni, RootCAs: thePKI.serverCA.Pool(), MinVersion: v, MaxVersion: v}
	if cert != nil {
		conf.Certificates = []tls.Certificate{*cert}
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: waitLong}, "tcp", addr, conf)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(waitLong))
	msg := "az-ping " + sni + "\n"
	_, werr := io.WriteString(c, msg)
	// The read goes on after a failed write: a refusal's alert waits in
	// the socket even when the write met tlsedge's close (a reset; see
	// TestAuthzAlertAfterClientData).
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return line, err
	}
	if werr != nil {
		return line, werr
	}
	if line != msg {
		return line, fmt.Errorf("echoed %q; want %q", line, msg)
	}
	return line, nil
}

var azAlertNumber = regexp.MustCompile(`SSL alert number (\d+)`)

// azSClient runs openssl s_client to route sni with the client certificate
// client ("" = none) and extra arguments, and returns its output and every
// "SSL alert number N" in it. With echo it sends the line "az-ping <sni>"
// and waits (bounded) for it to come back or an alert; without, it sends
// nothing and waits for an alert (a refusal: TestAuthzAlertAfterClientData
// covers a client that sends data before the verdict).
func azSClient(t testing.TB, f *azFiles, addr, sni, client string, echo bool, extra ...string) (string, []int) {
	t.Helper()
	needTools(t, "openssl")
	args := []string{"s_client", "-connect", addr, "-servername", sni, "-CAfile", thePKI.serverCAFile, "-verify_return_error"}
	if client != "" {
		args = append(args, "-cert", f.cert[client], "-key", f.key[client])
	}
	args = append(args, extra...)
	c := startCommand(t, 30*time.Second, "openssl", args...)
	ping := "az-ping " + sni
	if echo {
		_, _ = io.WriteString(c.stdin, ping+"\n")
	}
	poll(waitLong, func() bool {
		out := c.out.String()
		return echo && strings.Contains(out, ping) || strings.Contains(out, "SSL alert number")
	})
	_ = c.wait(t, waitLong)
	out := c.out.String()
	var alerts []int
	for _, m := range azAlertNumber.FindAllStringSubmatch(out, -1) {
		n, _ := strconv.Atoi(m[1])
		alerts = append(alerts, n)
	}
	return out, alerts
}

// azWantDenied asserts the openssl output of a refused client: exactly
// alert 49, named access denied.
func azWantDenied(t testing.TB, out string, alerts []int) {
	t.Helper()
	if len(alerts) != 1 || alerts[0] != 49 || !strings.Contains(out, "alert access denied") {
		t.Errorf("alerts %v; want exactly [49] and \"alert access denied\"\n%s", alerts, out)
	}
}

// azDeniedLine waits for the access line of sni and checks it is a
// refusal of the certificate with subject subject: reason access denied,
// level warn, no server.
func azDeniedLine(t testing.TB, e *edgeProc, sni, subject string) {
	t.Helper()
	l := e.waitLog(t, "access line of sni "+sni, func(l logLine) bool {
		return l.msg() == "connection" && l.str("sni") == sni
	})
	if r := l.str("reason"); r != "access denied: client certificate not allowed on this route" {
		t.Errorf("access line reason %q; want \"access denied: client certificate not allowed on this route\" (%v)", r, l)
	}
	if got := l.str("client_cert"); got != subject {
		t.Errorf("access line client_cert %q; want the refused subject %q (%v)", got, subject, l)
	}
	if l.str("level") != "warn" || l.str("server") != "" {
		t.Errorf("access line %v: want level warn and no server", l)
	}
}

// azWantAccepted waits (bounded) until e has accepted want connections,
// then checks it is exactly want.
func azWantAccepted(t testing.TB, what string, e *azEcho, want int64) {
	t.Helper()
	poll(waitLong, func() bool { return e.accepted.Load() >= want })
	if got := e.accepted.Load(); got != want {
		t.Errorf("%s: the server accepted %d connections; want exactly %d", what, got, want)
	}
}

// ---------------------------------------------------------------- allow at the handshake

// Route acme admits spiffe://partners.test/acme/*: partner-b (verified by
// the route's CA, not on the list) gets exactly alert 49 "access denied"
// from openssl s_client in TLS 1.3 with each suite (the alert is resealed
// under that suite's keys) and in TLS 1.2, the server behind the route
// never sees a connection, and the access line says access denied with
// partner-b's subject; partner-a's data is echoed in both versions.
func TestAuthzAllowAlert49(t *testing.T) {
	t.Parallel()
	f := azWriteFiles(t)
	echo := azStartEcho(t, "acme")
	e := runEdge(t, azConfig(f, []any{
		azRoute(f, "acme.example.com", "tcp", "acme", "require", []any{cfgMap{"uri": "spiffe://partners.test/acme/*"}}),
	}, httpBackendCfg("acme", echo.Addr())))
	subjectB := azSubject(t, f.cert[azPartnerB])

	t.Run("refused", func(t *testing.T) {
		for _, tc := range []struct{ name, suite string }{
			{"tls13-aes128", "TLS_AES_128_GCM_SHA256"},
			{"tls13-aes256", "TLS_AES_256_GCM_SHA384"},
			{"tls13-chacha20", "TLS_CHACHA20_POLY1305_SHA256"},
			{"tls12", ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				sni := "b-" + tc.name + ".acme.example.com"
				args := []string{"-tls1_2"}
				if tc.suite != "" {
					args = []string{"-tls1_3", "-ciphersuites", tc.suite}
				}
				out, alerts := azSClient(t, f, e.addr, sni, azPartnerB, false, args...)
				azWantDenied(t, out, alerts)
				if tc.suite != "" && !strings.Contains(out, "New, TLSv1.3, Cipher is "+tc.suite) {
					t.Errorf("want the TLS 1.3 handshake on %s before the alert\n%s", tc.suite, out)
				}
				azDeniedLine(t, e, sni, subjectB)
			})
		}
	})
	if n := echo.accepted.Load(); n != 0 {
		t.Errorf("after partner-b's four refusals the server accepted %d connections; want 0", n)
	}
	for _, v := range []string{"-tls1_3", "-tls1_2"} {
		sni := "a" + v + ".acme.example.com"
		out, alerts := azSClient(t, f, e.addr, sni, azPartnerA, true, v)
		if len(alerts) != 0 || !strings.Contains(out, "az-ping "+sni) {
			t.Errorf("partner-a %s: alerts %v; want its line echoed and no alert\n%s", v, alerts, out)
		}
	}
	azWantAccepted(t, "partner-a's two connections", echo, 2)
}

// Pins and issuers, with Go's client in TLS 1.3 and 1.2 ("remote error:
// tls: access denied" is alert 49): a sha256 pin (as openssl prints the
// fingerprint) admits partner-a and refuses partner-a-2, the same SAN and
// CN from the same CA; issuer as a CA file and as the CA's RFC 2253 DN (as
// openssl prints it) refuses other-a, partner-a's SAN and CN from another
// CA the route also trusts. The control route without allow admits other-a,
// so its refusals are the issuer's doing. Refused connections reach no
// server and are logged with their subject.
func TestAuthzPinsAndIssuers(t *testing.T) {
	t.Parallel()
	f := azWriteFiles(t)
	pin := azX509(t, f.cert[azPartnerA], "-fingerprint", "-sha256")
	dn := azSubject(t, f.partnersCA)
	if dn != "CN=AZ Partners CA,O=tlsedge throwaway PKI" {
		t.Fatalf("openssl prints the partners CA as %q; want CN=AZ Partners CA,O=tlsedge throwaway PKI", dn)
	}
	echo := map[string]*azEcho{}
	var backends []any
	for _, n := range []string{"pin", "issuer-file", "issuer-dn", "open"} {
		echo[n] = azStartEcho(t, n)
		backends = append(backends, httpBackendCfg(n, echo[n].Addr()))
	}
	e := runEdge(t, azConfig(f, []any{
		azRoute(f, "pin.example.com", "tcp", "pin", "require", []any{cfgMap{"sha256": []any{pin}}}),
		azRoute(f, "issuer-file.example.com", "tcp", "issuer-file", "require",
			[]any{cfgMap{"uri": "spiffe://partners.test/acme/*", "issuer": f.partnersCA}}),
		azRoute(f, "issuer-dn.example.com", "tcp", "issuer-dn", "require", []any{cfgMap{"issuer": dn}}),
		azRoute(f, "open.example.com", "tcp", "open", "require", nil),
	}, backends...))
	pk := thePKI.az

	cases := []struct {
		route, client string
		admitted      bool
	}{
		{"pin", azPartnerA, true},
		{"pin", azPartnerA2, false},
		{"pin", azPartnerB, false},
		{"issuer-file", azPartnerA, true},
		{"issuer-file", azOtherA, false},
		{"issuer-file", azPartnerB, false}, // its issuer, not its URI
		{"issuer-dn", azPartnerA, true},
		{"issuer-dn", azPartnerB, true},
		{"issuer-dn", azOtherA, false},
		{"open", azOtherA, true},
		{"open", azPartnerA2, true},
	}
	admitted := map[string]int64{}
	t.Run("cases", func(t *testing.T) {
		for _, tc := range cases {
			for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
				if tc.admitted {
					admitted[tc.route]++
				}
				vn := strings.ReplaceAll(strings.ToLower(tls.VersionName(v)), " ", "")
				t.Run(tc.route+"/"+tc.client+"/"+vn, func(t *testing.T) {
					t.Parallel()
					sni := tc.client + "-" + strings.ReplaceAll(vn, ".", "") + "." + tc.route + ".example.com"
					cert := pk.leaves[tc.client].TLS
					_, err := azExchange(e.addr, sni, &cert, v)
					if tc.admitted {
						if err != nil {
							t.Errorf("%s on %s: %v; want its line echoed", tc.client, sni, err)
						}
						return
					}
					if err == nil || !strings.Contains(err.Error(), "remote error: tls: access denied") {
						t.Errorf("%s on %s: error %v; want \"remote error: tls: access denied\" (alert 49)", tc.client, sni, err)
					}
					azDeniedLine(t, e, sni, azSubject(t, f.cert[tc.client]))
				})
			}
		}
	})
	t.Run("openssl sees 49 for the other pinned certificate", func(t *testing.T) {
		sni := "openssl.pin.example.com"
		out, alerts := azSClient(t, f, e.addr, sni, azPartnerA2, false, "-tls1_3")
		azWantDenied(t, out, alerts)
		azDeniedLine(t, e, sni, azSubject(t, f.cert[azPartnerA2]))
	})
	for n, ec := range echo {
		azWantAccepted(t, "route "+n, ec, admitted[n])
	}
}

// ---------------------------------------------------------------- resumption

// Resumption with openssl -sess_out / -sess_in, TLS 1.3 and 1.2, on route
// acme (allow: partner-a): partner-a's session resumes (without presenting
// the certificate again: the identity comes from the ticket) and its data
// is echoed. After a reload that replaces partner-a by partner-b in allow
// (the TLS policy, and so the ticket keys, unchanged), the same ticket is
// refused with alert 49: VerifyConnection runs on resumption too. The
// resuming client presents no certificate, so a full handshake instead of
// the resumption would end with "certificate required" (116) or
// handshake_failure (40), not 49; openssl reports the refused connection as
// "Reused". No server sees the refused connection.
func TestAuthzResumption(t *testing.T) {
	t.Parallel()
	f := azWriteFiles(t)
	echo := azStartEcho(t, "acme")
	route := func(uri string) cfgMap {
		return azRoute(f, "acme.example.com", "tcp", "acme", "require", []any{cfgMap{"uri": uri}})
	}
	cfg := azConfig(f, []any{route("spiffe://partners.test/acme/*")}, httpBackendCfg("acme", echo.Addr()))
	e := runEdge(t, cfg)
	subjectA := azSubject(t, f.cert[azPartnerA])

	versions := []struct{ flag, name string }{{"-tls1_3", "TLSv1.3"}, {"-tls1_2", "TLSv1.2"}}
	sess := map[string]string{}
	for _, v := range versions {
		sni := "resume" + strings.ReplaceAll(v.flag, "-tls", "") + ".acme.example.com"
		sess[v.flag] = filepath.Join(f.dir, "partner-a"+v.flag+".sess")
		out, alerts := azSClient(t, f, e.addr, sni, azPartnerA, true, v.flag, "-sess_out", sess[v.flag])
		if len(alerts) != 0 || !strings.Contains(out, "New, "+v.name) || !strings.Contains(out, "az-ping "+sni) {
			t.Fatalf("partner-a %s, first connection: alerts %v; want a new %s session and its line echoed\n%s", v.flag, alerts, v.name, out)
		}
		if !poll(waitLong, func() bool { st, err := os.Stat(sess[v.flag]); return err == nil && st.Size() > 0 }) {
			t.Fatalf("partner-a %s: openssl wrote no session to %s\n%s", v.flag, sess[v.flag], out)
		}
		out, alerts = azSClient(t, f, e.addr, sni, "", true, v.flag, "-sess_in", sess[v.flag])
		if len(alerts) != 0 || !strings.Contains(out, "Reused, "+v.name) || !strings.Contains(out, "az-ping "+sni) {
			t.Fatalf("partner-a %s, resumed: alerts %v; want \"Reused, %s\" and its line echoed\n%s", v.flag, alerts, v.name, out)
		}
	}
	azWantAccepted(t, "partner-a's connections before the reload", echo, 4)

	listenerCfg(t, cfg, 0)["routes"] = []any{route("spiffe://partners.test/globex/*")}
	reloadTLSEdge(t, e, cfg)
	pk := thePKI.az
	certB := pk.leaves[azPartnerB].TLS
	if _, err := azExchange(e.addr, "b.acme.example.com", &certB, tls.VersionTLS13); err != nil {
		t.Fatalf("partner-b after the reload: %v; want its line echoed (the new allow list in force)", err)
	}

	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			sni := "resume" + strings.ReplaceAll(v.flag, "-tls", "") + ".acme.example.com"
			out, alerts := azSClient(t, f, e.addr, sni, "", false, v.flag, "-sess_in", sess[v.flag])
			azWantDenied(t, out, alerts)
			if !strings.Contains(out, "Reused, "+v.name) {
				t.Errorf("want the refused connection to be a resumption (\"Reused, %s\")\n%s", v.name, out)
			}
			l := e.waitLog(t, "refused resumption on "+sni, func(l logLine) bool {
				return l.msg() == "connection" && l.str("sni") == sni && strings.HasPrefix(l.str("reason"), "access denied")
			})
			if l.str("reason") != "access denied: client certificate not allowed on this route" || l.str("client_cert") != subjectA {
				t.Errorf("access line %v: want reason \"access denied: client certificate not allowed on this route\" and client_cert %q", l, subjectA)
			}
		})
	}
	azWantAccepted(t, "after the refused resumptions", echo, 5)
}

// ---------------------------------------------------------------- the alert survives the client's data

// A TLS 1.3 client sends data right after its handshake (HTTP/2 always
// does: the preface), before tlsedge has checked its certificate. The
// refused client must still read alert 49: tlsedge must not close the
// socket with the client's data unread, which makes the kernel answer with
// a reset that destroys the alert on its way (curl then fails with "Send
// failure: Connection reset by peer" instead of "alert access denied").
// Here partner-b writes 16 KiB, waits for tlsedge's access line (the
// connection is closed by then), and reads.
func TestAuthzAlertAfterClientData(t *testing.T) {
	t.Parallel()
	f := azWriteFiles(t)
	echo := azStartEcho(t, "acme")
	e := runEdge(t, azConfig(f, []any{
		azRoute(f, "acme.example.com", "tcp", "acme", "require", []any{cfgMap{"uri": "spiffe://partners.test/acme/*"}}),
	}, httpBackendCfg("acme", echo.Addr())))
	cert := thePKI.az.leaves[azPartnerB].TLS
	for i := range 3 {
		sni := fmt.Sprintf("data%d.acme.example.com", i)
		conf := &tls.Config{ServerName: sni, RootCAs: thePKI.serverCA.Pool(), MinVersion: tls.VersionTLS13,
			Certificates: []tls.Certificate{cert}}
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: waitLong}, "tcp", e.addr, conf)
		if err != nil {
			t.Fatalf("TLS 1.3 handshake: %v; want it to pass (the verdict comes after the client's Finished)", err)
		}
		_ = c.SetDeadline(time.Now().Add(waitLong))
		_, werr := c.Write(make([]byte, 16<<10))
		azDeniedLine(t, e, sni, azSubject(t, f.cert[azPartnerB]))
		// A second write, as curl's next send: reset if tlsedge closed
		// with the first one unread.
		_, werr2 := c.Write([]byte("more"))
		_, rerr := c.Read(make([]byte, 1))
		c.Close()
		if werr != nil || werr2 != nil {
			t.Errorf("connection %d: writes %v, %v; want both to pass (tlsedge reads what the client sent before its verdict, and does not reset the connection)", i, werr, werr2)
		}
		if rerr == nil || !strings.Contains(rerr.Error(), "remote error: tls: access denied") {
			t.Errorf("connection %d: read %v; want remote error: tls: access denied (alert 49)", i, rerr)
		}
	}
	if n := echo.accepted.Load(); n != 0 {
		t.Errorf("the server accepted %d connections; want 0", n)
	}
}
