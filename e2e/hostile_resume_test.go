package e2e

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TLS session resumption used as an attack, black-box on the built binary:
// a session ticket is offered where it was not made (another server name,
// another client certificate policy, a policy a reload changed). Each must
// end in a full handshake, so the policy in force (a client certificate
// demanded, its CA checked) applies. Clients: Go crypto/tls with a session
// cache that offers one captured ticket whatever the name, and openssl
// s_client -sess_out/-sess_in ("Reused" or "New" in its output). The
// control, a reload that does not touch the route's TLS policy and DOES
// resume, is TestTLSProfileResumptionAcrossReload (tls_profile_test.go);
// edge/tickets.go binds tickets to their server name.

// htTicketCache is a tls.ClientSessionCache that keeps the sessions it is
// given until frozen; then every Get, whatever its key, offers the last
// session kept (a ticket carried to another server name), and counts it.
type htTicketCache struct {
	mu      sync.Mutex
	last    *tls.ClientSessionState
	frozen  bool
	offered int
}

func (c *htTicketCache) Get(string) (*tls.ClientSessionState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == nil {
		return nil, false
	}
	if c.frozen {
		c.offered++
	}
	return c.last, true
}

func (c *htTicketCache) Put(_ string, cs *tls.ClientSessionState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.frozen && cs != nil {
		c.last = cs
	}
}

// freeze stops taking new sessions and returns how many were offered so far.
func (c *htTicketCache) freeze() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.frozen = true
	return c.offered
}

func (c *htTicketCache) offers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.offered
}

// htGet connects to addr with sni (TLS version v, the client certificate
// cert when not empty, sessions from cache), sends GET path and reads the
// answer, which also reads a TLS 1.3 ticket. It returns whether the
// session was resumed and the status, or the error that ended it.
func htGet(addr, sni string, v uint16, cert string, cache tls.ClientSessionCache, path string) (resumed bool, status int, err error) {
	conf := &tls.Config{ServerName: sni, RootCAs: thePKI.serverCA.Pool(), MinVersion: v, MaxVersion: v,
		ClientSessionCache: cache, NextProtos: []string{"http/1.1"}}
	if cert != "" {
		// Sent whatever CAs the server names, as an attacker would (Go's
		// default sends none that does not match them).
		c := thePKI.term.clients[cert].TLS
		conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &c, nil }
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: waitLong}, "tcp", addr, conf)
	if err != nil {
		return false, 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(waitLong))
	resumed = c.ConnectionState().DidResume
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, sni)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return resumed, 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resumed, resp.StatusCode, nil
}

// htResumeEdge runs routes a.example.com and c.example.com (terminate
// http, client_auth none: one TLS policy, so one ticket key ring) and
// b.example.com (client_auth require, client_ca CA A) to app-1.
func htResumeEdge(t *testing.T) (*edgeProc, *termPaths, *httpBackend, cfgMap) {
	t.Helper()
	p := writeTermFiles(t)
	app := startHTTPBackend(t, "app-1")
	cfg := profileConfig(p, []any{
		termRoute(p, "a.example.com", "terminate", "http", "app", "none", nil),
		termRoute(p, "b.example.com", "terminate", "http", "app", "require", nil),
		termRoute(p, "c.example.com", "terminate", "http", "app", "none", nil),
	}, httpBackendCfg("app", app.Addr()))
	cfg["log"].(cfgMap)["failure_burst"] = 0
	return runEdge(t, cfg), p, app, cfg
}

// htVersions are the TLS versions every Go case runs with.
var htVersions = []uint16{tls.VersionTLS13, tls.VersionTLS12}

// htCertDemanded is the error a Go client sees when a server demanded a
// certificate it did not send: alert certificate_required (116) in TLS 1.3,
// handshake_failure (40) in TLS 1.2.
func htCertDemanded(v uint16) string {
	if v == tls.VersionTLS13 {
		return "remote error: tls: certificate required"
	}
	return "remote error: tls: handshake failure"
}

