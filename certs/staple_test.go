package certs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/crypto/ocsp"
)

// stapleSetup is an intermediate CA answering OCSP for what it issues, and
// a leaf (with its chain) that names that responder.
func stapleSetup(t *testing.T, status func(*big.Int) int) (*Authority, *Issued) {
	t.Helper()
	root, err := NewAuthority("staple root")
	if err != nil {
		t.Fatal(err)
	}
	inter, err := root.Intermediate("staple intermediate")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(inter.OCSPHandler(status))
	t.Cleanup(srv.Close)
	leaf, err := inter.Issue(Leaf{CommonName: "api.test", DNSNames: []string{"api.test"}, Server: true, OCSPServer: []string{srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	return inter, leaf
}

// stapleLogs is a goroutine-safe log sink.
type stapleLogs struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *stapleLogs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *stapleLogs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// staplePoll polls cond for up to 10 s.
func staplePoll(cond func() bool) bool {
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// A good answer is fetched in the background and stapled: it parses, is
// signed by the issuer and says Good for this very certificate.
func TestStaplerGood(t *testing.T) {
	inter, leaf := stapleSetup(t, func(*big.Int) int { return ocsp.Good })
	s, err := newStapler(&leaf.TLS, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.stop()
	if !staplePoll(func() bool { return s.staple() != nil }) {
		t.Fatal("no staple after 10 s")
	}
	r, err := ocsp.ParseResponseForCert(s.staple(), leaf.TLS.Leaf, inter.Cert)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != ocsp.Good || r.SerialNumber.Cmp(leaf.TLS.Leaf.SerialNumber) != 0 {
		t.Errorf("stapled status %d for serial %v; want good (%d) for %v", r.Status, r.SerialNumber, ocsp.Good, leaf.TLS.Leaf.SerialNumber)
	}
}

// A revoked answer is never stapled, and is logged at error level: a
// good response stapled before is dropped when the responder says revoked.
func TestStaplerRevoked(t *testing.T) {
	var status atomic.Int32
	status.Store(int32(ocsp.Good))
	_, leaf := stapleSetup(t, func(*big.Int) int { return int(status.Load()) })
	var logs stapleLogs
	s, err := newStapler(&leaf.TLS, zerolog.New(&logs))
	if err != nil {
		t.Fatal(err)
	}
	if !staplePoll(func() bool { return s.staple() != nil }) {
		t.Fatal("no staple of the good response after 10 s")
	}
	s.stop() // the next fetch is the test's
	status.Store(int32(ocsp.Revoked))
	if _, err := s.fetch(context.Background()); err != nil {
		t.Fatalf("fetch: %v", err)
	}
	if s.staple() != nil {
		t.Error("the good response is still stapled after the responder said revoked")
	}
	if !strings.Contains(logs.String(), "REVOKED") || !strings.Contains(logs.String(), `"level":"error"`) {
		t.Errorf("the revocation is not logged at error level: %s", logs.String())
	}
}

// A responder that fails gives no staple, a warning, and stop still ends the
// background fetches.
func TestStaplerResponderDown(t *testing.T) {
	root, _ := NewAuthority("down root")
	inter, _ := root.Intermediate("down intermediate")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	leaf, err := inter.Issue(Leaf{CommonName: "api.test", Server: true, OCSPServer: []string{srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	var logs stapleLogs
	s, err := newStapler(&leaf.TLS, zerolog.New(&logs))
	if err != nil {
		t.Fatal(err)
	}
	if !staplePoll(func() bool { return strings.Contains(logs.String(), "no fresh response") }) {
		t.Fatalf("no warning about the failed fetch; log: %s", logs.String())
	}
	if !strings.Contains(logs.String(), "503") {
		t.Errorf("the warning does not say what failed: %s", logs.String())
	}
	if s.staple() != nil {
		t.Error("a staple without an answer")
	}
	s.stop() // returns: the goroutine ended
}

// A response past its NextUpdate is not served.
func TestStaplerDropsStale(t *testing.T) {
	_, leaf := stapleSetup(t, func(*big.Int) int { return ocsp.Good })
	s, err := newStapler(&leaf.TLS, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.stop()
	if !staplePoll(func() bool { return s.staple() != nil }) {
		t.Fatal("no staple after 10 s")
	}
	s.stop()                                                          // no fetch runs while the clock moves
	s.now = func() time.Time { return time.Now().Add(2 * time.Hour) } // the handler's answers last an hour
	if s.staple() != nil {
		t.Error("a response past its NextUpdate is still stapled")
	}
}

// Certificates that cannot be stapled say why.
func TestStaplerNotPossible(t *testing.T) {
	root, _ := NewAuthority("np root")
	noURL, _ := root.Issue(Leaf{CommonName: "a", Server: true})
	noIssuer, _ := root.Issue(Leaf{CommonName: "b", Server: true, OCSPServer: []string{"http://127.0.0.1:1/"}}) // a root's leaf: no issuer in the chain
	for name, c := range map[string]*Issued{"no responder": noURL, "no issuer": noIssuer} {
		if _, err := newStapler(&c.TLS, zerolog.Nop()); !errors.Is(err, ErrNoStapling) {
			t.Errorf("%s: got %v; want ErrNoStapling", name, err)
		}
	}
}

// A route certificate loaded with Staple is served with its OCSP response
// once fetched (and without one when Staple is off); Retain dropping it
// ends its stapler.
func TestStaticStapling(t *testing.T) {
	inter, leaf := stapleSetup(t, func(*big.Int) int { return ocsp.Good })
	dir := t.TempDir()
	cert, key, err := leaf.WriteFiles(dir, "api")
	if err != nil {
		t.Fatal(err)
	}
	m := NewManager(ManagerOptions{Storage: dir})
	defer m.Stop()
	ctx := context.Background()
	on, err := m.LoadStatic(ctx, StaticOptions{Cert: cert, Key: key, Staple: true})
	if err != nil {
		t.Fatal(err)
	}
	hello := &tls.ClientHelloInfo{ServerName: "api.test"}
	var staple []byte
	if !staplePoll(func() bool {
		c, err := on.GetCertificate(hello)
		if err == nil && c != nil {
			staple = c.OCSPStaple
		}
		return staple != nil
	}) {
		t.Fatal("no OCSP staple on the served certificate after 10 s")
	}
	if r, err := ocsp.ParseResponseForCert(staple, leaf.TLS.Leaf, inter.Cert); err != nil || r.Status != ocsp.Good {
		t.Errorf("staple: %v, %v; want a good response for the leaf", r, err)
	}

	other, err := inter.Issue(Leaf{CommonName: "b.test", DNSNames: []string{"b.test"}, Server: true, OCSPServer: leaf.TLS.Leaf.OCSPServer})
	if err != nil {
		t.Fatal(err)
	}
	oc, ok, err := other.WriteFiles(dir, "b")
	if err != nil {
		t.Fatal(err)
	}
	off, err := m.LoadStatic(ctx, StaticOptions{Cert: oc, Key: ok, Staple: false})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := off.GetCertificate(&tls.ClientHelloInfo{ServerName: "b.test"}); err != nil || c.OCSPStaple != nil {
		t.Errorf("Staple off: certificate %v with staple %d bytes; want no staple", err, len(c.OCSPStaple))
	}

	m.mu.Lock()
	s := m.staplers[on.hash]
	n := len(m.staplers)
	m.mu.Unlock()
	if s == nil || n != 1 {
		t.Fatalf("%d staplers, the route's %v; want exactly the route's one", n, s)
	}
	m.Retain([]*Static{off})
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the stapler of a certificate Retain dropped still runs after 10 s")
	}
	m.mu.Lock()
	n = len(m.staplers)
	m.mu.Unlock()
	if n != 0 {
		t.Errorf("%d staplers left after Retain dropped the only stapled certificate", n)
	}
}

// An ACME certificate that cannot be stapled is remembered as a nil
// stapler: Stop must pass over it.
func TestStopWithUnstapledACMECertificate(t *testing.T) {
	m := NewManager(ManagerOptions{Storage: t.TempDir()})
	root, _ := NewAuthority("unstapled root")
	leaf, err := root.Issue(Leaf{CommonName: "a.test", DNSNames: []string{"a.test"}, Server: true}) // no OCSP server
	if err != nil {
		t.Fatal(err)
	}
	get := m.WithStapling(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &leaf.TLS, nil })
	if c, err := get(&tls.ClientHelloInfo{ServerName: "a.test"}); err != nil || c.OCSPStaple != nil {
		t.Fatalf("served %v, %v; want the certificate without a staple", c, err)
	}
	m.mu.Lock()
	s, known := m.staplers["acme:"+stapleKeyOf(leaf)]
	m.mu.Unlock()
	if !known || s != nil {
		t.Fatalf("the unstapleable certificate is not remembered as such (known %v, stapler %v)", known, s)
	}
	m.Stop() // must not panic on the nil stapler
}

func stapleKeyOf(is *Issued) string {
	sum := sha256.Sum256(is.TLS.Certificate[0])
	return hex.EncodeToString(sum[:])
}
