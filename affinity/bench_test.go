package affinity

import (
	"net/netip"
	"testing"
)

// BenchmarkPick: one Pick among 10 servers of mixed weights, some load, one
// server down and a skip function, as on the connection path.
func BenchmarkPick(b *testing.B) {
	servers := newServers(10, []int{1, 2, 3, 4, 5, 1, 2, 3, 4, 5})
	for i, s := range servers {
		for range 10 * (i + 1) {
			s.Acquire()
		}
	}
	servers[7].SetHealthy(false)
	skip := func(s *Server) bool { return s == servers[3] }
	keys := testKeys(1024)
	for _, pc := range allConfigs {
		b.Run(pc.name, func(b *testing.B) {
			p := mustPicker(b, pc.c)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				p.Pick(servers, keys[i&1023], skip)
				i++
			}
		})
	}
}

func BenchmarkKeyFor(b *testing.B) {
	src, dst := netip.MustParseAddrPort("[::ffff:198.51.100.7]:51000"), netip.MustParseAddrPort("192.0.2.1:443")
	for _, m := range []Mode{SourceIP, ClassC, FiveTuple} {
		b.Run(m.String(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				KeyFor(m, src, dst)
			}
		})
	}
}
