package certs

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// responder is a real OCSP responder over HTTP for the tests: it parses each
// request with ocsp.ParseRequest and answers with ocsp.CreateResponse, the
// status chosen by serial, signed by the CA (or by signer when set).
type responder struct {
	ca         *Authority
	signer     *x509.Certificate // nil: the CA signs
	signerKey  crypto.Signer
	embed      *x509.Certificate // the certificate put in the response; nil: signer, when set
	nextUpdate time.Duration     // after now; zero: an hour; negative: in the past
	gate       chan struct{}     // when set (hold), each request waits for it to close (release)
	gateOnce   sync.Once
	clock      func() time.Time // nil: time.Now

	mu       sync.Mutex
	status   map[string]int // by serial (decimal); missing: Good
	requests atomic.Int64
	srv      *httptest.Server
}

func newResponder(t *testing.T, ca *Authority) *responder {
	t.Helper()
	r := &responder{ca: ca, status: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

// hold makes requests wait until release (or the end of the test: an
// httptest.Server does not close while a handler runs).
func (r *responder) hold(t *testing.T) {
	r.gate = make(chan struct{})
	t.Cleanup(r.release) // runs before the server's Close
}

func (r *responder) release() { r.gateOnce.Do(func() { close(r.gate) }) }

func (r *responder) set(serial *big.Int, status int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status[serial.String()] = status
}

func (r *responder) serve(w http.ResponseWriter, req *http.Request) {
	r.requests.Add(1)
	if r.gate != nil {
		<-r.gate
	}
	body, _ := io.ReadAll(req.Body)
	oreq, err := ocsp.ParseRequest(body)
	if err != nil || req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/ocsp-request" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	status, ok := r.status[oreq.SerialNumber.String()]
	r.mu.Unlock()
	if !ok {
		status = ocsp.Good
	}
	now := time.Now()
	if r.clock != nil {
		now = r.clock()
	}
	next := r.nextUpdate
	if next == 0 {
		next = time.Hour
	}
	tmpl := ocsp.Response{Status: status, SerialNumber: oreq.SerialNumber, ThisUpdate: now.Add(-2 * time.Hour),
		NextUpdate: now.Add(next), RevokedAt: now.Add(-time.Hour), RevocationReason: ocsp.KeyCompromise}
	signer, key := r.ca.Cert, r.ca.Key
	if r.signer != nil {
		signer, key, tmpl.Certificate = r.signer, r.signerKey, r.signer
	}
	if r.embed != nil {
		tmpl.Certificate = r.embed
	}
	der, err := ocsp.CreateResponse(r.ca.Cert, signer, tmpl, key)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/ocsp-response")
	_, _ = w.Write(der)
}

// ocspLeaf issues a client certificate from ca naming urls as its responders.
func ocspLeaf(t *testing.T, ca *Authority, cn string, urls ...string) *x509.Certificate {
	t.Helper()
	return leafCert(t, mustIssue(t, ca, Leaf{CommonName: cn, Client: true, OCSPServer: urls}))
}

func TestParseOCSPMode(t *testing.T) {
	for in, want := range map[string]OCSPMode{"": OCSPOff, "off": OCSPOff, "soft": OCSPSoft, "hard": OCSPHard, " Hard ": OCSPHard} {
		got, err := ParseOCSPMode(in)
		if err != nil || got != want {
			t.Errorf("ParseOCSPMode(%q) = %v, %v; want %v", in, got, err, want)
		}
		if err == nil && in == strings.TrimSpace(strings.ToLower(in)) && in != "" && got.String() != in {
			t.Errorf("%v.String() = %q; want %q", got, got.String(), in)
		}
	}
	for _, in := range []string{"on", "true", "strict", "1"} {
		if _, err := ParseOCSPMode(in); err == nil || !strings.Contains(err.Error(), "off, soft or hard") {
			t.Errorf("ParseOCSPMode(%q): got %v; want an error listing the modes", in, err)
		}
	}
}

func TestOCSPStatus(t *testing.T) {
	ca := mustCA(t, "clients")
	resp := newResponder(t, ca)
	good := ocspLeaf(t, ca, "good", resp.srv.URL)
	revoked := ocspLeaf(t, ca, "revoked", resp.srv.URL)
	unknown := ocspLeaf(t, ca, "unknown", resp.srv.URL)
	noURL := ocspLeaf(t, ca, "no url")
	resp.set(revoked.SerialNumber, ocsp.Revoked)
	resp.set(unknown.SerialNumber, ocsp.Unknown)

	down := httptest.NewServer(http.NotFoundHandler())
	down.Close() // nothing listens here any more
	downLeaf := ocspLeaf(t, ca, "responder down", down.URL)

	tests := []struct {
		leaf     *x509.Certificate
		mode     OCSPMode
		want     error // nil, ErrRevoked or ErrOCSP
		softFail bool  // OnSoftFail called
	}{
		{good, OCSPSoft, nil, false},
		{good, OCSPHard, nil, false},
		{revoked, OCSPSoft, ErrRevoked, false},
		{revoked, OCSPHard, ErrRevoked, false},
		{unknown, OCSPSoft, nil, true},
		{unknown, OCSPHard, ErrOCSP, false},
		{downLeaf, OCSPSoft, nil, true},
		{downLeaf, OCSPHard, ErrOCSP, false},
		{noURL, OCSPSoft, nil, true},
		{noURL, OCSPHard, ErrOCSP, false},
		{revoked, OCSPOff, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.leaf.Subject.CommonName+"/"+tt.mode.String(), func(t *testing.T) {
			var soft []error
			o := &OCSPChecker{Mode: tt.mode, OnSoftFail: func(_ *x509.Certificate, err error) { soft = append(soft, err) }}
			err := o.Check(context.Background(), tt.leaf, ca.Cert)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("got %v; want %v", err, tt.want)
			}
			if err != nil && !strings.Contains(err.Error(), "CN="+tt.leaf.Subject.CommonName) {
				t.Errorf("got %q; want the subject in it", err)
			}
			if (len(soft) > 0) != tt.softFail {
				t.Errorf("OnSoftFail calls: %v; want called=%v", soft, tt.softFail)
			}
			if len(soft) > 0 && !errors.Is(soft[0], ErrOCSP) {
				t.Errorf("OnSoftFail got %v; want an ErrOCSP", soft[0])
			}
		})
	}
	if err := (&OCSPChecker{Mode: OCSPHard}).Check(context.Background(), revoked, ca.Cert); !strings.Contains(err.Error(), "keyCompromise") {
		t.Errorf("got %q; want the revocation reason", err)
	}
	// The zero value and a nil checker check nothing.
	var nilChecker *OCSPChecker
	if nilChecker.Check(context.Background(), revoked, ca.Cert) != nil || (&OCSPChecker{}).Check(context.Background(), revoked, ca.Cert) != nil {
		t.Errorf("zero OCSPChecker failed a certificate")
	}
}

func TestOCSPCache(t *testing.T) {
	ca := mustCA(t, "clients")
	resp := newResponder(t, ca)
	leaf := ocspLeaf(t, ca, "cached", resp.srv.URL)
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	resp.clock = clock
	o := &OCSPChecker{Mode: OCSPHard, Now: clock}
	for i := range 3 {
		if err := o.Check(context.Background(), leaf, ca.Cert); err != nil {
			t.Fatalf("check %d: %v", i, err)
		}
	}
	if n := resp.requests.Load(); n != 1 {
		t.Fatalf("got %d requests for 3 checks; want 1", n)
	}
	// Past the answer's NextUpdate (an hour), the next check asks again.
	now.Add(int64(time.Hour + time.Minute))
	if err := o.Check(context.Background(), leaf, ca.Cert); err != nil {
		t.Fatal(err)
	}
	if n := resp.requests.Load(); n != 2 {
		t.Fatalf("got %d requests after NextUpdate; want 2", n)
	}
	// A revoked answer is cached too, and still fails.
	resp.set(leaf.SerialNumber, ocsp.Revoked)
	now.Add(int64(2 * time.Hour))
	for range 2 {
		if err := o.Check(context.Background(), leaf, ca.Cert); !errors.Is(err, ErrRevoked) {
			t.Fatalf("got %v; want ErrRevoked", err)
		}
	}
	if n := resp.requests.Load(); n != 3 {
		t.Fatalf("got %d requests; want 3", n)
	}
}

func TestOCSPCacheBounded(t *testing.T) {
	ca := mustCA(t, "clients")
	resp := newResponder(t, ca)
	o := &OCSPChecker{Mode: OCSPHard, CacheSize: 2}
	var leaves []*x509.Certificate
	for _, cn := range []string{"a", "b", "c"} {
		leaves = append(leaves, ocspLeaf(t, ca, cn, resp.srv.URL))
		if err := o.Check(context.Background(), leaves[len(leaves)-1], ca.Cert); err != nil {
			t.Fatal(err)
		}
	}
	o.mu.Lock()
	n := len(o.cache)
	o.mu.Unlock()
	if n != 2 {
		t.Errorf("got %d cached answers; want 2 (CacheSize)", n)
	}
	// The newest is cached.
	before := resp.requests.Load()
	if err := o.Check(context.Background(), leaves[2], ca.Cert); err != nil || resp.requests.Load() != before {
		t.Errorf("newest answer not cached: %v, %d requests", err, resp.requests.Load()-before)
	}
	// No cache: every check asks.
	o = &OCSPChecker{Mode: OCSPHard, CacheSize: -1}
	before = resp.requests.Load()
	for range 2 {
		_ = o.Check(context.Background(), leaves[0], ca.Cert)
	}
	if got := resp.requests.Load() - before; got != 2 {
		t.Errorf("CacheSize -1: got %d requests for 2 checks; want 2", got)
	}
}

// TestOCSPCoalesce runs 50 checks of one certificate while the responder
// holds its answer: one request serves them all.
func TestOCSPCoalesce(t *testing.T) {
	for _, size := range []int{0, -1} { // with the cache, and without (only coalescing left)
		ca := mustCA(t, "clients")
		resp := newResponder(t, ca)
		resp.hold(t)
		leaf := ocspLeaf(t, ca, "busy", resp.srv.URL)
		o := &OCSPChecker{Mode: OCSPHard, CacheSize: size}
		const n = 50
		errs := make(chan error, n)
		for range n {
			go func() { errs <- o.Check(context.Background(), leaf, ca.Cert) }()
		}
		waitFor(t, func() bool {
			o.mu.Lock()
			defer o.mu.Unlock()
			c := o.inflight[ocspKey(leaf, ca.Cert)]
			return c != nil && c.waiters == n
		})
		resp.release()
		for range n {
			if err := <-errs; err != nil {
				t.Errorf("CacheSize %d: got %v; want nil", size, err)
			}
		}
		if got := resp.requests.Load(); got != 1 {
			t.Errorf("CacheSize %d: got %d requests for %d concurrent checks; want 1", size, got, n)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestOCSPTimeout: a responder that never answers costs at most Timeout; a
// caller giving up early does not fail the others waiting on the same lookup.
func TestOCSPTimeout(t *testing.T) {
	ca := mustCA(t, "clients")
	resp := newResponder(t, ca)
	resp.hold(t)
	leaf := ocspLeaf(t, ca, "slow", resp.srv.URL)

	o := &OCSPChecker{Mode: OCSPHard, Timeout: 200 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	early := make(chan error, 1)
	go func() { early <- o.Check(ctx, leaf, ca.Cert) }()
	waitFor(t, func() bool { return resp.requests.Load() == 1 })
	start := time.Now()
	late := make(chan error, 1)
	go func() { late <- o.Check(context.Background(), leaf, ca.Cert) }()
	cancel()
	if err := <-early; !errors.Is(err, ErrOCSP) || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled caller: got %v; want ErrOCSP wrapping context.Canceled", err)
	}
	err := <-late
	if !errors.Is(err, ErrOCSP) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiting caller: got %v; want ErrOCSP wrapping the lookup's deadline", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v; want about the 200ms timeout", d)
	}
	if n := resp.requests.Load(); n != 1 {
		t.Errorf("got %d requests; want 1 (the second caller joined the first lookup)", n)
	}
	// Soft mode lets the certificate through after the timeout.
	soft := &OCSPChecker{Mode: OCSPSoft, Timeout: 100 * time.Millisecond}
	if err := soft.Check(context.Background(), leaf, ca.Cert); err != nil {
		t.Errorf("soft: got %v; want nil", err)
	}
}

// TestOCSPResponseChecks: answers that must not count as good.
func TestOCSPResponseChecks(t *testing.T) {
	root := mustCA(t, "root")
	ca := mustIntermediate(t, root, "clients")
	other := mustCA(t, "other")

	// Delegated responder certificates, issued by ca.
	delegate := func(t *testing.T, cn string, issuer *Authority, eku bool, nb, na time.Time) (*x509.Certificate, crypto.Signer) {
		i := mustIssue(t, issuer, Leaf{CommonName: cn, NotBefore: nb, NotAfter: na, Server: !eku})
		c := leafCert(t, i)
		if eku { // Leaf has no OCSPSigning switch: re-issue with it
			tmpl := *c
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}
			c = reissue(t, issuer, &tmpl, i.TLS.PrivateKey.(crypto.Signer))
		}
		return c, i.TLS.PrivateKey.(crypto.Signer)
	}
	now := time.Now()
	okSigner, okKey := delegate(t, "ocsp signer", ca, true, time.Time{}, time.Time{})
	noEKU, noEKUKey := delegate(t, "just a server", ca, false, time.Time{}, time.Time{})
	expired, expiredKey := delegate(t, "old signer", ca, true, now.Add(-48*time.Hour), now.Add(-24*time.Hour))
	foreign, foreignKey := delegate(t, "foreign signer", other, true, time.Time{}, time.Time{})

	tests := []struct {
		name  string
		setup func(r *responder)
		want  string // "" = good; else a substring of the hard-mode error
	}{
		{"signed by the CA", func(r *responder) {}, ""},
		{"CA embeds its own certificate", func(r *responder) { r.embed = ca.Cert }, ""},
		{"delegated with OCSPSigning", func(r *responder) { r.signer, r.signerKey = okSigner, okKey }, ""},
		// Any certificate the CA issued (a client's own included) could
		// otherwise vouch "good" for a revoked one: x/crypto/ocsp accepts it.
		{"delegated without OCSPSigning", func(r *responder) { r.signer, r.signerKey = noEKU, noEKUKey }, "lacks the OCSPSigning"},
		{"delegated, expired", func(r *responder) { r.signer, r.signerKey = expired, expiredKey }, "not valid now"},
		{"delegated by another CA", func(r *responder) { r.signer, r.signerKey = foreign, foreignKey }, "not issued by"},
		{"signed by another CA", func(r *responder) { r.ca = other }, "not signed by the issuer"},
		{"stale", func(r *responder) { r.nextUpdate = -time.Minute }, "stale OCSP response"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newResponder(t, ca)
			tt.setup(r)
			leaf := ocspLeaf(t, ca, "device", r.srv.URL)
			err := (&OCSPChecker{Mode: OCSPHard}).Check(context.Background(), leaf, ca.Cert)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("got %v; want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrOCSP) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v; want ErrOCSP containing %q", err, tt.want)
			}
			// Soft mode lets it through.
			if err := (&OCSPChecker{Mode: OCSPSoft}).Check(context.Background(), leaf, ca.Cert); err != nil {
				t.Errorf("soft: got %v; want nil", err)
			}
		})
	}
}

