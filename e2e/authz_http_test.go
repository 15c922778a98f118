package e2e

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Authorization of HTTP requests by client identity on the built binary
// (docs/config.md routes[].authorize, allow_unauthenticated_paths): the
// first rule whose paths and methods match decides, a refused request gets
// 403 with the reason and reaches no server, a path not in plain form gets
// 400, and with verify_if_given a client without a certificate gets only
// the unauthenticated paths (a tcp route closes it). Requests are made
// with curl over HTTP/1.1 and HTTP/2; the servers record every request
// they receive. Also here: `tlsedge validate` on these keys.

// azReq is one curl request to tlsedge.
type azReq struct {
	host, path string
	client     string // client certificate (azPKI name); "" = none
	method     string // "" = GET
	h2         bool   // --http2; else --http1.1
}

func (r azReq) proto() string {
	if r.h2 {
		return "HTTP/2.0"
	}
	return "HTTP/1.1"
}

// azCurl runs curl --path-as-is (the path is sent exactly as written) for
// r and returns the reply (when curl exited 0), curl's exit code and its
// output.
func azCurl(t testing.TB, f *azFiles, addr string, r azReq) (curlReply, int, string) {
	t.Helper()
	needTools(t, "curl")
	_, port, _ := net.SplitHostPort(addr)
	args := []string{"-sS", "--max-time", "20", "--path-as-is", "--cacert", thePKI.serverCAFile,
		"--resolve", r.host + ":" + port + ":127.0.0.1", "-w", curlWrite}
	if r.client != "" {
		args = append(args, "--cert", f.cert[r.client], "--key", f.key[r.client])
	}
	if r.method != "" {
		args = append(args, "-X", r.method)
	}
	if r.h2 {
		args = append(args, "--http2")
	} else {
		args = append(args, "--http1.1")
	}
	args = append(args, "https://"+net.JoinHostPort(r.host, port)+r.path)
	c := startCommand(t, 30*time.Second, "curl", args...)
	code := exitCode(c.wait(t, 25*time.Second))
	out := c.out.String()
	if code != 0 {
		return curlReply{}, code, out
	}
	rs := parseCurl(t, out)
	if len(rs) != 1 {
		t.Fatalf("curl %s: %d replies; want 1\n%s", r.path, len(rs), out)
	}
	return rs[0], 0, out
}

// azHTTPCase is one request and the answer it must get: a status and,
// for tlsedge's own answers, the exact body and the reason logged.
type azHTTPCase struct {
	name   string
	req    azReq
	status int
	reason string // "": the server answers (body "<server> <method> <path>\n")
}

// azBody is tlsedge's body for a refusal with reason (the logged reason
// is "<status text>: <why>", the body "<status> <status text>: <why>\n").
func azBody(status int, reason string) string {
	return fmt.Sprintf("%d %s\n", status, reason)
}

// run makes the request over HTTP/1.1 and HTTP/2 (parallel subtests) and
// checks the answer, and for tlsedge's refusals the request line: status,
// reason, the client's subject when it had a certificate, no server.
func (tc azHTTPCase) run(t *testing.T, f *azFiles, e *edgeProc, server string) {
	for _, h2 := range []bool{false, true} {
		req := tc.req
		req.h2 = h2
		t.Run(tc.name+"/"+req.proto(), func(t *testing.T) {
			t.Parallel()
			rep, code, out := azCurl(t, f, e.addr, req)
			if code != 0 {
				t.Fatalf("curl %s %s: exit %d; want an answer\n%s", req.proto(), req.path, code, out)
			}
			wantVersion := map[bool]string{false: "1.1", true: "2"}[h2]
			method := req.method
			if method == "" {
				method = http.MethodGet
			}
			body := server + " " + method + " " + req.path + "\n"
			if tc.reason != "" {
				body = azBody(tc.status, tc.reason)
			}
			if rep.Status != tc.status || rep.Version != wantVersion || rep.Body != body {
				t.Errorf("%s %s %s: status %d, HTTP/%s, body %q; want %d, HTTP/%s, body %q",
					req.client, method, req.path, rep.Status, rep.Version, rep.Body, tc.status, wantVersion, body)
			}
			if tc.reason == "" {
				return
			}
			l := e.waitLog(t, "request line of "+req.path, func(l logLine) bool {
				return l.msg() == "request" && l.str("host") == req.host && l.str("path") == req.path && l.str("proto") == req.proto()
			})
			subject := ""
			if req.client != "" {
				subject = azSubject(t, f.cert[req.client])
			}
			if int(l.num("status")) != tc.status || l.str("reason") != tc.reason || l.str("server") != "" || l.str("client_cert") != subject {
				t.Errorf("request line %v: want status %d, reason %q, no server, client_cert %q", l, tc.status, tc.reason, subject)
			}
		})
	}
}

