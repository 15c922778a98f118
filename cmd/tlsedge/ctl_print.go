package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tlsedge/tlsedge/edge"
)

// What `tlsedge ctl` prints: the API's JSON as is (-o json) or human
// tables (-o table), and errors on stderr. Columns are aligned with
// text/tabwriter; an empty cell is "-", so every row has every column.

// unreachable prints why the API could not be called, with a hint.
func (c *ctlClient) unreachable(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // the URL is said once, below
	}
	fmt.Fprintf(c.stderr, "tlsedge ctl: cannot reach the admin API at %s (address from %s): %v\n", c.base, c.from, err)
	var unknownCA x509.UnknownAuthorityError
	var verify *tls.CertificateVerificationError
	msg := err.Error()
	hint := "point --admin (or TLSEDGE_ADMIN_ADDRESS) at the admin.address of the running tlsedge's config"
	switch {
	case errors.As(err, &unknownCA) || errors.As(err, &verify):
		hint = "the admin server's certificate is not trusted: give its CA with --cacert FILE"
	case strings.Contains(msg, "certificate required") || strings.Contains(msg, "bad certificate") ||
		strings.Contains(msg, "handshake failure"):
		hint = "the admin endpoint requires a client certificate: give one with --cert FILE --key FILE"
	case strings.Contains(msg, "HTTP response to HTTPS client"):
		hint = "the admin endpoint speaks plain HTTP: drop --cacert, --cert and --key, or use an http:// --admin"
	case errors.Is(err, os.ErrDeadlineExceeded) || strings.Contains(msg, "Client.Timeout"):
		hint = "no answer within --timeout: is --admin (or TLSEDGE_ADMIN_ADDRESS) the admin.address of the running tlsedge?"
	}
	fmt.Fprintln(c.stderr, "  hint:", hint)
	return exitError{1}
}

// fail prints an API error answer: its "error", then each of its
// "problems" (a refused reload: every line validate prints), one a line.
func (c *ctlClient) fail(status int, raw []byte) error {
	var e edge.APIError
	if err := json.Unmarshal(raw, &e); err != nil || e.Error == "" {
		text := strings.TrimSpace(string(raw))
		if len(text) > 200 {
			text = text[:200] + "..."
		}
		fmt.Fprintf(c.stderr, "tlsedge ctl: %s answered %d %s: %s\n", c.base, status, http.StatusText(status), text)
		if strings.Contains(text, "HTTP request to an HTTPS server") {
			fmt.Fprintln(c.stderr, "  hint: the admin endpoint uses TLS: give --cacert FILE (and --cert FILE --key FILE when it requires a client certificate), or an https:// --admin")
		}
		return exitError{1}
	}
	fmt.Fprintln(c.stderr, "tlsedge ctl:", e.Error)
	for _, p := range e.Problems {
		fmt.Fprintln(c.stderr, p)
	}
	return exitError{1}
}

