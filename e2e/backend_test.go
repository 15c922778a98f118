package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

// seen is one connection a backend completed a TLS handshake on.
type seen struct {
	CN     string              // the verified client certificate's subject CN
	Remote string              // the TCP peer (tlsedge's outgoing address)
	SNI    string              // the server name the client sent, as the backend saw it
	Proxy  *proxyproto.Header  // the PROXY header read first (proxy backends only)
	TLVs   []proxyproto.TLV    // its TLVs
	State  tls.ConnectionState // the handshake's outcome
}

// backend is a real mTLS server: crypto/tls with RequireAndVerifyClientCert
// against the client CA. After the handshake it writes
// "<name> CN=<client CN>\n" and then echoes until the client closes.
type backend struct {
	name  string
	proxy bool // read a PROXY header before the TLS handshake
	conf  *tls.Config

	group *connGroup // the connections; stop stops it

	mu       sync.Mutex
	addr     string
	conns    []seen
	failures []string // handshake (or PROXY header) errors
}

// startBackend starts a backend on 127.0.0.1:0; t.Cleanup stops it.
func startBackend(t testing.TB, name string) *backend {
	return startBackendOn(t, name, "127.0.0.1:0", false)
}

// startProxyBackend starts a backend that first reads a PROXY v1/v2 header.
func startProxyBackend(t testing.TB, name string) *backend {
	return startBackendOn(t, name, "127.0.0.1:0", true)
}

func startBackendOn(t testing.TB, name, addr string, proxy bool) *backend {
	t.Helper()
	cert, err := thePKI.serverCert(name)
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{
		name:  name,
		proxy: proxy,
		group: newConnGroup(t, "backend "+name),
		conf: &tls.Config{
			Certificates: []tls.Certificate{cert.TLS},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    thePKI.clientCA.Pool(),
			MinVersion:   tls.VersionTLS12,
			// No tickets: openssl s_client would print them in the
			// middle of the data it echoes to its stdout.
			SessionTicketsDisabled: true,
		},
	}
	if err := b.listen(addr); err != nil {
		t.Fatalf("backend %s: %v", name, err)
	}
	t.Cleanup(b.stop)
	return b
}

// listen (re)starts accepting on addr.
func (b *backend) listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	b.mu.Lock()
	b.addr = ln.Addr().String()
	b.mu.Unlock()
	b.group.serve(ln, b.handle)
	return nil
}

// stop closes the listener and every live connection, and waits for the
// handlers. The backend may listen again afterwards.
func (b *backend) stop() { b.group.stop() }

// bufConn reads through a bufio.Reader (holding bytes read past a PROXY
// header) and writes to the conn.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (b *backend) handle(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(waitLong)) // bounds the PROXY header and the handshake
	var rec seen
	var nc net.Conn = c
	if b.proxy {
		br := bufio.NewReader(c)
		h, err := proxyproto.Read(br)
		if err != nil {
			b.fail("PROXY header: " + err.Error())
			return
		}
		rec.Proxy = h
		rec.TLVs, _ = h.TLVs()
		nc = &bufConn{Conn: c, r: br}
	}
	tc := tls.Server(nc, b.conf)
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		b.fail(err.Error())
		return
	}
	_ = c.SetDeadline(time.Time{})
	st := tc.ConnectionState()
	rec.State = st
	rec.SNI = st.ServerName
	rec.Remote = c.RemoteAddr().String()
	if len(st.PeerCertificates) > 0 {
		rec.CN = st.PeerCertificates[0].Subject.CommonName
	}
	b.mu.Lock()
	b.conns = append(b.conns, rec)
	b.mu.Unlock()
	if _, err := fmt.Fprintf(tc, "%s CN=%s\n", b.name, rec.CN); err != nil {
		return
	}
	_, _ = io.Copy(tc, tc)
	_ = tc.CloseWrite()
}

func (b *backend) fail(msg string) {
	b.mu.Lock()
	b.failures = append(b.failures, msg)
	b.mu.Unlock()
}

// Addr is the address the backend listens on.
func (b *backend) Addr() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.addr
}

// Conns returns the connections that completed a handshake so far.
func (b *backend) Conns() []seen {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]seen(nil), b.conns...)
}

// Failures returns the handshake errors seen so far.
func (b *backend) Failures() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.failures...)
}

// ---------------------------------------------------------------- clients

