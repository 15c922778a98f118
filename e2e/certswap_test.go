package e2e

// Files replaced on disk while tlsedge runs, with no reload asked for: a
// route certificate renamed into place (as certbot does), written broken,
// swapped through a Kubernetes-style `..data` symlink, and a CRL that
// revokes a client with a stream open.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/certs"
)

// csWithin bounds how long a replaced file may take to be served: the issue
// asks for "within 15 s".
const csWithin = 15 * time.Second

// csName is the route's server name.
const csName = "api.example.com"

// csIssue signs a server certificate for csName with serial n.
func csIssue(t testing.TB, ca *certs.Authority, n int64) *certs.Issued {
	t.Helper()
	return pkMint(t).issue(ca, certs.Leaf{CommonName: csName, DNSNames: []string{csName}, Server: true, Serial: big.NewInt(n)})
}

// csWriteAtomic writes data to a temp file beside path and renames it into
// place, as certbot and editors do.
func csWriteAtomic(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// csServedSerial is the serial (decimal) of the certificate that
// `openssl s_client -servername csName` gets, "" when it got none.
func csServedSerial(t testing.TB, addr string, caFile string) string {
	t.Helper()
	cmd := exec.Command("openssl", "s_client", "-connect", addr, "-servername", csName,
		"-CAfile", caFile, "-verify_hostname", csName)
	cmd.Stdin = strings.NewReader("")
	out, _ := cmd.CombinedOutput()
	i := strings.Index(string(out), "-----BEGIN CERTIFICATE-----")
	if i < 0 {
		return ""
	}
	b, _ := pem.Decode(out[i:])
	if b == nil {
		return ""
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return ""
	}
	if !strings.Contains(string(out), "Verify return code: 0 (ok)") {
		return "unverified " + c.SerialNumber.String()
	}
	return c.SerialNumber.String()
}

// csWaitSerial waits (csWithin) until s_client gets serial want.
func csWaitSerial(t testing.TB, e *edgeProc, caFile string, want int64, what string) {
	t.Helper()
	var got string
	if !poll(csWithin, func() bool { got = csServedSerial(t, e.addr, caFile); return got == fmt.Sprint(want) }) {
		t.Fatalf("%s: s_client got serial %q within %v; want %d\nstderr:\n%s", what, got, csWithin, want, e.stderr.String())
	}
}

// csEcho checks that c still carries bytes both ways.
func csEcho(t testing.TB, c net.Conn, what string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(waitLong))
	defer c.SetDeadline(time.Time{})
	msg := []byte("still here " + what + "\n")
	if _, err := c.Write(msg); err != nil {
		t.Fatalf("%s: write: %v", what, err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != string(msg) {
		t.Fatalf("%s: echo got %q, %v; want %q", what, buf, err, msg)
	}
}

// csEdge starts tlsedge with one terminate tcp route (csName) to a TCP echo
// server, its certificate and key read from cert and key, its client
// certificate policy from tlsExtra.
func csEdge(t *testing.T, cert, key string, tlsExtra cfgMap) (*edgeProc, *adminClient) {
	tlsCfg := cfgMap{"cert": cert, "key": key}
	for k, v := range tlsExtra {
		tlsCfg[k] = v
	}
	cfg := cfgMap{
		"listeners": []any{cfgMap{"name": "public", "address": "127.0.0.1:0", "routes": []any{
			cfgMap{"sni": []any{csName}, "mode": "terminate", "protocol": "tcp", "tls": tlsCfg, "backend": "echo"},
		}}},
		"backends": []any{cfgMap{"name": "echo", "servers": []any{cfgMap{"address": arStartEcho(t)}}}},
	}
	admin := withAdmin(t, cfg)
	return runEdge(t, cfg), newAdmin(t, admin)
}

// csCheckListed checks that the admin API and the expiry metric show
// served (source file) and no longer the certificate with serial gone.
func csCheckListed(t *testing.T, admin *adminClient, served *certs.Issued, gone int64) {
	t.Helper()
	var got struct {
		Certificates []struct {
			Names    []string  `json:"names"`
			Serial   string    `json:"serial"`
			NotAfter time.Time `json:"not_after"`
			Source   string    `json:"source"`
		} `json:"certificates"`
	}
	if code := admin.get("/api/v1/certificates", &got); code != 200 {
		t.Fatalf("GET /api/v1/certificates: %d", code)
	}
	leaf := served.TLS.Leaf
	want := leaf.SerialNumber.Text(16)
	found := false
	for _, c := range got.Certificates {
		if c.Serial == big.NewInt(gone).Text(16) {
			t.Errorf("the API still lists the replaced certificate (serial %x): %+v", gone, got.Certificates)
		}
		if c.Serial == want {
			found = true
			if c.Source != "file" || len(c.Names) == 0 || c.Names[0] != csName || !c.NotAfter.Equal(leaf.NotAfter) {
				t.Errorf("the API lists %+v; want names [%s], source file, not_after %v", c, csName, leaf.NotAfter)
			}
		}
	}
	if !found {
		t.Errorf("the API does not list the served certificate (serial %s): %+v", want, got.Certificates)
	}
	out, stderr, code := runTlsedge(t, "ctl", "--admin", strings.TrimPrefix(admin.base, "http://"), "certificates")
	if code != 0 || !strings.Contains(out, csName) || !strings.Contains(out, want) || !strings.Contains(out, "file") {
		t.Errorf("tlsedge ctl certificates (exit %d) printed:\n%s%s\nwant a line with %s, serial %s, source file", code, out, stderr, csName, want)
	}
	labels := map[string]string{"name": csName, "serial": want, "kind": "file"}
	if v := admin.metrics().value("tlsedge_certificate_expiry_timestamp_seconds", labels); v != float64(leaf.NotAfter.Unix()) {
		t.Errorf("tlsedge_certificate_expiry_timestamp_seconds%v = %v; want %d", labels, v, leaf.NotAfter.Unix())
	}
}

// A certificate renamed into place is served to new handshakes within
// seconds while a connection made before keeps working on the old one; a
// broken PEM written over it leaves the served certificate as it was (the
// reason logged with the key and the file); a good pair after that is
// picked up again. No reload is asked for.
func TestFileSwapRouteCertificate(t *testing.T) {
	t.Parallel()
	needTools(t, "openssl")
	ca := pkMint(t).ca("swap test CA")
	dir := t.TempDir()
	caFile := pkWriteFile(t, dir, "ca.pem", ca.PEM)
	cert, key := pkWritePair(t, dir, "api", csIssue(t, ca, 1001))
	e, admin := csEdge(t, cert, key, nil)
	csWaitSerial(t, e, caFile, 1001, "at start")

	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	held, err := tls.Dial("tcp", e.addr, &tls.Config{ServerName: csName, RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	csEcho(t, held, "before the swap")

	// Renamed into place: the key first, then the certificate.
	next := csIssue(t, ca, 1002)
	csWriteAtomic(t, key, next.KeyPEM)
	csWriteAtomic(t, cert, next.CertPEM)
	csWaitSerial(t, e, caFile, 1002, "after renaming a new pair into place")
	csEcho(t, held, "after the swap")
	csCheckListed(t, admin, next, 1001)
	if n := len(e.findLogs(func(l logLine) bool {
		return l.msg() == "config reloaded" && l.str("trigger") == "certificate files changed"
	})); n == 0 {
		t.Errorf("no reload with trigger %q logged", "certificate files changed")
	}

	// An unrelated file written in the same folder starts no reload.
	reloads := func() int {
		return len(e.findLogs(func(l logLine) bool { return l.str("trigger") == "certificate files changed" }))
	}
	before := reloads()
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // a file watch event and a poll (2 s) go by
	if n := reloads(); n != before {
		t.Errorf("writing an unrelated file in the certificates' folder started %d reload(s); want none", n-before)
	}

	// Broken: the served certificate stays, tlsedge runs, the log says why.
	isRefusal := func(l logLine) bool {
		return l.msg() == "reload refused: config problem" && strings.HasSuffix(l.str("key"), ".tls.cert")
	}
	refusedBefore := len(e.findLogs(isRefusal))
	if err := os.WriteFile(cert, []byte("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	refused := e.waitLogs(t, refusedBefore+1, "the broken certificate refused", isRefusal)[refusedBefore]
	if p := refused.str("problem"); !strings.Contains(p, cert) {
		t.Errorf("the problem logged does not name the file %s: %q", cert, p)
	}
	if got := csServedSerial(t, e.addr, caFile); got != "1002" {
		t.Errorf("with a broken certificate file, s_client got serial %q; want 1002 (the last good one)", got)
	}
	if e.exited() {
		t.Fatal("tlsedge exited after a broken certificate file")
	}
	csEcho(t, held, "after the broken file")

	// A good pair again.
	last := csIssue(t, ca, 1003)
	csWriteAtomic(t, key, last.KeyPEM)
	csWriteAtomic(t, cert, last.CertPEM)
	csWaitSerial(t, e, caFile, 1003, "after a good pair replaced the broken one")
	csEcho(t, held, "at the end")
}

// Kubernetes mounts a secret as a folder of `..<timestamp>` versions, a
// `..data` symlink to the current one and symlinks to `..data/<file>`; an
// update swaps `..data` in one rename. The new pair is served within
// seconds.
func TestFileSwapKubernetesSecret(t *testing.T) {
	t.Parallel()
	needTools(t, "openssl")
	ca := pkMint(t).ca("k8s swap test CA")
	dir := t.TempDir()
	caFile := pkWriteFile(t, t.TempDir(), "ca.pem", ca.PEM)
	version := func(name string, is *certs.Issued) {
		v := filepath.Join(dir, name)
		if err := os.Mkdir(v, 0o755); err != nil {
			t.Fatal(err)
		}
		for f, b := range map[string][]byte{"tls.crt": is.CertPEM, "tls.key": is.KeyPEM} {
			if err := os.WriteFile(filepath.Join(v, f), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		// ..data -> name, in one rename (what the kubelet does).
		if err := os.Symlink(name, filepath.Join(dir, "..data_tmp")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	version("..2026_12_04_10_00_00.1", csIssue(t, ca, 2001))
	for _, f := range []string{"tls.crt", "tls.key"} {
		if err := os.Symlink(filepath.Join("..data", f), filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	e, _ := csEdge(t, filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), nil)
	csWaitSerial(t, e, caFile, 2001, "at start")
	version("..2026_12_04_11_00_00.2", csIssue(t, ca, 2002))
	csWaitSerial(t, e, caFile, 2002, "after the ..data swap")
}

// A CRL file replaced on disk (no reload asked for) applies to new
// handshakes within seconds, and the open stream of the client it revokes
// is ended (routes[].reauthorize_on_reload, on by default), while another
// client's stream on the same route goes on.
func TestFileSwapCRL(t *testing.T) {
	t.Parallel()
	needTools(t, "openssl")
	m := pkMint(t)
	serverCA := m.ca("crl swap server CA")
	clientCA := m.ca("crl swap client CA")
	dir := t.TempDir()
	caFile := pkWriteFile(t, dir, "server-ca.pem", serverCA.PEM)
	clientCAFile := pkWriteFile(t, dir, "client-ca.pem", clientCA.PEM)
	crlFile := filepath.Join(dir, "clients.crl")
	writeCRL := func(revoked ...*certs.Issued) {
		csWriteAtomic(t, crlFile, m.crlPEM(clientCA, revoked...))
	}
	writeCRL()
	cert, key := pkWritePair(t, dir, "api", csIssue(t, serverCA, 3001))
	clients := map[string]*certs.Issued{}
	files := map[string][2]string{}
	for i, name := range []string{"device-1", "device-2"} {
		clients[name] = m.issue(clientCA, certs.Leaf{CommonName: name, Client: true, Serial: big.NewInt(int64(4001 + i))})
		c, k := pkWritePair(t, dir, name, clients[name])
		files[name] = [2]string{c, k}
	}
	e, _ := csEdge(t, cert, key, cfgMap{"client_auth": "require", "client_ca": clientCAFile, "crl": crlFile})

	pool := x509.NewCertPool()
	pool.AddCert(serverCA.Cert)
	dial := func(name string) (*tls.Conn, error) {
		return tls.Dial("tcp", e.addr, &tls.Config{ServerName: csName, RootCAs: pool,
			Certificates: []tls.Certificate{clients[name].TLS}})
	}
	held := map[string]*tls.Conn{}
	for _, name := range []string{"device-1", "device-2"} {
		c, err := dial(name)
		if err != nil {
			t.Fatalf("%s before the new CRL: %v", name, err)
		}
		defer c.Close()
		csEcho(t, c, name+" before the new CRL")
		held[name] = c
	}

	writeCRL(clients["device-1"]) // revokes device-1 (serial 4001)

	// New handshakes of device-1 are refused (openssl, as a user checks).
	refused := func() bool {
		cmd := exec.Command("openssl", "s_client", "-connect", e.addr, "-servername", csName, "-CAfile", caFile,
			"-cert", files["device-1"][0], "-key", files["device-1"][1])
		cmd.Stdin = strings.NewReader("ping\n")
		out, _ := cmd.CombinedOutput()
		return strings.Contains(string(out), "alert bad certificate")
	}
	if !poll(csWithin, refused) {
		t.Fatalf("device-1 still gets through %v after its certificate was revoked by a new CRL file\nstderr:\n%s", csWithin, e.stderr.String())
	}

	// device-1's open stream is ended; device-2's goes on.
	_ = held["device-1"].SetReadDeadline(time.Now().Add(waitLong))
	if n, err := held["device-1"].Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("device-1's open stream after its revocation: read %d bytes, %v; want the end of the stream (EOF)", n, err)
	}
	e.waitLog(t, "the revoked client's stream logged as no longer authorized", func(l logLine) bool {
		return l.msg() == "connection no longer authorized" && strings.Contains(l.str("client_cert"), "device-1") &&
			strings.Contains(l.str("reason"), "revoked")
	})
	csEcho(t, held["device-2"], "device-2 after device-1's revocation")
	c, err := dial("device-2")
	if err != nil {
		t.Fatalf("device-2 after the new CRL: %v", err)
	}
	defer c.Close()
	csEcho(t, c, "device-2's new connection")
}

// Replacing the certificate of a protocol http route keeps its keep-alive
// connections: the next request on a connection made before the swap is
// served on that same connection.
func TestFileSwapKeepsHTTPKeepAlive(t *testing.T) {
	t.Parallel()
	needTools(t, "openssl")
	ca := pkMint(t).ca("keep-alive swap CA")
	dir := t.TempDir()
	caFile := pkWriteFile(t, dir, "ca.pem", ca.PEM)
	cert, key := pkWritePair(t, dir, "api", csIssue(t, ca, 5001))
	web := startHTTPBackend(t, "web")
	cfg := cfgMap{
		"listeners": []any{cfgMap{"name": "public", "address": "127.0.0.1:0", "routes": []any{
			cfgMap{"sni": []any{csName}, "mode": "terminate", "protocol": "http", "tls": cfgMap{"cert": cert, "key": key}, "backend": "web"},
		}}},
		"backends": []any{cfgMap{"name": "web", "health": cfgMap{"type": "none"}, "servers": []any{cfgMap{"address": web.Addr()}}}},
	}
	e := runEdge(t, cfg)
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: csName}, MaxConnsPerHost: 1, ForceAttemptHTTP2: false}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: waitLong}
	get := func(what string) (reused bool, serial string) {
		t.Helper()
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", "https://"+e.addr+"/ka", nil)
		req.Host = csName
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.HasPrefix(string(body), "web GET /ka") {
			t.Fatalf("%s: %d %q", what, resp.StatusCode, body)
		}
		return reused, resp.TLS.PeerCertificates[0].SerialNumber.String()
	}
	if _, s := get("before the swap"); s != "5001" {
		t.Fatalf("before the swap the serial is %s; want 5001", s)
	}
	next := csIssue(t, ca, 5002)
	csWriteAtomic(t, key, next.KeyPEM)
	csWriteAtomic(t, cert, next.CertPEM)
	csWaitSerial(t, e, caFile, 5002, "after the swap")
	reused, s := get("after the swap")
	if !reused || s != "5001" {
		t.Errorf("after the swap the request went on a new connection (reused %v, serial %s); want the keep-alive connection made before (serial 5001)", reused, s)
	}
}

// The certificates' folder deleted and made again (a deploy that replaces
// the folder): the pair in the new folder is served, and so is the next
// pair renamed into it.
func TestFileSwapFolderRecreated(t *testing.T) {
	t.Parallel()
	needTools(t, "openssl")
	ca := pkMint(t).ca("recreated folder CA")
	caFile := pkWriteFile(t, t.TempDir(), "ca.pem", ca.PEM)
	dir := filepath.Join(t.TempDir(), "certs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cert, key := pkWritePair(t, dir, "api", csIssue(t, ca, 6001))
	e, _ := csEdge(t, cert, key, nil)
	csWaitSerial(t, e, caFile, 6001, "at start")
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	pkWritePair(t, dir, "api", csIssue(t, ca, 6002))
	csWaitSerial(t, e, caFile, 6002, "after the folder was made again")
	next := csIssue(t, ca, 6003)
	csWriteAtomic(t, key, next.KeyPEM)
	csWriteAtomic(t, cert, next.CertPEM)
	csWaitSerial(t, e, caFile, 6003, "after a pair was renamed into the new folder")
}
