package edge

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tlsedge/tlsedge/certs"
	"github.com/tlsedge/tlsedge/tlsmode"
)

var ringT0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// keyAges returns the age at now of each key of r, newest first.
func keyAges(r *ticketRing, now time.Time) []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []time.Duration
	for _, k := range r.keys {
		out = append(out, now.Sub(k.created))
	}
	return out
}

// encrypting returns the key that encrypts new tickets.
func (r *ticketRing) encrypting() [32]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.keys[0].key
}

func keySet(r *ticketRing) map[[32]byte]time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := map[[32]byte]time.Time{}
	for _, k := range r.keys {
		m[k.key] = k.created
	}
	return m
}

// With an injected clock: an hourly ring keeps 24 keys, the newest first;
// the one made 24 hours ago is dropped at the rotation that comes with its
// 24th hour; nothing rotates before its time.
func TestTicketRingHourly(t *testing.T) {
	r := newTicketRing("p", time.Hour, ringT0, zerolog.Nop())
	if got := r.wait(ringT0); got != time.Hour {
		t.Fatalf("first wait: got %v; want 1h", got)
	}
	first := r.encrypting()
	r.rotate(ringT0.Add(59 * time.Minute))
	if n := len(keyAges(r, ringT0)); n != 1 || r.encrypting() != first {
		t.Fatalf("rotation before the period: %d keys, same first key %v; want 1 key, unchanged", n, r.encrypting() == first)
	}
	for h := 1; h <= 30; h++ {
		now := ringT0.Add(time.Duration(h) * time.Hour)
		if got := r.wait(now); got != 0 {
			t.Fatalf("hour %d: wait %v; want 0 (due)", h, got)
		}
		r.rotate(now)
		ages := keyAges(r, now)
		want := min(h+1, maxTicketKeys)
		if len(ages) != want {
			t.Fatalf("hour %d: %d keys; want %d", h, len(ages), want)
		}
		if ages[0] != 0 || ages[len(ages)-1] != time.Duration(want-1)*time.Hour {
			t.Fatalf("hour %d: key ages %v; want 0 (new, encrypting) to %dh", h, ages, want-1)
		}
		if got := r.wait(now); got != time.Hour {
			t.Fatalf("hour %d: next wait %v; want 1h", h, got)
		}
	}
}

// Whatever the period, following the ring's own schedule: a new key at
// least every period (at most a day), never more than 24 keys, and no key
// kept once it is a day old, so no ticket is valid for more than a day.
func TestTicketRingSchedule(t *testing.T) {
	for _, period := range []time.Duration{time.Minute, 40 * time.Minute, time.Hour, 5 * time.Hour, 7 * time.Hour, 24 * time.Hour, 48 * time.Hour} {
		t.Run(period.String(), func(t *testing.T) {
			r := newTicketRing("p", period, ringT0, zerolog.Nop())
			eff := min(period, maxTicketAge)
			if r.period != eff {
				t.Fatalf("period: got %v; want %v", r.period, eff)
			}
			now := ringT0
			known := keySet(r)
			dropped := 0
			for step := 0; step < 300; step++ {
				d := r.wait(now)
				if d <= 0 || d > eff {
					t.Fatalf("step %d: wait %v; want in (0, %v]", step, d, eff)
				}
				now = now.Add(d)
				r.rotate(now)
				ages := keyAges(r, now)
				if len(ages) > maxTicketKeys {
					t.Fatalf("step %d: %d keys; want at most %d", step, len(ages), maxTicketKeys)
				}
				if ages[0] >= eff {
					t.Fatalf("step %d: the encrypting key is %v old; want less than %v", step, ages[0], eff)
				}
				if old := ages[len(ages)-1]; old >= maxTicketAge {
					t.Fatalf("step %d: a key %v old is kept; want less than %v", step, old, maxTicketAge)
				}
				cur := keySet(r)
				for k, created := range known {
					if _, ok := cur[k]; !ok {
						dropped++
						if life := now.Sub(created); life > maxTicketAge {
							t.Fatalf("step %d: a key was usable for %v; want at most %v", step, life, maxTicketAge)
						}
					}
				}
				known = cur
			}
			if dropped == 0 {
				t.Fatal("no key was ever dropped; the test proves nothing")
			}
		})
	}
}

