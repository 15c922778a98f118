package edge

import (
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"math/big"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/affinity"
	"github.com/tlsedge/tlsedge/certs"
	"github.com/tlsedge/tlsedge/tlsmode"
)

// regEdge is the least of an Edge the registry's events need.
func regEdge() *Edge { return &Edge{reg: newRegistry()} }

// regConn registers a connection whose events go to e, as a listener does.
func regConn(e *Edge) *tlsmode.Conn {
	c := &tlsmode.Conn{Events: connEvents{e}, Start: time.Now()}
	e.reg.add(c)
	return c
}

// regCert is a real client certificate of a throwaway CA.
func regCert(t testing.TB, ca *certs.Authority, l certs.Leaf) *x509.Certificate {
	t.Helper()
	l.Client = true
	is, err := ca.Issue(l)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(is.TLS.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// synthCert is a certificate as NewClientIdentity reads it, without a
// signature (100,000 real ones take too long to make): CN device-i, a URI
// and a DNS SAN, and Raw bytes of its own, so every SHA-256 differs.
func synthCert(tb testing.TB, i int) *x509.Certificate {
	cn := fmt.Sprintf("device-%d", i)
	subj, err := asn1.Marshal(pkix.Name{CommonName: cn}.ToRDNSequence())
	if err != nil {
		tb.Fatal(err)
	}
	u, _ := url.Parse(fmt.Sprintf("spiffe://example.org/device/%d", i))
	return &x509.Certificate{
		Raw:          []byte("synthetic certificate " + cn),
		RawSubject:   subj,
		RawIssuer:    subj,
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     []string{cn + ".devices.example.com"},
		URIs:         []*url.URL{u},
		SerialNumber: big.NewInt(int64(i) + 1),
		NotAfter:     time.Now().Add(time.Hour),
	}
}

func sha256Hex(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

func connIDs(cs []*tlsmode.Conn) []uint64 {
	ids := make([]uint64, len(cs))
	for i, c := range cs {
		ids[i] = c.ID
	}
	return ids
}

// Add gives distinct ids and lists the connection; remove takes it out of
// the list, and out of the identity index under every key (CN, URI and DNS
// SANs, SHA-256), leaving no empty index entries behind.
func TestRegistryAddRemoveIdentity(t *testing.T) {
	t.Parallel()
	ca, err := certs.NewAuthority("registry test CA")
	if err != nil {
		t.Fatal(err)
	}
	leafA := regCert(t, ca, certs.Leaf{CommonName: "device-7",
		URIs:     []*url.URL{{Scheme: "spiffe", Host: "example.org", Path: "/device/7"}},
		DNSNames: []string{"device-7.devices.example.com", "d7.example.net"}})
	leafB := regCert(t, ca, certs.Leaf{CommonName: "device-70"})

	e := regEdge()
	r := e.reg
	a1, a2, b, anon := regConn(e), regConn(e), regConn(e), regConn(e)
	if ids := []uint64{a1.ID, a2.ID, b.ID, anon.ID}; slices.Contains(ids, 0) || len(slices.Compact(slices.Sorted(slices.Values(ids)))) != 4 {
		t.Fatalf("ids %v; want 4 distinct non-zero ids", ids)
	}
	if got := r.count(); got != 4 {
		t.Fatalf("count: got %d; want 4", got)
	}
	if got := r.get(b.ID); got != b {
		t.Errorf("get(%d): got %p; want %p", b.ID, got, b)
	}
	// Two connections of the same certificate, one of another.
	a1.SetIdentity(tlsmode.NewClientIdentity(leafA))
	a2.SetIdentity(tlsmode.NewClientIdentity(leafA))
	b.SetIdentity(tlsmode.NewClientIdentity(leafB))

	keysA := []string{"device-7", "spiffe://example.org/device/7", "device-7.devices.example.com", "d7.example.net", sha256Hex(leafA.Raw)}
	for _, k := range keysA {
		if got, want := connIDs(r.list(connFilter{Client: k})), []uint64{a1.ID, a2.ID}; !slices.Equal(got, want) {
			t.Errorf("list(client=%q): got ids %v; want %v", k, got, want)
		}
	}
	// Exact match only: device-7 is not a prefix match for device-70.
	if got, want := connIDs(r.list(connFilter{Client: "device-70"})), []uint64{b.ID}; !slices.Equal(got, want) {
		t.Errorf("list(client=device-70): got ids %v; want %v", got, want)
	}
	if got := r.list(connFilter{Client: "device-"}); len(got) != 0 {
		t.Errorf("list(client=device-): got ids %v; want none", connIDs(got))
	}
	if got := r.list(connFilter{}); len(got) != 4 {
		t.Errorf("list(): got %d connections; want 4", len(got))
	}

	r.remove(a1)
	if r.get(a1.ID) != nil {
		t.Errorf("get(%d) after remove: still listed", a1.ID)
	}
	for _, k := range keysA {
		if got, want := connIDs(r.list(connFilter{Client: k})), []uint64{a2.ID}; !slices.Equal(got, want) {
			t.Errorf("after removing %d: list(client=%q): got ids %v; want %v", a1.ID, k, got, want)
		}
	}
	r.remove(a2)
	r.remove(b)
	r.remove(anon)
	if got := r.count(); got != 0 {
		t.Errorf("count after removing all: got %d; want 0", got)
	}
	r.mu.Lock()
	left := len(r.byClient)
	r.mu.Unlock()
	if left != 0 {
		t.Errorf("identity index after removing all: %d keys left; want 0", left)
	}
}

// A certificate whose CN is also one of its DNS SANs (common for device
// certificates) is one connection: a lookup by that name lists it once,
// and remove leaves nothing behind.
func TestRegistryIdentityRepeatedKey(t *testing.T) {
	t.Parallel()
	ca, err := certs.NewAuthority("registry test CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf := regCert(t, ca, certs.Leaf{CommonName: "device-9.devices.example.com",
		DNSNames: []string{"device-9.devices.example.com"}})
	e := regEdge()
	c := regConn(e)
	c.SetIdentity(tlsmode.NewClientIdentity(leaf))
	if got, want := connIDs(e.reg.list(connFilter{Client: "device-9.devices.example.com"})), []uint64{c.ID}; !slices.Equal(got, want) {
		t.Errorf("list(client=device-9.devices.example.com): got ids %v; want %v", got, want)
	}
	e.reg.remove(c)
	e.reg.mu.Lock()
	left := len(e.reg.byClient)
	e.reg.mu.Unlock()
	if left != 0 {
		t.Errorf("identity index after remove: %d keys left; want 0", left)
	}
}

// The server index follows Bind: a stream is listed under the server it is
// bound to now, moves when it is bound elsewhere, leaves on Bind(nil), and
// remove cleans it even while bound. LastServer keeps the last one.
func TestRegistryBoundFollowsBind(t *testing.T) {
	t.Parallel()
	s1, s2 := affinity.NewServer("127.0.0.1:9001", 1), affinity.NewServer("127.0.0.1:9002", 1)
	e := regEdge()
	r := e.reg
	c1, c2, c3 := regConn(e), regConn(e), regConn(e)
	onServer := func(s *affinity.Server) []uint64 { return connIDs(r.onServer(s)) }

	c1.Bind(s1)
	c2.Bind(s1)
	if got, want := onServer(s1), []uint64{c2.ID, c1.ID}; !slices.Equal(got, want) {
		t.Errorf("onServer(s1): got %v; want %v (newest first)", got, want)
	}
	if got := r.boundCount(s1); got != 2 {
		t.Errorf("boundCount(s1): got %d; want 2", got)
	}
	if got, want := connIDs(r.list(connFilter{Server: s1.Address})), []uint64{c1.ID, c2.ID}; !slices.Equal(got, want) {
		t.Errorf("list(server=%s): got %v; want %v", s1.Address, got, want)
	}

	c1.Bind(s2) // moved
	if got, want := onServer(s1), []uint64{c2.ID}; !slices.Equal(got, want) {
		t.Errorf("after moving %d: onServer(s1): got %v; want %v", c1.ID, got, want)
	}
	if got, want := onServer(s2), []uint64{c1.ID}; !slices.Equal(got, want) {
		t.Errorf("after moving %d: onServer(s2): got %v; want %v", c1.ID, got, want)
	}
	c1.Bind(s2) // again: no change
	if got := r.boundCount(s2); got != 1 {
		t.Errorf("after binding twice to s2: boundCount(s2) got %d; want 1", got)
	}

	c2.Bind(nil)
	if got := r.boundCount(s1); got != 0 {
		t.Errorf("after Bind(nil): boundCount(s1) got %d; want 0", got)
	}
	if got := c2.LastServer(); got != s1 {
		t.Errorf("LastServer after Bind(nil): got %v; want s1", got)
	}
	if got, want := connIDs(r.list(connFilter{Server: s1.Address})), []uint64{c2.ID}; !slices.Equal(got, want) {
		t.Errorf("list(server=%s) after Bind(nil): got %v; want %v (the last server)", s1.Address, got, want)
	}

	c3.Bind(s2)
	r.remove(c3) // while bound
	if got, want := onServer(s2), []uint64{c1.ID}; !slices.Equal(got, want) {
		t.Errorf("after removing bound %d: onServer(s2) got %v; want %v", c3.ID, got, want)
	}
	c3.Bind(nil) // a late unbind after remove (an upgraded body closed after the handler) changes nothing
	r.remove(c1)
	r.remove(c2)
	r.mu.Lock()
	left := len(r.byServer)
	r.mu.Unlock()
	if left != 0 {
		t.Errorf("server index after removing all: %d servers left; want 0", left)
	}
}

// Many connections added, identified, bound and removed at once: the
// registry ends empty (run with -race).
func TestRegistryConcurrent(t *testing.T) {
	t.Parallel()
	e := regEdge()
	s := affinity.NewServer("127.0.0.1:9001", 1)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				c := regConn(e)
				c.SetIdentity(tlsmode.NewClientIdentity(synthCert(t, g*1000+i)))
				c.Bind(s)
				_ = e.reg.list(connFilter{Client: fmt.Sprintf("device-%d", g*1000+i)})
				_ = connInfo(c)
				c.Bind(nil)
				e.reg.remove(c)
			}
		}()
	}
	wg.Wait()
	if n := e.reg.count(); n != 0 {
		t.Errorf("count: got %d; want 0", n)
	}
	e.reg.mu.Lock()
	defer e.reg.mu.Unlock()
	if len(e.reg.byClient) != 0 || len(e.reg.byServer) != 0 {
		t.Errorf("indexes: %d client keys, %d servers left; want none", len(e.reg.byClient), len(e.reg.byServer))
	}
}