func TestHostileResume(t *testing.T) {
	t.Parallel()
	e, p, app, _ := htResumeEdge(t)

	// A session of a.example.com (no client certificate) offered to
	// b.example.com, which requires one: a full handshake, so the
	// certificate is demanded; without one the handshake fails and app-1
	// gets nothing; with one it succeeds, not resumed.
	// A session of a.example.com offered to c.example.com, whose TLS
	// policy (and ticket keys) are the same: not resumed either, the
	// ticket is bound to a.example.com.
	for _, v := range htVersions {
		t.Run("go/"+tls.VersionName(v), func(t *testing.T) {
			t.Parallel()
			cache := &htTicketCache{}
			tag := strings.ReplaceAll(tls.VersionName(v), " ", "")
			if r, st, err := htGet(e.addr, "a.example.com", v, "", cache, "/a1-"+tag); err != nil || r || st != 200 {
				t.Fatalf("first connection to a.example.com: resumed %v, %d, %v; want a full handshake, 200", r, st, err)
			}
			if r, st, err := htGet(e.addr, "a.example.com", v, "", cache, "/a2-"+tag); err != nil || !r || st != 200 {
				t.Fatalf("second connection to a.example.com: resumed %v, %d, %v; want resumed, 200 (else the attacks prove nothing)", r, st, err)
			}
			offered := cache.freeze()

			t.Run("ticket_of_a_no_client_auth_to_b_requiring_client_cert", func(t *testing.T) {
				path := "/b-stolen-" + tag
				_, st, err := htGet(e.addr, "b.example.com", v, "", cache, path)
				if err == nil || !strings.Contains(err.Error(), htCertDemanded(v)) {
					t.Errorf("a.example.com's ticket on b.example.com without a certificate: %d, %v; want %q", st, err, htCertDemanded(v))
				}
				if ok, _ := findRequestMaybe(path, app); ok {
					t.Errorf("%s reached app-1; want the connection refused", path)
				}
				e.waitLog(t, "b.example.com's warn line for the missing certificate", func(l logLine) bool {
					return l.msg() == "connection" && l.str("sni") == "b.example.com" && l.str("level") == "warn" &&
						l.str("reason") == "client tls handshake: tls: client didn't provide a certificate"
				})
				r, st, err := htGet(e.addr, "b.example.com", v, cliValid, cache, "/b-with-cert-"+tag)
				if err != nil || r || st != 200 {
					t.Errorf("a.example.com's ticket on b.example.com with a valid certificate: resumed %v, %d, %v; want a full handshake, 200", r, st, err)
				}
			})
			t.Run("ticket_of_a_to_c_with_identical_policy", func(t *testing.T) {
				r, st, err := htGet(e.addr, "c.example.com", v, "", cache, "/c-stolen-"+tag)
				if err != nil || r || st != 200 {
					t.Errorf("a.example.com's ticket on c.example.com: resumed %v, %d, %v; want a full handshake, 200", r, st, err)
				}
			})
			if got := cache.offers(); got != offered+3 {
				t.Errorf("the client offered a.example.com's session %d times to other names; want 3", got-offered)
			}
		})
	}

	// The same with openssl s_client -sess_out / -sess_in (TLS 1.3).
	t.Run("openssl", func(t *testing.T) {
		t.Parallel()
		needTools(t, "openssl")
		sess := filepath.Join(t.TempDir(), "a.sess")
		if out := htOpenSSL(t, p, e.addr, "a.example.com", "", "-sess_out", sess); !strings.Contains(out, "\nNew, TLSv1.3") {
			t.Fatalf("first connection to a.example.com: want \"New, TLSv1.3\"\n%s", out)
		}
		if out := htOpenSSL(t, p, e.addr, "a.example.com", "", "-sess_in", sess); !strings.Contains(out, "\nReused, TLSv1.3") {
			t.Fatalf("a.example.com with its own session: want \"Reused, TLSv1.3\" (else the attacks prove nothing)\n%s", out)
		}
		out := htOpenSSL(t, p, e.addr, "b.example.com", "", "-sess_in", sess, "-trace")
		if !htOffered(out) || strings.Contains(out, "Reused,") || !strings.Contains(out, "SSL alert number 116") {
			t.Errorf("a.example.com's session offered to b.example.com without a certificate: want the session offered (psk extension), no \"Reused\" and alert 116\n%s", out)
		}
		out = htOpenSSL(t, p, e.addr, "b.example.com", cliValid, "-sess_in", sess, "-trace")
		if !htOffered(out) || !strings.Contains(out, "\nNew, TLSv1.3") || !strings.Contains(out, "app-1 GET /") {
			t.Errorf("a.example.com's session offered to b.example.com with a certificate: want it offered, \"New, TLSv1.3\" and app-1's answer\n%s", out)
		}
		out = htOpenSSL(t, p, e.addr, "c.example.com", "", "-sess_in", sess, "-trace")
		if !htOffered(out) || !strings.Contains(out, "\nNew, TLSv1.3") || !strings.Contains(out, "app-1 GET /") {
			t.Errorf("a.example.com's session offered to c.example.com: want it offered, \"New, TLSv1.3\" and app-1's answer\n%s", out)
		}
	})
}

// htOffered reports whether openssl's -trace output shows a pre_shared_key
// extension (a session offered) in its ClientHello.
func htOffered(out string) bool {
	i := strings.Index(out, "ServerHello, Length")
	return i > 0 && strings.Contains(out[:i], "extension_type=psk(41)")
}

