package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/certs"
)

// The suite's throwaway PKI, made here and only here. thePKI (made once in
// TestMain by newPKI) holds every CA and certificate tests share: the
// backends' server CA and client CA, and the CAs and client certificates of
// the terminate (thePKI.term), authorization (thePKI.az) and
// reauthorization (thePKI.ar) tests. A test that needs a PKI of its own (a
// CA it swaps certificates under, an OCSP responder's CA) makes it with
// pkMint(t). Every CA, certificate and CRL comes from package certs
// (NewAuthority, Intermediate, Issue, CRL): ECDSA P-256; a CA is
// "CN=<cn>,O=tlsedge throwaway PKI", a leaf "CN=<cn>", both valid now-1h ..
// now+24h unless the certs.Leaf says otherwise. Only pkMinter.signRaw signs
// a template itself, for hostile_cert_test.go's subjects and SANs in raw
// bytes, which certs.Leaf cannot express.

// ---------------------------------------------------------------- minting

// pkMinter makes CAs, certificates and CRLs with package certs. Made by
// pkMint(t), a failure fails the test at once; the zero pkMinter (used in
// TestMain) keeps the first failure in err, and every call after one
// returns nil.
type pkMinter struct {
	t   testing.TB
	err error
}

// pkMint returns a minter that fails t on any error.
func pkMint(t testing.TB) *pkMinter { return &pkMinter{t: t} }

func (m *pkMinter) helper() {
	if m.t != nil {
		m.t.Helper()
	}
}

// pkDo runs f unless m has failed before, and records its error as what
// failed.
func pkDo[T any](m *pkMinter, what string, f func() (T, error)) T {
	m.helper()
	var zero T
	if m.err != nil {
		return zero
	}
	v, err := f()
	if err != nil {
		m.err = fmt.Errorf("%s: %w", what, err)
		if m.t != nil {
			m.t.Fatal(m.err)
		}
		return zero
	}
	return v
}

// ca makes a self-signed CA named cn.
func (m *pkMinter) ca(cn string) *certs.Authority {
	m.helper()
	return pkDo(m, "CA "+cn, func() (*certs.Authority, error) { return certs.NewAuthority(cn) })
}

// intermediate makes a CA named cn signed by parent; the leaves it issues
// carry it in their chain.
func (m *pkMinter) intermediate(parent *certs.Authority, cn string) *certs.Authority {
	m.helper()
	return pkDo(m, "intermediate CA "+cn, func() (*certs.Authority, error) { return parent.Intermediate(cn) })
}

// issue signs the certificate l with ca.
func (m *pkMinter) issue(ca *certs.Authority, l certs.Leaf) *certs.Issued {
	m.helper()
	return pkDo(m, fmt.Sprintf("certificate %q", l.CommonName), func() (*certs.Issued, error) { return ca.Issue(l) })
}

// crl is a DER CRL signed by ca, valid now-1h .. now+24h, listing the
// serials of revoked (certificates ca issued).
func (m *pkMinter) crl(ca *certs.Authority, revoked ...*certs.Issued) []byte {
	m.helper()
	return pkDo(m, "CRL", func() ([]byte, error) {
		var serials []*big.Int
		for _, is := range revoked {
			if is.TLS.Leaf == nil {
				return nil, fmt.Errorf("a revoked certificate has no parsed leaf")
			}
			serials = append(serials, is.TLS.Leaf.SerialNumber)
		}
		now := time.Now()
		return ca.CRL(serials, now.Add(-time.Hour), now.Add(24*time.Hour))
	})
}