// bigRegistry registers n connections with distinct identities.
func bigRegistry(tb testing.TB, n int) (*Edge, []*tlsmode.Conn) {
	e := regEdge()
	cs := make([]*tlsmode.Conn, n)
	for i := range cs {
		cs[i] = regConn(e)
		cs[i].SetIdentity(tlsmode.NewClientIdentity(synthCert(tb, i)))
	}
	return e, cs
}

// The directory answers "which connection is client X" from the index,
// not by walking 100,000 connections. Three proofs, none timing-based:
// the answer is exactly the one connection (connFilter.matches ignores
// Client, so a scan would list all); a connection that is listed but not
// in the index (its identity set with nobody listening) is not found; and
// the lookup allocates a constant few times where a scan of the same
// registry allocates as it grows its candidate list.
//
// Not parallel: AllocsPerRun counts every allocation of the process.
func TestRegistryLookupUsesIndex(t *testing.T) {
	const n = 100_000
	e, cs := bigRegistry(t, n)
	r := e.reg
	for _, i := range []int{0, 7, 4242, n - 1} {
		want := cs[i]
		for _, k := range []string{fmt.Sprintf("device-%d", i), fmt.Sprintf("spiffe://example.org/device/%d", i),
			fmt.Sprintf("device-%d.devices.example.com", i), want.Identity().SHA256} {
			got := r.list(connFilter{Client: k})
			if len(got) != 1 || got[0] != want {
				t.Errorf("list(client=%q) among %d: got ids %v; want [%d]", k, n, connIDs(got), want.ID)
			}
		}
	}

	// Listed, with an identity, but never indexed: a scan would find it.
	hidden := &tlsmode.Conn{}
	r.add(hidden)
	hidden.SetIdentity(tlsmode.NewClientIdentity(synthCert(t, n+1)))
	if got := r.list(connFilter{Client: fmt.Sprintf("device-%d", n+1)}); len(got) != 0 {
		t.Errorf("list(client) found a connection that is not in the identity index (ids %v): the lookup scans", connIDs(got))
	}
	r.remove(hidden)

	lookup := testing.AllocsPerRun(20, func() { _ = r.list(connFilter{Client: "device-4242"}) })
	scan := testing.AllocsPerRun(2, func() { _ = r.list(connFilter{SNI: "nothing.example.com"}) })
	if lookup > 3 {
		t.Errorf("list(client) among %d connections: %.0f allocations per lookup; want at most 3 (a scan makes %.0f)", n, lookup, scan)
	}
	if scan < 15 {
		t.Errorf("a scan of %d connections: %.0f allocations; want at least 15, far more than a lookup's %.0f (else this test proves nothing)", n, scan, lookup)
	}
}

