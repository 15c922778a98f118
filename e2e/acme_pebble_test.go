package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/certs"
)

// A real Pebble (Debian's pebble 2.4.0) on loopback, started by the test
// with its own HTTPS certificate from a throwaway CA.

// acmePebbleOpts choose how Pebble validates.
type acmePebbleOpts struct {
	alwaysValid bool     // PEBBLE_VA_ALWAYS_VALID=1: no challenge is checked
	tlsPort     int      // the port Pebble's VA dials for tls-alpn-01 (tlsedge's listener)
	httpPort    int      // the port Pebble's VA dials for http-01
	dnsServer   string   // -dnsserver (pebble-challtestsrv), "" = none
	validity    int      // certificateValidityPeriod in seconds; 0 = Pebble's default (5 years)
	blocklist   []string // domainBlocklist: orders for these names are refused
	ocspURL     string   // ocspResponderURL: put in issued certificates; "" = none
}

// acmePebble is a running Pebble.
type acmePebble struct {
	dir       string // ACME directory URL
	mgmt      string // management API base URL
	caRootPEM string // file: the CA of Pebble's own HTTPS certificate (tlsedge's certs.acme.ca_root)
	client    *http.Client
	out       *syncBuffer
}

// acmeStartPebble starts Pebble, waits (bounded) until its directory
// answers, and stops it in t.Cleanup.
func acmeStartPebble(t testing.TB, o acmePebbleOpts) *acmePebble {
	t.Helper()
	needTools(t, "pebble")
	dir := t.TempDir()
	m := pkMint(t)
	ca := m.ca("pebble https test CA")
	leaf := m.issue(ca, certs.Leaf{CommonName: "localhost", DNSNames: []string{"localhost"}, IPs: pkLocal, Server: true})
	certFile, keyFile := pkWritePair(t, dir, "pebble", leaf)
	caFile := pkWriteFile(t, dir, "pebble-https-ca.pem", ca.PEM)
	listen, mgmt := freeAddr(t), freeAddr(t)
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":                  listen,
		"managementListenAddress":        mgmt,
		"certificate":                    certFile,
		"privateKey":                     keyFile,
		"httpPort":                       o.httpPort,
		"tlsPort":                        o.tlsPort,
		"ocspResponderURL":               o.ocspURL,
		"externalAccountBindingRequired": false,
		"certificateValidityPeriod":      o.validity,
		"domainBlocklist":                o.blocklist,
	}}
	if o.validity == 0 {
		delete(cfg["pebble"].(map[string]any), "certificateValidityPeriod")
	}
	b, _ := json.Marshal(cfg)
	cfgFile := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(cfgFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-config", cfgFile}
	if o.dnsServer != "" {
		args = append(args, "-dnsserver", o.dnsServer)
	}
	p := &acmePebble{dir: "https://" + listen + "/dir", mgmt: "https://" + mgmt, caRootPEM: caFile, out: &syncBuffer{}}
	cmd := exec.Command("pebble", args...)
	cmd.Env = append(cleanEnv(), "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_VA_NOSLEEP=1", "PEBBLE_AUTHZREUSE=0")
	if o.alwaysValid {
		cmd.Env = append(cmd.Env, "PEBBLE_VA_ALWAYS_VALID=1")
	}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	acmeStartProcess(t, cmd, "pebble")
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	p.client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	t.Cleanup(p.client.CloseIdleConnections)
	if !poll(waitLong, func() bool {
		resp, err := p.client.Get(p.dir)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}) {
		t.Fatalf("pebble's directory %s did not answer within %v\noutput:\n%s", p.dir, waitLong, p.out.String())
	}
	return p
}

// acmeStartProcess starts cmd and stops it (SIGKILL, bounded wait) in
// t.Cleanup.
func acmeStartProcess(t testing.TB, cmd *exec.Cmd, what string) {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", what, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-done:
		case <-time.After(waitLong):
			t.Errorf("%s did not exit within %v of SIGKILL", what, waitLong)
		}
	})
}

// issued is the number of certificates Pebble has issued so far (its log
// line per certificate).
func (p *acmePebble) issued() int {
	return strings.Count(p.out.String(), "Issued certificate serial")
}

