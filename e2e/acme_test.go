package e2e

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// acmeWait bounds the wait for a certificate from Pebble (issuance takes a
// second or two on loopback; the bound is generous for loaded machines).
const acmeWait = 45 * time.Second

// Issue 6: "tlsedge obtains a certificate for an acme: true route;
// openssl s_client -servername NAME -CAfile <Pebble's root>
// -verify_hostname NAME prints Verify return code: 0 (ok)". Also: the
// storage folder is created 0700 and holds the certificate; a name whose
// order the CA refuses gets no certificate: its handshakes fail with a
// logged reason, never with the certificate of another route (here a
// static *.example.com route on the same listener that covers the name).
func TestAcmeAlwaysValidOpenssl(t *testing.T) {
	t.Parallel()
	needTools(t, "openssl")
	p := acmeStartPebble(t, acmePebbleOpts{alwaysValid: true, blocklist: []string{"blocked.example.com"}})
	storage := filepath.Join(t.TempDir(), "store")
	const name = "www.acme.example.com"
	static, err := thePKI.serverCert("acme-static")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := static.WriteFiles(t.TempDir(), "static")
	if err != nil {
		t.Fatal(err)
	}
	staticRoute := cfgMap{"sni": []any{"*.example.com"}, "mode": "terminate", "protocol": "tcp", "backend": "echo",
		"tls": cfgMap{"cert": certFile, "key": keyFile}}
	cfg := acmeEdgeConfig(t, p, storage, nil, acmeRoute(true, name), acmeRoute(true, "blocked.example.com"), staticRoute)
	e := runEdge(t, cfg)

	leaf := acmeWaitCert(t, e.addr, name, p.rootPool(t), acmeWait)
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != name {
		t.Errorf("certificate names %v; want [%s]", leaf.DNSNames, name)
	}
	root := p.rootFile(t, t.TempDir())
	c := startCommand(t, 30*time.Second, "openssl", "s_client", "-connect", e.addr, "-servername", name,
		"-CAfile", root, "-verify_hostname", name)
	if err := c.wait(t, 30*time.Second); err != nil {
		t.Fatalf("openssl s_client: %v\n%s", err, c.out.String())
	}
	if out := c.out.String(); !strings.Contains(out, "Verify return code: 0 (ok)") {
		t.Errorf("openssl s_client output lacks %q:\n%s", "Verify return code: 0 (ok)", out)
	}

	fi, err := os.Stat(storage)
	if err != nil {
		t.Fatalf("storage folder: %v", err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("storage folder mode %v; want 0700", fi.Mode().Perm())
	}
	crts, _ := filepath.Glob(filepath.Join(storage, "certificates", "*", name, name+".crt"))
	if len(crts) != 1 {
		t.Errorf("storage holds %d certificate files for %s (%v); want 1", len(crts), name, crts)
	}

	// The blocked name: Pebble refuses its order, so it has no
	// certificate; its handshake fails and never gets the static one.
	e.waitLog(t, "the refused order logged", func(l logLine) bool {
		return l.str("component") == "certmagic" && strings.Contains(l.str("error"), "blocked.example.com")
	})
	if got, err := acmeHandshake(e.addr, "blocked.example.com", thePKI.serverCA.Pool()); err == nil {
		t.Errorf("handshake for blocked.example.com got a certificate (%v, serial %s); want a failed handshake", got.DNSNames, acmeSerial(got))
	}
	line := e.waitLog(t, "the failed handshake's access line", func(l logLine) bool {
		return l.str("sni") == "blocked.example.com" && strings.Contains(l.str("reason"), "no ACME certificate")
	})
	if lvl := line.str("level"); lvl != "warn" && lvl != "error" {
		t.Errorf("failed handshake logged at %q; want warn", lvl)
	}
	// A static route's certificate is still its own.
	if got, err := acmeHandshake(e.addr, "other.example.com", thePKI.serverCA.Pool()); err != nil {
		t.Errorf("static route: %v", err)
	} else if !got.Equal(static.TLS.Leaf) {
		t.Errorf("static route served serial %s; want its own", acmeSerial(got))
	}
	if n := p.issued(); n != 1 {
		t.Errorf("pebble issued %d certificates; want 1", n)
	}
}

// Issue 6: "A Pebble that validates for real with pebble-challtestsrv
// resolving the names to 127.0.0.1: tlsedge answers TLS-ALPN-01 itself".
// Pebble's VA dials the listener of the acme: true route, which also has a
// passthrough "*" route: the validation is answered before routing (never
// forwarded to the passthrough server), as the name's route is the ACME
// one; the certificate then serves on that listener.
func TestAcmeTLSALPN01Answered(t *testing.T) {
	t.Parallel()
	dns := acmeStartChallSrv(t)
	addrA := freeAddr(t)
	_, portA, _ := net.SplitHostPort(addrA)
	tlsPort, _ := strconv.Atoi(portA)
	p := acmeStartPebble(t, acmePebbleOpts{tlsPort: tlsPort, dnsServer: dns})
	const name = "alpn.acme.example.com"
	passAddr, passConns := acmeCounter(t)
	cfg := acmeEdgeConfig(t, p, filepath.Join(t.TempDir(), "store"), nil, acmeRoute(true, name),
		cfgMap{"sni": []any{"*"}, "mode": "passthrough", "backend": "pass"})
	listenerCfg(t, cfg, 0)["address"] = addrA
	cfg["backends"] = append(cfg["backends"].([]any), cfgMap{"name": "pass", "servers": []any{cfgMap{"address": passAddr}}, "health": cfgMap{"type": "none"}})
	e := startEdge(t, writeConfig(t, cfg), addrA, nil)

	leaf := acmeWaitCert(t, addrA, name, p.rootPool(t), acmeWait)
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != name {
		t.Errorf("certificate names %v; want [%s]", leaf.DNSNames, name)
	}
	answered := e.findLogs(func(l logLine) bool {
		return l.msg() == "connection" && l.str("listener") == "public" && l.str("sni") == name &&
			l.str("reason") == "acme tls-alpn-01 validation for "+name+" answered"
	})
	if len(answered) == 0 {
		t.Errorf("no access line of an answered tls-alpn-01 validation on listener public")
	}
	if n := passConns(); n != 0 {
		t.Errorf("the passthrough server got %d connections; want 0 (validations are answered by tlsedge)", n)
	}
	if n := p.issued(); n != 1 {
		t.Errorf("pebble issued %d certificates; want 1", n)
	}
}

// Issue 6: "Two instances started at the same moment on one storage serve
// the same serial, and Pebble issued exactly one certificate." The second
// instance starts while the first is ordering (its storage lock held) or
// after it stored the certificate: either way it places no order.
func TestAcmeSharedStorageOneOrder(t *testing.T) {
	t.Parallel()
	p := acmeStartPebble(t, acmePebbleOpts{alwaysValid: true})
	storage := filepath.Join(t.TempDir(), "shared")
	const name = "shared.acme.example.com"
	var edges []*edgeProc
	var paths []string
	var addrs []string
	for range 2 {
		cfg := acmeEdgeConfig(t, p, storage, nil, acmeRoute(true, name))
		addr := freeAddr(t)
		listenerCfg(t, cfg, 0)["address"] = addr
		paths, addrs = append(paths, writeConfig(t, cfg)), append(addrs, addr)
	}
	// Both at the same moment: their orders race, and certmagic's storage
	// lock must let only one go to the CA.
	for i := range paths {
		edges = append(edges, launchEdge(t, paths[i], addrs[i], nil))
	}
	for _, e := range edges {
		e.waitReady(t)
	}
	roots := p.rootPool(t)
	a := acmeWaitCert(t, edges[0].addr, name, roots, acmeWait)
	b := acmeWaitCert(t, edges[1].addr, name, roots, acmeWait)
	if acmeSerial(a) != acmeSerial(b) {
		t.Errorf("instance 1 serves serial %s, instance 2 serial %s; want the same", acmeSerial(a), acmeSerial(b))
	}
	if n := p.issued(); n != 1 {
		t.Errorf("pebble issued %d certificates; want 1\npebble:\n%s", n, p.out.String())
	}
}

// HTTP-01 when chosen: Pebble validates for real (pebble-challtestsrv
// resolves the name to 127.0.0.1) against the plain listener tlsedge opens
// on certs.acme.http_address, and the certificate is served.
func TestAcmeHTTP01Answered(t *testing.T) {
	t.Parallel()
	dns := acmeStartChallSrv(t)
	httpAddr := freeAddr(t)
	_, port, _ := net.SplitHostPort(httpAddr)
	httpPort, _ := strconv.Atoi(port)
	p := acmeStartPebble(t, acmePebbleOpts{httpPort: httpPort, dnsServer: dns})
	const name = "http01.acme.example.com"
	cfg := acmeEdgeConfig(t, p, filepath.Join(t.TempDir(), "store"),
		cfgMap{"challenges": []any{"http-01"}, "http_address": httpAddr}, acmeRoute(true, name))
	e := runEdge(t, cfg)
	leaf := acmeWaitCert(t, e.addr, name, p.rootPool(t), acmeWait)
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != name {
		t.Errorf("certificate names %v; want [%s]", leaf.DNSNames, name)
	}
	if n := p.issued(); n != 1 {
		t.Errorf("pebble issued %d certificates; want 1", n)
	}
	// Not the TLS-ALPN-01 path: no validation reached the TLS listener.
	if n := len(e.findLogs(func(l logLine) bool { return strings.Contains(l.str("reason"), "tls-alpn-01") })); n != 0 {
		t.Errorf("%d tls-alpn-01 validations with only http-01 chosen; want 0", n)
	}
}
