package certs

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
)

// acmeCountLimiter allows the first n orders.
type acmeCountLimiter struct{ n, calls int }

func (l *acmeCountLimiter) Allow() bool { l.calls++; return l.calls <= l.n }

// The decision allows exactly the names the patterns match, then asks the
// ask URL (2xx = yes), then the rate limit; names already in storage are
// not orders and skip the limit.
func TestAcmeDecision(t *testing.T) {
	var asked []string
	ask := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d := r.URL.Query().Get("domain")
		asked = append(asked, d)
		switch d {
		case "no.shop.example.com":
			w.WriteHeader(http.StatusForbidden)
		case "err.shop.example.com":
			w.WriteHeader(http.StatusInternalServerError)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	defer ask.Close()
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadURL := "http://" + dead.Addr().String() + "/ask"
	dead.Close()

	ctx := context.Background()
	for _, tt := range []struct {
		name, askURL string
		stored       bool
		allow        int // orders the limiter allows
		want         error
	}{
		{"a.shop.example.com", "", false, 1, nil},
		{"A.Shop.Example.com", "", false, 1, nil},
		{"exact.example.org", "", false, 1, nil},
		{"shop.example.com", "", false, 1, ErrAcmeNotAllowed},
		{"a.b.shop.example.com", "", false, 1, ErrAcmeNotAllowed},
		{"a.shop.example.com.evil.test", "", false, 1, ErrAcmeNotAllowed},
		{"other.example.org", "", false, 1, ErrAcmeNotAllowed},
		{"", "", false, 1, ErrAcmeNotAllowed},
		{"*.shop.example.com", "", false, 1, ErrAcmeNotAllowed}, // the literal wildcard: never
		{"yes.shop.example.com", ask.URL, false, 1, nil},
		{"no.shop.example.com", ask.URL, false, 1, ErrAcmeAskRefused},
		{"err.shop.example.com", ask.URL, false, 1, ErrAcmeAskRefused},
		{"a.shop.example.com", deadURL, false, 1, ErrAcmeAskRefused},
		{"a.shop.example.com", "", false, 0, ErrAcmeRateLimit},
		{"a.shop.example.com", "", true, 0, nil},                     // in storage: loading is no order
		{"no.shop.example.com", ask.URL, true, 1, ErrAcmeAskRefused}, // the ask URL still decides
	} {
		lim := &acmeCountLimiter{n: tt.allow}
		d := &AcmeDecision{Patterns: []string{"*.shop.example.com", "exact.example.org"}, Ask: tt.askURL, Limiter: lim,
			Stored: func(context.Context, string) bool { return tt.stored }}
		err := d.Decide(ctx, tt.name)
		if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
			t.Errorf("Decide(%q, ask %q, stored %v, limit %d) = %v; want %v", tt.name, tt.askURL, tt.stored, tt.allow, err, tt.want)
		}
		if errors.Is(err, ErrAcmeNotAllowed) || errors.Is(err, ErrAcmeAskRefused) || tt.stored {
			if lim.calls != 0 {
				t.Errorf("Decide(%q): the rate limit was counted (%d) for a name refused before it or in storage", tt.name, lim.calls)
			}
		}
	}
	for _, n := range asked {
		if n == "shop.example.com" || n == "a.b.shop.example.com" {
			t.Errorf("the ask URL was asked about %q, which the patterns refuse", n)
		}
	}
}
