package certs

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// LoadCAPool reads one or more PEM files of CA certificates into a pool, and
// returns the certificates too (in file order, duplicates dropped), for
// LoadCRLs. Text around the PEM blocks is ignored, as in CA bundles.
//
// Each file must hold at least one CERTIFICATE block and nothing but
// CERTIFICATE blocks (a PRIVATE KEY in a trust file is a mistake worth
// stopping for). Each certificate must be a CA (BasicConstraints CA:TRUE): a
// client certificate pinned in its own right is refused, as is one without
// BasicConstraints. An expired CA is an error, not a warning: no chain
// through it can verify. A CA not yet valid is accepted (staging a new CA
// before its start date is a normal rotation step).
//
// Errors name the file, the certificate (1-based block number and subject),
// what is wrong and how to fix it.
func LoadCAPool(files []string) (*x509.CertPool, []*x509.Certificate, error) {
	if len(files) == 0 {
		return nil, nil, errors.New("no CA certificate files given")
	}
	now := time.Now()
	pool := x509.NewCertPool()
	var cas []*x509.Certificate
	seen := map[string]bool{}
	for _, file := range files {
		certs, err := readCAFile(file, now)
		if err != nil {
			return nil, nil, err
		}
		for _, c := range certs {
			if seen[string(c.Raw)] {
				continue
			}
			seen[string(c.Raw)] = true
			pool.AddCert(c)
			cas = append(cas, c)
		}
	}
	return pool, cas, nil
}

func readCAFile(file string, now time.Time) ([]*x509.Certificate, error) {
	if file == "" {
		return nil, errors.New("empty CA certificate file name")
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading CA certificates: %w", err) // *PathError names the file
	}
	ders, err := pemBlocks(file, data, "CERTIFICATE", ": a CA file holds only CA certificates")
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for i, der := range ders {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%s: certificate %d: %w", file, i+1, err)
		}
		if err := checkCA(c, now); err != nil {
			return nil, fmt.Errorf("%s: certificate %d (%s): %w", file, i+1, c.Subject, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		if len(bytes.TrimSpace(data)) > 0 && !bytes.Contains(data, []byte("-----BEGIN")) {
			// Most likely DER; say how to convert rather than guess.
			out := strings.TrimSuffix(file, filepath.Ext(file)) + ".pem"
			if out == file {
				out = strings.TrimSuffix(file, ".pem") + "-converted.pem"
			}
			return nil, fmt.Errorf("%s: no CERTIFICATE block (want PEM \"-----BEGIN CERTIFICATE-----\"; if this is DER, convert it: openssl x509 -inform der -in %s -out %s)", file, file, out)
		}
		return nil, fmt.Errorf("%s: no CERTIFICATE block (want PEM \"-----BEGIN CERTIFICATE-----\")", file)
	}
	return out, nil
}

func checkCA(c *x509.Certificate, now time.Time) error {
	switch {
	case !c.BasicConstraintsValid:
		return errors.New("not a CA certificate: no BasicConstraints extension; give the CA that issues the certificates, not a certificate it issued")
	case !c.IsCA:
		return errors.New("not a CA certificate (BasicConstraints CA:FALSE); give the CA that issues the certificates, not a certificate it issued")
	case now.After(c.NotAfter):
		return fmt.Errorf("CA certificate expired at %s; replace it with the CA's current certificate", c.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}
