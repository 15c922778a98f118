package e2e

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestCtlConnectionsAndClose(t *testing.T) {
	t.Parallel()
	x := startCtlEdge(t, nil)
	c1 := mustDial(t, x.e.addr, clientOpts{SNI: "api.example.com"})
	c2 := mustDial(t, x.e.addr, clientOpts{SNI: "sensor-7.devices.example.com"})
	src1, src2 := c1.LocalAddr().String(), c2.LocalAddr().String()
	srv1, srv2 := x.addr(c1.Backend), x.addr(c2.Backend)

	out := ctlOK(t, x.admin, "connections", "--source", src1)
	rows := ctlTable(t, out, "ID")
	if len(rows) != 1 {
		t.Fatalf("ctl connections --source %s: got %d rows; want 1\n%s", src1, len(rows), out)
	}
	r := rows[0]
	id := r["ID"]
	wantRow(t, "ctl connections --source", r, map[string]string{"ROUTE": "api.example.com", "MODE": "passthrough",
		"SOURCE": src1, "SERVER": srv1, "CLIENT": "-"})
	if r["UP"] == "0B" || r["DOWN"] == "0B" || !regexp.MustCompile(`^\d+s$`).MatchString(r["AGE"]) {
		t.Errorf("ctl connections: UP %q DOWN %q AGE %q; want bytes both ways and an age in seconds", r["UP"], r["DOWN"], r["AGE"])
	}
	wantContains(t, "ctl connections footer", out, "\n1 connection(s)\n")

	var l ctlConnList
	raw := ctlJSON(t, x.admin, &l, "connections", "--source", src1)
	if l.Matched != 1 || len(l.Connections) != 1 || l.Truncated {
		t.Fatalf("ctl -o json connections --source: got %+v; want 1 connection", l)
	}
	if c := l.Connections[0]; strconv.FormatUint(c.ID, 10) != id || c.Listener != "public" || c.SNI != "api.example.com" ||
		c.Route != "api.example.com" || c.Mode != "passthrough" || c.Source != src1 || c.Server != srv1 ||
		c.Client != nil || c.BytesUp <= 0 || c.BytesDown <= 0 {
		t.Errorf("ctl -o json connections: got %+v; want id %s from %s to %s on api.example.com with bytes both ways", c, id, src1, srv1)
	}
	if !strings.HasPrefix(raw, "{\n  \"connections\": [\n") {
		t.Errorf("ctl -o json connections: got %q; want indented JSON", firstLine(raw))
	}

	// Filters: sni, route, server; limit.
	r = ctlRow(t, ctlTable(t, ctlOK(t, x.admin, "connections", "--sni", "sensor-7.devices.example.com"), "ID"), "SOURCE", src2)
	wantRow(t, "ctl connections --sni", r, map[string]string{"ROUTE": "*.devices.example.com", "SERVER": srv2, "MODE": "passthrough"})
	id2 := r["ID"]
	rows = ctlTable(t, ctlOK(t, x.admin, "connections", "--route", "*.devices.example.com"), "ID")
	ctlRow(t, rows, "SOURCE", src2)
	if slices.ContainsFunc(rows, func(r map[string]string) bool { return r["SOURCE"] == src1 }) {
		t.Errorf("ctl connections --route *.devices.example.com: got %v; want no %s", rows, src1)
	}
	rows = ctlTable(t, ctlOK(t, x.admin, "connections", "--server", srv1), "ID")
	ctlRow(t, rows, "SOURCE", src1)
	if slices.ContainsFunc(rows, func(r map[string]string) bool { return r["SOURCE"] == src2 }) {
		t.Errorf("ctl connections --server %s: got %v; want no %s", srv1, rows, src2)
	}
	ctlRow(t, ctlTable(t, ctlOK(t, x.admin, "connections"), "ID"), "SOURCE", src2)
	out = ctlOK(t, x.admin, "connections", "--limit", "1")
	if rows := ctlTable(t, out, "ID"); len(rows) != 1 || !regexp.MustCompile(`\n1 of [2-9]\d* connection\(s\) shown; raise --limit to see the rest\n$`).MatchString(out) {
		t.Errorf("ctl connections --limit 1: got\n%s\nwant 1 row and a note that more matched", out)
	}
	ctlJSON(t, x.admin, &l, "connections", "--limit", "1")
	if len(l.Connections) != 1 || !l.Truncated || l.Matched < 2 {
		t.Errorf("ctl -o json connections --limit 1: got %d connections, truncated %v, matched %d; want 1, true, 2 or more", len(l.Connections), l.Truncated, l.Matched)
	}
	wantContains(t, "ctl connections --limit 0", ctlErr(t, x.admin, 1, "connections", "--limit", "0"),
		`tlsedge ctl: limit "0": want a number of 1 or more`)
	wantContains(t, "ctl connections ID --sni", ctlErr(t, x.admin, 2, "connections", id, "--sni", "x"), "an ID takes no filters")

	// One connection.
	f := ctlFields(ctlOK(t, x.admin, "connections", id))
	wantRow(t, "ctl connections "+id, f, map[string]string{"id": id, "listener": "public", "route": "api.example.com",
		"mode": "passthrough", "protocol": "tcp", "backend": "api", "sni": "api.example.com", "source": src1, "server": srv1, "client": "-"})
	var one apiConn
	ctlJSON(t, x.admin, &one, "connections", id)
	if strconv.FormatUint(one.ID, 10) != id || one.Source != src1 || one.Server != srv1 {
		t.Errorf("ctl -o json connections %s: got %+v; want the connection from %s", id, one, src1)
	}

	// close: the client sees its connection end; the other one lives on.
	out = ctlOK(t, x.admin, "close", id)
	if want := fmt.Sprintf("closing connection %s: %s -> %s, route api.example.com (passthrough), reason closed by the admin API\n", id, src1, srv1); out != want {
		t.Errorf("ctl close: got %q; want %q", out, want)
	}
	wantClosed(t, c1)
	if !poll(waitLong, func() bool {
		ctlJSON(t, x.admin, &l, "connections", "--source", src1)
		return l.Matched == 0
	}) {
		t.Fatalf("ctl connections --source %s: still %d after ctl close", src1, l.Matched)
	}
	if got, want := ctlErr(t, x.admin, 1, "close", id), "tlsedge ctl: no live connection "+id+"\n"; got != want {
		t.Errorf("ctl close of a closed connection: got %q; want %q", got, want)
	}
	if got, want := ctlErr(t, x.admin, 1, "connections", id), "tlsedge ctl: no live connection "+id+"\n"; got != want {
		t.Errorf("ctl connections of a closed connection: got %q; want %q", got, want)
	}
	if err := c2.echo("still here\n"); err != nil {
		t.Fatalf("the other connection after ctl close %s: %v", id, err)
	}
	var closed apiConn
	ctlJSON(t, x.admin, &closed, "close", id2)
	if strconv.FormatUint(closed.ID, 10) != id2 || closed.Source != src2 || closed.Closing != "closed by the admin API" {
		t.Errorf("ctl -o json close %s: got %+v; want the connection from %s, closing %q", id2, closed, src2, "closed by the admin API")
	}
	wantClosed(t, c2)
}

