package tlsmode

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/tlsedge/tlsedge/internal/idtest"
)

func TestHTTPAuthzCheck(t *testing.T) {
	p := idtest.MakePKI(t)
	device := idtest.State(p, "verified") // CN client-1, SAN spiffe://example.org/ns/default/sa/client
	none := idtest.State(p, "nocert")
	a := &HTTPAuthz{
		Identified: true,
		Rules: []PathRule{
			{Paths: []string{"/v1/telemetry"}, Methods: []string{"GET", "POST"}, Allow: AllowList{{URI: "spiffe://example.org/ns/*/sa/client"}}},
			{Paths: []string{"/admin/"}, Allow: AllowList{{CN: "operator-*"}}},
			{Paths: []string{"/public"}},
		},
		Unauthenticated: []string{"/healthz"},
	}
	for _, tt := range []struct {
		method, target string
		state          string
		want           int
	}{
		{"GET", "/v1/telemetry", "verified", 0},
		{"GET", "/v1/telemetry/42?x=1", "verified", 0},
		{"POST", "/v1/telemetry", "verified", 0},
		{"DELETE", "/v1/telemetry", "verified", 403}, // the rule's methods do not match; no other rule does
		{"GET", "/v1/telemetryX", "verified", 403},
		{"GET", "/admin/users", "verified", 403},
		{"GET", "/admin", "verified", 403},       // "/admin/" covers "/admin" too (its rule refuses this client)
		{"HEAD", "/v1/telemetry", "verified", 0}, // GET covers HEAD
		{"GET", "/ADMIN/users", "verified", 400}, // only the case differs from a rule's path
		{"GET", "/V1/Telemetry", "verified", 400},
		{"GET", "/admin./users", "verified", 400}, // IIS reads it as /admin/users
		{"GET", "/admin%20/users", "verified", 400},
		{"GET", "/public/x", "verified", 0},
		{"GET", "/public/x", "nocert", 403},
		{"GET", "/healthz", "nocert", 0},
		{"GET", "/healthz/deep", "nocert", 0},
		{"GET", "/healthz", "verified", 0}, // no rule covers it: served to everyone
		{"GET", "/v1/telemetry/../../admin/users", "verified", 400},
		{"GET", "/v1/telemetry/%2e%2e/admin", "verified", 400},
		{"GET", "/v1/telemetry%2F..%2Fadmin", "verified", 400},
		{"GET", "/v1/telemetry/..;/admin", "verified", 400},
		{"GET", "/v1//telemetry", "verified", 400},
		{"GET", "/v1/telemetry\\..\\admin", "verified", 400},
		{"GET", "/v1/%74elemetry", "verified", 400}, // encoded where it need not be
		{"GET", "/v1/telemetry/a%20b", "verified", 0},
	} {
		r := httptest.NewRequest(tt.method, "https://api.example.com"+tt.target, nil)
		cs := device
		if tt.state == "nocert" {
			cs = none
		}
		got, why := a.Check(r, cs)
		if got != tt.want {
			t.Errorf("%s %s (%s): status %d (%s), want %d", tt.method, tt.target, tt.state, got, why, tt.want)
		}
	}
	var nilAuthz *HTTPAuthz
	if got, _ := nilAuthz.Check(httptest.NewRequest("GET", "/../x", nil), none); got != 0 {
		t.Fatalf("nil authz refused a request: %d", got)
	}
	if got, _ := (&HTTPAuthz{Identified: true}).Check(httptest.NewRequest("GET", "/files/a%2Fb", nil), device); got != 0 {
		t.Fatalf("a route with only an allow list refused an encoded path: %d (paths are judged only where rules are)", got)
	}
	if got, _ := (&HTTPAuthz{Identified: true}).Check(httptest.NewRequest("GET", "/x", nil), device); got != 0 {
		t.Fatalf("an allow list alone refused a verified client's request: %d", got)
	}
	if got, _ := (&HTTPAuthz{Identified: true}).Check(httptest.NewRequest("GET", "/x", nil), none); got != http.StatusForbidden {
		t.Fatalf("no certificate on a route with an allow list: %d, want 403", got)
	}
}
