// Package dnszone is a DNS server for tests: miekg/dns on 127.0.0.1 (UDP
// and TCP on one port) serving SRV, A and AAAA records that the test
// changes while it runs, with faults on demand (SERVFAIL, no answer,
// NXDOMAIN). The edge's unit tests and the e2e suite use it for DNS
// discovery.
package dnszone

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Zone is a running test DNS server; Addr is its host:port.
type Zone struct {
	Addr string

	mu      sync.Mutex
	srv     map[string][]*dns.SRV // by owner name (fqdn, lowercase)
	addrs   map[string][]string   // A/AAAA by owner name
	extra   bool                  // put the SRV targets' addresses in the additional section
	ttl     uint32
	mode    string          // "" answer | "servfail" | "drop" (no answer) | "nxdomain"
	nxLeft  int             // answer the next nxLeft SRV queries NXDOMAIN, then normally
	queries map[string]int  // by "name type"
	fail    map[string]bool // "name type" answered SERVFAIL

	servers []*dns.Server
}

// Start starts a server; it stops in t.Cleanup.
func Start(t testing.TB) *Zone {
	t.Helper()
	z := &Zone{srv: map[string][]*dns.SRV{}, addrs: map[string][]string{}, ttl: 60, queries: map[string]int{}}
	var pc net.PacketConn
	var ln net.Listener
	for try := 0; ; try++ {
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		if try == 20 {
			t.Fatalf("no port free for UDP and TCP: %v", err)
		}
	}
	z.Addr = pc.LocalAddr().String()
	started := make(chan struct{}, 2)
	up := func() { started <- struct{}{} }
	z.servers = []*dns.Server{
		{PacketConn: pc, Handler: z, NotifyStartedFunc: up},
		{Listener: ln, Handler: z, NotifyStartedFunc: up},
	}
	for _, s := range z.servers {
		go s.ActivateAndServe()
	}
	for range 2 {
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("test DNS server did not start")
		}
	}
	t.Cleanup(func() {
		for _, s := range z.servers {
			s.Shutdown()
		}
	})
	return z
}

// SetSRV replaces the SRV records of name: each "prio weight port target".
func (z *Zone) SetSRV(name string, recs ...string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	name = dns.Fqdn(strings.ToLower(name))
	var list []*dns.SRV
	for _, r := range recs {
		var prio, weight, port uint16
		var target string
		if _, err := fmt.Sscanf(r, "%d %d %d %s", &prio, &weight, &port, &target); err != nil {
			panic(fmt.Sprintf("SetSRV %q: %v", r, err))
		}
		list = append(list, &dns.SRV{Priority: prio, Weight: weight, Port: port, Target: dns.Fqdn(target)})
	}
	z.srv[name] = list
}

// SetAddrs replaces the A and AAAA records of name.
func (z *Zone) SetAddrs(name string, ips ...string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.addrs[dns.Fqdn(strings.ToLower(name))] = ips
}

// SetFail makes queries for name of type qtype ("A", "AAAA", "SRV")
// answer SERVFAIL (on) or normally.
func (z *Zone) SetFail(name, qtype string, on bool) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.fail == nil {
		z.fail = map[string]bool{}
	}
	z.fail[dns.Fqdn(strings.ToLower(name))+" "+qtype] = on
}

// SetMode makes every query answer normally (""), SERVFAIL ("servfail"),
// nothing ("drop") or NXDOMAIN ("nxdomain").
func (z *Zone) SetMode(m string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.mode = m
}

// SetExtra puts the SRV targets' addresses in the additional section of
// SRV answers (on) or not.
func (z *Zone) SetExtra(on bool) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.extra = on
}

// SetNXLeft makes the next n SRV queries answer NXDOMAIN, then normally.
func (z *Zone) SetNXLeft(n int) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.nxLeft = n
}

// Count returns how many queries for name of type qtype ("SRV", "A") came.
func (z *Zone) Count(name, qtype string) int {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.queries[dns.Fqdn(strings.ToLower(name))+" "+qtype]
}

// ServeDNS answers one query from the records: a name without any record
// is NXDOMAIN, a name without records of the type asked NOERROR and empty.
func (z *Zone) ServeDNS(w dns.ResponseWriter, q *dns.Msg) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if len(q.Question) != 1 {
		return
	}
	qn := strings.ToLower(q.Question[0].Name)
	qt := q.Question[0].Qtype
	z.queries[qn+" "+dns.TypeToString[qt]]++
	m := new(dns.Msg)
	m.SetReply(q)
	hdr := func(name string, t uint16) dns.RR_Header {
		return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: z.ttl}
	}
	addrRRs := func(name string, want uint16) []dns.RR {
		var out []dns.RR
		for _, s := range z.addrs[name] {
			ip := net.ParseIP(s)
			switch {
			case ip.To4() != nil && (want == dns.TypeA || want == 0):
				out = append(out, &dns.A{Hdr: hdr(name, dns.TypeA), A: ip.To4()})
			case ip.To4() == nil && (want == dns.TypeAAAA || want == 0):
				out = append(out, &dns.AAAA{Hdr: hdr(name, dns.TypeAAAA), AAAA: ip})
			}
		}
		return out
	}
	_, isSRV := z.srv[qn]
	_, isAddr := z.addrs[qn]
	switch {
	case z.mode == "drop":
		return
	case z.mode == "servfail", z.fail[qn+" "+dns.TypeToString[qt]]:
		m.Rcode = dns.RcodeServerFailure
	case z.mode == "nxdomain", qt == dns.TypeSRV && z.nxLeft > 0:
		if qt == dns.TypeSRV && z.nxLeft > 0 {
			z.nxLeft--
		}
		m.Rcode = dns.RcodeNameError
	case !isSRV && !isAddr:
		m.Rcode = dns.RcodeNameError
	case qt == dns.TypeSRV:
		for _, r := range z.srv[qn] {
			rr := *r
			rr.Hdr = hdr(qn, dns.TypeSRV)
			m.Answer = append(m.Answer, &rr)
			if z.extra {
				m.Extra = append(m.Extra, addrRRs(r.Target, 0)...)
			}
		}
	case qt == dns.TypeA || qt == dns.TypeAAAA:
		m.Answer = addrRRs(qn, qt)
	}
	w.WriteMsg(m)
}
