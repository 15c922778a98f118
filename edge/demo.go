package edge

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"
	"time"

	"github.com/rs/zerolog"

	"github.com/tlsedge/tlsedge/certs"
)

// DemoOptions configure `tlsedge demo`.
type DemoOptions struct {
	Listen string    // the balancer's address; "" = 127.0.0.1:8443
	Dir    string    // where the throwaway PKI and config go; "" = a new temp folder
	Out    io.Writer // where the try-it lines go
}

// demoNames are the server names the demo routes.
const (
	demoPass      = "pass.tlsedge.test"
	demoSticky    = "sticky.tlsedge.test"
	demoTerminate = "api.tlsedge.test"
	demoReencrypt = "secure.tlsedge.test"
	demoUpstream  = "backend.tlsedge.test" // the name on the mTLS servers' certificate
)

var demoConfig = template.Must(template.New("demo").Parse(`# tlsedge demo config, written by "tlsedge demo"
log:
  level: info
  format: console
listeners:
  - name: demo
    address: "{{.Listen}}"
    clienthello_timeout: 5s
    routes:
      - sni: ["{{.Pass}}"]
        mode: passthrough
        backend: demo-roundrobin
      - sni: ["{{.Sticky}}"]
        mode: passthrough
        backend: demo-sticky
      - sni: ["{{.Terminate}}"]
        mode: terminate
        protocol: http
        backend: demo-plain
        identity: xfcc
        tls: {cert: edge.pem, key: edge-key.pem, client_auth: require, client_ca: ca.pem}
      - sni: ["{{.Reencrypt}}"]
        mode: reencrypt
        protocol: http
        backend: demo-mtls
        identity: ssl
        tls: {cert: edge.pem, key: edge-key.pem, client_auth: verify_if_given, client_ca: ca.pem}
backends:
  - name: demo-plain
    balance: roundrobin
    servers:
{{- range .Plain}}
      - address: "{{.}}"
{{- end}}
    health: {type: tcp, interval: 1s}
  - name: demo-mtls
    balance: leastconn
    servers:
{{- range .Servers}}
      - address: "{{.}}"
{{- end}}
    tls: {ca: ca.pem, server_name: {{.Upstream}}, cert: edge-client.pem, key: edge-client-key.pem}
    health: {type: tcp, interval: 1s}
  - name: demo-roundrobin
    balance: roundrobin
    servers:
{{- range .Servers}}
      - address: "{{.}}"
{{- end}}
    health: {type: tcp, interval: 1s}
  - name: demo-sticky
    affinity: source_ip
    servers:
{{- range .Servers}}
      - address: "{{.}}"
{{- end}}
    health: {type: tcp, interval: 1s}
`))

