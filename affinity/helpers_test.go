package affinity

import (
	"fmt"
	"net/netip"
)

// newServers returns n servers "10.0.0.<i>:443" (i from 1) with the given
// weights (all 1 when weights is nil).
func newServers(n int, weights []int) []*Server {
	ss := make([]*Server, n)
	for i := range ss {
		w := 1
		if weights != nil {
			w = weights[i]
		}
		ss[i] = NewServer(fmt.Sprintf("10.0.0.%d:443", i+1), w)
	}
	return ss
}

// testKeys returns n distinct source_ip keys, for clients 172.16.0.0 upward.
func testKeys(n int) []Key {
	keys := make([]Key, n)
	for i := range keys {
		ip := netip.AddrFrom4([4]byte{172, byte(16 + i>>16), byte(i >> 8), byte(i)})
		keys[i] = KeyFor(SourceIP, netip.AddrPortFrom(ip, 40000), netip.MustParseAddrPort("192.0.2.1:443"))
	}
	return keys
}

// assign picks a server for every key and returns the addresses ("" = nil).
func assign(p Picker, servers []*Server, keys []Key, skip func(*Server) bool) []string {
	got := make([]string, len(keys))
	for i, k := range keys {
		if s := p.Pick(servers, k, skip); s != nil {
			got[i] = s.Address
		}
	}
	return got
}

func mustPicker(t interface{ Fatalf(string, ...any) }, c Config) Picker {
	p, err := NewPicker(c)
	if err != nil {
		t.Fatalf("NewPicker(%+v): %v", c, err)
	}
	return p
}

// allConfigs is one Config per policy.
var allConfigs = []struct {
	name string
	c    Config
}{
	{"roundrobin", Config{Balance: RoundRobin}},
	{"leastconn", Config{Balance: LeastConn}},
	{"random", Config{Balance: Random}},
	{"rendezvous", Config{Affinity: SourceIP}},
	{"bounded", Config{Affinity: SourceIP, HashBalanceFactor: 1.25}},
}

func netipAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