// rootFile writes Pebble's issuing root (from its management API,
// /roots/0) into dir and returns the file.
func (p *acmePebble) rootFile(t testing.TB, dir string) string {
	t.Helper()
	resp, err := p.client.Get(p.mgmt + "/roots/0")
	if err != nil {
		t.Fatalf("pebble /roots/0: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("pebble /roots/0: status %d, %v", resp.StatusCode, err)
	}
	f := filepath.Join(dir, "pebble-root.pem")
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// rootPool is Pebble's issuing root as a pool.
func (p *acmePebble) rootPool(t testing.TB) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(p.rootFile(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("pebble's root is not PEM: %q", b)
	}
	return pool
}

// acmeStartChallSrv starts pebble-challtestsrv answering every A query
// with 127.0.0.1 (and no AAAA), its challenge servers off; it returns its
// DNS address.
func acmeStartChallSrv(t testing.TB) string {
	t.Helper()
	needTools(t, "pebble-challtestsrv")
	dns, mgmt := freeAddr(t), freeAddr(t)
	cmd := exec.Command("pebble-challtestsrv", "-dns01", dns, "-management", mgmt,
		"-http01", "", "-https01", "", "-tlsalpn01", "", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "")
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr, cmd.Env = out, out, cleanEnv()
	acmeStartProcess(t, cmd, "pebble-challtestsrv")
	if !poll(waitLong, func() bool {
		c, err := net.DialTimeout("tcp", mgmt, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}) {
		t.Fatalf("pebble-challtestsrv did not start within %v\noutput:\n%s", waitLong, out.String())
	}
	return dns
}

// acmeEdgeConfig is a config with one terminate tcp listener whose routes
// are given, on backend "echo" (an acmeEcho server), ACME against pebble
// with storage in storage.
func acmeEdgeConfig(t testing.TB, p *acmePebble, storage string, acme cfgMap, routes ...cfgMap) cfgMap {
	t.Helper()
	a := cfgMap{"email": "ops@example.com", "directory": p.dir, "ca_root": p.caRootPEM}
	for k, v := range acme {
		a[k] = v
	}
	rs := make([]any, len(routes))
	for i, r := range routes {
		rs[i] = r
	}
	return cfgMap{
		"log":   cfgMap{"level": "info", "failure_burst": 0}, // every failed handshake logged
		"certs": cfgMap{"storage": storage, "acme": a},
		"listeners": []any{cfgMap{
			"name": "public", "address": "127.0.0.1:1", "routes": rs,
		}},
		"backends": []any{cfgMap{"name": "echo", "servers": []any{cfgMap{"address": acmeEcho(t)}}, "health": cfgMap{"type": "none"}}},
	}
}

// acmeRoute is a terminate tcp route on backend echo.
func acmeRoute(acme any, sni ...string) cfgMap {
	s := make([]any, len(sni))
	for i, n := range sni {
		s[i] = n
	}
	return cfgMap{"sni": s, "mode": "terminate", "protocol": "tcp", "backend": "echo", "tls": cfgMap{"acme": acme}}
}

// acmeEcho starts a TCP server that echoes each line; stopped in Cleanup.
func acmeEcho(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := newConnGroup(t, "acme echo")
	g.serve(ln, func(c net.Conn) { _, _ = io.Copy(c, c) })
	t.Cleanup(g.stop)
	return ln.Addr().String()
}

// acmeHandshake connects to addr with SNI name, verifying against roots;
// it returns the server's leaf, or the error.
func acmeHandshake(addr, name string, roots *x509.CertPool) (*x509.Certificate, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := (&tls.Dialer{NetDialer: d, Config: &tls.Config{ServerName: name, RootCAs: roots}}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState().PeerCertificates[0], nil
}

// acmeWaitCert polls (up to limit) until a handshake for name verifies
// against roots, and returns the leaf.
func acmeWaitCert(t testing.TB, addr, name string, roots *x509.CertPool, limit time.Duration) *x509.Certificate {
	t.Helper()
	var leaf *x509.Certificate
	var last error
	if !poll(limit, func() bool {
		leaf, last = acmeHandshake(addr, name, roots)
		return last == nil
	}) {
		t.Fatalf("no verified certificate for %s within %v: last error %v", name, limit, last)
	}
	return leaf
}

func acmeSerial(c *x509.Certificate) string { return fmt.Sprintf("%x", c.SerialNumber) }

// acmeCounter starts a TCP server that counts and closes connections; it
// returns its address and the count so far.
func acmeCounter(t testing.TB) (string, func() int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	g := newConnGroup(t, "acme counter")
	g.serve(ln, func(net.Conn) { n.Add(1) })
	t.Cleanup(g.stop)
	return ln.Addr().String(), func() int { return int(n.Load()) }
}