// RunDemo makes a throwaway PKI, starts demo servers that require client
// certificates, starts the balancer on a generated config, prints commands to
// try, and serves until ctx is done.
func RunDemo(ctx context.Context, opt DemoOptions, log zerolog.Logger) error {
	if opt.Listen == "" {
		opt.Listen = "127.0.0.1:8443"
	}
	if opt.Out == nil {
		opt.Out = os.Stdout
	}
	dir := opt.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "tlsedge-demo-")
		if err != nil {
			return err
		}
		dir = d
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ca, err := certs.NewAuthority("tlsedge demo CA")
	if err != nil {
		return err
	}
	caPath := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caPath, ca.PEM, 0o644); err != nil {
		return err
	}
	client, err := ca.Issue(certs.Leaf{CommonName: "demo-client", Client: true, NotAfter: demoNotAfter()})
	if err != nil {
		return err
	}
	clientCert, clientKey, err := client.WriteFiles(dir, "client")
	if err != nil {
		return err
	}
	srvCert, err := ca.Issue(certs.Leaf{CommonName: "demo backend", DNSNames: []string{demoPass, demoSticky, demoUpstream}, Server: true, NotAfter: demoNotAfter()})
	if err != nil {
		return err
	}
	edgeCert, err := ca.Issue(certs.Leaf{CommonName: "tlsedge demo", DNSNames: []string{demoTerminate, demoReencrypt}, Server: true, NotAfter: demoNotAfter()})
	if err != nil {
		return err
	}
	if _, _, err := edgeCert.WriteFiles(dir, "edge"); err != nil {
		return err
	}
	edgeClient, err := ca.Issue(certs.Leaf{CommonName: "tlsedge", Client: true, NotAfter: demoNotAfter()})
	if err != nil {
		return err
	}
	if _, _, err := edgeClient.WriteFiles(dir, "edge-client"); err != nil {
		return err
	}

	var servers []string
	for i := 1; i <= 3; i++ {
		addr, stop, err := startDemoBackend(fmt.Sprintf("backend-%d", i), srvCert.TLS, ca)
		if err != nil {
			return err
		}
		defer stop()
		servers = append(servers, addr)
	}
	var plain []string
	for i := 1; i <= 2; i++ {
		addr, stop, err := startPlainBackend(fmt.Sprintf("app-%d", i))
		if err != nil {
			return err
		}
		defer stop()
		plain = append(plain, addr)
	}

	cfgPath := filepath.Join(dir, "demo.yaml")
	var b strings.Builder
	if err := demoConfig.Execute(&b, map[string]any{
		"Listen": opt.Listen, "Pass": demoPass, "Sticky": demoSticky, "Terminate": demoTerminate,
		"Reencrypt": demoReencrypt, "Upstream": demoUpstream, "Servers": servers, "Plain": plain,
	}); err != nil {
		return err
	}
	if err := os.WriteFile(cfgPath, []byte(b.String()), 0o644); err != nil {
		return err
	}
	cfg, err := LoadFile(cfgPath)
	if err != nil {
		return err
	}
	e := New(ctx, log)
	if err := e.Start(cfg); err != nil {
		return fmt.Errorf("%w (is another demo running? try: tlsedge demo --listen 127.0.0.1:9443)", err)
	}
	defer e.Shutdown(time.Second)

	host, port, _ := net.SplitHostPort(opt.Listen)
	fmt.Fprintf(opt.Out, `
tlsedge demo is running on %[1]s.
Throwaway PKI and config in %[2]s

== passthrough: tlsedge never decrypts; the servers check client certificates ==

Mutual TLS end to end, balanced round-robin over 3 servers (run it a few times):
  curl --cacert %[3]s --cert %[4]s --key %[5]s --resolve %[6]s:%[8]s:%[9]s https://%[6]s:%[8]s/

The same with openssl: the certificate shown is the server's, and "Verify return code: 0 (ok)":
  openssl s_client -connect %[1]s -servername %[6]s -CAfile %[3]s -cert %[4]s -key %[5]s -verify_return_error -brief </dev/null

Without a client certificate, the server (not tlsedge) refuses the handshake:
  curl --cacert %[3]s --resolve %[6]s:%[8]s:%[9]s https://%[6]s:%[8]s/

Source-IP affinity: every run lands on the same server:
  curl --cacert %[3]s --cert %[4]s --key %[5]s --resolve %[7]s:%[8]s:%[9]s https://%[7]s:%[8]s/

An unknown name gets TLS alert 112 (unrecognized_name):
  openssl s_client -connect %[1]s -servername nope.tlsedge.test -brief </dev/null

== terminate: tlsedge verifies the client certificate and tells plaintext servers who it is ==
The server shows the X-Forwarded-Client-Cert header tlsedge set (a forged one is removed):
  curl --cacert %[3]s --cert %[4]s --key %[5]s -H 'X-Forwarded-Client-Cert: Subject="CN=admin"' --resolve %[11]s:%[8]s:%[9]s https://%[11]s:%[8]s/
Over HTTP/2, and without a certificate (alert 116, certificate required):
  curl --http2 --cacert %[3]s --cert %[4]s --key %[5]s --resolve %[11]s:%[8]s:%[9]s https://%[11]s:%[8]s/
  curl --cacert %[3]s --resolve %[11]s:%[8]s:%[9]s https://%[11]s:%[8]s/
A Host that belongs to another route than the connection's SNI gets 421:
  curl --cacert %[3]s --resolve %[12]s:%[8]s:%[9]s -H 'Host: %[11]s' https://%[12]s:%[8]s/

== reencrypt: verified at the edge, then mutual TLS again from tlsedge to the servers ==
  curl --cacert %[3]s --cert %[4]s --key %[5]s --resolve %[12]s:%[8]s:%[9]s https://%[12]s:%[8]s/
  curl --cacert %[3]s --resolve %[12]s:%[8]s:%[9]s https://%[12]s:%[8]s/     (X-SSL-Client-Verify: NONE)

Config: %[10]s
Press Ctrl-C to stop.
`, opt.Listen, dir, caPath, clientCert, clientKey, demoPass, demoSticky, port, host, cfgPath, demoTerminate, demoReencrypt)

	<-ctx.Done()
	return nil
}

// startDemoBackend starts an HTTPS server that requires and verifies a client
// certificate and answers with its own name and the client's CN.
func startDemoBackend(name string, cert tls.Certificate, ca *certs.Authority) (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{cert},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    ca.Pool(),
			MinVersion:   tls.VersionTLS12,
		},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			cn := ""
			if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
				cn = r.TLS.PeerCertificates[0].Subject.CommonName
			}
			fmt.Fprintf(w, "hello %s, this is %s (%s with %s)\n", cn, name, tls.VersionName(r.TLS.Version), r.RemoteAddr)
			writeIdentityHeaders(w, r)
		}),
		// Health checks open and close plain TCP connections: not worth a line.
		ErrorLog: stdlog.New(io.Discard, "", 0),
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	return ln.Addr().String(), func() { srv.Close() }, nil
}

// startPlainBackend starts a plain HTTP server that answers with the
// identity headers tlsedge sent it.
func startPlainBackend(name string) (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "hello, this is %s (plain HTTP behind tlsedge, request %s %s %s)\n", name, r.Method, r.Host, r.URL.Path)
			writeIdentityHeaders(w, r)
		}),
	}
	go func() { _ = srv.Serve(ln) }()
	return ln.Addr().String(), func() { srv.Close() }, nil
}

// writeIdentityHeaders echoes the forwarding and identity headers a demo
// server received.
func writeIdentityHeaders(w io.Writer, r *http.Request) {
	var names []string
	for k := range r.Header {
		if strings.HasPrefix(k, "X-Forwarded-") || strings.HasPrefix(k, "X-Ssl-") || strings.HasPrefix(k, "Client-Cert") {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	for _, k := range names {
		for _, v := range r.Header.Values(k) {
			fmt.Fprintf(w, "  %s: %s\n", k, v)
		}
	}
}

// demoNotAfter is when the demo's certificates expire: a month, so that
// the demo logs no "expires soon" warning (its CA, like every throwaway
// one, lasts a day: a demo runs for minutes).
func demoNotAfter() time.Time { return time.Now().Add(30 * 24 * time.Hour) }
