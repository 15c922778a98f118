package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"path/filepath"
	"testing"
	"time"
)

// Issue 6: "Renewal: a short-lived certificate is renewed while a
// connection made before it stays open; new handshakes get the new
// serial." Pebble issues 30 s certificates; renewal_window_ratio 0.5 and
// renew_interval 1s renew them with 15 s left.
func TestAcmeRenewalKeepsOpenConnections(t *testing.T) {
	t.Parallel()
	p := acmeStartPebble(t, acmePebbleOpts{alwaysValid: true, validity: 30})
	const name = "renew.acme.example.com"
	cfg := acmeEdgeConfig(t, p, filepath.Join(t.TempDir(), "store"),
		cfgMap{"renewal_window_ratio": 0.5, "renew_interval": "1s"}, acmeRoute(true, name))
	e := runEdge(t, cfg)
	roots := p.rootPool(t)
	first := acmeWaitCert(t, e.addr, name, roots, acmeWait)
	if life := first.NotAfter.Sub(first.NotBefore); life > time.Minute {
		t.Fatalf("pebble issued a certificate valid for %v; want 30s (certificateValidityPeriod)", life)
	}

	// A connection made with the first certificate, echoing through tlsedge.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := (&tls.Dialer{Config: &tls.Config{ServerName: name, RootCAs: roots}}).DialContext(ctx, "tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := acmeSerial(c.(*tls.Conn).ConnectionState().PeerCertificates[0]); got != acmeSerial(first) {
		t.Fatalf("the open connection has serial %s; want the first one %s", got, acmeSerial(first))
	}
	r := bufio.NewReader(c)
	echo := func(what string) {
		t.Helper()
		_ = c.SetDeadline(time.Now().Add(waitLong))
		if _, err := io.WriteString(c, what+"\n"); err != nil {
			t.Fatalf("%s: write on the open connection: %v", what, err)
		}
		line, err := r.ReadString('\n')
		if err != nil || line != what+"\n" {
			t.Fatalf("%s: echo on the open connection: %q, %v; want %q", what, line, err, what+"\n")
		}
	}
	echo("before renewal")

	// New handshakes get a new serial once renewed (bounded: the
	// certificate's own lifetime and then some).
	var second string
	if !poll(60*time.Second, func() bool {
		leaf, err := acmeHandshake(e.addr, name, roots)
		if err == nil && acmeSerial(leaf) != acmeSerial(first) {
			second = acmeSerial(leaf)
			return true
		}
		return false
	}) {
		t.Fatalf("no new serial for %s within 60s (first %s)\npebble:\n%s", name, acmeSerial(first), p.out.String())
	}
	e.waitLog(t, "certmagic's renewal line", func(l logLine) bool {
		return l.str("component") == "certmagic" && l.msg() == "certificate renewed successfully"
	})
	echo("after renewal")
	if got := acmeSerial(c.(*tls.Conn).ConnectionState().PeerCertificates[0]); got != acmeSerial(first) {
		t.Errorf("the open connection now reports serial %s; want still %s", got, acmeSerial(first))
	}
	if second == acmeSerial(first) {
		t.Errorf("renewed serial equals the first")
	}
}
