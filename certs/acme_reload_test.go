package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/rs/zerolog"
)

// acmeDeadDirectory is an ACME directory URL nothing answers (no order
// in these tests reaches a CA).
func acmeDeadDirectory(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr + "/directory"
}

// acmeFreeAddr is a loopback address free a moment ago.
func acmeFreeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// acmeTestManager is a Manager on a temporary storage, logging nowhere,
// stopped at the end of the test.
func acmeTestManager(t *testing.T) *Manager {
	t.Helper()
	// Not t.TempDir: obtain jobs that were cancelled may still write a lock
	// file as the test ends, which would fail TempDir's cleanup.
	dir, err := os.MkdirTemp("", "acme-manager-")
	if err != nil {
		t.Fatal(err)
	}
	m := NewManager(ManagerOptions{Storage: dir, Log: zerolog.Nop()})
	t.Cleanup(func() {
		m.Stop()
		time.Sleep(100 * time.Millisecond) // let cancelled jobs give up their locks
		_ = os.RemoveAll(dir)
	})
	return m
}

// acmeSyncWriter is a log buffer safe for certmagic's goroutines.
type acmeSyncWriter struct {
	mu sync.Mutex
	w  bytes.Buffer
}

func (s *acmeSyncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.String()
}

func (s *acmeSyncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// acmeHTTPStatus GETs an http-01 path on addr: its status, or 0 when
// nothing answers.
func acmeHTTPStatus(addr string) int {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + "/.well-known/acme-challenge/tlsedge-test-token")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

const acmeODKey = "public\x00*.od.example.com"

// A config refused after its ACME state was prepared (other rate limit,
// another http-01 address) leaves the state in force as it was: the same
// state, its rate limiter still counting, its http-01 listener serving,
// its routes answering validations; the refused build's listener is
// closed. (Review finding 1: the limiter was stopped, every on-demand
// order then refused.)
func TestAcmeRefusedBuildKeepsStateInForce(t *testing.T) {
	m := acmeTestManager(t)
	addrA, addrB := acmeFreeAddr(t), acmeFreeAddr(t)
	opts := ACMEOptions{Email: "ops@example.com", Directory: acmeDeadDirectory(t), Challenges: []string{AcmeTLSALPN01, AcmeHTTP01},
		HTTPAddress: addrA, OnDemand: true, Ask: "http://127.0.0.1:9/ok", OnDemandOrders: 5}
	if err := m.PrepareACME(opts); err != nil {
		t.Fatal(err)
	}
	m.AddACMERoute(acmeODKey, true, []string{"*.od.example.com"})
	m.CommitACME()
	inForce := m.acme

	next := opts
	next.OnDemandOrders, next.HTTPAddress = 6, addrB
	if err := m.PrepareACME(next); err != nil {
		t.Fatal(err)
	}
	m.AddACMERoute("public\x00other.example.com", false, []string{"other.example.com"})
	if got := acmeHTTPStatus(addrB); got != http.StatusNotFound {
		t.Fatalf("prepared state's http-01 listener on %s: status %d; want 404 (listening)", addrB, got)
	}
	m.AbortACME()

	if m.acme != inForce {
		t.Fatal("AbortACME: the state in force was replaced")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := inForce.limiter.Wait(ctx); err != nil {
		t.Errorf("the rate limiter in force after a refused build: %v; want an order allowed", err)
	}
	if got := acmeHTTPStatus(addrA); got != http.StatusNotFound {
		t.Errorf("http-01 listener in force on %s: status %d; want 404 (still serving)", addrA, got)
	}
	if got := acmeHTTPStatus(addrB); got != 0 {
		t.Errorf("refused build's http-01 listener on %s: status %d; want closed", addrB, got)
	}
	if !m.AcmeChallengeRoute(acmeODKey, "a.od.example.com") {
		t.Error("the on-demand route in force no longer answers validations after a refused build")
	}
	if m.AcmeChallengeRoute("public\x00other.example.com", "other.example.com") {
		t.Error("a route of the refused build answers validations")
	}
}

// Changing certs.acme (here the email and the tls-alpn-01 listener) with
// http-01 on the same address reuses the running http-01 listener:
// no "address already in use", and it keeps answering; dropping http-01
// closes it. (Finding 2.)
func TestAcmeHTTP01ListenerReusedOnChange(t *testing.T) {
	m := acmeTestManager(t)
	addr := acmeFreeAddr(t)
	opts := ACMEOptions{Email: "ops@example.com", Directory: acmeDeadDirectory(t), Challenges: []string{AcmeHTTP01},
		HTTPAddress: addr, TLSALPNAddress: "127.0.0.1:8443"}
	if err := m.SetACME(opts); err != nil {
		t.Fatal(err)
	}
	first := m.acme
	opts.Email, opts.TLSALPNAddress = "other@example.com", "127.0.0.1:9443"
	if err := m.SetACME(opts); err != nil {
		t.Fatalf("SetACME with another email, same http_address: %v; want nil", err)
	}
	if m.acme == first || m.acme.http != first.http {
		t.Fatal("the new state does not reuse the running http-01 listener")
	}
	if got := acmeHTTPStatus(addr); got != http.StatusNotFound {
		t.Errorf("http-01 listener after the change: status %d; want 404 (serving)", got)
	}
	opts.Challenges, opts.HTTPAddress = nil, ""
	if err := m.SetACME(opts); err != nil {
		t.Fatal(err)
	}
	if got := acmeHTTPStatus(addr); got != 0 {
		t.Errorf("http-01 listener after http-01 was dropped: status %d; want closed", got)
	}
}

// Validations are answered for a route in force only: its acme: true
// names, or names its on-demand patterns match, never a literal
// wildcard, and not for a route key (another route on that listener)
// the config does not give ACME certificates; a commit without the
// on-demand route ends its validations. (Findings 3 and 10.)
func TestAcmeChallengeRouteFollowsConfig(t *testing.T) {
	m := acmeTestManager(t)
	opts := ACMEOptions{Email: "ops@example.com", Directory: acmeDeadDirectory(t), OnDemand: true, Ask: "http://127.0.0.1:9/ok"}
	if err := m.PrepareACME(opts); err != nil {
		t.Fatal(err)
	}
	m.AddACMERoute(acmeODKey, true, []string{"*.od.example.com"})
	m.AddACMERoute("public\x00www.example.com", false, []string{"www.example.com", "api.example.com"})
	m.CommitACME()
	for _, tt := range []struct {
		key, name string
		want      bool
	}{
		{acmeODKey, "a.od.example.com", true},
		{acmeODKey, "A.OD.example.com.", true},
		{acmeODKey, "*.od.example.com", false},
		{acmeODKey, "a.b.od.example.com", false},
		{"public\x00legacy.od.example.com", "legacy.od.example.com", false}, // a passthrough route
		{"other\x00*.od.example.com", "a.od.example.com", false},            // the same pattern on another listener
		{"public\x00www.example.com", "api.example.com", true},
		{"public\x00www.example.com", "x.example.com", false},
	} {
		if got := m.AcmeChallengeRoute(tt.key, tt.name); got != tt.want {
			t.Errorf("AcmeChallengeRoute(%q, %q) = %v; want %v", tt.key, tt.name, got, tt.want)
		}
	}
	// The next config has only the acme: true route.
	if err := m.PrepareACME(opts); err != nil {
		t.Fatal(err)
	}
	m.AddACMERoute("public\x00www.example.com", false, []string{"www.example.com"})
	m.CommitACME()
	if m.AcmeChallengeRoute(acmeODKey, "a.od.example.com") {
		t.Error("an on-demand route no longer in the config still answers validations")
	}
	// A config without ACME routes: nothing.
	m.CommitACME()
	if m.AcmeChallengeRoute("public\x00www.example.com", "www.example.com") || m.acme != nil {
		t.Error("a config without tls.acme routes still has ACME in force")
	}
}

// ManageACME starts one obtain job per name however often it is called
// with the same state; UnmanageACME cancels the job's context; a new
// state restarts the job under it; names are marked only when ACME is
// configured. (Findings 5 and 17.)
func TestAcmeManageOncePerNameAndCancel(t *testing.T) {
	m := acmeTestManager(t)
	ctx := context.Background()
	if err := m.ManageACME(ctx, []string{"a.example.com"}); err == nil {
		t.Fatal("ManageACME without ACME configured: nil error")
	}
	if got := m.ManagedNames(); len(got) != 0 {
		t.Fatalf("ManagedNames after a refused ManageACME = %v; want none", got)
	}
	opts := ACMEOptions{Email: "ops@example.com", Directory: acmeDeadDirectory(t)}
	if err := m.SetACME(opts); err != nil {
		t.Fatal(err)
	}
	if err := m.ManageACME(ctx, []string{"a.example.com", "b.example.com"}); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	a, b := m.managed["a.example.com"], m.managed["b.example.com"]
	m.mu.Unlock()
	for range 3 { // reloads with the same config
		if err := m.ManageACME(ctx, []string{"a.example.com", "b.example.com"}); err != nil {
			t.Fatal(err)
		}
	}
	m.mu.Lock()
	same := m.managed["a.example.com"] == a && m.managed["b.example.com"] == b
	m.mu.Unlock()
	if !same {
		t.Error("ManageACME with the same state started a second obtain job for a managed name")
	}
	m.UnmanageACME([]string{"a.example.com"})
	if a.ctx.Err() == nil {
		t.Error("UnmanageACME left the removed name's obtain job running (context not cancelled)")
	}
	if b.ctx.Err() != nil {
		t.Error("UnmanageACME cancelled another name's job")
	}
	opts.Email = "other@example.com"
	if err := m.SetACME(opts); err != nil {
		t.Fatal(err)
	}
	if err := m.ManageACME(ctx, []string{"b.example.com"}); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	nb := m.managed["b.example.com"]
	m.mu.Unlock()
	if b.ctx.Err() == nil || nb == b || nb.st != m.acme {
		t.Error("a new ACME state did not restart the name's job under it (the old one cancelled)")
	}
	if got := strings.Join(m.ManagedNames(), ","); got != "b.example.com" {
		t.Errorf("ManagedNames = %s; want b.example.com", got)
	}
}

// A certificate of an on-demand route is kept by the on-demand config
// (renewed at handshakes only) while the route is in force; once on_demand
// is turned off it is dropped from the cache and given a config that
// renews nothing. (Finding 6.)
func TestAcmeOnDemandOffDropsItsCertificates(t *testing.T) {
	m := acmeTestManager(t)
	ca, err := NewAuthority("tlsedge test CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(Leaf{CommonName: "a.od.example.com", DNSNames: []string{"a.od.example.com"}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	opts := ACMEOptions{Email: "ops@example.com", Directory: acmeDeadDirectory(t), OnDemand: true, Ask: "http://127.0.0.1:9/ok"}
	if err := m.PrepareACME(opts); err != nil {
		t.Fatal(err)
	}
	m.AddACMERoute(acmeODKey, true, []string{"*.od.example.com"})
	m.CommitACME()
	// As an on-demand order leaves it: in the cache, not a file's.
	if _, err := m.base.CacheUnmanagedTLSCertificate(context.Background(), leaf.TLS, nil); err != nil {
		t.Fatal(err)
	}
	cert := acmeCachedFor(t, m, "a.od.example.com")
	if cfg, _ := m.configForCert(cert); cfg != m.acme.ondemand {
		t.Fatal("an on-demand route's certificate is not kept by the on-demand config")
	}
	// Reload: on_demand off, one acme: true route left.
	opts.OnDemand, opts.Ask = false, ""
	if err := m.PrepareACME(opts); err != nil {
		t.Fatal(err)
	}
	m.AddACMERoute("public\x00www.example.com", false, []string{"www.example.com"})
	if cfg, _ := m.configForCert(cert); cfg != m.acme.ondemand {
		t.Fatal("a prepared (not committed) config changed the certificate's config")
	}
	m.CommitACME()
	cfg, _ := m.configForCert(cert)
	if cfg != m.inert || cfg.OnDemand == nil {
		t.Error("after on_demand was turned off the certificate's config may renew it; want the inert one (skipped by maintenance)")
	}
	for _, c := range m.Certificates() {
		if strings.Join(c.Names, ",") == "a.od.example.com" {
			t.Error("after on_demand was turned off its certificate is still in the cache")
		}
	}
}

// acmeCachedFor returns the cached certificate for name.
func acmeCachedFor(t *testing.T, m *Manager, name string) certmagic.Certificate {
	t.Helper()
	all := m.cache.AllMatchingCertificates(name)
	if len(all) == 0 {
		t.Fatalf("no cached certificate for %s", name)
	}
	return all[0]
}

// An on-demand order is not tied to the handshake that asked for it: the
// ask request goes on after the handshake's deadline (its context is not
// cancelled), a second handshake for the name while it runs joins it (no
// second ask), and once it ends a new handshake decides again. (Finding 4.)
func TestAcmeOnDemandOrderOutlivesHandshake(t *testing.T) {
	m := acmeTestManager(t)
	var mu sync.Mutex
	asks := 0
	arrived := make(chan struct{}, 10)
	release := make(chan struct{})
	cancelledAtRelease := make(chan bool, 10)
	ask := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asks++
		mu.Unlock()
		arrived <- struct{}{}
		select {
		case <-release:
		case <-time.After(60 * time.Second):
		}
		cancelledAtRelease <- r.Context().Err() != nil
		w.WriteHeader(http.StatusForbidden)
	}))
	t.Cleanup(ask.Close)
	var once sync.Once
	releaseAll := func() { once.Do(func() { close(release) }) }
	t.Cleanup(releaseAll)
	opts := ACMEOptions{Email: "ops@example.com", Directory: acmeDeadDirectory(t), OnDemand: true, Ask: ask.URL}
	if err := m.SetACME(opts); err != nil {
		t.Fatal(err)
	}
	get, err := m.OnDemandRoute([]string{"*.od.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	// handshake runs a server handshake for name bounded by a short
	// context (as handshake_timeout bounds a route's); its error.
	handshake := func(name string) error {
		sc, cc := net.Pipe()
		defer sc.Close()
		defer cc.Close()
		go func() {
			_ = tls.Client(cc, &tls.Config{ServerName: name, InsecureSkipVerify: true}).Handshake()
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		return tls.Server(sc, &tls.Config{GetCertificate: get}).HandshakeContext(ctx)
	}
	errc := make(chan error, 1)
	go func() { errc <- handshake("a.od.example.com") }()
	select {
	case <-arrived:
	case <-time.After(30 * time.Second):
		t.Fatal("the ask URL was never asked")
	}
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("first handshake succeeded with no certificate")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the first handshake did not end at its deadline")
	}
	if err := handshake("a.od.example.com"); err == nil {
		t.Fatal("second handshake succeeded with no certificate")
	}
	mu.Lock()
	n := asks
	mu.Unlock()
	if n != 1 {
		t.Errorf("asks while one order runs = %d; want 1 (handshakes for the name join the running order)", n)
	}
	releaseAll()
	select {
	case c := <-cancelledAtRelease:
		if c {
			t.Error("the ask request was cancelled with the handshake; want it to go on")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the ask handler never finished")
	}
	// The order ends (refused) once its goroutine sees the ask answer: a
	// handshake after that decides again. Until then handshakes join the
	// ending order, so try until one asks.
	deadline := time.After(30 * time.Second)
	for asked := false; !asked; {
		go func() { errc <- handshake("a.od.example.com") }()
		select {
		case <-arrived:
			asked = true
		case <-errc:
		case <-deadline:
			t.Fatal("no handshake after the refused order asked again")
		}
	}
	<-cancelledAtRelease
	<-errc
}

// An existing storage folder open to group or others is warned about; no
// storage at all (neither certs.storage nor a home) is refused. (Finding 13.)
func TestAcmeStorageChecks(t *testing.T) {
	log := &acmeSyncWriter{}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	m := NewManager(ManagerOptions{Storage: dir, Log: zerolog.New(log)})
	t.Cleanup(m.Stop)
	opts := ACMEOptions{Email: "ops@example.com", Directory: acmeDeadDirectory(t)}
	if err := m.SetACME(opts); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "certs.storage is accessible to its group or others") {
		t.Errorf("no warning for a 0755 storage folder; log: %s", log.String())
	}
	none := NewManager(ManagerOptions{Log: zerolog.Nop()})
	t.Cleanup(none.Stop)
	if err := none.SetACME(opts); err == nil || !strings.Contains(err.Error(), "certs.storage: not set") {
		t.Errorf("SetACME without a storage folder: %v; want the certs.storage error", err)
	}
}

// Refusals of on-demand certificates are logged at most max times an
// interval, the next line saying how many were held back. (Finding 11.)
func TestAcmeLogLimiter(t *testing.T) {
	l := logLimiter{every: time.Hour, max: 2}
	var got []bool
	for range 4 {
		ok, _ := l.allow()
		got = append(got, ok)
	}
	if !got[0] || !got[1] || got[2] || got[3] {
		t.Errorf("allow() over 4 calls, max 2 = %v; want [true true false false]", got)
	}
	l.start = time.Time{} // the next interval
	if ok, held := l.allow(); !ok || held != 2 {
		t.Errorf("first line of the next interval: ok %v, held back %d; want true, 2", ok, held)
	}
}
