package certs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ocsp"
)

// OCSPMode says how client certificates are checked with OCSP. The zero
// value is OCSPOff.
type OCSPMode uint8

const (
	OCSPOff  OCSPMode = iota // no OCSP check
	OCSPSoft                 // revoked fails; no answer, a bad answer or "unknown" allows (see OCSPChecker.OnSoftFail)
	OCSPHard                 // anything but a good answer fails (fail closed)
)

// ParseOCSPMode parses the route key `ocsp`: "off" (or empty), "soft" or
// "hard", case-insensitive.
func ParseOCSPMode(s string) (OCSPMode, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "off":
		return OCSPOff, nil
	case "soft":
		return OCSPSoft, nil
	case "hard":
		return OCSPHard, nil
	}
	return OCSPOff, fmt.Errorf("unknown ocsp mode %q: want off, soft or hard", s)
}

func (m OCSPMode) String() string {
	switch m {
	case OCSPOff:
		return "off"
	case OCSPSoft:
		return "soft"
	case OCSPHard:
		return "hard"
	}
	return fmt.Sprintf("OCSPMode(%d)", uint8(m))
}

// UnmarshalText lets config decoders fill an OCSPMode from its name.
func (m *OCSPMode) UnmarshalText(b []byte) error {
	v, err := ParseOCSPMode(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// Defaults for OCSPChecker's zero fields, and fixed bounds.
const (
	DefaultOCSPTimeout   = 3 * time.Second
	DefaultOCSPCacheSize = 4096
	// ocspNoNextUpdateTTL is how long an answer without NextUpdate is kept.
	ocspNoNextUpdateTTL = time.Hour
	// ocspFailTTL is how long a failed lookup (responder down, bad answer) is
	// remembered, so a dead responder costs each certificate one timeout per
	// ocspFailTTL rather than one per handshake.
	ocspFailTTL = 5 * time.Second
	// maxOCSPResponse bounds the body read from a responder; real responses
	// are a few KiB (one response, maybe one responder certificate).
	maxOCSPResponse = 64 << 10
	// ocspClockSkew is how far in the future a response's ThisUpdate may be.
	ocspClockSkew = 5 * time.Minute
)

// OCSPChecker checks certificates with the OCSP responder they name (their
// Authority Information Access OCSP URLs, tried in order), by HTTP POST
// (RFC 6960 appendix A.1), with golang.org/x/crypto/ocsp.
//
// Answers are cached by (issuer, serial) until their NextUpdate (an hour when
// they give none); a failed lookup is remembered for a few seconds. Concurrent
// checks of one certificate share one request. A revoked answer fails in
// every mode. The answer must be signed by the issuer itself or by a
// responder certificate the issuer issued with the OCSPSigning extended key
// usage, valid now (RFC 6960 section 4.2.2.2; x/crypto/ocsp checks neither
// the usage nor the validity, golang/go#43522), and must be current
// (NextUpdate not passed, ThisUpdate not more than 5 minutes ahead).
//
// Set the exported fields before the first Check and do not change them
// after; an OCSPChecker must not be copied after first use. Safe for
// concurrent use. The zero value checks nothing (Mode off).
type OCSPChecker struct {
	Mode OCSPMode
	// Client sends the requests. nil: a client of its own (proxy from the
	// environment, as http.DefaultTransport). Either way each lookup is also
	// bounded by Timeout.
	Client *http.Client
	// Timeout bounds one lookup (all URLs of a certificate together).
	// Zero or negative: DefaultOCSPTimeout.
	Timeout time.Duration
	// CacheSize bounds the cached answers; when full, expired answers go first,
	// then those expiring soonest. Zero: DefaultOCSPCacheSize; negative: no
	// cache (concurrent checks still share a request).
	CacheSize int
	// Now is the clock for freshness and the cache. nil: time.Now.
	Now func() time.Time
	// OnSoftFail, when set, is called (synchronously, from Check) each time
	// soft mode lets a certificate through without a good answer, with the
	// reason; the place to log it. It must not block or retain leaf.
	OnSoftFail func(leaf *x509.Certificate, err error)

	mu       sync.Mutex
	cache    map[string]ocspEntry
	inflight map[string]*ocspCall
}

// ocspResult is what one lookup found: a status from a responder, or err.
type ocspResult struct {
	status     int // ocsp.Good, ocsp.Revoked or ocsp.Unknown when err == nil
	revokedAt  time.Time
	reason     int
	nextUpdate time.Time // of the answer; zero: none given
	url        string    // the responder that answered
	err        error     // no usable answer
}

type ocspEntry struct {
	res   ocspResult
	until time.Time
}

type ocspCall struct {
	done    chan struct{} // closed when res is set
	res     ocspResult
	waiters int // callers waiting, the one that started it included; under OCSPChecker.mu
}

// Check asks about leaf, issued by issuer. It returns nil when leaf may be
// used, an error wrapping ErrRevoked when the responder says revoked (any
// mode), and in hard mode an error wrapping ErrOCSP when there is no good
// answer: no OCSP URL in leaf, no issuer, responder unreachable or failing,
// an answer that does not verify or is stale, or status unknown. ctx bounds
// only this caller's wait: a lookup it started goes on for the other callers
// waiting on it (up to Timeout).
func (o *OCSPChecker) Check(ctx context.Context, leaf, issuer *x509.Certificate) error {
	if o == nil || o.Mode == OCSPOff {
		return nil
	}
	if leaf == nil {
		return fmt.Errorf("%w: no certificate to check", ErrOCSP)
	}
	var res ocspResult
	switch {
	case len(leaf.OCSPServer) == 0:
		res.err = errors.New("the certificate names no OCSP responder (Authority Information Access)")
	case issuer == nil:
		res.err = errors.New("no issuer certificate to build the OCSP request with")
	default:
		res = o.lookup(ctx, leaf, issuer)
	}
	switch {
	case res.err != nil:
		return o.fail(leaf, fmt.Errorf("%w for %q (serial %x): %w", ErrOCSP, leaf.Subject, leaf.SerialNumber, res.err))
	case res.status == ocsp.Good:
		return nil
	case res.status == ocsp.Revoked:
		return fmt.Errorf("%w: OCSP responder %s says %q (serial %x) was revoked at %s (reason %s)", ErrRevoked,
			res.url, leaf.Subject, leaf.SerialNumber, res.revokedAt.UTC().Format(time.RFC3339), revocationReason(res.reason))
	default:
		return o.fail(leaf, fmt.Errorf("%w: OCSP responder %s does not know %q (serial %x): status unknown", ErrOCSP,
			res.url, leaf.Subject, leaf.SerialNumber))
	}
}

// fail applies the mode to an answer that is neither good nor revoked.
func (o *OCSPChecker) fail(leaf *x509.Certificate, err error) error {
	if o.Mode == OCSPSoft {
		if o.OnSoftFail != nil {
			o.OnSoftFail(leaf, err)
		}
		return nil
	}
	return err // hard, and any unknown mode: fail closed
}

func (o *OCSPChecker) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// lookup returns the cached answer, or joins or starts the lookup for it.
func (o *OCSPChecker) lookup(ctx context.Context, leaf, issuer *x509.Certificate) ocspResult {
	key := ocspKey(leaf, issuer)
	o.mu.Lock()
	if e, ok := o.cache[key]; ok {
		if o.now().Before(e.until) {
			o.mu.Unlock()
			return e.res
		}
		delete(o.cache, key)
	}
	call := o.inflight[key]
	if call == nil {
		call = &ocspCall{done: make(chan struct{})}
		if o.inflight == nil {
			o.inflight = map[string]*ocspCall{}
		}
		o.inflight[key] = call
		// The lookup runs on its own goroutine with its own deadline, so the
		// caller that started it may give up without failing the others.
		fetchCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.timeout())
		go o.run(fetchCtx, cancel, key, call, leaf, issuer)
	}
	call.waiters++
	o.mu.Unlock()
	select {
	case <-call.done:
		return call.res
	case <-ctx.Done():
		return ocspResult{err: fmt.Errorf("gave up waiting for the OCSP responder: %w", ctx.Err())}
	}
}

// run does one lookup and publishes it to the cache and to every waiter. It
// ends by ctx's deadline at the latest; a panic becomes the lookup's error
// (with the stack: this package returns errors and never logs).
func (o *OCSPChecker) run(ctx context.Context, cancel context.CancelFunc, key string, call *ocspCall, leaf, issuer *x509.Certificate) {
	defer cancel()
	var res ocspResult
	defer func() {
		if p := recover(); p != nil {
			res = ocspResult{err: fmt.Errorf("panic in OCSP lookup: %v\n%s", p, debug.Stack())}
		}
		now := o.now()
		o.mu.Lock()
		delete(o.inflight, key)
		o.store(key, res, now)
		o.mu.Unlock()
		call.res = res
		close(call.done)
	}()
	res = o.fetch(ctx, leaf, issuer)
}

// store caches res; o.mu is held.
func (o *OCSPChecker) store(key string, res ocspResult, now time.Time) {
	size := o.CacheSize
	if size == 0 {
		size = DefaultOCSPCacheSize
	}
	if size < 0 {
		return
	}
	until := now.Add(ocspFailTTL)
	if res.err == nil {
		until = now.Add(ocspNoNextUpdateTTL)
		if !res.nextUpdate.IsZero() {
			until = res.nextUpdate
		}
	}
	if !now.Before(until) {
		return
	}
	if o.cache == nil {
		o.cache = map[string]ocspEntry{}
	}
	if len(o.cache) >= size {
		for k, e := range o.cache {
			if !now.Before(e.until) {
				delete(o.cache, k)
			}
		}
	}
	for len(o.cache) >= size {
		var soonest string
		var t time.Time
		for k, e := range o.cache {
			if soonest == "" || e.until.Before(t) {
				soonest, t = k, e.until
			}
		}
		delete(o.cache, soonest)
	}
	o.cache[key] = ocspEntry{res: res, until: until}
}

func (o *OCSPChecker) timeout() time.Duration {
	if o.Timeout > 0 {
		return o.Timeout
	}
	return DefaultOCSPTimeout
}

var defaultOCSPClient = &http.Client{}

// fetch asks each responder URL of leaf in turn until one gives a verified,
// current answer.
func (o *OCSPChecker) fetch(ctx context.Context, leaf, issuer *x509.Certificate) ocspResult {
	req, err := ocsp.CreateRequest(leaf, issuer, nil) // SHA-1 CertID: what every responder understands
	if err != nil {
		return ocspResult{err: fmt.Errorf("building the OCSP request: %w", err)}
	}
	var errs []error
	for _, u := range leaf.OCSPServer {
		res, err := o.ask(ctx, u, req, leaf, issuer)
		if err == nil {
			return res
		}
		errs = append(errs, fmt.Errorf("%s: %w", u, err))
		if ctx.Err() != nil {
			break
		}
	}
	return ocspResult{err: errors.Join(errs...)}
}

func (o *OCSPChecker) ask(ctx context.Context, rawURL string, body []byte, leaf, issuer *x509.Certificate) (ocspResult, error) {
	der, err := o.post(ctx, rawURL, body)
	if err != nil {
		return ocspResult{}, err
	}
	r, err := o.verify(der, leaf, issuer)
	if err != nil {
		return ocspResult{}, err
	}
	return ocspResult{status: r.Status, revokedAt: r.RevokedAt, reason: r.RevocationReason, url: rawURL,
		nextUpdate: r.NextUpdate}, nil
}

// post sends an OCSP request by HTTP POST and returns the response's bytes
// (at most maxOCSPResponse).
func (o *OCSPChecker) post(ctx context.Context, rawURL string, body []byte) ([]byte, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, errors.New("not an http(s) URL")
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hreq.Header.Set("Content-Type", "application/ocsp-request")
	hreq.Header.Set("Accept", "application/ocsp-response")
	client := o.Client
	if client == nil {
		client = defaultOCSPClient
	}
	resp, err := client.Do(hreq)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP status %s", resp.Status)
	}
	der, err := io.ReadAll(io.LimitReader(resp.Body, maxOCSPResponse+1))
	if err != nil {
		return nil, fmt.Errorf("reading the response: %w", err)
	}
	if len(der) > maxOCSPResponse {
		return nil, fmt.Errorf("response larger than %d bytes", maxOCSPResponse)
	}
	return der, nil
}

