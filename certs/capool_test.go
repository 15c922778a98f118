package certs

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadCAPoolGood(t *testing.T) {
	ca1, ca2 := mustCA(t, "clients A"), mustCA(t, "clients B")
	one := writeFile(t, "a.pem", ca1.PEM)
	// A bundle with comment text around the blocks, as in distro CA bundles,
	// and a duplicate of ca1.
	bundle := writeFile(t, "bundle.pem", []byte("# clients B\n"+string(ca2.PEM)+"\n# again A\n"+string(ca1.PEM)))

	t.Run("single", func(t *testing.T) {
		pool, cas, err := LoadCAPool([]string{one})
		if err != nil {
			t.Fatal(err)
		}
		if len(cas) != 1 || !cas[0].Equal(ca1.Cert) {
			t.Fatalf("got %d CAs; want ca1 only", len(cas))
		}
		verifies(t, pool, mustIssue(t, ca1, Leaf{CommonName: "a", Client: true}), true)
		verifies(t, pool, mustIssue(t, ca2, Leaf{CommonName: "b", Client: true}), false)
	})
	t.Run("multiple", func(t *testing.T) {
		pool, cas, err := LoadCAPool([]string{one, bundle})
		if err != nil {
			t.Fatal(err)
		}
		if len(cas) != 2 || !cas[0].Equal(ca1.Cert) || !cas[1].Equal(ca2.Cert) {
			t.Fatalf("got %d CAs; want ca1, ca2 (file order, duplicate dropped)", len(cas))
		}
		verifies(t, pool, mustIssue(t, ca1, Leaf{CommonName: "a", Client: true}), true)
		verifies(t, pool, mustIssue(t, ca2, Leaf{CommonName: "b", Client: true}), true)
	})
	t.Run("not yet valid CA is accepted", func(t *testing.T) {
		future := selfSignedCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "next year's CA"},
			NotBefore: time.Now().Add(24 * time.Hour), NotAfter: time.Now().Add(48 * time.Hour),
			BasicConstraintsValid: true, IsCA: true, KeyUsage: x509.KeyUsageCertSign})
		if _, _, err := LoadCAPool([]string{writeFile(t, "next.pem", pemOf(future))}); err != nil {
			t.Errorf("got %v; want nil", err)
		}
	})
}

func verifies(t *testing.T, pool *x509.CertPool, i *Issued, want bool) {
	t.Helper()
	_, err := leafCert(t, i).Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if (err == nil) != want {
		t.Errorf("verify %s: got %v; want ok=%v", leafCert(t, i).Subject, err, want)
	}
}

func pemOf(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func TestLoadCAPoolErrors(t *testing.T) {
	ca := mustCA(t, "clients")
	leaf := mustIssue(t, ca, Leaf{CommonName: "device-1", Client: true})
	expired := selfSignedCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "old CA"},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour),
		BasicConstraintsValid: true, IsCA: true, KeyUsage: x509.KeyUsageCertSign})
	noBC := selfSignedCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "no constraints"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)})
	good := writeFile(t, "good.pem", ca.PEM)
	missing := filepath.Join(t.TempDir(), "missing.pem")

	tests := []struct {
		name  string
		file  string
		wants []string // substrings of the error, besides the file name
	}{
		{"no PEM", writeFile(t, "text.pem", []byte("hello, not a certificate\n")), []string{"no CERTIFICATE block"}},
		{"empty file", writeFile(t, "empty.pem", nil), []string{"no CERTIFICATE block"}},
		{"DER", writeFile(t, "ca.der", ca.Cert.Raw), []string{"no CERTIFICATE block", "openssl x509 -inform der"}},
		{"leaf", writeFile(t, "leaf.pem", leaf.CertPEM), []string{"certificate 1", "CN=device-1", "not a CA certificate (BasicConstraints CA:FALSE)"}},
		{"no basic constraints", writeFile(t, "nobc.pem", pemOf(noBC)), []string{"not a CA certificate: no BasicConstraints"}},
		{"CA then leaf", writeFile(t, "mixed.pem", append(append([]byte{}, ca.PEM...), leaf.CertPEM...)), []string{"certificate 2", "not a CA certificate"}},
		{"expired CA", writeFile(t, "old.pem", pemOf(expired)), []string{"CN=old CA", "expired at"}},
		{"private key", writeFile(t, "key.pem", append(append([]byte{}, ca.PEM...), leaf.KeyPEM...)), []string{`PEM block 2 is "PRIVATE KEY"`}},
		{"malformed PEM", writeFile(t, "bad.pem", []byte("-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n")), []string{"PEM block 1 is malformed"}},
		{"garbage DER in PEM", writeFile(t, "junk.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")})), []string{"certificate 1"}},
		{"missing", missing, []string{"no such file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The bad file comes second: the error must still name it.
			_, _, err := LoadCAPool([]string{good, tt.file})
			if err == nil {
				t.Fatalf("got nil error; want one naming %s", tt.file)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.file) {
				t.Errorf("got %q; want the file name %s in it", msg, tt.file)
			}
			for _, w := range tt.wants {
				if !strings.Contains(msg, w) {
					t.Errorf("got %q; want it to contain %q", msg, w)
				}
			}
		})
	}
	if _, _, err := LoadCAPool([]string{missing}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: got %v; want fs.ErrNotExist", err)
	}
	if _, _, err := LoadCAPool(nil); err == nil {
		t.Errorf("no files: got nil; want an error")
	}
}
