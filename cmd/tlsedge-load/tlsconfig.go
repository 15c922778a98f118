package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
)

// clientConfig builds the load's TLS client config. It keeps no session
// cache, so every handshake is a full one.
func clientConfig(o *options) (*tls.Config, error) {
	cfg := &tls.Config{ServerName: o.sni, InsecureSkipVerify: o.insecure}
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(o.addr)
		if err != nil {
			return nil, fmt.Errorf("-addr %q: %w", o.addr, err)
		}
		cfg.ServerName = host
	}
	if o.ca != "" {
		pool, err := loadPool(o.ca)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if o.cert != "" {
		c, err := tls.LoadX509KeyPair(o.cert, o.key)
		if err != nil {
			return nil, fmt.Errorf("loading client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	if err := setVersion(cfg, o.tlsVersion); err != nil {
		return nil, err
	}
	if o.curve != "" {
		id, err := parseCurve(o.curve)
		if err != nil {
			return nil, err
		}
		cfg.CurvePreferences = []tls.CurveID{id}
	}
	return cfg, nil
}

// serverConfig builds the echo server's TLS config: session tickets off (the
// load never resumes, so tickets would be work for nothing), client
// certificates required when -client-ca is set.
func serverConfig(o *options) (*tls.Config, error) {
	if o.cert == "" || o.key == "" {
		return nil, errors.New("-serve and HTTPS -serve-http need -cert and -key (see -pki to make some)")
	}
	c, err := tls.LoadX509KeyPair(o.cert, o.key)
	if err != nil {
		return nil, fmt.Errorf("loading server certificate: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{c}, SessionTicketsDisabled: true}
	if o.clientCA != "" {
		pool, err := loadPool(o.clientCA)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	if err := setVersion(cfg, o.tlsVersion); err != nil {
		return nil, err
	}
	return cfg, nil
}

func loadPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

func setVersion(cfg *tls.Config, v string) error {
	switch v {
	case "":
	case "1.2":
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	case "1.3":
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS13, tls.VersionTLS13
	default:
		return fmt.Errorf("-tls %q: use 1.2 or 1.3", v)
	}
	return nil
}

func parseCurve(s string) (tls.CurveID, error) {
	for _, id := range []tls.CurveID{tls.X25519, tls.X25519MLKEM768, tls.CurveP256, tls.CurveP384} {
		if s == id.String() {
			return id, nil
		}
	}
	switch s {
	case "P256", "p256":
		return tls.CurveP256, nil
	case "P384", "p384":
		return tls.CurveP384, nil
	}
	return 0, fmt.Errorf("-curve %q: use X25519, X25519MLKEM768, P256 or P384", s)
}