// verify parses an OCSP response for leaf and checks who signed it and that
// it is current. x/crypto/ocsp is given no issuer, so that this function
// makes every signer decision itself (the library both misses the checks
// below and rejects a CA that embeds its own certificate).
func (o *OCSPChecker) verify(der []byte, leaf, issuer *x509.Certificate) (*ocsp.Response, error) {
	r, err := ocsp.ParseResponseForCert(der, leaf, nil) // checks the serial, and the signature against an embedded certificate
	if err != nil {
		return nil, fmt.Errorf("parsing the OCSP response: %w", err)
	}
	now := o.now()
	switch rc := r.Certificate; {
	case rc == nil:
		if err := r.CheckSignatureFrom(issuer); err != nil {
			return nil, fmt.Errorf("OCSP response not signed by the issuer %q: %w", issuer.Subject, err)
		}
	case bytes.Equal(rc.RawSubject, issuer.RawSubject) && bytes.Equal(rc.RawSubjectPublicKeyInfo, issuer.RawSubjectPublicKeyInfo):
		// Signed by the issuer, which also sent its own certificate.
	default:
		if err := rc.CheckSignatureFrom(issuer); err != nil {
			return nil, fmt.Errorf("OCSP responder certificate %q not issued by %q: %w", rc.Subject, issuer.Subject, err)
		}
		if !slices.Contains(rc.ExtKeyUsage, x509.ExtKeyUsageOCSPSigning) {
			return nil, fmt.Errorf("OCSP responder certificate %q lacks the OCSPSigning extended key usage (RFC 6960 section 4.2.2.2)", rc.Subject)
		}
		if now.Before(rc.NotBefore) || now.After(rc.NotAfter) {
			return nil, fmt.Errorf("OCSP responder certificate %q is not valid now (valid %s to %s)", rc.Subject,
				rc.NotBefore.UTC().Format(time.RFC3339), rc.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	if r.ThisUpdate.After(now.Add(ocspClockSkew)) {
		return nil, fmt.Errorf("OCSP response from the future: thisUpdate %s", r.ThisUpdate.UTC().Format(time.RFC3339))
	}
	if !r.NextUpdate.IsZero() && now.After(r.NextUpdate) {
		return nil, fmt.Errorf("stale OCSP response: nextUpdate %s has passed", r.NextUpdate.UTC().Format(time.RFC3339))
	}
	return r, nil
}

// ocspKey identifies a certificate as OCSP does: its issuer's key (hashed
// with the issuer's name) and its serial number.
func ocspKey(leaf, issuer *x509.Certificate) string {
	h := sha256.New()
	h.Write(issuer.RawSubject)
	h.Write(issuer.RawSubjectPublicKeyInfo)
	var buf [serialBuf]byte
	return string(h.Sum(nil)) + string(serialKey(buf[:], leaf.SerialNumber))
}

var revocationReasons = [...]string{
	ocsp.Unspecified:          "unspecified",
	ocsp.KeyCompromise:        "keyCompromise",
	ocsp.CACompromise:         "cACompromise",
	ocsp.AffiliationChanged:   "affiliationChanged",
	ocsp.Superseded:           "superseded",
	ocsp.CessationOfOperation: "cessationOfOperation",
	ocsp.CertificateHold:      "certificateHold",
	7:                         "7 (unused)",
	ocsp.RemoveFromCRL:        "removeFromCRL",
	ocsp.PrivilegeWithdrawn:   "privilegeWithdrawn",
	ocsp.AACompromise:         "aACompromise",
}

func revocationReason(r int) string {
	if r >= 0 && r < len(revocationReasons) {
		return revocationReasons[r]
	}
	return fmt.Sprint(r)
}