// reissue signs tmpl (a parsed certificate to copy) with issuer, for key pub.
func reissue(t *testing.T, issuer *Authority, tmpl *x509.Certificate, key crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(nil, tmpl, issuer.Cert, key.Public(), issuer.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestOCSPHTTPFailures: responders that answer, but badly.
func TestOCSPHTTPFailures(t *testing.T) {
	ca := mustCA(t, "clients")
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    string
	}{
		{"HTTP 500", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "boom", 500) }, "HTTP status 500"},
		{"tryLater", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(ocsp.TryLaterErrorResponse) }, "try later"},
		{"garbage", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("<html>")) }, "parsing the OCSP response"},
		{"huge", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(make([]byte, maxOCSPResponse+10)) }, "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			leaf := ocspLeaf(t, ca, "device", srv.URL)
			err := (&OCSPChecker{Mode: OCSPHard}).Check(context.Background(), leaf, ca.Cert)
			if !errors.Is(err, ErrOCSP) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), srv.URL) {
				t.Errorf("got %v; want ErrOCSP naming %s and containing %q", err, srv.URL, tt.want)
			}
		})
	}
	// The second URL is tried when the first fails.
	good := newResponder(t, ca)
	leaf := ocspLeaf(t, ca, "two urls", "ldap://ocsp.example/", good.srv.URL)
	if err := (&OCSPChecker{Mode: OCSPHard}).Check(context.Background(), leaf, ca.Cert); err != nil {
		t.Errorf("second URL: got %v; want nil", err)
	}
}

// TestAuthorityOCSPHandler: pki.go's responder, for e2e and the demo.
func TestAuthorityOCSPHandler(t *testing.T) {
	ca := mustCA(t, "clients")
	var revokedSerial atomic.Pointer[big.Int]
	srv := httptest.NewServer(ca.OCSPHandler(func(s *big.Int) int {
		if s.Cmp(revokedSerial.Load()) == 0 {
			return ocsp.Revoked
		}
		return ocsp.Good
	}))
	defer srv.Close()
	good, bad := ocspLeaf(t, ca, "good", srv.URL), ocspLeaf(t, ca, "bad", srv.URL)
	revokedSerial.Store(bad.SerialNumber)
	o := &OCSPChecker{Mode: OCSPHard}
	if err := o.Check(context.Background(), good, ca.Cert); err != nil {
		t.Errorf("good: %v", err)
	}
	if err := o.Check(context.Background(), bad, ca.Cert); !errors.Is(err, ErrRevoked) {
		t.Errorf("revoked: got %v; want ErrRevoked", err)
	}
}
