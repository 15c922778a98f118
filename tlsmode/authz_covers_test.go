package tlsmode

import "testing"

// RuleCovers: a later rule never decides when an earlier one matches every
// request it would (paths by prefix, "/p/" also "/p"; no methods = all;
// GET covers HEAD).
func TestRuleCovers(t *testing.T) {
	for _, c := range []struct {
		ep, em, p, m []string
		want         bool
	}{
		{[]string{"/"}, nil, []string{"/admin/"}, nil, true},
		{[]string{"/v1/"}, nil, []string{"/v1/telemetry"}, []string{"GET"}, true},
		{[]string{"/v1/"}, nil, []string{"/v1"}, nil, true}, // "/v1/" covers "/v1"
		{[]string{"/v1"}, nil, []string{"/v1/"}, nil, true},
		{[]string{"/v1"}, nil, []string{"/v10"}, nil, false},
		{[]string{"/admin/"}, nil, []string{"/"}, nil, false},
		{[]string{"/v1/telemetry"}, nil, []string{"/v1/"}, nil, false},
		{[]string{"/"}, []string{"GET"}, []string{"/x"}, nil, false},             // later: every method
		{[]string{"/"}, []string{"GET"}, []string{"/x"}, []string{"HEAD"}, true}, // GET covers HEAD
		{[]string{"/"}, []string{"GET"}, []string{"/x"}, []string{"POST"}, false},
		{[]string{"/a/", "/b/"}, nil, []string{"/a/x", "/b/y"}, nil, true},
		{[]string{"/a/"}, nil, []string{"/a/x", "/b/y"}, nil, false},
	} {
		if got := RuleCovers(c.ep, c.em, c.p, c.m); got != c.want {
			t.Errorf("earlier %v %v, later %v %v: covers %v; want %v", c.ep, c.em, c.p, c.m, got, c.want)
		}
	}
}
