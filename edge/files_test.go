package edge

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// Each certificate, key, CA and CRL file a config names is read once per
// config, however many routes name it and although validate, the route keys
// and the build all use it (the build never reads them again from disk):
// three terminate routes share one certificate,
// one client CA and one CRL (3 files and a key), and the admin endpoint
// names the same certificate again.
func TestConfigFilesReadOnce(t *testing.T) {
	dir := t.TempDir()
	ca, _ := edgeCert(t, dir, "a.example.com", "b.example.com", "c.example.com")
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), ca.PEMChain(), 0o600); err != nil {
		t.Fatal(err)
	}
	crl, err := ca.CRL(nil, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.crl"), crl, 0o600); err != nil {
		t.Fatal(err)
	}
	route := func(name string) string {
		return `
      - sni: [` + name + `]
        mode: terminate
        protocol: http
        backend: api
        tls: {cert: edge.pem, key: edge-key.pem, client_auth: require, client_ca: ca.pem, crl: ca.crl}`
	}
	path := filepath.Join(dir, "edge.yaml")
	body := `
admin:
  address: "127.0.0.1:0"
listeners:
  - name: public
    address: "127.0.0.1:0"
    routes:` + route("a.example.com") + route("b.example.com") + route("c.example.com") + `
backends:
  - name: api
    servers: [{address: "127.0.0.1:9"}]
    health: {type: none}
`
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.fileCache().reads; got != 4 {
		t.Errorf("validate read %d files; want 4 (certificate, key, CA, CRL: each once)", got)
	}
	// The build uses what validate read: files spoiled on disk after
	// validate change nothing (the build would fail on any it read again).
	for _, f := range []string{"edge.pem", "edge-key.pem", "ca.pem", "ca.crl"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("spoiled after validate\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e := New(ctx, zerolog.Nop())
	if err := e.Start(cfg); err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown(0)
	// The build read the CRL's bytes for the route key (raw, besides the
	// parsed lists): one more read, and nothing else again.
	if got := cfg.fileCache().reads; got != 5 {
		t.Errorf("validate and build read %d files; want 5 (each once, the CRL parsed and raw)", got)
	}
}
