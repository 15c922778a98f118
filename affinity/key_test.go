package affinity

import (
	"net/netip"
	"testing"
)

func TestKeyFor(t *testing.T) {
	ap := netip.MustParseAddrPort
	dst := ap("192.0.2.1:443")
	tests := []struct {
		name      string
		mode      Mode
		a, b      netip.AddrPort // sources
		da, db    netip.AddrPort // destinations
		wantEqual bool
	}{
		{"source_ip same ip different ports", SourceIP, ap("10.1.2.3:1000"), ap("10.1.2.3:2000"), dst, dst, true},
		{"source_ip ignores destination", SourceIP, ap("10.1.2.3:1000"), ap("10.1.2.3:1000"), dst, ap("192.0.2.2:8443"), true},
		{"source_ip different ips", SourceIP, ap("10.1.2.3:1000"), ap("10.1.2.4:1000"), dst, dst, false},
		{"source_ip 4-in-6 unmapped", SourceIP, ap("[::ffff:10.1.2.3]:1000"), ap("10.1.2.3:1000"), dst, dst, true},
		{"source_ip ipv6", SourceIP, ap("[2001:db8::1]:1"), ap("[2001:db8::1]:2"), dst, dst, true},
		{"source_ip ipv6 differs", SourceIP, ap("[2001:db8::1]:1"), ap("[2001:db8::2]:1"), dst, dst, false},
		{"source_ip zone ignored", SourceIP, ap("[fe80::1%eth0]:1"), ap("[fe80::1]:1"), dst, dst, true},
		{"class_c same /24", ClassC, ap("10.1.2.3:1000"), ap("10.1.2.200:2000"), dst, dst, true},
		{"class_c other /24", ClassC, ap("10.1.2.3:1000"), ap("10.1.3.3:1000"), dst, dst, false},
		{"class_c 4-in-6 unmapped", ClassC, ap("[::ffff:10.1.2.3]:1"), ap("10.1.2.99:2"), dst, dst, true},
		{"class_c ipv6 same /48", ClassC, ap("[2001:db8:1::1]:1"), ap("[2001:db8:1:ffff::2]:2"), dst, dst, true},
		{"class_c ipv6 other /48", ClassC, ap("[2001:db8:1::1]:1"), ap("[2001:db8:2::1]:1"), dst, dst, false},
		{"class_c v4 /24 differs from v6", ClassC, ap("10.1.2.3:1"), ap("[::a01:200]:1"), dst, dst, false},
		{"five_tuple same", FiveTuple, ap("10.1.2.3:1000"), ap("10.1.2.3:1000"), dst, dst, true},
		{"five_tuple src port", FiveTuple, ap("10.1.2.3:1000"), ap("10.1.2.3:1001"), dst, dst, false},
		{"five_tuple dst port", FiveTuple, ap("10.1.2.3:1000"), ap("10.1.2.3:1000"), dst, ap("192.0.2.1:444"), false},
		{"five_tuple dst ip", FiveTuple, ap("10.1.2.3:1000"), ap("10.1.2.3:1000"), dst, ap("192.0.2.2:443"), false},
		{"five_tuple 4-in-6 unmapped", FiveTuple, ap("[::ffff:10.1.2.3]:1000"), ap("10.1.2.3:1000"), ap("[::ffff:192.0.2.1]:443"), dst, true},
		{"five_tuple ports not swappable", FiveTuple, ap("10.1.2.3:443"), ap("10.1.2.3:1000"), ap("192.0.2.1:1000"), ap("192.0.2.1:443"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ka, kb := KeyFor(tt.mode, tt.a, tt.da), KeyFor(tt.mode, tt.b, tt.db)
			if !ka.Valid || !kb.Valid {
				t.Fatalf("got Valid %v, %v; want true, true", ka.Valid, kb.Valid)
			}
			if got := ka == kb; got != tt.wantEqual {
				t.Errorf("keys equal: got %v; want %v (%#x vs %#x)", got, tt.wantEqual, ka.Hash, kb.Hash)
			}
		})
	}
}

func TestKeyForNoKey(t *testing.T) {
	src := netip.MustParseAddrPort("10.1.2.3:1000")
	tests := []struct {
		name string
		mode Mode
		src  netip.AddrPort
	}{
		{"none", None, src},
		{"mode out of range", Mode(42), src},
		{"invalid source", SourceIP, netip.AddrPort{}},
		{"invalid source five_tuple", FiveTuple, netip.AddrPort{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := KeyFor(tt.mode, tt.src, src); got != (Key{}) {
				t.Errorf("got %+v; want %+v", got, Key{})
			}
		})
	}
}

// Modes hash the same address differently, so switching a backend's mode
// does not silently keep an unrelated mapping.
func TestKeyForModesDiffer(t *testing.T) {
	src, dst := netip.MustParseAddrPort("10.1.2.0:1"), netip.MustParseAddrPort("192.0.2.1:443")
	seen := map[uint64]Mode{}
	for _, m := range []Mode{SourceIP, ClassC, FiveTuple} {
		h := KeyFor(m, src, dst).Hash
		if prev, ok := seen[h]; ok {
			t.Errorf("got the same hash for %v and %v; want different", prev, m)
		}
		seen[h] = m
	}
}

// The hashes are part of the contract between instances and versions: two
// balancers (even of different versions during a rolling upgrade) must agree.
// A change here moves clients; make it on purpose only. (The values were
// cross-checked against an independent Python implementation of KeyFor.)
func TestKeyForStable(t *testing.T) {
	src, dst := netip.MustParseAddrPort("198.51.100.7:51000"), netip.MustParseAddrPort("192.0.2.1:443")
	src6 := netip.MustParseAddrPort("[2001:db8:aa:bb::7]:51000")
	tests := []struct {
		mode Mode
		src  netip.AddrPort
		want uint64
	}{
		{SourceIP, src, 0x1609e91690341e73},
		{ClassC, src, 0xc58a5593f20207f2},
		{FiveTuple, src, 0xea7ef251ba7ed329},
		{SourceIP, src6, 0x9d9b259d1e8d297b},
		{ClassC, src6, 0x407404b2c2d7b6f0},
	}
	for _, tt := range tests {
		t.Run(tt.mode.String()+" "+tt.src.String(), func(t *testing.T) {
			if got := KeyFor(tt.mode, tt.src, dst).Hash; got != tt.want {
				t.Errorf("got %#x; want %#x", got, tt.want)
			}
		})
	}
}

func TestKeyForAllocs(t *testing.T) {
	src, dst := netip.MustParseAddrPort("[2001:db8::7]:51000"), netip.MustParseAddrPort("[::ffff:192.0.2.1]:443")
	for _, m := range []Mode{None, SourceIP, ClassC, FiveTuple} {
		if got := testing.AllocsPerRun(100, func() { KeyFor(m, src, dst) }); got != 0 {
			t.Errorf("%v: got %v allocs; want 0", m, got)
		}
	}
}