// clientOpts configure dialTLS.
type clientOpts struct {
	SNI      string        // "" = send no SNI (then the server certificate is not verified)
	NoCert   bool          // present no client certificate
	LocalIP  string        // bind the client to this source IP (127.0.0.2, ...)
	Curves   []tls.CurveID // key exchange preferences
	Deadline time.Duration // for connect + handshake + banner; 0 = waitLong
}

// tlsClientConfig is the client side of the mTLS: trusts the server CA,
// presents CN=device-42.
func tlsClientConfig(o clientOpts) *tls.Config {
	cfg := &tls.Config{
		ServerName:       o.SNI,
		RootCAs:          thePKI.serverCA.Pool(),
		CurvePreferences: o.Curves,
	}
	if o.SNI == "" {
		// No ServerName: crypto/tls then sends no SNI; it needs
		// InsecureSkipVerify to agree. Verify the chain ourselves.
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return fmt.Errorf("no server certificate")
			}
			_, err := cs.PeerCertificates[0].Verify(x509VerifyOpts())
			return err
		}
	}
	if !o.NoCert {
		cfg.Certificates = []tls.Certificate{thePKI.client.TLS}
	}
	return cfg
}

// x509VerifyOpts verifies a server chain against the server CA, without a name.
func x509VerifyOpts() x509.VerifyOptions {
	return x509.VerifyOptions{Roots: thePKI.serverCA.Pool()}
}

// edgeConn is a client connection through tlsedge whose banner was read.
type edgeConn struct {
	*tls.Conn
	r       *bufio.Reader
	Backend string // the backend's name from its banner
	CN      string // the client CN the backend saw
}

// dialTLS connects to addr, completes the TLS handshake and reads the
// backend's banner line, all within o.Deadline.
func dialTLS(addr string, o clientOpts) (*edgeConn, error) {
	d := net.Dialer{Timeout: waitLong}
	if o.LocalIP != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(o.LocalIP)}
	}
	limit := o.Deadline
	if limit == 0 {
		limit = waitLong
	}
	raw, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return handshakeOver(raw, o, limit)
}

// handshakeOver runs the client handshake over raw and reads the banner.
func handshakeOver(raw net.Conn, o clientOpts, limit time.Duration) (*edgeConn, error) {
	_ = raw.SetDeadline(time.Now().Add(limit))
	tc := tls.Client(raw, tlsClientConfig(o))
	if err := tc.Handshake(); err != nil {
		raw.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	ec := &edgeConn{Conn: tc, r: bufio.NewReader(tc)}
	line, err := ec.r.ReadString('\n')
	if err != nil {
		raw.Close()
		return nil, fmt.Errorf("reading the banner: %w (got %q)", err, line)
	}
	name, cn, ok := strings.Cut(strings.TrimSpace(line), " CN=")
	if !ok {
		raw.Close()
		return nil, fmt.Errorf("banner %q: want \"<backend> CN=<cn>\"", line)
	}
	ec.Backend, ec.CN = name, cn
	_ = raw.SetDeadline(time.Time{})
	return ec, nil
}

// echo writes msg and reads it back, within waitLong.
func (c *edgeConn) echo(msg string) error {
	_ = c.SetDeadline(time.Now().Add(waitLong))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c.r, got); err != nil {
		return fmt.Errorf("reading the echo: %w", err)
	}
	if string(got) != msg {
		return fmt.Errorf("echo: got %q; want %q", got, msg)
	}
	return nil
}

// mustDial is dialTLS + echo that fails the test on error.
func mustDial(t testing.TB, addr string, o clientOpts) *edgeConn {
	t.Helper()
	c, err := dialTLS(addr, o)
	if err != nil {
		t.Fatalf("connecting through tlsedge (sni %q): %v", o.SNI, err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.echo("ping " + o.SNI + "\n"); err != nil {
		t.Fatalf("sni %q: %v", o.SNI, err)
	}
	return c
}

// oneShot connects, checks the echo, closes, and returns the backend's name.
func oneShot(t testing.TB, addr string, o clientOpts) (backendName string) {
	t.Helper()
	c := mustDial(t, addr, o)
	c.Close()
	return c.Backend
}

// served is oneShot that also waits for the connection's access line.
func (p *edgeProc) served(t testing.TB, o clientOpts) (backendName string, l logLine) {
	t.Helper()
	c := mustDial(t, p.addr, o)
	return c.Backend, p.closeAndLog(t, c)
}
