package edge

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/internal/dnszone"
)

func TestDiscParse(t *testing.T) {
	t.Parallel()
	good := []struct {
		in   string
		want discTarget
	}{
		{"_api._tcp.example.com", discTarget{name: "_api._tcp.example.com."}},
		{"_API._TCP.Example.COM.", discTarget{name: "_api._tcp.example.com."}},
		{"api.internal:8443", discTarget{name: "api.internal.", port: 8443}},
		{"api.internal.:1", discTarget{name: "api.internal.", port: 1}},
		{"localhost:65535", discTarget{name: "localhost.", port: 65535}},
	}
	for _, c := range good {
		got, err := discParse(c.in)
		if err != nil || got != c.want {
			t.Errorf("discParse(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	bad := map[string]string{
		"":                     "empty",
		"_api._udp.example":    "not an SRV name",
		"_api.example.com":     "not an SRV name",
		"_._tcp.example.com":   "not an SRV name",
		"api.internal":         "neither an SRV name",
		"api.internal:0":       "port must be",
		"api.internal:http":    "port must be",
		"api.internal:70000":   "port must be",
		"127.0.0.1:9001":       "is an address",
		"[::1]:9001":           "is an address",
		":9001":                "is not a DNS name",
		"api..internal:9001":   "is not a DNS name",
		"_x._tcp.a..b":         "not an SRV name",
		"api internal:9001":    "is not a DNS name",
		"_api._tcp.example:80": "not an SRV name",
	}
	for in, want := range bad {
		_, err := discParse(in)
		if err == nil || !errors.Is(err, errDiscSyntax) || !strings.Contains(err.Error(), want) {
			t.Errorf("discParse(%q) error %v; want errDiscSyntax with %q", in, err, want)
		}
	}
}

// SRV: only the lowest priority present is used (RFC 2782); weights come
// from the records (0 becomes 1: tlsedge's 0 would mean no connections);
// targets resolve through the additional section or A/AAAA queries; a
// target "." is left out; the set is ordered by address.
func TestDiscLookupSRV(t *testing.T) {
	t.Parallel()
	z := dnszone.Start(t)
	z.SetSRV("_api._tcp.disc.test",
		"20 100 9100 fallback.disc.test", // higher priority value: a fallback, unused
		"10 5 9002 b.disc.test",
		"10 0 9001 a.disc.test",
		"10 30 9003 dual.disc.test",
		"10 7 9009 .",
	)
	z.SetAddrs("a.disc.test", "10.0.0.10")
	z.SetAddrs("b.disc.test", "10.0.0.9")
	z.SetAddrs("dual.disc.test", "10.0.0.9", "fd00::1")
	z.SetAddrs("fallback.disc.test", "10.0.0.99")
	r := discResolver{server: z.Addr}
	want := []discServer{
		{"10.0.0.9:9002", 5}, {"10.0.0.9:9003", 30}, {"10.0.0.10:9001", 1}, {"[fd00::1]:9003", 30},
	}
	for _, extra := range []bool{false, true} {
		z.SetExtra(extra)
		a := r.lookup(context.Background(), discTarget{name: "_api._tcp.disc.test."}, nil)
		if a.result != discOK || !slices.Equal(a.servers, want) {
			t.Errorf("extra=%v: lookup = %s %v (%v); want ok %v", extra, a.result, a.servers, a.err, want)
		}
		if a.ttl != 60*time.Second {
			t.Errorf("extra=%v: ttl %v; want 1m0s", extra, a.ttl)
		}
	}
	if n := z.Count("fallback.disc.test", "A"); n != 0 {
		t.Errorf("the priority 20 target was resolved %d times; want 0", n)
	}
	// With the priority 10 records gone, the fallback is used.
	z.SetSRV("_api._tcp.disc.test", "20 100 9100 fallback.disc.test")
	a := r.lookup(context.Background(), discTarget{name: "_api._tcp.disc.test."}, nil)
	if want := []discServer{{"10.0.0.99:9100", 100}}; a.result != discOK || !slices.Equal(a.servers, want) {
		t.Errorf("lookup = %s %v; want ok %v", a.result, a.servers, want)
	}
}

func TestDiscLookupResults(t *testing.T) {
	t.Parallel()
	z := dnszone.Start(t)
	z.SetAddrs("api.disc.test", "127.0.0.3", "127.0.0.2", "::1")
	z.SetAddrs("v6only.disc.test")
	z.SetSRV("_none._tcp.disc.test")
	z.SetSRV("_gone._tcp.disc.test", "1 1 80 missing.disc.test")
	r := discResolver{server: z.Addr}
	ctx := context.Background()
	a := r.lookup(ctx, discTarget{name: "api.disc.test.", port: 8443}, nil)
	if want := []discServer{{"127.0.0.2:8443", 1}, {"127.0.0.3:8443", 1}, {"[::1]:8443", 1}}; a.result != discOK || !slices.Equal(a.servers, want) {
		t.Errorf("A/AAAA lookup = %s %v (%v); want ok %v", a.result, a.servers, a.err, want)
	}
	cases := []struct {
		target discTarget
		want   string
	}{
		{discTarget{name: "v6only.disc.test.", port: 1}, discEmpty},
		{discTarget{name: "nothing.disc.test.", port: 1}, discNXDomain},
		{discTarget{name: "_none._tcp.disc.test."}, discEmpty},
		{discTarget{name: "_nothing._tcp.disc.test."}, discNXDomain},
		{discTarget{name: "_gone._tcp.disc.test."}, discEmpty}, // the only target has no address
	}
	for _, c := range cases {
		if a := r.lookup(ctx, c.target, nil); a.result != c.want || len(a.servers) != 0 {
			t.Errorf("lookup(%s) = %s %v; want %s, no servers", c.target.name, a.result, a.servers, c.want)
		}
	}
	z.SetMode("servfail")
	if a := r.lookup(ctx, discTarget{name: "api.disc.test.", port: 1}, nil); a.result != discError || !strings.Contains(a.err.Error(), "SERVFAIL") {
		t.Errorf("SERVFAIL: lookup = %s (%v); want error naming SERVFAIL", a.result, a.err)
	}
	z.SetMode("drop")
	qctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if a := r.lookup(qctx, discTarget{name: "_x._tcp.disc.test."}, nil); a.result != discError {
		t.Errorf("no answer: lookup = %s (%v); want error", a.result, a.err)
	}
	// resolv.conf: its nameservers, in order.
	dir := t.TempDir()
	host, port, _ := strings.Cut(z.Addr, ":")
	conf := dir + "/resolv.conf"
	writeFile(t, conf, "nameserver "+host+"\nnameserver 192.0.2.1\noptions timeout:1\n")
	sys := discResolver{resolvConf: conf}
	if got, err := sys.servers(); err != nil || !slices.Equal(got, []string{host + ":53", "192.0.2.1:53"}) {
		t.Errorf("servers() = %v, %v; want [%s:53 192.0.2.1:53]", got, err, host)
	}
	_ = port
	writeFile(t, conf, "# none\n")
	if _, err := sys.servers(); err == nil || !strings.Contains(err.Error(), "set discovery.resolver") {
		t.Errorf("resolv.conf without a nameserver: %v; want an error saying to set discovery.resolver", err)
	}
}

// record: ok replaces the set; empty and error keep it; NXDOMAIN keeps it
// until refresh × 3 of NXDOMAIN without a break; the next lookup is at
// refresh, or the TTL when sooner, never sooner than a second.
func TestDiscRecordRules(t *testing.T) {
	t.Parallel()
	d := &discoverer{refresh: 10 * time.Second}
	t0 := time.Unix(1_000_000, 0)
	set := []discServer{{"10.0.0.1:80", 1}, {"10.0.0.2:80", 3}}
	step := func(at time.Duration, a discAnswer, wantChanged bool, wantSet []discServer, wantNext time.Duration) {
		t.Helper()
		now := t0.Add(at)
		if got := d.record(a, now); got != wantChanged {
			t.Errorf("at %v %s: changed %v; want %v", at, a.result, got, wantChanged)
		}
		if got := d.current(); !slices.Equal(got, wantSet) || (wantSet != nil && got == nil) {
			t.Errorf("at %v %s: set %v; want %v", at, a.result, got, wantSet)
		}
		if got := d.next.Sub(now); got != wantNext {
			t.Errorf("at %v %s: next lookup in %v; want %v", at, a.result, got, wantNext)
		}
	}
	step(0, discAnswer{result: discOK, servers: set, ttl: time.Hour}, true, set, 10*time.Second)
	step(10*time.Second, discAnswer{result: discOK, servers: set, ttl: 4 * time.Second}, false, set, 4*time.Second)
	step(14*time.Second, discAnswer{result: discOK, servers: set, ttl: 100 * time.Millisecond}, false, set, time.Second)
	step(15*time.Second, discAnswer{result: discEmpty}, false, set, 10*time.Second)
	step(25*time.Second, discAnswer{result: discError, err: errors.New("timeout")}, false, set, 10*time.Second)
	// NXDOMAIN from 35 s: kept at 35, 45, 55 and 64.9 s, emptied at 65 s.
	step(35*time.Second, discAnswer{result: discNXDomain}, false, set, 10*time.Second)
	step(45*time.Second, discAnswer{result: discNXDomain}, false, set, 10*time.Second)
	step(55*time.Second, discAnswer{result: discNXDomain}, false, set, 10*time.Second)
	step(64900*time.Millisecond, discAnswer{result: discNXDomain}, false, set, 10*time.Second)
	step(65*time.Second, discAnswer{result: discNXDomain}, true, []discServer{}, 10*time.Second)
	step(75*time.Second, discAnswer{result: discNXDomain}, false, []discServer{}, 10*time.Second)
	// Back: a new set; then a break in a run of NXDOMAIN starts it over.
	step(80*time.Second, discAnswer{result: discOK, servers: set[:1]}, true, set[:1], 10*time.Second)
	step(90*time.Second, discAnswer{result: discNXDomain}, false, set[:1], 10*time.Second)
	step(110*time.Second, discAnswer{result: discError}, false, set[:1], 10*time.Second)
	step(111*time.Second, discAnswer{result: discNXDomain}, false, set[:1], 10*time.Second)
	step(140*time.Second, discAnswer{result: discNXDomain}, false, set[:1], 10*time.Second)
	step(141*time.Second, discAnswer{result: discNXDomain}, true, []discServer{}, 10*time.Second)
	// A weight change alone is a change.
	step(150*time.Second, discAnswer{result: discOK, servers: set}, true, set, 10*time.Second)
	step(160*time.Second, discAnswer{result: discOK, servers: []discServer{{"10.0.0.1:80", 1}, {"10.0.0.2:80", 4}}}, true,
		[]discServer{{"10.0.0.1:80", 1}, {"10.0.0.2:80", 4}}, 10*time.Second)
}

// An answer with more servers than max_servers: the first by address are
// kept, the rest counted as dropped; a smaller answer drops none.
func TestDiscRecordMaxServers(t *testing.T) {
	t.Parallel()
	d := &discoverer{refresh: 10 * time.Second, max: 3}
	all := []discServer{{"10.0.0.1:80", 1}, {"10.0.0.2:80", 1}, {"10.0.0.3:80", 1}, {"10.0.0.4:80", 1}, {"10.0.0.5:80", 1}}
	now := time.Unix(1_000_000, 0)
	if !d.record(discAnswer{result: discOK, servers: all}, now) {
		t.Fatal("first answer: not a change")
	}
	if got := d.current(); !slices.Equal(got, all[:3]) {
		t.Errorf("set %v; want the first three by address %v", got, all[:3])
	}
	if in := d.info(); in.Servers != 3 || in.Dropped != 2 {
		t.Errorf("info: servers %d, dropped %d; want 3 and 2", in.Servers, in.Dropped)
	}
	if d.record(discAnswer{result: discOK, servers: all[1:]}, now.Add(10*time.Second)) != true {
		t.Error("an answer whose first three differ: not a change")
	}
	if got := d.current(); !slices.Equal(got, all[1:4]) {
		t.Errorf("set %v; want %v", got, all[1:4])
	}
	d.record(discAnswer{result: discOK, servers: all[:2]}, now.Add(20*time.Second))
	if in := d.info(); in.Servers != 2 || in.Dropped != 0 {
		t.Errorf("info after a small answer: servers %d, dropped %d; want 2 and 0", in.Servers, in.Dropped)
	}
}

// The pool is the config's servers plus the discovered ones, ordered by
// address; an address the config lists is that server (its weight); a
// reload with the same discovery keeps the discoverer and its set, a
// changed one makes a new discoverer that resolves again.
func TestDiscPoolMembers(t *testing.T) {
	t.Parallel()
	z := dnszone.Start(t)
	z.SetSRV("_api._tcp.disc.test", "1 5 9003 a.disc.test", "1 9 9001 a.disc.test")
	z.SetAddrs("a.disc.test", "127.0.0.1")
	bc := discBackend(t, z.Addr, "_api._tcp.disc.test", "127.0.0.1:9002", "127.0.0.1:9001")
	p, err := newPool(bc, nil)
	if err != nil {
		t.Fatal(err)
	}
	type member struct {
		addr, source string
		weight       int
	}
	members := func(p *Pool) []member {
		var out []member
		for i, s := range p.Servers {
			out = append(out, member{s.Address, p.discSource(s.Address), p.weights[i]})
		}
		return out
	}
	want := []member{{"127.0.0.1:9001", "config", 1}, {"127.0.0.1:9002", "config", 1}, {"127.0.0.1:9003", "dns", 5}}
	if got := members(p); !slices.Equal(got, want) {
		t.Errorf("servers %v; want %v", got, want)
	}
	if n := z.Count("_api._tcp.disc.test", "SRV"); n != 1 {
		t.Errorf("%d SRV queries building the pool; want 1", n)
	}
	// Same discovery: the same discoverer, no lookup; the same servers.
	z.SetSRV("_api._tcp.disc.test", "1 5 9004 a.disc.test")
	p2, err := newPool(discBackend(t, z.Addr, "_api._tcp.disc.test", "127.0.0.1:9002", "127.0.0.1:9001"), p)
	if err != nil {
		t.Fatal(err)
	}
	if p2.disc != p.disc || z.Count("_api._tcp.disc.test", "SRV") != 1 {
		t.Errorf("a reload with the same discovery made a new discoverer or looked up again")
	}
	if got := members(p2); !slices.Equal(got, want) {
		t.Errorf("after the reload: servers %v; want %v", got, want)
	}
	for i, s := range p2.Servers {
		if s != p.Servers[i] {
			t.Errorf("server %s is a new *affinity.Server after the reload", s.Address)
		}
	}
	// Changed refresh, same name: a new discoverer that starts from the
	// old one's set, with no lookup while the pool is built; its loop
	// resolves at once.
	bc3 := discBackend(t, z.Addr, "_api._tcp.disc.test", "127.0.0.1:9002", "127.0.0.1:9001")
	bc3.Discovery.Refresh = 5 * time.Second
	p3, err := newPool(bc3, p2)
	if err != nil {
		t.Fatal(err)
	}
	if got := members(p3); p3.disc == p2.disc || p3.discPrev != p2.disc || !slices.Equal(got, want) {
		t.Errorf("changed refresh: servers %v (new discoverer %v); want %v from a new one", got, p3.disc != p2.disc, want)
	}
	if n := z.Count("_api._tcp.disc.test", "SRV"); n != 1 || p3.disc.next.After(time.Now()) {
		t.Errorf("changed refresh: %d SRV queries, next lookup %v; want 1 (none while building) and due now", n, p3.disc.next)
	}
	p3.commit() // stops the old discoverer (never started: pools built alone)
	if !p2.disc.stopping {
		t.Errorf("commit did not stop the replaced discoverer")
	}
}

// discBackend is a backend with servers and discovery.dns on resolver.
func discBackend(t *testing.T, resolver, name string, servers ...string) *BackendConfig {
	t.Helper()
	bc := &BackendConfig{Name: "api", Balance: "roundrobin", Affinity: "none"}
	for _, a := range servers {
		bc.Servers = append(bc.Servers, ServerConfig{Address: a})
	}
	bc.Discovery = DiscoveryConfig{DNS: name, Resolver: resolver}
	cfg := &Config{Backends: []BackendConfig{*bc}}
	applyDefaults(cfg)
	return &cfg.Backends[0]
}
