package edge

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"
)

// profileEdge runs routes of each TLS profile: inter (the default,
// intermediate), modern, suites (cipher_suites: one suite) and off
// (session_ticket_rotation: off), towards a server that is never reached
// (these tests look at handshakes only).
func profileEdge(t *testing.T) (addr string, roots *tls.Config) {
	t.Helper()
	dir := t.TempDir()
	ca, _ := edgeCert(t, dir, "*.example.com")
	e := startEdge(t, writeConfigIn(t, dir, `
listeners:
  - name: public
    address: "127.0.0.1:0"
    routes:
      - {sni: [inter.example.com], mode: terminate, backend: app, tls: {cert: edge.pem, key: edge-key.pem}}
      - {sni: [modern.example.com], mode: terminate, backend: app, tls: {cert: edge.pem, key: edge-key.pem, profile: modern}}
      - sni: [suites.example.com]
        mode: terminate
        backend: app
        tls: {cert: edge.pem, key: edge-key.pem, cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]}
      - {sni: [off.example.com], mode: terminate, backend: app, tls: {cert: edge.pem, key: edge-key.pem, session_ticket_rotation: "off"}}
backends:
  - name: app
    health: {type: none}
    servers: [{address: "127.0.0.1:1"}]
`))
	return e.Addr("public").String(), &tls.Config{RootCAs: ca.Pool()}
}

// handshake dials addr with cfg and returns the connection state.
func handshake(addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	// Read until tlsedge closes (its server is unreachable): TLS 1.3
	// session tickets come after the handshake.
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.Copy(io.Discard, c)
	return c.ConnectionState(), nil
}

// Mozilla's intermediate profile by default (TLS 1.2 with ECDHE and AEAD
// suites only, TLS 1.3; X25519MLKEM768, X25519, P-256, P-384), modern = TLS
// 1.3 only, cipher_suites replaces the TLS 1.2 list.
func TestRouteTLSProfiles(t *testing.T) {
	addr, roots := profileEdge(t)
	const (
		tls12 = tls.VersionTLS12
		tls13 = tls.VersionTLS13
	)
	tests := []struct {
		name    string
		sni     string
		version uint16
		suite   uint16      // TLS 1.2: the only suite offered; 0 = Go's default
		curve   tls.CurveID // the only curve offered; 0 = Go's default
		ok      bool
		want    tls.CurveID // with ok and no curve given: the key exchange agreed
	}{
		{"intermediate refuses ECDHE-ECDSA-AES128-SHA (CBC)", "inter.example.com", tls12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, 0, false, 0},
		{"intermediate refuses ECDHE-ECDSA-AES256-SHA (CBC)", "inter.example.com", tls12, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, 0, false, 0},
		{"intermediate refuses ECDHE-ECDSA-AES128-SHA256 (CBC)", "inter.example.com", tls12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, 0, false, 0},
		{"intermediate refuses ECDHE-ECDSA-RC4-SHA", "inter.example.com", tls12, tls.TLS_ECDHE_ECDSA_WITH_RC4_128_SHA, 0, false, 0},
		{"intermediate accepts ECDHE-ECDSA-AES128-GCM-SHA256", "inter.example.com", tls12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, 0, true, 0},
		{"intermediate accepts ECDHE-ECDSA-AES256-GCM-SHA384", "inter.example.com", tls12, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, 0, true, 0},
		{"intermediate accepts ECDHE-ECDSA-CHACHA20-POLY1305", "inter.example.com", tls12, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, 0, true, 0},
		{"intermediate TLS 1.2 agrees on X25519", "inter.example.com", tls12, 0, 0, true, tls.X25519},
		{"intermediate TLS 1.3 agrees on X25519MLKEM768", "inter.example.com", tls13, 0, 0, true, tls.X25519MLKEM768},
		{"intermediate accepts P-256 alone", "inter.example.com", tls13, 0, tls.CurveP256, true, 0},
		{"intermediate accepts P-384 alone", "inter.example.com", tls13, 0, tls.CurveP384, true, 0},
		{"intermediate refuses P-521 alone", "inter.example.com", tls13, 0, tls.CurveP521, false, 0},
		{"modern refuses TLS 1.2", "modern.example.com", tls12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, 0, false, 0},
		{"modern accepts TLS 1.3", "modern.example.com", tls13, 0, 0, true, tls.X25519MLKEM768},
		{"cipher_suites refuses a suite it does not list", "suites.example.com", tls12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, 0, false, 0},
		{"cipher_suites accepts its suite", "suites.example.com", tls12, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, 0, true, 0},
		{"cipher_suites leaves TLS 1.3 alone", "suites.example.com", tls13, 0, 0, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := roots.Clone()
			cfg.ServerName, cfg.MinVersion, cfg.MaxVersion = tt.sni, tt.version, tt.version
			if tt.suite != 0 {
				cfg.CipherSuites = []uint16{tt.suite}
			}
			if tt.curve != 0 {
				cfg.CurvePreferences = []tls.CurveID{tt.curve}
			}
			cs, err := handshake(addr, cfg)
			if !tt.ok {
				if err == nil {
					t.Fatalf("got a %s handshake with %s; want refused", tls.VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite))
				}
				return
			}
			if err != nil {
				t.Fatalf("got %v; want a handshake", err)
			}
			if cs.Version != tt.version {
				t.Errorf("version: got %s; want %s", tls.VersionName(cs.Version), tls.VersionName(tt.version))
			}
			if tt.suite != 0 && cs.CipherSuite != tt.suite {
				t.Errorf("suite: got %s; want %s", tls.CipherSuiteName(cs.CipherSuite), tls.CipherSuiteName(tt.suite))
			}
			if want := max(tt.curve, tt.want); want != 0 && cs.CurveID != want {
				t.Errorf("key exchange: got %v; want %v", cs.CurveID, want)
			}
		})
	}
}

// The CBC cases above prove something: Go's defaults accept them.
func TestGoDefaultsOfferCBC(t *testing.T) {
	dir := t.TempDir()
	ca, leaf := edgeCert(t, dir, "inter.example.com")
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{leaf.TLS}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	cs, err := handshake(ln.Addr().String(), &tls.Config{RootCAs: ca.Pool(), ServerName: "inter.example.com",
		MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}})
	if err != nil || cs.CipherSuite != tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA {
		t.Errorf("Go's default server with a CBC-only client: got %v, %s; want the CBC suite agreed (or this control is stale)", err, tls.CipherSuiteName(cs.CipherSuite))
	}
}

// Session tickets are on by default (a second connection resumes) and off
// with session_ticket_rotation: off.
func TestRouteTLSTicketsOff(t *testing.T) {
	addr, roots := profileEdge(t)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		for _, tt := range []struct {
			sni    string
			resume bool
		}{{"inter.example.com", true}, {"off.example.com", false}} {
			cfg := roots.Clone()
			cfg.ServerName, cfg.MinVersion, cfg.MaxVersion = tt.sni, v, v
			cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
			if _, err := handshake(addr, cfg); err != nil {
				t.Fatalf("%s %s: %v", tt.sni, tls.VersionName(v), err)
			}
			cs, err := handshake(addr, cfg)
			if err != nil {
				t.Fatalf("%s %s, second connection: %v", tt.sni, tls.VersionName(v), err)
			}
			if cs.DidResume != tt.resume {
				t.Errorf("%s %s, second connection: resumed %v; want %v", tt.sni, tls.VersionName(v), cs.DidResume, tt.resume)
			}
		}
	}
}
