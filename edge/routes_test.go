package edge

import "testing"

func TestTableMatch(t *testing.T) {
	tbl := newTable()
	routes := map[string]*Route{}
	for _, p := range []string{"api.example.com", "*.example.com", "*.b.example.com", "*"} {
		r := &Route{Pattern: p}
		routes[p] = r
		tbl.add(p, r)
	}
	tests := []struct{ name, want string }{
		{"api.example.com", "api.example.com"},
		{"web.example.com", "*.example.com"},
		{"x.b.example.com", "*.b.example.com"},
		{"a.x.example.com", "*"}, // a wildcard covers one label only
		{"example.com", "*"},
		{"", "*"},
		{"other.org", "*"},
	}
	for _, tt := range tests {
		got := tbl.Match(tt.name)
		if got != routes[tt.want] {
			t.Errorf("Match(%q): got %v; want %q", tt.name, got, tt.want)
		}
	}
	noDefault := newTable()
	noDefault.add("api.example.com", routes["api.example.com"])
	if got := noDefault.Match("other.example.com"); got != nil {
		t.Errorf("Match without default: got %v; want nil", got)
	}
}

func TestNormalizePattern(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"API.Example.COM", "api.example.com", true},
		{"api.example.com.", "api.example.com", true},
		{"*.Example.com", "*.example.com", true},
		{"*", "*", true},
		{"a.*.com", "", false},
		{"*example.com", "", false},
		{"10.0.0.1", "", false},
		{"::1", "", false},
		{"exa mple.com", "", false},
		{"a..b", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		got, err := NormalizePattern(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("NormalizePattern(%q): got %q, %v; want %q, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
