package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// A reload loads the route's renewed certificate; the new route serves the
// new one, whatever the SNI, the old route its own until Retain drops it,
// and reloads do not grow anything.
func TestManagerLoadStaticAndRetain(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewAuthority("test CA")
	if err != nil {
		t.Fatal(err)
	}
	issue := func(name string) (*Issued, string, string) {
		is, err := ca.Issue(Leaf{CommonName: name, DNSNames: []string{"api.example.com"}, Server: true})
		if err != nil {
			t.Fatal(err)
		}
		c, k, err := is.WriteFiles(dir, name)
		if err != nil {
			t.Fatal(err)
		}
		return is, c, k
	}
	old, oldCert, oldKey := issue("old")
	renewed, newCert, newKey := issue("new")
	other, otherCert, otherKey := issue("other") // another route with the same name on its certificate

	m := NewManager(ManagerOptions{Storage: dir})
	defer m.Stop()
	ctx := context.Background()
	a1, err := m.LoadStatic(ctx, StaticOptions{Cert: oldCert, Key: oldKey})
	if err != nil {
		t.Fatal(err)
	}
	b1, err := m.LoadStatic(ctx, StaticOptions{Cert: otherCert, Key: otherKey})
	if err != nil {
		t.Fatal(err)
	}
	pc, pc2 := net.Pipe() // certmagic logs hello.Conn's address
	defer pc.Close()
	defer pc2.Close()
	hello := func(sni string) *tls.ClientHelloInfo { return &tls.ClientHelloInfo{ServerName: sni, Conn: pc} }
	served := func(st *Static, sni string) []byte {
		t.Helper()
		c, err := st.GetCertificate(hello(sni))
		if err != nil {
			t.Fatalf("GetCertificate(%q): %v", sni, err)
		}
		return c.Certificate[0]
	}
	for _, sni := range []string{"api.example.com", "unknown.example.com", ""} {
		if !bytes.Equal(served(a1, sni), old.TLS.Certificate[0]) {
			t.Errorf("route api, SNI %q: got another certificate; want its own", sni)
		}
		if !bytes.Equal(served(b1, sni), other.TLS.Certificate[0]) {
			t.Errorf("route other, SNI %q: got another certificate; want its own", sni)
		}
	}
	if a1.Leaf == nil || a1.Leaf.Subject.CommonName != "old" {
		t.Errorf("Leaf: got %v; want CN=old", a1.Leaf)
	}

	a2, err := m.LoadStatic(ctx, StaticOptions{Cert: newCert, Key: newKey})
	if err != nil {
		t.Fatal(err)
	}
	b2, err := m.LoadStatic(ctx, StaticOptions{Cert: otherCert, Key: otherKey})
	if err != nil {
		t.Fatal(err)
	}
	m.Retain([]*Static{a2, b2})
	if !bytes.Equal(served(a2, "api.example.com"), renewed.TLS.Certificate[0]) {
		t.Error("after reload: route api does not serve the new certificate")
	}
	if !bytes.Equal(served(b2, "api.example.com"), other.TLS.Certificate[0]) {
		t.Error("after reload: route other lost its certificate")
	}
	for _, c := range m.cache.AllMatchingCertificates("api.example.com") {
		if bytes.Equal(c.Certificate.Certificate[0], old.TLS.Certificate[0]) {
			t.Error("after Retain the old certificate is still cached")
		}
		if !c.HasTag(StaticTag) {
			t.Errorf("a certificate from files in the cache without the tag %s", StaticTag)
		}
	}
	for i := 0; i < 20; i++ { // reloads of unchanged files
		a, err := m.LoadStatic(ctx, StaticOptions{Cert: newCert, Key: newKey})
		if err != nil {
			t.Fatal(err)
		}
		b, err := m.LoadStatic(ctx, StaticOptions{Cert: otherCert, Key: otherKey})
		if err != nil {
			t.Fatal(err)
		}
		m.Retain([]*Static{a, b})
	}
	if n := len(m.cache.AllMatchingCertificates("api.example.com")); n != 2 {
		t.Errorf("after 20 reloads: %d certificates cached for api.example.com; want 2", n)
	}
	if _, err := m.LoadStatic(ctx, StaticOptions{Cert: newCert, Key: oldKey}); err == nil {
		t.Error("LoadStatic with a key that does not match: got nil error")
	}
}

// A certificate that expires within ExpiryWarning is logged as a warning
// when it is loaded, with its file and days left; one with more time is not.
func TestLoadStaticWarnsOfExpiry(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewAuthority("expiry CA")
	if err != nil {
		t.Fatal(err)
	}
	var logs stapleLogs // certmagic's maintenance goroutine logs here too
	m := NewManager(ManagerOptions{Storage: dir, Log: zerolog.New(&logs)})
	defer m.Stop()
	for _, c := range []struct {
		name string
		left time.Duration
		warn bool
	}{{"soon", 3 * 24 * time.Hour, true}, {"later", 30 * 24 * time.Hour, false}} {
		is, err := ca.Issue(Leaf{CommonName: c.name, DNSNames: []string{c.name + ".test"}, Server: true, NotAfter: time.Now().Add(c.left)})
		if err != nil {
			t.Fatal(err)
		}
		cert, key, err := is.WriteFiles(dir, c.name)
		if err != nil {
			t.Fatal(err)
		}
		before := len(logs.String())
		if _, err := m.LoadStatic(context.Background(), StaticOptions{Cert: cert, Key: key}); err != nil {
			t.Fatal(err)
		}
		got := logs.String()[before:]
		warned := strings.Contains(got, "certificate expires soon") && strings.Contains(got, `"level":"warn"`) && strings.Contains(got, cert)
		if warned != c.warn {
			t.Errorf("%s (%v left): warned %v; want %v; log: %s", c.name, c.left, warned, c.warn, got)
		}
		if c.warn && !strings.Contains(got, `"days_left":2`) {
			t.Errorf("%s: the warning does not give the days left (2): %s", c.name, got)
		}
	}
}