// tlsPair is a server certificate for a.example.com and b.example.com and
// a client config trusting it.
type tlsPair struct {
	cert tls.Certificate
	ca   *certs.Authority
}

func newTLSPair(t *testing.T) *tlsPair {
	t.Helper()
	ca, err := certs.NewAuthority("ticket test CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(certs.Leaf{CommonName: "edge", DNSNames: []string{"a.example.com", "b.example.com"}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	return &tlsPair{cert: leaf.TLS, ca: ca}
}

// serverConfig is a route-like server config: tickets bound to names.
func (p *tlsPair) serverConfig() *tls.Config {
	tc := &tls.Config{Certificates: []tls.Certificate{p.cert}}
	bindSessions(tc)
	return tc
}

// dialResume runs one handshake of a client using cache against srv on a
// loopback socket, reads one byte (TLS 1.3 tickets come after the
// handshake), and reports whether the session was resumed.
func (p *tlsPair) dialResume(t *testing.T, srv *tls.Config, name string, version uint16, cache tls.ClientSessionCache) bool {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	errc := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		s := tls.Server(c, srv)
		if err := s.Handshake(); err != nil {
			errc <- err
			return
		}
		_, err = s.Write([]byte("x"))
		errc <- err
	}()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", ln.Addr().String(), &tls.Config{
		ServerName: name, RootCAs: p.ca.Pool(), ClientSessionCache: cache, MinVersion: version, MaxVersion: version,
	})
	if err != nil {
		t.Fatalf("handshake with %s: %v", name, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatalf("reading from %s: %v", name, err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("server: %v", err)
	}
	return c.ConnectionState().DidResume
}

// Real handshakes through a ring's configs: a ticket made under the first
// key resumes through 23 rotations (the older keys still decrypt) and not
// after the rotation that drops its key, a day later. The rotations reach
// the config in force (SetSessionTicketKeys), or the dropped key would go
// on decrypting.
func TestTicketRingResumption(t *testing.T) {
	p := newTLSPair(t)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			srv := p.serverConfig()
			r := newTicketRing("p", time.Hour, ringT0, zerolog.Nop())
			r.setConfigs([]*tls.Config{srv})
			cache := &oneSessionCache{} // offers the first ticket, made under the first key, forever
			if p.dialResume(t, srv, "a.example.com", v, cache) {
				t.Fatal("first handshake: resumed; want a full handshake")
			}
			for h := 0; h <= 23; h++ {
				r.rotate(ringT0.Add(time.Duration(h) * time.Hour))
				if !p.dialResume(t, srv, "a.example.com", v, cache) {
					t.Fatalf("after %d rotations (%d keys): did not resume; want the first key to still decrypt", h, len(keyAges(r, ringT0)))
				}
			}
			r.rotate(ringT0.Add(24 * time.Hour))
			if p.dialResume(t, srv, "a.example.com", v, cache) {
				t.Errorf("a day after its key was made: resumed; want a full handshake (the key dropped)")
			}
		})
	}
}

// Routes of one policy share keys, but a session resumes only for the
// server name it was made for (RFC 6066 §3).
func TestTicketBoundToServerName(t *testing.T) {
	p := newTLSPair(t)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			a, b := p.serverConfig(), p.serverConfig()
			r := newTicketRing("p", time.Hour, ringT0, zerolog.Nop())
			r.setConfigs([]*tls.Config{a, b})
			cache := &oneSessionCache{}
			p.dialResume(t, a, "a.example.com", v, cache)
			if !p.dialResume(t, b, "a.example.com", v, cache) {
				t.Fatal("same name, other config of the ring: did not resume; want resumed (shared keys)")
			}
			if p.dialResume(t, b, "b.example.com", v, cache) {
				t.Error("a.example.com's session on b.example.com: resumed; want a full handshake")
			}
		})
	}
}