// htOpenSSL runs s_client (TLS 1.3) to sni with the client certificate
// client ("" = none), sends GET / and returns everything it printed.
func htOpenSSL(t *testing.T, p *termPaths, addr, sni, client string, extra ...string) string {
	t.Helper()
	args := []string{"s_client", "-connect", addr, "-servername", sni, "-CAfile", p.serverCA, "-tls1_3", "-ign_eof"}
	if client != "" {
		args = append(args, "-cert", p.client[client][0], "-key", p.client[client][1])
	}
	c := startCommand(t, 30*time.Second, "openssl", append(args, extra...)...)
	_, _ = io.WriteString(c.stdin, "GET / HTTP/1.1\r\nHost: "+sni+"\r\nConnection: close\r\n\r\n")
	_ = c.wait(t, waitLong)
	return c.out.String()
}

// A session made with a client certificate of CA A on b.example.com is
// offered after a reload replaced the route's client_ca with CA B: not
// resumed; the full handshake checks the certificate against CA B and
// refuses it (alert unknown_ca, 48), and app-1 gets nothing. A certificate
// of CA B is accepted (the reload is in force). Go (TLS 1.3 and 1.2) and
// openssl (TLS 1.3).
func TestHostileResumeAfterClientCAChange(t *testing.T) {
	t.Parallel()
	needTools(t, "openssl")
	e, p, app, cfg := htResumeEdge(t)
	caches := map[uint16]*htTicketCache{}
	for _, v := range htVersions {
		caches[v] = &htTicketCache{}
		for i, want := range []bool{false, true} {
			r, st, err := htGet(e.addr, "b.example.com", v, cliValid, caches[v], fmt.Sprintf("/before-%x-%d", v, i))
			if err != nil || r != want || st != 200 {
				t.Fatalf("%s, connection %d to b.example.com before the reload: resumed %v, %d, %v; want resumed %v, 200",
					tls.VersionName(v), i+1, r, st, err, want)
			}
		}
	}
	sess := filepath.Join(t.TempDir(), "b.sess")
	htOpenSSL(t, p, e.addr, "b.example.com", cliValid, "-sess_out", sess)
	if out := htOpenSSL(t, p, e.addr, "b.example.com", cliValid, "-sess_in", sess); !strings.Contains(out, "\nReused, TLSv1.3") {
		t.Fatalf("openssl on b.example.com with its own session before the reload: want \"Reused, TLSv1.3\"\n%s", out)
	}

	b := routeCfg(t, cfg, 0, "b.example.com")
	asMap(t, b["tls"], "tls")["client_ca"] = []any{p.caB}
	reloadTLSEdge(t, e, cfg)

	for _, v := range htVersions {
		offered := caches[v].freeze()
		path := fmt.Sprintf("/after-%x", v)
		_, st, err := htGet(e.addr, "b.example.com", v, cliValid, caches[v], path)
		if err == nil || !strings.Contains(err.Error(), "remote error: tls: unknown certificate authority") {
			t.Errorf("%s: CA A's session and certificate after the route moved to CA B: %d, %v; want alert unknown certificate authority",
				tls.VersionName(v), st, err)
		}
		if caches[v].offers() != offered+1 {
			t.Errorf("%s: the old session was not offered; the case proves nothing", tls.VersionName(v))
		}
		if ok, _ := findRequestMaybe(path, app); ok {
			t.Errorf("%s reached app-1; want the connection refused", path)
		}
		if r, st, err := htGet(e.addr, "b.example.com", v, cliFromB, nil, fmt.Sprintf("/after-b-%x", v)); err != nil || r || st != 200 {
			t.Errorf("%s: a certificate of CA B after the reload: resumed %v, %d, %v; want a full handshake, 200", tls.VersionName(v), r, st, err)
		}
	}
	out := htOpenSSL(t, p, e.addr, "b.example.com", cliValid, "-sess_in", sess, "-trace")
	if !htOffered(out) || strings.Contains(out, "Reused,") || !strings.Contains(out, "SSL alert number 48") {
		t.Errorf("openssl with CA A's session and certificate after the reload: want the session offered, no \"Reused\" and alert 48\n%s", out)
	}
	l := e.waitLog(t, "a refused handshake on b.example.com", func(l logLine) bool {
		return l.msg() == "connection" && l.str("sni") == "b.example.com" && strings.HasPrefix(l.str("reason"), "client tls handshake: ")
	})
	if want := "client tls handshake: tls: failed to verify certificate: x509: certificate signed by unknown authority"; l.str("reason") != want {
		t.Errorf("line %v: want reason %q", l, want)
	}
}
