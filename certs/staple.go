package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/crypto/ocsp"
)

// Stapling schedule.
const (
	// stapleTimeout bounds one fetch (every responder URL together).
	stapleTimeout = 10 * time.Second
	// stapleRetryMin and stapleRetryMax bound the wait after a failed
	// fetch (doubling from the first to the second).
	stapleRetryMin = 30 * time.Second
	stapleRetryMax = 30 * time.Minute
	// stapleNoNextUpdate is when a response without NextUpdate is fetched
	// again.
	stapleNoNextUpdate = time.Hour
)

// ErrNoStapling says a certificate cannot be stapled: it names no OCSP
// responder, or its chain does not include its issuer.
var ErrNoStapling = errors.New("certs: no OCSP stapling")

// stapler keeps a fresh OCSP response for one served certificate, fetched
// in the background from the responder its leaf names (never on a
// handshake, never holding a start or a reload): first at once, then again
// halfway between the response's ThisUpdate and NextUpdate. Only a good,
// verified, current response is stapled; a response past its NextUpdate is
// dropped (no staple rather than a stale one), and a revoked one is logged
// and not stapled.
type stapler struct {
	leaf, issuer *x509.Certificate
	checker      OCSPChecker // its post and verify; its cache is not used
	log          zerolog.Logger
	now          func() time.Time

	resp   atomic.Pointer[stapled]
	cancel context.CancelFunc
	done   chan struct{}
}

// stapled is one verified good response.
type stapled struct {
	der        []byte
	nextUpdate time.Time // zero: none given
}

// newStapler starts stapling pair (its leaf, and its issuer: the chain's
// second certificate). ErrNoStapling when that cannot be done.
func newStapler(pair *tls.Certificate, log zerolog.Logger) (*stapler, error) {
	leaf := pair.Leaf
	if leaf == nil || len(leaf.OCSPServer) == 0 {
		return nil, fmt.Errorf("%w: the certificate names no OCSP responder", ErrNoStapling)
	}
	if len(pair.Certificate) < 2 {
		return nil, fmt.Errorf("%w: the file holds no issuer certificate after the leaf", ErrNoStapling)
	}
	issuer, err := x509.ParseCertificate(pair.Certificate[1])
	if err != nil {
		return nil, fmt.Errorf("%w: parsing the issuer certificate: %v", ErrNoStapling, err)
	}
	if err := leaf.CheckSignatureFrom(issuer); err != nil {
		return nil, fmt.Errorf("%w: the certificate after the leaf is not its issuer: %v", ErrNoStapling, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &stapler{leaf: leaf, issuer: issuer, log: log, now: time.Now, cancel: cancel, done: make(chan struct{})}
	s.checker.Now = func() time.Time { return s.now() } // one clock for fetching and serving
	go s.run(ctx)
	return s, nil
}

// staple returns the current response, nil when there is none fresh.
func (s *stapler) staple() []byte {
	r := s.resp.Load()
	if r == nil || (!r.nextUpdate.IsZero() && s.now().After(r.nextUpdate)) {
		return nil
	}
	return r.der
}

// stop ends the background fetches and waits for the one in flight.
func (s *stapler) stop() {
	s.cancel()
	<-s.done
}

func (s *stapler) run(ctx context.Context) {
	defer close(s.done)
	retry := stapleRetryMin
	for {
		wait, err := s.fetch(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			wait = retry
			retry = min(2*retry, stapleRetryMax)
			if r := s.resp.Load(); r != nil && !r.nextUpdate.IsZero() {
				// Try again before the response in hand goes stale.
				wait = max(min(wait, r.nextUpdate.Sub(s.now())/2), stapleRetryMin)
			}
			s.log.Warn().Err(err).Str("serial", s.leaf.SerialNumber.Text(16)).Strs("names", s.leaf.DNSNames).
				Dur("retry_in", wait).Msg("OCSP stapling: no fresh response")
		} else {
			retry = stapleRetryMin
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// fetch asks the responders once; on success it stores the response and
// says when to ask again.
func (s *stapler) fetch(ctx context.Context) (time.Duration, error) {
	req, err := ocsp.CreateRequest(s.leaf, s.issuer, nil)
	if err != nil {
		return 0, fmt.Errorf("building the OCSP request: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, stapleTimeout)
	defer cancel()
	var errs []error
	for _, u := range s.leaf.OCSPServer {
		der, err := s.checker.post(ctx, u, req)
		if err == nil {
			var r *ocsp.Response
			if r, err = s.checker.verify(der, s.leaf, s.issuer); err == nil {
				return s.store(der, r)
			}
		}
		errs = append(errs, fmt.Errorf("%s: %w", u, err))
		if ctx.Err() != nil {
			break
		}
	}
	return 0, errors.Join(errs...)
}

// store keeps a good response and returns when to refresh it: halfway to
// its NextUpdate.
func (s *stapler) store(der []byte, r *ocsp.Response) (time.Duration, error) {
	switch r.Status {
	case ocsp.Good:
	case ocsp.Revoked:
		s.resp.Store(nil)
		s.log.Error().Str("serial", s.leaf.SerialNumber.Text(16)).Strs("names", s.leaf.DNSNames).
			Time("revoked_at", r.RevokedAt).Msg("OCSP stapling: the CA says this certificate is REVOKED: replace it")
		return stapleRetryMax, nil
	default:
		return 0, errors.New("the responder does not know the certificate (status unknown)")
	}
	s.resp.Store(&stapled{der: der, nextUpdate: r.NextUpdate})
	if r.NextUpdate.IsZero() {
		return stapleNoNextUpdate, nil
	}
	half := r.ThisUpdate.Add(r.NextUpdate.Sub(r.ThisUpdate) / 2)
	return max(half.Sub(s.now()), stapleRetryMin), nil
}
