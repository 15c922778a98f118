package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// httpsServer writes a throwaway PKI and starts the HTTPS -serve-http server
// (client certificates required) on it; it returns the PKI folder and the
// server.
func httpsServer(t *testing.T) (string, *httpServing) {
	t.Helper()
	dir := t.TempDir()
	if err := writePKI(dir, "api.load.test"); err != nil {
		t.Fatal(err)
	}
	h, err := startHTTP(&options{
		serveHTTP: "127.0.0.1:0",
		cert:      filepath.Join(dir, "server.pem"),
		key:       filepath.Join(dir, "server-key.pem"),
		clientCA:  filepath.Join(dir, "ca.pem"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.stop)
	return dir, h
}

// loadOpts are the flags of a short http-mode run against h.
func loadOpts(dir string, h *httpServing, mode string) *options {
	return &options{
		mode: mode, addr: h.ln.Addr().String(), sni: "api.load.test",
		ca: filepath.Join(dir, "ca.pem"), cert: filepath.Join(dir, "client.pem"), key: filepath.Join(dir, "client-key.pem"),
		curve: "X25519", tlsVersion: "1.3", conc: 2, streams: 1, path: "/", dur: 300 * time.Millisecond,
	}
}

func runLoad(t *testing.T, o *options) *result {
	t.Helper()
	if err := o.checkLoad(); err != nil {
		t.Fatal(err)
	}
	res, err := load(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res.human())
	return res
}

func TestHTTPKeepAlive(t *testing.T) {
	dir, h := httpsServer(t)
	res := runLoad(t, loadOpts(dir, h, "http"))
	switch {
	case res.Ops == 0 || res.Errors != 0:
		t.Fatalf("%d requests, %d errors (first: %s); want requests and no error", res.Ops, res.Errors, res.FirstError)
	case res.Conns != 2:
		t.Errorf("%d connections opened for -c 2; want 2 (keep-alive)", res.Conns)
	case res.Proto != "HTTP/1.1":
		t.Errorf("proto %q; want HTTP/1.1", res.Proto)
	case res.Identity != "tls CN=tlsedge-load client":
		t.Errorf("server saw %q; want the client certificate's CN", res.Identity)
	case !strings.Contains(res.TLS, "X25519") || strings.Contains(res.TLS, "MLKEM"):
		t.Errorf("TLS %q; want X25519 alone, as -curve says", res.TLS)
	case res.Bytes != res.Ops*int64(len(httpBody)):
		t.Errorf("%d body bytes for %d requests; want %d each", res.Bytes, res.Ops, len(httpBody))
	}
}

func TestHTTP2Streams(t *testing.T) {
	dir, h := httpsServer(t)
	o := loadOpts(dir, h, "http")
	o.h2, o.conc, o.streams = true, 1, 3
	res := runLoad(t, o)
	switch {
	case res.Ops == 0 || res.Errors != 0:
		t.Fatalf("%d requests, %d errors (first: %s)", res.Ops, res.Errors, res.FirstError)
	case res.Proto != "HTTP/2.0":
		t.Errorf("proto %q; want HTTP/2.0", res.Proto)
	case res.Conns != 1:
		t.Errorf("%d connections for -c 1 -streams 3; want 1", res.Conns)
	case res.Streams != 3:
		t.Errorf("streams %d; want 3", res.Streams)
	}
}

func TestHandshakeHTTP(t *testing.T) {
	dir, h := httpsServer(t)
	res := runLoad(t, loadOpts(dir, h, "handshake-http"))
	switch {
	case res.Ops == 0 || res.Errors != 0:
		t.Fatalf("%d connections, %d errors (first: %s)", res.Ops, res.Errors, res.FirstError)
	case res.Conns < res.Ops:
		t.Errorf("%d connections opened for %d requests; want a new one per request", res.Conns, res.Ops)
	case res.Identity != "tls CN=tlsedge-load client":
		t.Errorf("server saw %q", res.Identity)
	case res.WireIn/res.Conns < 500:
		t.Errorf("%d bytes read per connection; a handshake with a certificate is more", res.WireIn/res.Conns)
	}
}

func TestHTTPNoClientCertificate(t *testing.T) {
	dir, h := httpsServer(t)
	o := loadOpts(dir, h, "http")
	o.cert, o.key, o.conc = "", "", 1
	res := runLoad(t, o)
	if res.Ops != 0 || res.Errors == 0 {
		t.Fatalf("%d requests, %d errors without a client certificate; want none and errors", res.Ops, res.Errors)
	}
}

func TestHTTPIdentityHeader(t *testing.T) {
	s := &httpServer{}
	for _, tc := range []struct{ xfcc, want string }{
		{"", "none"},
		{`Hash=ab;Cert="x";Subject="CN=c1,O=Example\, Inc.";URI=spiffe://a`, `xfcc 64B Subject=CN=c1,O=Example\, Inc.`},
		{`Subject="CN=say \"hi\"";DNS=a`, `xfcc 29B Subject=CN=say \"hi\"`},
		{`Hash=ab`, "xfcc 7B"},
	} {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		if tc.xfcc != "" {
			req.Header.Set(xfccHeader, tc.xfcc)
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if got := rec.Header().Get(identityHeader); got != tc.want {
			t.Errorf("X-Forwarded-Client-Cert %q: %s %q; want %q", tc.xfcc, identityHeader, got, tc.want)
		}
		if rec.Code != http.StatusOK || rec.Body.Len() != 100 {
			t.Errorf("status %d, %d bytes; want 200 and 100 bytes", rec.Code, rec.Body.Len())
		}
	}
}

func TestCheckLoadHTTPFlags(t *testing.T) {
	base := func() *options {
		return &options{addr: "127.0.0.1:1", dur: time.Second, conc: 1, streams: 1, path: "/", mode: "http"}
	}
	for _, tc := range []struct {
		name string
		set  func(*options)
		ok   bool
	}{
		{"http", func(*options) {}, true},
		{"h2 streams", func(o *options) { o.h2, o.streams = true, 8 }, true},
		{"handshake-http", func(o *options) { o.mode = "handshake-http" }, true},
		{"streams without h2", func(o *options) { o.streams = 2 }, false},
		{"h2 with handshake-http", func(o *options) { o.mode, o.h2 = "handshake-http", true }, false},
		{"h2 with echo", func(o *options) { o.mode, o.h2 = "echo", true }, false},
		{"size with http", func(o *options) { o.size = 64 }, false},
		{"relative path", func(o *options) { o.path = "x" }, false},
	} {
		o := base()
		tc.set(o)
		if err := o.checkLoad(); (err == nil) != tc.ok {
			t.Errorf("%s: checkLoad() = %v; want ok=%v", tc.name, err, tc.ok)
		}
	}
}

// TestHTTPBulk: ?bytes=N answers N bytes, and the load counts them all.
func TestHTTPBulk(t *testing.T) {
	t.Parallel()
	dir, h := httpsServer(t)
	o := loadOpts(dir, h, "http")
	o.path = "/?bytes=300000"
	res := runLoad(t, o)
	if res.Ops == 0 || res.Errors != 0 || res.Bytes != res.Ops*300000 {
		t.Errorf("%d requests, %d errors, %d bytes; want requests of 300000 bytes each and no error", res.Ops, res.Errors, res.Bytes)
	}
}