// azWantRequests checks that b received exactly the requests (method and
// path) of the cases tlsedge let through, twice each (HTTP/1.1 and /2).
func azWantRequests(t *testing.T, b *httpBackend, cases []azHTTPCase, host string) {
	t.Helper()
	want := map[string]int{}
	for _, tc := range cases {
		if tc.reason == "" && tc.req.host == host {
			m := tc.req.method
			if m == "" {
				m = http.MethodGet
			}
			want[m+" "+tc.req.path] += 2
		}
	}
	got := map[string]int{}
	for _, r := range b.Requests() {
		got[r.Method+" "+r.Path]++
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("server of %s received %v; want exactly %v (no refused request)", host, got, want)
	}
}

// ---------------------------------------------------------------- path rules

// Route devices (client_auth require): /v1/telemetry for GET and POST by
// spiffe://devices.test/tenant/*/device/*, /admin for CN operator-*. The
// device gets 200 on /v1/telemetry and below it, 403 "client not allowed
// on /admin" on /admin, 403 "no authorize rule" on /v1/telemetryX and
// for DELETE; partner-a gets 403 on /v1/telemetry. Paths not in plain form
// get 400 (dot segments, encoded slashes and dots, //, ;), and a raw
// HTTP/1.1 request with backslashes too. Refused requests reach no server.
func TestAuthzHTTPPathRules(t *testing.T) {
	t.Parallel()
	f := azWriteFiles(t)
	fleet := startHTTPBackend(t, "az-devices")
	route := azRoute(f, "devices.example.com", "http", "devices", "require", nil)
	route["authorize"] = []any{
		cfgMap{"paths": []any{"/v1/telemetry"}, "methods": []any{"GET", "POST"},
			"allow": []any{cfgMap{"uri": "spiffe://devices.test/tenant/*/device/*"}}},
		cfgMap{"paths": []any{"/admin"}, "allow": []any{cfgMap{"cn": "operator-*"}}},
	}
	e := runEdge(t, azConfig(f, []any{route}, httpBackendCfg("devices", fleet.Addr())))

	const host = "devices.example.com"
	dev := func(path string) azReq { return azReq{host: host, path: path, client: azDevice} }
	const notPlain = "bad request: path not in canonical form"
	cases := []azHTTPCase{
		{"device telemetry", dev("/v1/telemetry"), 200, ""},
		{"device telemetry below", dev("/v1/telemetry/batch"), 200, ""},
		{"device admin", dev("/admin"), 403, "forbidden: client not allowed on /admin"},
		{"device admin below", dev("/admin/users"), 403, "forbidden: client not allowed on /admin"},
		{"device no rule", dev("/v1/telemetryX"), 403, "forbidden: no authorize rule for this path"},
		{"device method", azReq{host: host, path: "/v1/telemetry/item", client: azDevice, method: "DELETE"}, 403, "forbidden: no authorize rule for this path"},
		{"partner telemetry", azReq{host: host, path: "/v1/telemetry/partner", client: azPartnerA}, 403, "forbidden: client not allowed on /v1/telemetry"},
		{"dot-dot", dev("/v1/telemetry/../admin"), 400, notPlain},
		{"encoded slashes", dev("/v1/telemetry%2F..%2Fadmin"), 400, notPlain},
		{"encoded dots", dev("/v1/telemetry/%2e%2e/admin"), 400, notPlain},
		{"dot", dev("/v1/telemetry/./x"), 400, notPlain},
		{"double slash", dev("//admin"), 400, notPlain},
		{"semicolon", dev("/v1/telemetry;x/../../admin"), 400, notPlain},
		{"semicolon only", dev("/v1/telemetry;jsessionid=1"), 400, notPlain},
	}
	t.Run("cases", func(t *testing.T) {
		for _, tc := range cases {
			tc.run(t, f, e, "az-devices")
		}
		t.Run("backslash/HTTP/1.1", func(t *testing.T) {
			t.Parallel()
			status, body := azRawGet(t, e.addr, host, `/v1/telemetry\..\admin`, azDevice)
			if status != 400 || body != azBody(400, notPlain) {
				t.Errorf("GET /v1/telemetry\\..\\admin: %d %q; want 400 %q", status, body, azBody(400, notPlain))
			}
		})
	})
	azWantRequests(t, fleet, cases, host)
}

