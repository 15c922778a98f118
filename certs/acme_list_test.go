package certs

import (
	"context"
	"slices"
	"strings"
	"testing"
)

// Certificates lists the cache's certificates from files with their names,
// issuer, serial and expiry, as not managed; Retain's drops leave it.
func TestAcmeCertificatesList(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewAuthority("list CA")
	if err != nil {
		t.Fatal(err)
	}
	is, err := ca.Issue(Leaf{CommonName: "a", DNSNames: []string{"a.example.com"}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := is.WriteFiles(dir, "a")
	if err != nil {
		t.Fatal(err)
	}
	m := NewManager(ManagerOptions{Storage: dir})
	defer m.Stop()
	if got := m.Certificates(); len(got) != 0 {
		t.Fatalf("empty cache lists %d certificates; want 0", len(got))
	}
	st, err := m.LoadStatic(context.Background(), StaticOptions{Cert: cert, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	got := m.Certificates()
	if len(got) != 1 {
		t.Fatalf("lists %d certificates; want 1", len(got))
	}
	c, leaf := got[0], st.Leaf
	// certmagic's names are the certificate's CN and SANs.
	if !slices.Equal(c.Names, []string{"a", "a.example.com"}) || c.Managed ||
		c.Serial != strings.ToLower(leaf.SerialNumber.Text(16)) || !c.NotAfter.Equal(leaf.NotAfter) || c.Issuer != leaf.Issuer.String() {
		t.Errorf("got %+v; want names [a a.example.com], serial %x, not after %v, issuer %s, not managed", c, leaf.SerialNumber, leaf.NotAfter, leaf.Issuer)
	}
	m.Retain(nil)
	if got := m.Certificates(); len(got) != 0 {
		t.Errorf("after Retain(nil) lists %d certificates; want 0", len(got))
	}
}