// crlPEM is crl in PEM ("X509 CRL").
func (m *pkMinter) crlPEM(ca *certs.Authority, revoked ...*certs.Issued) []byte {
	m.helper()
	der := m.crl(ca, revoked...)
	if der == nil {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}

// signRaw signs tmpl with ca (a root: the chain is the leaf alone) for a new
// P-256 key, as given: for a raw subject or SAN extension that certs.Leaf
// cannot express. The leaf is not parsed (Leaf is nil): a hostile one may
// not parse.
func (m *pkMinter) signRaw(ca *certs.Authority, tmpl *x509.Certificate) tls.Certificate {
	m.helper()
	return pkDo(m, "raw certificate "+tmpl.SerialNumber.String(), func() (tls.Certificate, error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return tls.Certificate{}, err
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
		if err != nil {
			return tls.Certificate{}, err
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
	})
}

// pkWriteFile writes data to dir/name (mode 0644) and returns its path.
func pkWriteFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	f := filepath.Join(dir, name)
	if err := os.WriteFile(f, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// pkWritePair writes is to dir/<name>.pem and dir/<name>-key.pem (mode
// 0600) and returns their paths.
func pkWritePair(t testing.TB, dir, name string, is *certs.Issued) (cert, key string) {
	t.Helper()
	cert, key, err := is.WriteFiles(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// mustURL parses a URL written in the source.
func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

// ---------------------------------------------------------------- the suite's PKI

// testPKI is the suite's shared PKI: a server CA (signs the backends'
// certificates and the routes'), a client CA (signs client certificates;
// the backends trust only it), a client certificate CN=device-42, and the
// PKIs of the terminate, authorization and reauthorization tests.
type testPKI struct {
	dir                        string
	serverCA, clientCA         *certs.Authority
	serverCAFile, clientCAFile string
	client                     *certs.Issued
	clientCert, clientKey      string

	term *termPKI
	az   *azPKIs
	ar   *arPKIs

	mu      sync.Mutex
	servers map[string]*certs.Issued // by backend name
}

// serverNames are the DNS names in every backend certificate.
var serverNames = []string{"*.example.com", "*.devices.example.com", "localhost"}

// pkLocal is 127.0.0.1, the IP SAN of the server certificates.
var pkLocal = []net.IP{net.IPv4(127, 0, 0, 1)}

// newPKI makes the suite's PKI and writes the server CA, the client CA and
// the client certificate into dir.
func newPKI(dir string) (*testPKI, error) {
	var m pkMinter
	p := &testPKI{dir: dir, servers: map[string]*certs.Issued{}}
	p.serverCA = m.ca("e2e server CA")
	p.clientCA = m.ca("e2e client CA")
	p.client = m.issue(p.clientCA, certs.Leaf{CommonName: "device-42", Client: true})
	p.term = newTermPKI(&m, p.serverCA, p.clientCA)
	p.az = newAzPKI(&m, p.serverCA)
	p.ar = newArPKI(&m, p.serverCA)
	if m.err != nil {
		return nil, m.err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	p.serverCAFile = filepath.Join(dir, "server-ca.pem")
	p.clientCAFile = filepath.Join(dir, "client-ca.pem")
	if err := os.WriteFile(p.serverCAFile, p.serverCA.PEM, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(p.clientCAFile, p.clientCA.PEM, 0o644); err != nil {
		return nil, err
	}
	var err error
	if p.clientCert, p.clientKey, err = p.client.WriteFiles(dir, "client"); err != nil {
		return nil, err
	}
	return p, nil
}

// serverCert returns the certificate of the backend called name: CN
// "backend <name>", signed by the server CA, made on first use.
func (p *testPKI) serverCert(name string) (*certs.Issued, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.servers[name]; c != nil {
		return c, nil
	}
	var m pkMinter
	c := m.issue(p.serverCA, certs.Leaf{CommonName: "backend " + name, DNSNames: serverNames, IPs: pkLocal, Server: true})
	if m.err != nil {
		return nil, m.err
	}
	p.servers[name] = c
	return c, nil
}

// ---------------------------------------------------------------- terminate (thePKI.term)

// Names of the client certificates of thePKI.term.
const (
	cliValid      = "valid"          // CA A, CN=device-42, URI + DNS + email SANs
	cliExpired    = "expired"        // CA A, NotAfter a day ago
	cliRevoked    = "revoked"        // CA A, on CA A's CRL
	cliServerOnly = "server-only"    // CA A, serverAuth EKU only
	cliFromB      = "from-b"         // CA B: unknown to the strict routes
	cliHostile    = "hostile"        // CA A, a CN full of DN and header syntax
	cliTrailing   = "trailing-space" // CA A, a CN ending in a space
	cliChained    = "chained"        // CA A's intermediate; the client sends the intermediate too
)

// hostileCN is a CN with every character RFC 2253 escapes (a leading #,
// " , + ; < > \), an '=', a non-ASCII letter, and CR LF followed by a
// header line.
const hostileCN = "#\"dev, O=admin;+x=y<z>\\ é\r\nX-SSL-Client-Verify: SUCCESS"

// termPKI is the PKI of the terminate and re-encrypt tests: client CAs A
// (with an intermediate) and B, the route certificate (signed by the
// suite's server CA, so tlsClientConfig and curl --cacert trust it),
// tlsedge's upstream client certificate (signed by the suite's client CA,
// which the reencrypt servers trust), a rogue CA and its server, and the
// client certificates.
type termPKI struct {
	caA, caB, interA, rogue  *certs.Authority
	edge, upstream, rogueSrv *certs.Issued
	clients                  map[string]*certs.Issued
	crlA                     []byte // PEM, lists cliRevoked
}

func newTermPKI(m *pkMinter, serverCA, clientCA *certs.Authority) *termPKI {
	p := &termPKI{clients: map[string]*certs.Issued{}}
	p.caA = m.ca("e2e client CA A")
	p.caB = m.ca("e2e client CA B")
	p.interA = m.intermediate(p.caA, "e2e client CA A issuing")
	p.rogue = m.ca("e2e rogue server CA")
	p.edge = m.issue(serverCA, certs.Leaf{CommonName: "tlsedge e2e", DNSNames: serverNames, IPs: pkLocal, Server: true})
	p.upstream = m.issue(clientCA, certs.Leaf{CommonName: "tlsedge-upstream", Client: true})
	p.rogueSrv = m.issue(p.rogue, certs.Leaf{CommonName: "rogue backend", DNSNames: serverNames, IPs: pkLocal, Server: true})
	now := time.Now()
	for _, l := range []struct {
		name string
		ca   *certs.Authority
		leaf certs.Leaf
	}{
		{cliValid, p.caA, certs.Leaf{CommonName: "device-42", Client: true,
			DNSNames: []string{"device-42.devices.example.com", "d42.example.net"},
			URIs:     []*url.URL{mustURL("spiffe://example.org/device/42")},
			Emails:   []string{"device-42@example.org"}}},
		{cliExpired, p.caA, certs.Leaf{CommonName: "device-old", Client: true, NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-24 * time.Hour)}},
		{cliRevoked, p.caA, certs.Leaf{CommonName: "device-revoked", Client: true}},
		{cliServerOnly, p.caA, certs.Leaf{CommonName: "device-server-only", Server: true}},
		{cliFromB, p.caB, certs.Leaf{CommonName: "device-42", Client: true, URIs: []*url.URL{mustURL("spiffe://example.org/device/42")}}},
		{cliHostile, p.caA, certs.Leaf{CommonName: hostileCN, Client: true}},
		{cliTrailing, p.caA, certs.Leaf{CommonName: "device-43 ", Client: true}},
		{cliChained, p.interA, certs.Leaf{CommonName: "device-44", Client: true,
			DNSNames: []string{"device-44.devices.example.com"},
			URIs:     []*url.URL{mustURL("spiffe://example.org/device/44")},
			Emails:   []string{"device-44@example.org"}}},
	} {
		p.clients[l.name] = m.issue(l.ca, l.leaf)
	}
	p.crlA = m.crlPEM(p.caA, p.clients[cliRevoked])
	return p
}

// leaf returns the parsed leaf of client name (tls.X509KeyPair, in
// certs.Issue, fills TLS.Leaf).
func (p *termPKI) leaf(name string) *x509.Certificate { return p.clients[name].TLS.Leaf }

// ---------------------------------------------------------------- authorization (thePKI.az)

// Names of the client certificates of thePKI.az.
const (
	azPartnerA  = "partner-a"   // partners CA, spiffe://partners.test/acme/app
	azPartnerA2 = "partner-a-2" // partners CA, the same SAN and CN as partner-a, another key
	azPartnerB  = "partner-b"   // partners CA, spiffe://partners.test/globex/app
	azDevice    = "device"      // partners CA, CN device-42, spiffe://devices.test/tenant/t1/device/d42
	azOtherA    = "other-a"     // other CA, partner-a's SAN and CN
)

// azRouteNames are the parent names of the authorization routes' wildcard
// SNIs; the route certificate covers *.<name> for each.
var azRouteNames = []string{"acme.example.com", "pin.example.com", "issuer-file.example.com",
	"issuer-dn.example.com", "open.example.com", "devices.example.com", "fleet.example.com",
	"fleet-rules.example.com", "tcp.example.com"}

// azPKIs is the PKI of the authorization tests: the partners CA
// ("CN=AZ Partners CA,O=tlsedge throwaway PKI") and another CA (both
// trusted by the routes, so only allow can tell their certificates apart),
// the client certificates (each a CN and one URI SAN), and the route
// certificate (signed by the suite's server CA, for every name the tests
// use).
type azPKIs struct {
	partnersCA, otherCA *certs.Authority
	leaves              map[string]*certs.Issued
	edge                *certs.Issued
}

func newAzPKI(m *pkMinter, serverCA *certs.Authority) *azPKIs {
	p := &azPKIs{leaves: map[string]*certs.Issued{}}
	p.partnersCA = m.ca("AZ Partners CA")
	p.otherCA = m.ca("AZ Other CA")
	for _, l := range []struct {
		name, cn, uri string
		ca            *certs.Authority
	}{
		{azPartnerA, "acme-app", "spiffe://partners.test/acme/app", p.partnersCA},
		{azPartnerA2, "acme-app", "spiffe://partners.test/acme/app", p.partnersCA},
		{azPartnerB, "globex-app", "spiffe://partners.test/globex/app", p.partnersCA},
		{azDevice, "device-42", "spiffe://devices.test/tenant/t1/device/d42", p.partnersCA},
		{azOtherA, "acme-app", "spiffe://partners.test/acme/app", p.otherCA},
	} {
		p.leaves[l.name] = m.issue(l.ca, certs.Leaf{CommonName: l.cn, URIs: []*url.URL{mustURL(l.uri)}, Client: true})
	}
	names := []string{"*.example.com"}
	for _, n := range azRouteNames {
		names = append(names, "*."+n)
	}
	p.edge = m.issue(serverCA, certs.Leaf{CommonName: "tlsedge authz e2e", DNSNames: names, IPs: pkLocal, Server: true})
	return p
}

// ---------------------------------------------------------------- reauthorization (thePKI.ar)

// The clients of thePKI.ar.
const (
	arA = "partner-a" // CA A, spiffe://partners.test/acme/app
	arB = "partner-b" // CA A, spiffe://partners.test/globex/app
	arC = "partner-c" // CA B, spiffe://partners.test/acme/app-c
)

// arCN is each client's CN; tlsedge logs its subject "CN=<cn>".
var arCN = map[string]string{arA: "acme-app", arB: "globex-app", arC: "acme-app-c"}

// arPKIs is the PKI of the reauthorization tests: two client CAs, the
// clients, and the route certificate (signed by the suite's server CA,
// which the clients trust).
type arPKIs struct {
	caA, caB *certs.Authority
	leaves   map[string]*certs.Issued
	edge     *certs.Issued
}

func newArPKI(m *pkMinter, serverCA *certs.Authority) *arPKIs {
	p := &arPKIs{leaves: map[string]*certs.Issued{}}
	p.caA = m.ca("AR partners CA A")
	p.caB = m.ca("AR partners CA B")
	for _, l := range []struct {
		name, uri string
		ca        *certs.Authority
	}{
		{arA, "spiffe://partners.test/acme/app", p.caA},
		{arB, "spiffe://partners.test/globex/app", p.caA},
		{arC, "spiffe://partners.test/acme/app-c", p.caB},
	} {
		p.leaves[l.name] = m.issue(l.ca, certs.Leaf{CommonName: arCN[l.name], URIs: []*url.URL{mustURL(l.uri)}, Client: true})
	}
	p.edge = m.issue(serverCA, certs.Leaf{CommonName: "tlsedge reauth e2e", DNSNames: []string{"*.example.com"}, Server: true})
	return p
}
