package edge

import (
	"strings"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/certs"
)

// A route certificate that has expired is a validate error naming the key
// and the file; one still valid loads.
func TestValidateExpiredCertificate(t *testing.T) {
	ca, err := certs.NewAuthority("expiry test CA")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, c := range []struct {
		name     string
		notAfter time.Time
		wantErr  bool
	}{
		{"expired", time.Now().Add(-time.Minute), true},
		{"valid", time.Now().Add(time.Hour), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			leaf, err := ca.Issue(certs.Leaf{CommonName: "api.test", DNSNames: []string{"api.test"}, Server: true,
				NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: c.notAfter})
			if err != nil {
				t.Fatal(err)
			}
			cert, key, err := leaf.WriteFiles(dir, c.name)
			if err != nil {
				t.Fatal(err)
			}
			cfg := `
listeners:
  - name: public
    address: "127.0.0.1:0"
    routes:
      - sni: [api.test]
        mode: terminate
        tls: {cert: ` + cert + `, key: ` + key + `}
        backend: b
backends:
  - name: b
    servers: [{address: "127.0.0.1:9001"}]
`
			_, err = LoadFile(writeConfig(t, "edge.yaml", cfg))
			if !c.wantErr {
				if err != nil {
					t.Fatalf("a valid certificate was refused: %v", err)
				}
				return
			}
			want := "listeners[0].routes[0].tls.cert: certificate " + cert + " expired on "
			if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "replace it") {
				t.Fatalf("got %v; want an error containing %q", err, want)
			}
		})
	}
}

// On a reload, an expired route certificate is a warning, not a refusal:
// one certificate left to expire must not hold back every other change
// (a new CRL above all). Start and validate still refuse it.
func TestReloadWarnsOfExpiredCertificate(t *testing.T) {
	ca, err := certs.NewAuthority("expiry reload CA")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	leaf, err := ca.Issue(certs.Leaf{CommonName: "api.test", DNSNames: []string{"api.test"}, Server: true,
		NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := leaf.WriteFiles(dir, "api")
	if err != nil {
		t.Fatal(err)
	}
	path := writeConfig(t, "edge.yaml", `
listeners:
  - name: public
    address: "127.0.0.1:0"
    routes:
      - sni: [api.test]
        mode: terminate
        tls: {cert: `+cert+`, key: `+key+`}
        backend: b
backends:
  - name: b
    servers: [{address: "127.0.0.1:9001"}]
`)
	if _, err := LoadFile(path); err == nil {
		t.Fatal("LoadFile (start, validate) accepted an expired certificate")
	}
	cfg, warnings, err := loadFile(path, true)
	if err != nil || cfg == nil {
		t.Fatalf("a reload refused the config for an expired certificate: %v", err)
	}
	if len(warnings) != 1 || warnings[0].Path != "listeners[0].routes[0].tls.cert" || !strings.Contains(warnings[0].Msg, "expired on") {
		t.Errorf("warnings %v; want one for listeners[0].routes[0].tls.cert saying it expired", warnings)
	}
}
