package edge

import (
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tlsedge/tlsedge/tlsmode"
)

// DefaultConnLimit is how many connections GET /api/v1/connections lists
// unless ?limit= says otherwise.
const DefaultConnLimit = 1000

// ConnList is the answer of GET /api/v1/connections.
type ConnList struct {
	Connections []ConnInfo `json:"connections"`
	Matched     int        `json:"matched"`   // how many matched the filters
	Truncated   bool       `json:"truncated"` // more matched than limit
}

// handleConnections lists live connections, filtered by client (CN, URI
// or DNS SAN, or SHA-256 of the verified client certificate; answered from
// an index), sni, route, server and source.
func (e *Edge) handleConnections(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for k := range q {
		switch k {
		case "client", "sni", "route", "server", "source", "limit":
		default:
			writeError(w, http.StatusBadRequest, fmt.Errorf("unknown filter %q: use client, sni, route, server, source, limit", k))
			return
		}
	}
	limit := DefaultConnLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("limit %q: want a number of 1 or more", s))
			return
		}
		limit = n
	}
	f := connFilter{Client: q.Get("client"), SNI: q.Get("sni"), Route: q.Get("route"), Server: q.Get("server"), Source: q.Get("source")}
	found := e.reg.list(f)
	if k := fingerprintKey(f.Client); len(found) == 0 && k != f.Client {
		f.Client = k // a SHA-256 as openssl prints it
		found = e.reg.list(f)
	}
	out := ConnList{Connections: []ConnInfo{}, Matched: len(found)}
	for i, c := range found {
		if i == limit {
			out.Truncated = true
			break
		}
		out.Connections = append(out.Connections, connInfo(c))
	}
	writeJSON(w, http.StatusOK, out)
}

// fingerprintKey is the index's form (lowercase hex) of a SHA-256 given in
// uppercase or as openssl x509 -fingerprint prints it (AB:CD:...); other
// values are returned as they are.
func fingerprintKey(s string) string {
	h := strings.ReplaceAll(s, ":", "")
	if len(h) != 64 || (h != s && len(s) != 95) {
		return s
	}
	if _, err := hex.DecodeString(h); err != nil {
		return s
	}
	return strings.ToLower(h)
}

// connByID finds a live connection; the status says why not (400 not an
// id, 404 no such connection).
func (e *Edge) connByID(s string) (*tlsmode.Conn, int, error) {
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("connection id %q: want a number", s)
	}
	c := e.reg.get(id)
	if c == nil {
		return nil, http.StatusNotFound, fmt.Errorf("no live connection %d", id)
	}
	return c, http.StatusOK, nil
}

// connInfo describes a live connection; it only reads what is safe to
// read while the connection runs.
func connInfo(c *tlsmode.Conn) ConnInfo {
	ci := ConnInfo{ID: c.ID, Source: c.Source.String(), Start: c.Start, Seconds: time.Since(c.Start).Round(time.Millisecond).Seconds()}
	if r := routeOf(c); r != nil {
		ci.Listener, ci.Route, ci.Mode, ci.Backend, ci.Protocol = r.Listener, r.Pattern, r.Mode, r.Backend, r.Protocol
	}
	if c.Hello != nil {
		ci.SNI = c.Hello.ServerName
	}
	if s := c.LastServer(); s != nil {
		ci.Server = s.Address
	}
	if ci.Protocol == "http" || ci.Protocol == "redirect" {
		ci.Requests = c.RequestCount()
		if up := c.Upgrade(); up != "" && c.BoundServer() != nil {
			ci.Protocol = up // websocket
		}
	}
	if id := c.Identity(); id != nil {
		ci.Client = &ClientJS{Subject: id.Subject, Issuer: id.Issuer, CN: id.CN, URIs: id.URIs, DNS: id.DNSNames,
			Emails: id.Emails, Serial: id.Serial, SHA256: id.SHA256, Expires: id.NotAfter.UTC().Format(time.RFC3339)}
	}
	ci.BytesUp, ci.BytesDn = c.LiveBytes()
	ci.Closing = c.ShutdownReason()
	return ci
}