// azRawGet sends one HTTP/1.1 GET with the request target exactly as
// given, over TLS with client certificate client, and returns the status
// and body.
func azRawGet(t testing.TB, addr, host, target, client string) (int, string) {
	t.Helper()
	conf := &tls.Config{ServerName: host, RootCAs: thePKI.serverCA.Pool(), NextProtos: []string{"http/1.1"},
		Certificates: []tls.Certificate{thePKI.az.leaves[client].TLS}}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: waitLong}, "tcp", addr, conf)
	if err != nil {
		t.Fatalf("TLS to %s: %v", host, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(waitLong))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", target, host)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: body: %v", target, err)
	}
	return resp.StatusCode, string(b)
}

// ---------------------------------------------------------------- unauthenticated paths

// client_auth verify_if_given with allow_unauthenticated_paths [/healthz].
// Route fleet (allow: spiffe://devices.test/**, no rules): without a
// certificate /healthz and below get 200, /v1/telemetry and /healthzX 403
// "no client certificate", a dot segment 400; the device gets 200
// everywhere; partner-b (verified, not on allow) fails the handshake with
// alert 49. Route fleet-rules (authorize: /v1/telemetry for devices):
// without a certificate the same; the device gets 200 on /v1/telemetry and
// on /healthz too (unauthenticated paths are for everyone; no rule applies
// to them). Refused requests reach no server.
func TestAuthzUnauthenticatedPaths(t *testing.T) {
	t.Parallel()
	f := azWriteFiles(t)
	fleet, rules := startHTTPBackend(t, "az-fleet"), startHTTPBackend(t, "az-fleet-rules")
	plain := azRoute(f, "fleet.example.com", "http", "fleet", "verify_if_given", []any{cfgMap{"uri": "spiffe://devices.test/**"}})
	plain["allow_unauthenticated_paths"] = []any{"/healthz"}
	withRules := azRoute(f, "fleet-rules.example.com", "http", "fleet-rules", "verify_if_given", nil)
	withRules["allow_unauthenticated_paths"] = []any{"/healthz"}
	withRules["authorize"] = []any{cfgMap{"paths": []any{"/v1/telemetry"},
		"allow": []any{cfgMap{"uri": "spiffe://devices.test/tenant/*/device/*"}}}}
	e := runEdge(t, azConfig(f, []any{plain, withRules},
		httpBackendCfg("fleet", fleet.Addr()), httpBackendCfg("fleet-rules", rules.Addr())))

	const noCert = "forbidden: no client certificate"
	req := func(host, path, client string) azReq { return azReq{host: host, path: path, client: client} }
	const h, hr = "fleet.example.com", "fleet-rules.example.com"
	cases := []azHTTPCase{
		{"anonymous healthz", req(h, "/healthz", ""), 200, ""},
		{"anonymous healthz below", req(h, "/healthz/live", ""), 200, ""},
		{"anonymous telemetry", req(h, "/v1/telemetry", ""), 403, noCert},
		{"anonymous healthzX", req(h, "/healthzX", ""), 403, noCert},
		{"anonymous dot-dot", req(h, "/healthz/../v1/telemetry", ""), 400, "bad request: path not in canonical form"},
		{"device telemetry", req(h, "/v1/telemetry/d42", azDevice), 200, ""},
		{"device healthz", req(h, "/healthz/d42", azDevice), 200, ""},
		{"rules anonymous healthz", req(hr, "/healthz", ""), 200, ""},
		{"rules anonymous telemetry", req(hr, "/v1/telemetry", ""), 403, noCert},
		{"rules device telemetry", req(hr, "/v1/telemetry/d42", azDevice), 200, ""},
		{"rules device healthz", req(hr, "/healthz/d42", azDevice), 200, ""},
	}
	t.Run("cases", func(t *testing.T) {
		for _, tc := range cases {
			tc.run(t, f, e, map[string]string{h: "az-fleet", hr: "az-fleet-rules"}[tc.req.host])
		}
		t.Run("partner-b refused at the handshake", func(t *testing.T) {
			t.Parallel()
			for _, h2 := range []bool{false, true} {
				r := azReq{host: "b" + map[bool]string{false: "1", true: "2"}[h2] + "." + h, path: "/healthz/b", client: azPartnerB, h2: h2}
				_, code, out := azCurl(t, f, e.addr, r)
				if code == 0 || !strings.Contains(out, "alert access denied") {
					t.Errorf("curl %s as partner-b: exit %d; want a failure with \"alert access denied\"\n%s", r.proto(), code, out)
				}
				azDeniedLine(t, e, r.host, azSubject(t, f.cert[azPartnerB]))
			}
		})
	})
	azWantRequests(t, fleet, cases, h)
	azWantRequests(t, rules, cases, hr)
}