// A stage changes nothing until committed; a commit starts new rings, keeps
// those still used and stops the others; stop stops them all.
func TestTicketRingsCommit(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	k := newTicketRings(ctx, zerolog.Nop())
	a1, a2, b1 := &tls.Config{}, &tls.Config{}, &tls.Config{}
	s := k.stage()
	s.attach("A", time.Hour, a1)
	s.attach("A", time.Hour, a2)
	s.attach("B", time.Nanosecond, b1)
	ra, rb := s.rings["A"], s.rings["B"]
	if ra == rb || ra.cancel != nil || len(k.rings) != 0 {
		t.Fatalf("before commit: shared %v, started %v, rings in force %d; want two rings, none started or in force", ra == rb, ra.cancel != nil, len(k.rings))
	}
	if rb.period != minTicketRotation {
		t.Errorf("a 1ns rotation: period %v; want the floor %v", rb.period, minTicketRotation)
	}
	k.commit(s)
	if k.rings["A"] != ra || !slices.Equal(ra.configs, []*tls.Config{a1, a2}) || ra.done == nil {
		t.Fatalf("after commit: ring A in force %v, configs %d, started %v; want in force with both configs, started",
			k.rings["A"] == ra, len(ra.configs), ra.done != nil)
	}

	dropped := k.stage()
	dropped.attach("C", time.Hour, &tls.Config{})
	if len(k.rings) != 2 || isDone(rb.done) {
		t.Fatalf("a stage never committed: %d rings in force, B stopped %v; want 2, running", len(k.rings), isDone(rb.done))
	}

	a3 := &tls.Config{}
	s2 := k.stage()
	s2.attach("A", time.Hour, a3)
	k.commit(s2)
	if k.rings["A"] != ra || !slices.Equal(ra.configs, []*tls.Config{a3}) {
		t.Errorf("ring A after a reload that kept its policy: same ring %v, configs %v; want the same ring with the new config only", k.rings["A"] == ra, ra.configs)
	}
	if !waitDone(rb.done) {
		t.Error("ring B, no longer used: still running 5s after the commit")
	}
	if _, ok := k.rings["B"]; ok {
		t.Error("ring B, no longer used: still in force")
	}
	k.stop()
	if !waitDone(ra.done) {
		t.Error("ring A: still running 5s after stop")
	}
}

// The ring's goroutine rotates on time and the configs get the new keys.
func TestTicketRingRuns(t *testing.T) {
	r := newTicketRing("p", 20*time.Millisecond, time.Now(), zerolog.Nop())
	p := newTLSPair(t)
	srv := p.serverConfig()
	r.setConfigs([]*tls.Config{srv})
	cache := &oneSessionCache{}
	p.dialResume(t, srv, "a.example.com", tls.VersionTLS13, cache)

	ctx, cancel := context.WithCancel(context.Background())
	r.done = make(chan struct{})
	go r.run(ctx, time.Now)
	// 20ms rotations: after a second the first key is more than 24 keys
	// old, so its ticket no longer resumes.
	deadline := time.Now().Add(5 * time.Second)
	for p.dialResume(t, srv, "a.example.com", tls.VersionTLS13, cache) {
		if time.Now().After(deadline) {
			t.Fatalf("the first ticket still resumes after 5s of 20ms rotations (%d keys)", len(keyAges(r, time.Now())))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := len(keyAges(r, time.Now())); n != maxTicketKeys {
		t.Errorf("keys after many rotations: got %d; want %d", n, maxTicketKeys)
	}
	cancel()
	if !waitDone(r.done) {
		t.Error("the ring's goroutine still runs 5s after its context ended")
	}
}

func isDone(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func waitDone(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	case <-time.After(5 * time.Second):
		return false
	}
}

// ringOf returns the ring in force whose configs hold tc, or nil.
func ringOf(e *Edge, tc *tls.Config) *ticketRing {
	k := e.tickets
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, r := range k.rings {
		r.mu.Lock()
		found := slices.Contains(r.configs, tc)
		r.mu.Unlock()
		if found {
			return r
		}
	}
	return nil
}

// routeTLSConfig returns the server tls.Config of the terminate route
// serving sni on the listener called listener.
func routeTLSConfig(t *testing.T, e *Edge, listener, sni string) *tls.Config {
	t.Helper()
	term, ok := routeFor(t, e, listener, sni).Handler.(*tlsmode.Terminate)
	if !ok {
		t.Fatalf("route for %q is not a terminate route", sni)
	}
	return term.TLS
}

// routeFor returns the route for sni on the listener called listener.
func routeFor(t *testing.T, e *Edge, listener, sni string) *Route {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, l := range e.listeners {
		if st := l.state.Load(); st.name == listener {
			if r := st.table.Match(sni); r != nil {
				return r
			}
		}
	}
	t.Fatalf("no route for %q on listener %q", sni, listener)
	return nil
}
