package e2e

import (
	"encoding/json"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

// adminServerCert writes the admin endpoint's certificate (server CA,
// names localhost and 127.0.0.1) into a new folder.
func adminServerCert(t testing.TB) (cert, key string) {
	t.Helper()
	is, err := thePKI.serverCert("admin")
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err = is.WriteFiles(t.TempDir(), "admin")
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func TestCtlAdminTLSClientAuth(t *testing.T) {
	t.Parallel()
	needTools(t, "curl")
	cert, key := adminServerCert(t)
	x := startCtlEdge(t, func(cfg cfgMap) {
		cfg["admin"] = cfgMap{"address": freeAddr(t), "tls": cfgMap{"cert": cert, "key": key,
			"client_ca": []any{thePKI.clientCAFile}, "client_auth": "require"}}
	})
	ca := thePKI.serverCAFile
	withCert := []string{"--cacert", ca, "--cert", thePKI.clientCert, "--key", thePKI.clientKey}

	rows := ctlTable(t, ctlOK(t, x.admin, append(withCert, "backends")...), "POOL")
	for _, n := range []string{"api-1", "api-2", "dev-1", "dev-2"} {
		wantRow(t, "ctl over TLS: "+n, ctlRow(t, rows, "SERVER", x.addr(n)), map[string]string{"STATE": "up"})
	}
	_, port, _ := net.SplitHostPort(x.admin)
	var one apiBackend
	ctlJSON(t, "https://localhost:"+port, &one, append(withCert, "backends", "devices")...)
	if one.Name != "devices" || len(one.Servers) != 2 || one.Servers[1].Address != x.addr("dev-2") {
		t.Errorf("ctl -o json over https://localhost: got %+v; want pool devices with %s", one, x.addr("dev-2"))
	}
	out, errOut, code := ctlRun(t, []string{"TLSEDGE_ADMIN_ADDRESS=https://" + x.admin, "TLSEDGE_ADMIN_CACERT=" + ca,
		"TLSEDGE_ADMIN_CERT=" + thePKI.clientCert, "TLSEDGE_ADMIN_KEY=" + thePKI.clientKey}, "", "health")
	if code != 0 || out != "ready\n" {
		t.Errorf("ctl health with TLSEDGE_ADMIN_*: exit %d, %q, %q; want 0, %q", code, out, errOut, "ready\n")
	}

	// Without a client certificate, without the CA, without TLS: refused, with a hint.
	errOut = ctlErr(t, x.admin, 1, "--cacert", ca, "backends")
	wantContains(t, "ctl without a client certificate", errOut, "tlsedge ctl: cannot reach the admin API at https://"+x.admin)
	wantContains(t, "ctl without a client certificate", errOut, "certificate required")
	wantContains(t, "ctl without a client certificate", errOut, "give one with --cert FILE --key FILE")
	errOut = ctlErr(t, x.admin, 1, "--cert", thePKI.clientCert, "--key", thePKI.clientKey, "backends")
	wantContains(t, "ctl without --cacert", errOut, "give its CA with --cacert FILE")
	errOut = ctlErr(t, x.admin, 1, "backends")
	wantContains(t, "ctl over plain HTTP", errOut, "answered 400 Bad Request: Client sent an HTTP request to an HTTPS server.")
	wantContains(t, "ctl over plain HTTP", errOut, "hint: the admin endpoint uses TLS")

	// curl: refused at the handshake without a client certificate (TLS 1.2
	// and 1.3), 200 with one.
	// (TLS 1.3: the client finishes its side of the handshake first, so
	// curl sees the server's alert on its first read: exit 56, or 35.)
	url := "https://127.0.0.1:" + port + "/api/v1/backends"
	const noCert = "tls: client didn't provide a certificate" // Go's server, logged per failed handshake
	before := strings.Count(x.e.stderr.String(), noCert)
	for _, tc := range []struct {
		name  string
		args  []string
		codes []int
		msg   string
	}{
		{"TLS 1.2", []string{"--tlsv1.2", "--tls-max", "1.2"}, []int{35}, "alert handshake failure"},
		{"TLS 1.3", []string{"--tlsv1.3"}, []int{56, 35}, "alert certificate required"},
	} {
		args := append([]string{"--silent", "--show-error", "--cacert", ca, "-o", "/dev/null", "-w", "HTTP %{http_code}\n"}, tc.args...)
		c := startCommand(t, 30*time.Second, "curl", append(args, url)...)
		err := c.wait(t, 25*time.Second)
		if got := exitCode(err); !slices.Contains(tc.codes, got) || !strings.Contains(c.out.String(), "HTTP 000") || !strings.Contains(c.out.String(), tc.msg) {
			t.Errorf("curl %s without a client certificate: exit %d, output %q; want exit %v, no HTTP status, %q", tc.name, got, c.out.String(), tc.codes, tc.msg)
		}
	}
	if !poll(waitLong, func() bool { return strings.Count(x.e.stderr.String(), noCert) >= before+2 }) {
		t.Errorf("tlsedge's log: got %d handshakes refused for want of a client certificate; want %d\n%s",
			strings.Count(x.e.stderr.String(), noCert), before+2, x.e.stderr.String())
	}
	out = runCurl(t, "--silent", "--show-error", "--cacert", ca, "--cert", thePKI.clientCert, "--key", thePKI.clientKey,
		"-w", "\nHTTP %{http_code}\n", url)
	body, status, _ := strings.Cut(out, "\nHTTP ")
	var all struct {
		Backends []apiBackend `json:"backends"`
	}
	if err := json.Unmarshal([]byte(body), &all); err != nil || status != "200\n" || len(all.Backends) != 2 ||
		all.Backends[0].Servers[0].Address != x.addr("api-1") {
		t.Errorf("curl with a client certificate: status %q, %v, %+v; want 200 and the pools", status, err, all.Backends)
	}
}

// Spec: "The admin server listens on loopback only, unless admin.tls gives
// it a certificate and client_auth: require with a client_ca."
func TestCtlAdminOffLoopbackNeedsTLS(t *testing.T) {
	t.Parallel()
	cert, key := adminServerCert(t)
	_, port, _ := net.SplitHostPort(freeAddr(t))
	addr := "0.0.0.0:" + port
	for _, tc := range []struct {
		name string
		tls  cfgMap
		ok   bool
	}{
		{"no tls", nil, false},
		{"tls without client certificates", cfgMap{"cert": cert, "key": key, "client_auth": "none"}, false},
		{"tls with client_auth require", cfgMap{"cert": cert, "key": key, "client_ca": []any{thePKI.clientCAFile}, "client_auth": "require"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := loadExample(t, "passthrough.yaml")
			admin := cfgMap{"address": addr}
			if tc.tls != nil {
				admin["tls"] = tc.tls
			}
			cfg["admin"] = admin
			path := writeConfig(t, cfg)
			out, errOut, code := runTlsedge(t, "validate", "-c", path)
			if tc.ok {
				if code != 0 || out != path+": ok\n" {
					t.Errorf("validate: exit %d, %q, %q; want 0, %q", code, out, errOut, path+": ok\n")
				}
				return
			}
			want := path + ": admin.address: " + addr + " is not a loopback address"
			if code != 1 || !strings.HasPrefix(errOut, want) {
				t.Errorf("validate: exit %d, stderr %q; want 1, %q...", code, errOut, want)
			}
		})
	}
}
