package e2e

// OCSP stapling of a route's own certificate: fetched in the background
// from the responder its certificate names, shown by `openssl s_client
// -status`; off with tls.ocsp_stapling: off.

import (
	"math/big"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/crypto/ocsp"

	"github.com/tlsedge/tlsedge/certs"
)

// stStatus runs `openssl s_client -status` against name and returns its
// output.
func stStatus(t testing.TB, addr, name, caFile string) string {
	t.Helper()
	cmd := exec.Command("openssl", "s_client", "-connect", addr, "-servername", name, "-status", "-CAfile", caFile)
	cmd.Stdin = strings.NewReader("")
	out, _ := cmd.CombinedOutput()
	return string(out)
}

// A route certificate whose issuer runs an OCSP responder is stapled: s_client
// -status shows a successful, good response, and the responder was asked
// by tlsedge (not per handshake: the count stays small); with
// ocsp_stapling off, no response is sent and the responder is never asked.
func TestOCSPStapling(t *testing.T) {
	t.Parallel()
	needTools(t, "openssl")
	m := pkMint(t)
	root := m.ca("stapling root")
	inter := m.intermediate(root, "stapling intermediate")
	// One responder per route, each counting the requests it gets.
	asked := map[string]*atomic.Int64{}
	resp := inter.OCSPHandler(func(*big.Int) int { return ocsp.Good })
	dir := t.TempDir()
	caFile := pkWriteFile(t, dir, "root.pem", root.PEM)
	files := map[string][2]string{}
	for _, name := range []string{"on", "off"} {
		n := &atomic.Int64{}
		asked[name] = n
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n.Add(1)
			resp.ServeHTTP(w, r)
		}))
		t.Cleanup(srv.Close)
		is := m.issue(inter, certs.Leaf{CommonName: name + ".example.com", DNSNames: []string{name + ".example.com"},
			Server: true, OCSPServer: []string{srv.URL}})
		c, k := pkWritePair(t, dir, name, is) // leaf then intermediate: the issuer is in the chain
		files[name] = [2]string{c, k}
	}
	route := func(name string, extra cfgMap) cfgMap {
		tlsCfg := cfgMap{"cert": files[name][0], "key": files[name][1]}
		for k, v := range extra {
			tlsCfg[k] = v
		}
		return cfgMap{"sni": []any{name + ".example.com"}, "mode": "terminate", "protocol": "tcp", "tls": tlsCfg, "backend": "echo"}
	}
	cfg := cfgMap{
		"listeners": []any{cfgMap{"name": "public", "address": "127.0.0.1:0", "routes": []any{
			route("on", nil), route("off", cfgMap{"ocsp_stapling": "off"}),
		}}},
		"backends": []any{cfgMap{"name": "echo", "servers": []any{cfgMap{"address": arStartEcho(t)}}}},
	}
	e := runEdge(t, cfg)

	var out string
	if !poll(waitLong, func() bool {
		out = stStatus(t, e.addr, "on.example.com", caFile)
		return strings.Contains(out, "OCSP Response Status: successful")
	}) {
		t.Fatalf("no stapled response within %v; s_client -status printed:\n%s\nstderr:\n%s", waitLong, out, e.stderr.String())
	}
	for _, want := range []string{"Cert Status: good", "Verify return code: 0 (ok)"} {
		if !strings.Contains(out, want) {
			t.Errorf("s_client -status does not show %q:\n%s", want, out)
		}
	}
	before := asked["on"].Load()
	for range 5 {
		if out := stStatus(t, e.addr, "on.example.com", caFile); !strings.Contains(out, "OCSP Response Status: successful") {
			t.Fatalf("a later handshake got no staple:\n%s", out)
		}
	}
	if n := asked["on"].Load(); n != before {
		t.Errorf("the responder was asked %d more times for 5 handshakes; want 0 (fetched in the background, not per handshake)", n-before)
	}

	out = stStatus(t, e.addr, "off.example.com", caFile)
	if !strings.Contains(out, "OCSP response: no response sent") || !strings.Contains(out, "Verify return code: 0 (ok)") {
		t.Errorf("ocsp_stapling off: s_client -status printed:\n%s\nwant \"OCSP response: no response sent\" and a verified chain", out)
	}
	if n := asked["off"].Load(); n != 0 {
		t.Errorf("ocsp_stapling off: its responder was asked %d times; want 0", n)
	}
}
