package edge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// discTarget is a parsed discovery.dns: an SRV name, or an A/AAAA name
// with the port its servers listen on.
type discTarget struct {
	name string // fully qualified, lowercase ("_api._tcp.example.", "api.internal.")
	port int    // the A/AAAA form's port; 0 for SRV (the records carry it)
}

func (t discTarget) srv() bool { return t.port == 0 }

// errDiscSyntax is the error of every malformed discovery.dns.
var errDiscSyntax = errors.New("edge: bad discovery.dns")

// discParse reads discovery.dns: "_service._tcp.name" (an SRV name: its
// first label starts with "_", its second is "_tcp") or "name:port" (A and
// AAAA records of name, each address a server on port). A trailing dot is
// optional; names are not completed with resolv.conf search domains. An IP
// address with a port is refused: that is a server, list it under servers.
func discParse(s string) (discTarget, error) {
	if s == "" {
		return discTarget{}, fmt.Errorf("%w: empty", errDiscSyntax)
	}
	if strings.HasPrefix(s, "_") {
		name := strings.ToLower(dns.Fqdn(s))
		labels := dns.SplitDomainName(name)
		if !discNameOK(name) || len(labels) < 3 || labels[1] != "_tcp" || len(labels[0]) < 2 {
			return discTarget{}, fmt.Errorf("%w: %q is not an SRV name: write _service._tcp.example.com", errDiscSyntax, s)
		}
		return discTarget{name: name}, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return discTarget{}, fmt.Errorf("%w: %q is neither an SRV name (_service._tcp.example.com) nor name:port (api.internal:8443)", errDiscSyntax, s)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return discTarget{}, fmt.Errorf("%w: %q: port must be a number from 1 to 65535", errDiscSyntax, s)
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return discTarget{}, fmt.Errorf("%w: %q is an address, not a name: list it under servers", errDiscSyntax, s)
	}
	name := strings.ToLower(dns.Fqdn(host))
	if !discNameOK(name) || host == "" || strings.HasPrefix(host, "_") {
		return discTarget{}, fmt.Errorf("%w: %q: %q is not a DNS name", errDiscSyntax, s, host)
	}
	return discTarget{name: name, port: n}, nil
}