// ---------------------------------------------------------------- a tcp route without a certificate

// A protocol tcp terminate route with allow and client_auth
// verify_if_given: a client without a certificate passes the handshake and
// is then closed (close_notify: its read ends with EOF and no data), the
// access line says "access denied: no client certificate", and no server
// is contacted; TLS 1.3 and 1.2. The device (on the list) gets its data
// echoed and partner-b (verified, not on it) gets alert 49.
func TestAuthzTCPNoCertificate(t *testing.T) {
	t.Parallel()
	f := azWriteFiles(t)
	echo := azStartEcho(t, "tcp")
	e := runEdge(t, azConfig(f, []any{
		azRoute(f, "tcp.example.com", "tcp", "tcp", "verify_if_given", []any{cfgMap{"uri": "spiffe://devices.test/**"}}),
	}, httpBackendCfg("tcp", echo.Addr())))

	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		sni := "anon" + strings.ReplaceAll(tls.VersionName(v)[4:], ".", "") + ".tcp.example.com"
		conf := &tls.Config{ServerName: sni, RootCAs: thePKI.serverCA.Pool(), MinVersion: v, MaxVersion: v}
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: waitLong}, "tcp", e.addr, conf)
		if err != nil {
			t.Fatalf("%s without a certificate: handshake %v; want it to pass (verify_if_given)", tls.VersionName(v), err)
		}
		_ = c.SetDeadline(time.Now().Add(waitLong))
		// Nothing is written: unread data at the close would make it a reset.
		n, err := c.Read(make([]byte, 64))
		c.Close()
		if n != 0 || err != io.EOF {
			t.Errorf("%s without a certificate: read %d bytes, %v; want 0 bytes and EOF (closed by tlsedge)", tls.VersionName(v), n, err)
		}
		l := e.waitLog(t, "access line of sni "+sni, func(l logLine) bool {
			return l.msg() == "connection" && l.str("sni") == sni
		})
		if l.str("reason") != "access denied: no client certificate" || l.str("server") != "" || l.str("client_cert") != "" {
			t.Errorf("access line %v: want reason \"access denied: no client certificate\", no server, no client_cert", l)
		}
	}
	if n := echo.accepted.Load(); n != 0 {
		t.Errorf("the server accepted %d connections from clients without a certificate; want 0", n)
	}
	pk := thePKI.az
	dev, partnerB := pk.leaves[azDevice].TLS, pk.leaves[azPartnerB].TLS
	if _, err := azExchange(e.addr, "device.tcp.example.com", &dev, tls.VersionTLS13); err != nil {
		t.Errorf("the device: %v; want its line echoed", err)
	}
	if _, err := azExchange(e.addr, "b.tcp.example.com", &partnerB, tls.VersionTLS13); err == nil || !strings.Contains(err.Error(), "remote error: tls: access denied") {
		t.Errorf("partner-b: %v; want remote error: tls: access denied", err)
	}
	azDeniedLine(t, e, "b.tcp.example.com", azSubject(t, f.cert[azPartnerB]))
	azWantAccepted(t, "the device's connection", echo, 1)
}

// ---------------------------------------------------------------- validate