// print writes raw indented with -o json; else it decodes raw into v and
// prints it with table.
func (c *ctlClient) print(raw []byte, v any, table func()) error {
	if c.json {
		var out bytes.Buffer
		if err := json.Indent(&out, bytes.TrimSpace(raw), "", "  "); err != nil {
			fmt.Fprintf(c.stderr, "tlsedge ctl: the answer of %s is not JSON: %v\n", c.base, err)
			return exitError{1}
		}
		out.WriteByte('\n')
		_, err := c.stdout.Write(out.Bytes())
		return err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		fmt.Fprintf(c.stderr, "tlsedge ctl: reading the answer of %s: %v\n", c.base, err)
		return exitError{1}
	}
	table()
	return nil
}

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// row writes cells as one tab-separated line.
func row(w io.Writer, cells ...any) {
	for i, c := range cells {
		if i > 0 {
			io.WriteString(w, "\t")
		}
		fmt.Fprint(w, c)
	}
	io.WriteString(w, "\n")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printBackends is GET /api/v1/backends: one line per server.
func printBackends(w io.Writer, bs []edge.BackendInfo) {
	tw := newTable(w)
	row(tw, "POOL", "SERVER", "STATE", "WEIGHT", "ACTIVE", "STREAMS", "DRAINING", "LAST-ERROR")
	overridden := false
	now := time.Now()
	for _, b := range bs {
		if len(b.Servers) == 0 {
			row(tw, b.Name, "-", "-", "-", 0, 0, "-", "no servers")
		}
		for _, s := range b.Servers {
			state := s.Health.State
			if s.Removed {
				state += ",removed"
			}
			weight := fmt.Sprintf("%d/%d", s.Weight, s.ConfiguredWeight)
			if slices.Contains(s.Overrides, "weight") {
				weight += "*"
				overridden = true
			}
			row(tw, b.Name, s.Address, state, weight, s.Active, s.Streams, drainCell(s.Draining, now), dash(shorten(s.Health.LastError, 80)))
		}
	}
	tw.Flush()
	if overridden {
		fmt.Fprintln(w, "WEIGHT is in force/configured; * = set at run time (ctl weight POOL ADDRESS --reset puts the config's back)")
	}
	for _, b := range bs {
		if p := b.Rebalancing; p != nil {
			fmt.Fprintf(w, "rebalance of %s running: closing %d connection(s) at %g/s\n", b.Name, p.Closing, p.Rate)
		}
	}
}

// drainCell is "-", or who drains, how many connections are left, and
// when closing starts.
func drainCell(d *edge.DrainInfo, now time.Time) string {
	if d == nil {
		return "-"
	}
	s := fmt.Sprintf("by %s, %d left", d.By, d.Left)
	if now.Before(d.Deadline) {
		return s + ", closing in " + d.Deadline.Sub(now).Round(time.Second).String()
	}
	return s + ", closing"
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

// printServerChange is the answer of drain, enable and weight: what
// changed, then the server's line.
func printServerChange(w io.Writer, pool, action string, s *edge.ServerInfo) {
	switch action {
	case "drain":
		fmt.Fprintf(w, "%s of %s: draining; no new connections, live ones close after the pool's drain_timeout\n", s.Address, pool)
	case "enable":
		fmt.Fprintf(w, "%s of %s: enabled; it takes new connections (health %s)\n", s.Address, pool, s.Health.State)
	case "weight":
		fmt.Fprintf(w, "%s of %s: weight %d (the config says %d)\n", s.Address, pool, s.Weight, s.ConfiguredWeight)
	case "reset":
		fmt.Fprintf(w, "%s of %s: weight back to the config's, %d\n", s.Address, pool, s.Weight)
	}
	printBackends(w, []edge.BackendInfo{{Name: pool, Servers: []edge.ServerInfo{*s}}})
}

// printPlan is a rebalance plan: started (POST) or running (GET).
func printPlan(w io.Writer, p *edge.RebalancePlan, running bool) {
	switch {
	case running:
		fmt.Fprintf(w, "rebalance of %s running since %s: closing %d of %d connection(s) at %g/s, on servers above %g × their fair share\n",
			p.Pool, p.Started.Local().Format(time.TimeOnly), p.Closing, p.Total, p.Rate, p.Above)
	case p.Closing == 0:
		fmt.Fprintf(w, "rebalance of %s: nothing to close; no server holds more than %g × its fair share of %d connection(s)\n",
			p.Pool, p.Above, p.Total)
	default:
		fmt.Fprintf(w, "rebalance of %s started: closing %d of %d connection(s) at %g/s, on servers above %g × their fair share\n",
			p.Pool, p.Closing, p.Total, p.Rate, p.Above)
	}
	tw := newTable(w)
	row(tw, "SERVER", "ACTIVE", "FAIR-SHARE", "CLOSING")
	for _, s := range p.Servers {
		row(tw, s.Address, s.Active, fmt.Sprintf("%.2f", s.Share), s.Closing)
	}
	tw.Flush()
}

// printCertificates is one line per certificate served, with the days
// left before it expires.
func printCertificates(w io.Writer, cs []edge.CertificateInfo, now time.Time) {
	tw := newTable(w)
	row(tw, "NAMES", "SOURCE", "SERIAL", "EXPIRES", "DAYS LEFT", "ISSUER")
	for _, c := range cs {
		left := "expired"
		if c.NotAfter.After(now) {
			left = strconv.Itoa(int(c.NotAfter.Sub(now).Hours() / 24)) // whole days
		}
		row(tw, dash(strings.Join(c.Names, ",")), c.Source, c.Serial, c.NotAfter.UTC().Format(time.RFC3339), left, c.Issuer)
	}
	tw.Flush()
	fmt.Fprintf(w, "%d certificate(s)\n", len(cs))
}

// printConns is the connection directory: one line per connection.
func printConns(w io.Writer, l *edge.ConnList) {
	tw := newTable(w)
	row(tw, "ID", "ROUTE", "MODE", "SOURCE", "SERVER", "CLIENT", "AGE", "UP", "DOWN")
	for _, c := range l.Connections {
		row(tw, c.ID, dash(c.Route), dash(c.Mode), c.Source, dash(c.Server), clientCell(c.Client), age(c.Seconds),
			humanBytes(c.BytesUp), humanBytes(c.BytesDn))
	}
	tw.Flush()
	if l.Truncated {
		fmt.Fprintf(w, "%d of %d connection(s) shown; raise --limit to see the rest\n", len(l.Connections), l.Matched)
		return
	}
	fmt.Fprintf(w, "%d connection(s)\n", l.Matched)
}

// clientCell names a verified client certificate: its CN, else its first
// URI, else its first DNS name.
func clientCell(c *edge.ClientJS) string {
	switch {
	case c == nil:
		return "-"
	case c.CN != "":
		return c.CN
	case len(c.URIs) > 0:
		return c.URIs[0]
	case len(c.DNS) > 0:
		return c.DNS[0]
	}
	return "-"
}

// printConn is one connection, a field a line.
func printConn(w io.Writer, c *edge.ConnInfo) {
	tw := newTable(w)
	row(tw, "id:", c.ID)
	row(tw, "listener:", dash(c.Listener))
	row(tw, "route:", dash(c.Route))
	row(tw, "mode:", dash(c.Mode))
	row(tw, "protocol:", dash(c.Protocol))
	row(tw, "backend:", dash(c.Backend))
	row(tw, "sni:", dash(c.SNI))
	row(tw, "source:", c.Source)
	row(tw, "server:", dash(c.Server))
	if cl := c.Client; cl != nil {
		row(tw, "client:", cl.Subject)
		row(tw, "client issuer:", cl.Issuer)
		if len(cl.URIs) > 0 {
			row(tw, "client uri:", strings.Join(cl.URIs, ", "))
		}
		if len(cl.DNS) > 0 {
			row(tw, "client dns:", strings.Join(cl.DNS, ", "))
		}
		row(tw, "client serial:", cl.Serial)
		row(tw, "client sha256:", cl.SHA256)
		row(tw, "client expires:", cl.Expires)
	} else {
		row(tw, "client:", "-")
	}
	row(tw, "started:", c.Start.Local().Format(time.RFC3339)+" ("+age(c.Seconds)+" ago)")
	row(tw, "up:", fmt.Sprintf("%s (%d bytes)", humanBytes(c.BytesUp), c.BytesUp))
	row(tw, "down:", fmt.Sprintf("%s (%d bytes)", humanBytes(c.BytesDn), c.BytesDn))
	if c.Protocol == "http" || c.Protocol == "websocket" {
		row(tw, "requests:", c.Requests)
	}
	if c.Closing != "" {
		row(tw, "closing:", c.Closing)
	}
	tw.Flush()
}

// printClosed is the answer of DELETE /api/v1/connections/{id}.
func printClosed(w io.Writer, c *edge.ConnInfo) {
	fmt.Fprintf(w, "closing connection %d: %s -> %s, route %s (%s), reason %s\n",
		c.ID, c.Source, dash(c.Server), dash(c.Route), dash(c.Mode), dash(c.Closing))
}

// printReload is the summary of a reload put in force.
func printReload(w io.Writer, s *edge.ReloadSummary) {
	changed := "no (the file is the one in force)"
	if s.Changed {
		changed = "yes"
	}
	fmt.Fprintf(w, "reloaded %s (trigger: %s)\n", s.Config, s.Trigger)
	tw := newTable(w)
	row(tw, "changed:", changed)
	row(tw, "hash:", s.Hash)
	row(tw, "listeners:", s.Listeners)
	row(tw, "routes:", s.Routes)
	row(tw, "backends:", s.Backends)
	row(tw, "servers:", s.Servers)
	tw.Flush()
}

// age is a connection's age in whole seconds, as a Go duration ("1h2m3s").
func age(seconds float64) string {
	return time.Duration(seconds * float64(time.Second)).Round(time.Second).String()
}

// humanBytes is n in B, KiB, MiB, GiB or TiB, without a space.
func humanBytes(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%dB", n)
	}
	f := float64(n)
	for _, unit := range []string{"KiB", "MiB", "GiB"} {
		f /= 1024
		if f < 1024 {
			return fmt.Sprintf("%.1f%s", f, unit)
		}
	}
	return fmt.Sprintf("%.1fTiB", f/1024)
}