// discNameOK reports whether name (fully qualified) is a DNS name of
// letters, digits, "-" and "_", in labels of 1 to 63 bytes, 253 in all.
func discNameOK(name string) bool {
	if _, ok := dns.IsDomainName(name); !ok || name == "." || len(name) > 254 {
		return false
	}
	for _, label := range dns.SplitDomainName(name) {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// discServer is one server found in DNS.
type discServer struct {
	Address string // ip:port
	Weight  int    // SRV weight (at least 1); 1 for A/AAAA
}

// Results of a lookup, the values of the result label of
// tlsedge_discovery_lookups_total.
const (
	discOK       = "ok"       // servers found
	discEmpty    = "empty"    // NOERROR without usable records
	discNXDomain = "nxdomain" // the name does not exist
	discError    = "error"    // timeout, SERVFAIL, REFUSED, network, bad answer
)

// discAnswer is the outcome of one lookup.
type discAnswer struct {
	servers []discServer  // sorted by address (result ok only)
	ttl     time.Duration // the smallest TTL of the records used; 0 = none
	result  string
	err     error // why, for result error (and nxdomain: which name); for ok, what did not resolve
	// addrs: the addresses of each name in servers (result ok), the
	// previous ones kept where a name did not resolve.
	addrs discKnown
}

// discQueryTimeout bounds one DNS exchange with one server.
const discQueryTimeout = 2 * time.Second

// discResolver asks DNS servers: the configured one, or those of
// /etc/resolv.conf (read again at every lookup, so an edit is followed).
type discResolver struct {
	server     string // host:port; "" = resolv.conf
	resolvConf string // the file; "" = /etc/resolv.conf
}

func (r discResolver) servers() ([]string, error) {
	if r.server != "" {
		return []string{r.server}, nil
	}
	path := r.resolvConf
	if path == "" {
		path = "/etc/resolv.conf"
	}
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the system's resolvers: %w", err)
	}
	if len(cc.Servers) == 0 {
		return nil, fmt.Errorf("no nameserver in %s: set discovery.resolver", path)
	}
	out := make([]string, 0, len(cc.Servers))
	for _, s := range cc.Servers {
		out = append(out, net.JoinHostPort(s, cc.Port))
	}
	return out, nil
}

// exchange asks for name's qtype records over UDP (TCP when the answer is
// truncated), trying the servers in order until one answers NOERROR or
// NXDOMAIN. It returns the last answer or error otherwise.
func (r discResolver) exchange(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	servers, err := r.servers()
	if err != nil {
		return nil, err
	}
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	q.SetEdns0(4096, false)
	var last *dns.Msg
	for _, srv := range servers {
		c := &dns.Client{Net: "udp", Timeout: discQueryTimeout}
		var in *dns.Msg
		in, _, err = c.ExchangeContext(ctx, q, srv)
		if err == nil && in.Truncated {
			c.Net = "tcp"
			in, _, err = c.ExchangeContext(ctx, q, srv)
		}
		if err != nil {
			err = fmt.Errorf("asking %s for %s %s: %w", srv, name, dns.TypeToString[qtype], err)
			continue
		}
		if in.Rcode == dns.RcodeSuccess || in.Rcode == dns.RcodeNameError {
			return in, nil
		}
		last = in
		err = fmt.Errorf("asking %s for %s %s: %s", srv, name, dns.TypeToString[qtype], dns.RcodeToString[in.Rcode])
	}
	if last != nil && err == nil {
		err = fmt.Errorf("%s %s: %s", name, dns.TypeToString[qtype], dns.RcodeToString[last.Rcode])
	}
	return nil, err
}

// lookup resolves t into servers. SRV: the records of the lowest priority
// present (RFC 2782: higher ones are fallbacks, used only when the lowest
// are absent), each target's addresses from the answer's additional
// section or else from A and AAAA queries; a target "." (service not
// offered) and a target without an address are left out. A/AAAA: every
// address of the name, on t.port. known: the addresses of each name in
// the last good set; a target whose queries fail keeps those (on its
// record's port and weight) and without any is left out, the answer still
// ok unless nothing resolved (see addresses for one family failing).
func (r discResolver) lookup(ctx context.Context, t discTarget, known discKnown) discAnswer {
	if !t.srv() {
		addrs, ttl, res, err := r.addresses(ctx, t.name, nil, known[t.name])
		if res != discOK {
			return discAnswer{result: res, err: err}
		}
		var out []discServer
		for _, a := range addrs {
			out = append(out, discServer{Address: netip.AddrPortFrom(a, uint16(t.port)).String(), Weight: 1})
		}
		ans := discFinish(out, ttl)
		ans.err, ans.addrs = err, discKnown{t.name: addrs}
		return ans
	}
	in, err := r.exchange(ctx, t.name, dns.TypeSRV)
	if err != nil {
		return discAnswer{result: discError, err: err}
	}
	if in.Rcode == dns.RcodeNameError {
		return discAnswer{result: discNXDomain, err: fmt.Errorf("%s: NXDOMAIN", t.name)}
	}
	records := discLowestPriority(in.Answer)
	if len(records) == 0 {
		return discAnswer{result: discEmpty}
	}
	ttl := time.Duration(0)
	var out []discServer
	var failed []error
	got := discKnown{}
	for _, rr := range records {
		ttl = discMinTTL(ttl, rr.Hdr.Ttl)
		if rr.Target == "." {
			continue
		}
		target := strings.ToLower(rr.Target)
		addrs, attl, res, err := r.addresses(ctx, target, in.Extra, known[target])
		switch res {
		case discError:
			addrs = known[target] // its previous addresses, if any
			failed = append(failed, fmt.Errorf("SRV target %s: %w (kept %d previous addresses)", rr.Target, err, len(addrs)))
		case discOK:
			if err != nil {
				failed = append(failed, fmt.Errorf("SRV target %s: %w", rr.Target, err))
			}
			if attl > 0 {
				ttl = discMinTTL(ttl, uint32(attl/time.Second))
			}
		}
		if len(addrs) > 0 {
			got[target] = addrs
		}
		for _, a := range addrs {
			out = append(out, discServer{Address: netip.AddrPortFrom(a, rr.Port).String(), Weight: max(int(rr.Weight), 1)})
		}
	}
	switch {
	case len(out) == 0 && len(failed) > 0:
		return discAnswer{result: discError, err: errors.Join(failed...)}
	case len(out) == 0:
		return discAnswer{result: discEmpty, ttl: ttl}
	}
	ans := discFinish(out, ttl)
	ans.err, ans.addrs = errors.Join(failed...), got
	return ans
}

// discFinish sorts servers by address (two instances given the same answer
// build the same pool) and keeps one entry per address, the largest weight.
func discFinish(servers []discServer, ttl time.Duration) discAnswer {
	slices.SortFunc(servers, func(a, b discServer) int { return discCompareAddr(a.Address, b.Address) })
	out := servers[:0]
	for _, s := range servers {
		if n := len(out); n > 0 && out[n-1].Address == s.Address {
			out[n-1].Weight = max(out[n-1].Weight, s.Weight)
			continue
		}
		out = append(out, s)
	}
	return discAnswer{servers: out, ttl: ttl, result: discOK}
}

// discCompareAddr orders ip:port addresses numerically (IPv4 before IPv6),
// anything else by its text after them.
func discCompareAddr(a, b string) int {
	pa, ea := netip.ParseAddrPort(a)
	pb, eb := netip.ParseAddrPort(b)
	switch {
	case ea == nil && eb == nil:
		return pa.Compare(pb)
	case ea == nil:
		return -1
	case eb == nil:
		return 1
	}
	return strings.Compare(a, b)
}

// discLowestPriority returns the SRV records of rrs with the lowest
// priority among them.
func discLowestPriority(rrs []dns.RR) []*dns.SRV {
	var out []*dns.SRV
	for _, rr := range rrs {
		srv, ok := rr.(*dns.SRV)
		if !ok {
			continue
		}
		switch {
		case len(out) == 0 || srv.Priority == out[0].Priority:
			out = append(out, srv)
		case srv.Priority < out[0].Priority:
			out = append(out[:0], srv)
		}
	}
	return out
}

func discMinTTL(cur time.Duration, ttl uint32) time.Duration {
	d := time.Duration(ttl) * time.Second
	if cur == 0 || d < cur {
		return d
	}
	return cur
}

// addresses returns name's IPv4 and IPv6 addresses: from extra (an SRV
// answer's additional section) when it has any for name, else from A and
// AAAA queries. Result ok with addresses, empty (NOERROR, none: also a
// name that has only one of the two families), nxdomain (both queries),
// or error (both queries failed, or one failed and nothing is known).
// When one query fails, that family's addresses are the previous ones
// (those of prev) and the result is ok if there is any address, with the
// failure as err.
func (r discResolver) addresses(ctx context.Context, name string, extra []dns.RR, prev []netip.Addr) ([]netip.Addr, time.Duration, string, error) {
	if addrs, ttl := discAddrsIn(extra, name); len(addrs) > 0 {
		return addrs, ttl, discOK, nil
	}
	var all []netip.Addr
	var ttl time.Duration
	nx := 0
	var failed []error
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		in, err := r.exchange(ctx, name, qt)
		if err != nil {
			failed = append(failed, err)
			for _, a := range prev { // that family's previous addresses
				if a.Is4() == (qt == dns.TypeA) {
					all = append(all, a)
				}
			}
			continue
		}
		if in.Rcode == dns.RcodeNameError {
			nx++
			continue
		}
		// Every address in the answer: a CNAME chain ends in the records
		// of another name.
		addrs, t := discAddrsIn(in.Answer, "")
		all = append(all, addrs...)
		if t > 0 && (ttl == 0 || t < ttl) {
			ttl = t
		}
	}
	switch {
	case len(failed) == 2 || len(failed) == 1 && len(all) == 0:
		return nil, 0, discError, errors.Join(failed...)
	case len(all) > 0:
		return all, ttl, discOK, errors.Join(failed...)
	case nx == 2:
		return nil, 0, discNXDomain, fmt.Errorf("%s: NXDOMAIN", name)
	}
	return nil, 0, discEmpty, nil
}

// discAddrsIn returns the addresses of the A and AAAA records of rrs (of
// owner name only, unless name is ""), and their smallest TTL.
func discAddrsIn(rrs []dns.RR, name string) ([]netip.Addr, time.Duration) {
	var out []netip.Addr
	var ttl time.Duration
	for _, rr := range rrs {
		if name != "" && !strings.EqualFold(rr.Header().Name, name) {
			continue
		}
		var ip net.IP
		switch v := rr.(type) {
		case *dns.A:
			ip = v.A
		case *dns.AAAA:
			ip = v.AAAA
		default:
			continue
		}
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			continue
		}
		out = append(out, a.Unmap())
		ttl = discMinTTL(ttl, rr.Header().Ttl)
	}
	return out, ttl
}