// wantClosed fails unless tlsedge ends c (EOF or reset) within waitLong.
func wantClosed(t testing.TB, c *edgeConn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(waitLong))
	b, err := c.r.ReadByte()
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("reading after ctl close: got byte %q, %v; want the connection closed", b, err)
	}
}

// Client identities in the directory: terminate-tcp.yaml verifies the
// client certificate; ctl shows its CN and finds it by CN, URI SAN and
// SHA-256.
func TestCtlConnectionsClientIdentity(t *testing.T) {
	t.Parallel()
	p := writeTermFiles(t)
	pk := thePKI.term
	bs := []*ppBackend{startPPBackend(t, "ctl-broker-1"), startPPBackend(t, "ctl-broker-2")}
	cfg := loadExample(t, "terminate-tcp.yaml")
	mapServers(t, cfg, map[string]string{"127.0.0.1:1883": bs[0].Addr(), "127.0.0.1:1884": bs[1].Addr()})
	useTermFiles(t, cfg, p)
	admin := withAdmin(t, cfg)
	e := runEdge(t, cfg)

	cert := pk.clients[cliValid].TLS
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: waitLong}, "tcp", e.addr, &tls.Config{ServerName: "mqtt.example.com",
		RootCAs: thePKI.serverCA.Pool(), Certificates: []tls.Certificate{cert}, NextProtos: []string{"mqtt"}})
	if err != nil {
		t.Fatalf("TLS to mqtt.example.com: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(waitLong))
	msg := "CONNECT device-42\n"
	got := make([]byte, len(msg))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
		t.Fatalf("echo through terminate tcp: got %q, %v; want %q", got, err, msg)
	}
	src := c.LocalAddr().String()
	sum := sha256.Sum256(cert.Certificate[0])
	fingerprint := hex.EncodeToString(sum[:])

	rows := ctlTable(t, ctlOK(t, admin, "connections", "--client", "device-42"), "ID")
	if len(rows) != 1 {
		t.Fatalf("ctl connections --client device-42: got %d rows; want 1: %v", len(rows), rows)
	}
	wantRow(t, "ctl connections --client device-42", rows[0], map[string]string{"SOURCE": src, "CLIENT": "device-42",
		"MODE": "terminate", "ROUTE": "mqtt.example.com"})
	if srv := rows[0]["SERVER"]; srv != bs[0].Addr() && srv != bs[1].Addr() {
		t.Errorf("ctl connections: SERVER got %q; want %s or %s", srv, bs[0].Addr(), bs[1].Addr())
	}
	id := rows[0]["ID"]
	for _, key := range []string{"spiffe://example.org/device/42", "device-42.devices.example.com", fingerprint} {
		var l ctlConnList
		ctlJSON(t, admin, &l, "connections", "--client", key)
		if len(l.Connections) != 1 || strconv.FormatUint(l.Connections[0].ID, 10) != id || l.Connections[0].Client == nil ||
			l.Connections[0].Client.CN != "device-42" || l.Connections[0].Client.SHA256 != fingerprint {
			t.Errorf("ctl -o json connections --client %s: got %+v; want connection %s of CN device-42, sha256 %s", key, l, id, fingerprint)
		}
	}
	out := ctlOK(t, admin, "connections", "--client", "device-99")
	if rows := ctlTable(t, out, "ID"); len(rows) != 0 || !strings.HasSuffix(out, "\n0 connection(s)\n") {
		t.Errorf("ctl connections --client device-99: got\n%s\nwant no rows", out)
	}
	f := ctlFields(ctlOK(t, admin, "connections", id))
	wantContains(t, "ctl connections ID: client", f["client"], "CN=device-42")
	wantRow(t, "ctl connections "+id, f, map[string]string{"client uri": "spiffe://example.org/device/42",
		"client sha256": fingerprint, "mode": "terminate", "protocol": "tcp", "source": src})
}

// ---------------------------------------------------------------- reload, health
