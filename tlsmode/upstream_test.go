package tlsmode

import (
	"encoding/hex"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// The PROXY headers sent to servers are a stable wire format: golden files.
func TestProxyHeaderGolden(t *testing.T) {
	c := &Conn{
		Source: netip.MustParseAddrPort("203.0.113.7:4242"),
		Dest:   netip.MustParseAddrPort("192.0.2.1:443"),
		Hello:  &Hello{ServerName: "api.example.com", ALPN: []string{"h2", "http/1.1"}},
	}
	c6 := &Conn{
		Source: netip.MustParseAddrPort("[2001:db8::7]:4242"),
		Dest:   netip.MustParseAddrPort("[2001:db8::1]:443"),
		Hello:  &Hello{},
	}
	tests := []struct {
		name    string
		version byte
		c       *Conn
	}{
		{"proxy-v1", 1, c},
		{"proxy-v2-tlvs", 2, c},
		{"proxy-v2-ipv6-no-tlvs", 2, c6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := proxyHeader(tt.version, tt.c)
			if err != nil {
				t.Fatal(err)
			}
			got := hex.Dump(b)
			path := filepath.Join("testdata", tt.name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./tlsmode -run ProxyHeaderGolden -update)", err)
			}
			if got != string(want) {
				t.Errorf("got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
	v1, _ := proxyHeader(1, c)
	if want := "PROXY TCP4 203.0.113.7 192.0.2.1 4242 443\r\n"; string(v1) != want {
		t.Errorf("v1: got %q; want %q", v1, want)
	}
	v2, _ := proxyHeader(2, c)
	if !strings.Contains(string(v2), "api.example.com") || !strings.Contains(string(v2), "h2") {
		t.Errorf("v2 lacks the AUTHORITY or ALPN TLV: %x", v2)
	}
}