// BenchmarkRegistryLookup: one client among 100,000 live connections with
// distinct identities, as GET /api/v1/connections?client= asks; "scan"
// is the same registry answering a filter without an index, for scale.
func BenchmarkRegistryLookup(b *testing.B) {
	const n = 100_000
	e, _ := bigRegistry(b, n)
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprintf("device-%d", (i*7919)%n)
	}
	b.Run("client", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if got := e.reg.list(connFilter{Client: keys[i%len(keys)]}); len(got) != 1 {
				b.Fatalf("list(client=%s): %d connections; want 1", keys[i%len(keys)], len(got))
			}
			i++
		}
	})
	b.Run("scan", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = e.reg.list(connFilter{SNI: "nothing.example.com"})
		}
	})
}

// A SHA-256 given as openssl x509 -fingerprint -sha256 prints it
// (uppercase, colon-separated) or in uppercase finds the index's
// lowercase hex; anything else is looked up as given.
func TestFingerprintKey(t *testing.T) {
	t.Parallel()
	const lower = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	var pairs []string
	for i := 0; i < len(lower); i += 2 {
		pairs = append(pairs, strings.ToUpper(lower[i:i+2]))
	}
	colons := strings.Join(pairs, ":")
	cases := []struct{ in, want string }{
		{lower, lower},
		{strings.ToUpper(lower), lower},
		{colons, lower},
		{strings.ToLower(colons), lower},
		{"device-7", "device-7"},
		{"spiffe://example.org/device/7", "spiffe://example.org/device/7"},
		{strings.ToUpper(lower[:62]), strings.ToUpper(lower[:62])},           // too short
		{"G" + strings.ToUpper(lower[1:]), "G" + strings.ToUpper(lower[1:])}, // not hex
		{lower[:2] + ":" + lower[2:], lower[:2] + ":" + lower[2:]},           // a colon, but not openssl's form
	}
	for _, tc := range cases {
		if got := fingerprintKey(tc.in); got != tc.want {
			t.Errorf("fingerprintKey(%q): got %q; want %q", tc.in, got, tc.want)
		}
	}
}
