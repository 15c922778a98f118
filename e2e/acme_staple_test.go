package e2e

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/crypto/ocsp"

	"github.com/tlsedge/tlsedge/certs"
)

// stPebbleAuthority reads Pebble's issuing intermediate and its key from
// the management API: the signer of the test's OCSP responder.
func stPebbleAuthority(t *testing.T, p *acmePebble) *certs.Authority {
	t.Helper()
	get := func(path string) []byte {
		resp, err := p.client.Get(p.mgmt + path)
		if err != nil {
			t.Fatalf("pebble %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("pebble %s: %d %v", path, resp.StatusCode, err)
		}
		return b
	}
	cb, _ := pem.Decode(get("/intermediates/0"))
	kb, _ := pem.Decode(get("/intermediate-keys/0"))
	if cb == nil || kb == nil {
		t.Fatal("pebble's intermediate or its key is not PEM")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	var key any
	if key, err = x509.ParsePKCS1PrivateKey(kb.Bytes); err != nil {
		if key, err = x509.ParsePKCS8PrivateKey(kb.Bytes); err != nil {
			if key, err = x509.ParseECPrivateKey(kb.Bytes); err != nil {
				t.Fatalf("pebble's intermediate key: %v", err)
			}
		}
	}
	return &certs.Authority{Cert: cert, Key: key.(crypto.Signer)}
}

// A certificate obtained from ACME whose issuer names an OCSP responder is
// stapled too: openssl s_client -status shows a successful, good
// response, signed for Pebble's certificate by the test's responder.
func TestAcmeOCSPStapling(t *testing.T) {
	t.Parallel()
	needTools(t, "openssl")
	var signer atomic.Pointer[certs.Authority]
	var asked atomic.Int64
	responder := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := signer.Load()
		if a == nil {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		asked.Add(1)
		a.OCSPHandler(func(*big.Int) int { return ocsp.Good }).ServeHTTP(w, r)
	}))
	t.Cleanup(responder.Close)
	p := acmeStartPebble(t, acmePebbleOpts{alwaysValid: true, ocspURL: responder.URL})
	signer.Store(stPebbleAuthority(t, p))
	const name = "stapled.acme.example.com"
	cfg := acmeEdgeConfig(t, p, filepath.Join(t.TempDir(), "store"), nil, acmeRoute(true, name))
	e := runEdge(t, cfg)
	leaf := acmeWaitCert(t, e.addr, name, p.rootPool(t), acmeWait)
	if len(leaf.OCSPServer) != 1 || leaf.OCSPServer[0] != responder.URL {
		t.Fatalf("pebble's certificate names OCSP %v; want [%s]", leaf.OCSPServer, responder.URL)
	}
	root := p.rootFile(t, t.TempDir())
	var out string
	if !poll(waitLong, func() bool {
		cmd := exec.Command("openssl", "s_client", "-connect", e.addr, "-servername", name, "-status", "-CAfile", root)
		cmd.Stdin = strings.NewReader("")
		b, _ := cmd.CombinedOutput()
		out = string(b)
		return strings.Contains(out, "OCSP Response Status: successful")
	}) {
		t.Fatalf("no stapled OCSP response for the ACME certificate within %v:\n%s", waitLong, out)
	}
	if !strings.Contains(out, "Cert Status: good") || !strings.Contains(out, "Verify return code: 0 (ok)") {
		t.Errorf("s_client -status:\n%s\nwant Cert Status: good and a verified chain", out)
	}
	if asked.Load() == 0 {
		t.Error("the responder was never asked")
	}
}