// `tlsedge validate -c` refuses the authorization keys where they cannot
// work, naming the key: allow on a passthrough route (the exact line
// docs/config.md's rule implies), allow without client certificates,
// authorize on protocol tcp, allow_unauthenticated_paths without
// verify_if_given, an empty allow list, a bad pin, a path with a dot
// segment, an issuer that is neither a DN nor a CA file. The same routes
// written correctly validate.
func TestAuthzValidate(t *testing.T) {
	t.Parallel()
	f := azWriteFiles(t)
	backend := cfgMap{"name": "app", "servers": []any{cfgMap{"address": "127.0.0.1:9001"}}, "health": cfgMap{"type": "none"}}
	http := func(clientAuth string) cfgMap { return azRoute(f, "app.example.com", "http", "app", clientAuth, nil) }
	cases := []struct {
		name     string
		route    func() cfgMap
		key, why string // the problem's key path and the start of its message
	}{
		{"allow on passthrough", func() cfgMap {
			return cfgMap{"sni": []any{"app.example.com"}, "mode": "passthrough", "backend": "app",
				"allow": []any{cfgMap{"uri": "spiffe://partners.test/acme/*"}}}
		}, "listeners[0].routes[0]", "allow, authorize and allow_unauthenticated_paths need the client's identity, which passthrough never sees (the servers verify it): use mode terminate or reencrypt, or remove them"},
		{"allow without client certificates", func() cfgMap {
			r := http("")
			r["allow"] = []any{cfgMap{"cn": "acme-*"}}
			return r
		}, "listeners[0].routes[0].tls.client_auth", "allow and authorize match verified client certificates"},
		{"authorize on tcp", func() cfgMap {
			r := azRoute(f, "app.example.com", "tcp", "app", "require", nil)
			r["authorize"] = []any{cfgMap{"paths": []any{"/admin"}}}
			return r
		}, "listeners[0].routes[0]", "authorize and allow_unauthenticated_paths apply to requests"},
		{"unauthenticated paths with require", func() cfgMap {
			r := http("require")
			r["allow_unauthenticated_paths"] = []any{"/healthz"}
			return r
		}, "listeners[0].routes[0].allow_unauthenticated_paths", "only clients without a certificate use these paths"},
		{"empty allow", func() cfgMap {
			r := http("require")
			r["allow"] = []any{}
			return r
		}, "listeners[0].routes[0].allow", "an empty list admits no one"},
		{"bad pin", func() cfgMap {
			r := http("require")
			r["allow"] = []any{cfgMap{"sha256": []any{"AB:CD"}}}
			return r
		}, "listeners[0].routes[0].allow[0].sha256[0]", `"AB:CD" is not a SHA-256`},
		{"dot segment in a rule's path", func() cfgMap {
			r := http("require")
			r["authorize"] = []any{cfgMap{"paths": []any{"/v1/../admin"}}}
			return r
		}, "listeners[0].routes[0].authorize[0].paths[0]", `"/v1/../admin" is not a path prefix`},
		{"issuer neither DN nor file", func() cfgMap {
			r := http("require")
			r["allow"] = []any{cfgMap{"issuer": filepath.Join(f.dir, "missing-ca.pem")}}
			return r
		}, "listeners[0].routes[0].allow[0].issuer", "neither a DN (CN=...,O=...) nor a readable PEM file of CA certificates"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := azConfig(f, []any{tc.route()}, backend)
			listenerCfg(t, cfg, 0)["address"] = "127.0.0.1:9443" // validate binds nothing
			path := writeConfig(t, cfg)
			stdout, stderr, code := runTlsedge(t, "validate", "-c", path)
			prefix := path + ": " + tc.key + ": " + tc.why
			if code != 1 || stdout != "" || !strings.HasPrefix(stderr, prefix) || strings.Count(stderr, "\n") != 1 {
				t.Errorf("validate: exit %d, stdout %q, stderr:\n%s\nwant exit 1 and one line starting %q", code, stdout, stderr, prefix)
			}
		})
	}
	t.Run("valid", func(t *testing.T) {
		t.Parallel()
		r := http("verify_if_given")
		r["allow"] = []any{cfgMap{"uri": "spiffe://devices.test/**", "issuer": f.partnersCA}, cfgMap{"sha256": []any{azX509(t, f.cert[azPartnerA], "-fingerprint", "-sha256")}}}
		r["authorize"] = []any{cfgMap{"paths": []any{"/v1/telemetry"}, "methods": []any{"GET", "POST"}, "allow": []any{cfgMap{"issuer": "CN=AZ Partners CA,O=tlsedge throwaway PKI"}}}}
		r["allow_unauthenticated_paths"] = []any{"/healthz"}
		cfg := azConfig(f, []any{r}, backend)
		listenerCfg(t, cfg, 0)["address"] = "127.0.0.1:9443"
		path := writeConfig(t, cfg)
		stdout, stderr, code := runTlsedge(t, "validate", "-c", path)
		if code != 0 || stdout != path+": ok\n" || stderr != "" {
			t.Errorf("validate: exit %d, stdout %q, stderr %q; want exit 0 and %q", code, stdout, stderr, path+": ok\n")
		}
	})
}
