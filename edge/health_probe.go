package edge

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/tlsedge/tlsedge/affinity"
)

// check runs one health check of server s, bounded by health.timeout:
//
//   - tcp: the connect succeeds;
//   - tls: a full TLS handshake with the backend's tls settings (its CA, its
//     client certificate, server_name or else health.host or the server's
//     host) verifies;
//   - http: GET health.path with Host health.host on a new connection, over
//     that TLS when the backend has tls, answers a status of expect_status
//     (200-399 by default).
func (p *Pool) check(ctx context.Context, s *affinity.Server) error {
	_, err := p.checkWeight(ctx, s)
	return err
}

// agWeightHeader is the response header of http checks that sets the
// server's weight in percent of its configured weight.
const agWeightHeader = "X-Tlsedge-Weight"

// checkWeight is check, and for a passing http check the percentage its
// X-Tlsedge-Weight header reports: 0-100 (above 100 counts as 100); -1
// when absent (100 %), not an http check, or not a whole number.
func (p *Pool) checkWeight(ctx context.Context, s *affinity.Server) (pct int, err error) {
	pct = -1
	ctx, cancel := context.WithTimeout(ctx, p.health.Timeout)
	defer cancel()
	d := net.Dialer{KeepAlive: -1}
	conn, err := d.DialContext(ctx, "tcp", s.Address)
	if err != nil {
		return pct, trimOp(err) // "connect: connection refused", "i/o timeout"
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	switch p.health.Type {
	case "tls":
		tc := tls.Client(conn, p.checkTLSFor(s))
		if err := tc.HandshakeContext(ctx); err != nil {
			return pct, tlsError(err)
		}
		return pct, tc.Close()
	case "http":
		return p.checkHTTP(ctx, conn, s)
	}
	return pct, nil
}

// agParseWeightHeader parses X-Tlsedge-Weight: a whole percentage, "50"
// or "50%", capped at 100; -1 when absent or malformed.
func agParseWeightHeader(v string) int {
	v = strings.TrimSuffix(strings.TrimSpace(v), "%")
	if v == "" {
		return -1
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return -1
	}
	return min(n, 100)
}

// checkTLSFor is the TLS client config of checks of s: the backend's, with
// the name to verify set when the backend names none.
func (p *Pool) checkTLSFor(s *affinity.Server) *tls.Config {
	if p.checkTLS.ServerName != "" {
		return p.checkTLS
	}
	c := p.checkTLS.Clone()
	c.ServerName = p.health.Host
	if c.ServerName == "" {
		c.ServerName, _, _ = net.SplitHostPort(s.Address)
	}
	return c
}

// checkHTTP sends one GET on conn and checks the status; pct is the
// X-Tlsedge-Weight of a passing answer (see checkWeight).
func (p *Pool) checkHTTP(ctx context.Context, conn net.Conn, s *affinity.Server) (pct int, err error) {
	pct = -1
	scheme := "http"
	if p.checkTLS != nil {
		tc := tls.Client(conn, p.checkTLSFor(s))
		if err := tc.HandshakeContext(ctx); err != nil {
			return pct, tlsError(err)
		}
		defer tc.Close()
		conn, scheme = tc, "https"
	}
	host := p.health.Host
	if host == "" {
		host = s.Address
		if p.checkTLS != nil && p.checkTLS.ServerName != "" {
			host = p.checkTLS.ServerName
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+s.Address+p.health.Path, nil)
	if err != nil {
		return pct, err
	}
	req.Host = host
	req.Header.Set("User-Agent", "tlsedge-health-check")
	req.Close = true
	tr := &http.Transport{
		DialContext:       func(context.Context, string, string) (net.Conn, error) { return conn, nil },
		DialTLSContext:    func(context.Context, string, string) (net.Conn, error) { return conn, nil },
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return pct, fmt.Errorf("http: %w", trimOp(err))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if !p.expectStatus(resp.StatusCode) {
		return pct, fmt.Errorf("http: status %d (want %s)", resp.StatusCode, p.expectText())
	}
	return agParseWeightHeader(resp.Header.Get(agWeightHeader)), nil
}

// expectStatus reports whether status means healthy.
func (p *Pool) expectStatus(status int) bool {
	if len(p.health.ExpectStatus) == 0 {
		return status >= 200 && status < 400
	}
	for _, e := range p.health.ExpectStatus {
		if lo, hi, err := parseStatusRange(e); err == nil && status >= lo && status <= hi {
			return true
		}
	}
	return false
}

func (p *Pool) expectText() string {
	if len(p.health.ExpectStatus) == 0 {
		return "200-399"
	}
	return strings.Join(p.health.ExpectStatus, ", ")
}

// tlsError marks a failed handshake "tls: ", once: most crypto/tls errors
// already start so ("tls: failed to verify certificate: ...").
func tlsError(err error) error {
	err = trimOp(err)
	if strings.HasPrefix(err.Error(), "tls: ") {
		return err
	}
	return fmt.Errorf("tls: %w", err)
}

// trimOp drops the "dial tcp 127.0.0.1:1:" prefix net errors carry, which
// the log line already says.
func trimOp(err error) error {
	if op, ok := err.(*net.OpError); ok && op.Err != nil {
		return op.Err
	}
	return err
}
