package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// `tlsedge ctl`, end to end: every subcommand of the built binary against a
// running tlsedge (examples/passthrough.yaml with real mTLS backends;
// terminate-tcp.yaml for client identities), in table and -o json form,
// checked against what clients and servers saw and against the API itself.
// Spec: "`tlsedge ctl SUBCOMMAND` calls this API", and "The admin server
// listens on loopback only, unless `admin.tls` gives it a certificate and
// `client_auth: require` with a `client_ca`."

// ---------------------------------------------------------------- helpers

// ctlRun runs `tlsedge ctl [--admin admin] args...` with env added. The
// binary is built with -race, whose runtime sleeps 1 s before a clean
// exit (atexit_sleep_ms); ctl runs dozens of times, so that is turned off.
func ctlRun(t testing.TB, env []string, admin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	full := []string{"ctl"}
	if admin != "" {
		full = append(full, "--admin", admin)
	}
	gorace := strings.TrimSpace(os.Getenv("GORACE") + " atexit_sleep_ms=0")
	return runTlsedgeEnv(t, append([]string{"GORACE=" + gorace}, env...), append(full, args...)...)
}

// ctlOK runs ctl and fails the test unless it exits 0 with nothing on stderr.
func ctlOK(t testing.TB, admin string, args ...string) string {
	t.Helper()
	out, errOut, code := ctlRun(t, nil, admin, args...)
	if code != 0 || errOut != "" {
		t.Fatalf("tlsedge ctl %s: exit %d; want 0 and no stderr\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// ctlJSON runs ctl -o json, decodes its stdout into out and returns stdout.
func ctlJSON(t testing.TB, admin string, out any, args ...string) string {
	t.Helper()
	raw := ctlOK(t, admin, append([]string{"-o", "json"}, args...)...)
	if err := json.Unmarshal([]byte(raw), out); err != nil {
		t.Fatalf("tlsedge ctl -o json %s: %v\n%s", strings.Join(args, " "), err, raw)
	}
	return raw
}

// ctlErr runs ctl, fails the test unless it exits code with nothing on
// stdout, and returns stderr.
func ctlErr(t testing.TB, admin string, code int, args ...string) string {
	t.Helper()
	out, errOut, got := ctlRun(t, nil, admin, args...)
	if got != code || out != "" {
		t.Fatalf("tlsedge ctl %s: exit %d, stdout %q; want exit %d and no stdout\nstderr:\n%s", strings.Join(args, " "), got, out, code, errOut)
	}
	return errOut
}

func wantContains(t testing.TB, what, got, want string) {
	t.Helper()
	if !strings.Contains(got, want) {
		t.Errorf("%s: got %q; want it to contain %q", what, got, want)
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

var ctlCellSep = regexp.MustCompile(` {2,}`)

// ctlTable parses the table in ctl's output whose header starts with
// first: one map (header -> cell) per row. The table ends at the first
// line with another number of cells (a footnote).
func ctlTable(t testing.TB, out, first string) []map[string]string {
	t.Helper()
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if !strings.HasPrefix(l, first+" ") {
			continue
		}
		head := ctlCellSep.Split(strings.TrimSpace(l), -1)
		var rows []map[string]string
		for _, l := range lines[i+1:] {
			cells := ctlCellSep.Split(strings.TrimSpace(l), -1)
			if len(cells) != len(head) {
				break
			}
			r := map[string]string{}
			for j, h := range head {
				r[h] = cells[j]
			}
			rows = append(rows, r)
		}
		return rows
	}
	t.Fatalf("no table with a header starting %q in:\n%s", first, out)
	return nil
}

// ctlRow returns the one row whose column col is val.
func ctlRow(t testing.TB, rows []map[string]string, col, val string) map[string]string {
	t.Helper()
	var found []map[string]string
	for _, r := range rows {
		if r[col] == val {
			found = append(found, r)
		}
	}
	if len(found) != 1 {
		t.Fatalf("rows with %s %q: got %d; want 1 (rows: %v)", col, val, len(found), rows)
	}
	return found[0]
}

// wantRow checks cells of a table row.
func wantRow(t testing.TB, what string, r, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if r[k] != v {
			t.Errorf("%s: %s got %q; want %q (row %v)", what, k, r[k], v, r)
		}
	}
}

// ctlFields parses "key:  value" lines (ctl connections ID, ctl reload).
func ctlFields(out string) map[string]string {
	f := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			f[k] = strings.TrimSpace(v)
		}
	}
	return f
}

// ctlEdge is tlsedge on examples/passthrough.yaml with real backends and
// the admin API on.
type ctlEdge struct {
	e     *edgeProc
	admin string // admin.address
	api   *adminClient
	cfg   cfgMap
	be    map[string]*backend // api-1, api-2 (weight 2), dev-1, dev-2
}

// startCtlEdge starts it; mod may change the config (admin included)
// before it is written.
func startCtlEdge(t *testing.T, mod func(cfgMap)) *ctlEdge {
	t.Helper()
	x := &ctlEdge{be: map[string]*backend{}}
	for _, n := range []string{"api-1", "api-2", "dev-1", "dev-2"} {
		x.be[n] = startBackend(t, n)
	}
	x.cfg = loadExample(t, "passthrough.yaml")
	mapServers(t, x.cfg, map[string]string{"127.0.0.1:9001": x.addr("api-1"), "127.0.0.1:9002": x.addr("api-2"),
		"127.0.0.1:9011": x.addr("dev-1"), "127.0.0.1:9012": x.addr("dev-2")})
	withAdmin(t, x.cfg)
	if mod != nil {
		mod(x.cfg)
	}
	x.admin, _ = asMap(t, x.cfg["admin"], "admin")["address"].(string)
	x.e = runEdge(t, x.cfg)
	x.api = newAdmin(t, x.admin)
	return x
}

func (x *ctlEdge) addr(name string) string { return x.be[name].Addr() }

// ctlConnList is the answer of GET /api/v1/connections.
type ctlConnList struct {
	Connections []apiConn `json:"connections"`
	Matched     int       `json:"matched"`
	Truncated   bool      `json:"truncated"`
}

// ctlPlan is a rebalance plan.
type ctlPlan struct {
	Pool    string  `json:"pool"`
	Above   float64 `json:"above"`
	Rate    float64 `json:"rate"`
	Total   int     `json:"connections"`
	Closing int     `json:"closing"`
	Servers []struct {
		Address string  `json:"address"`
		Share   float64 `json:"fair_share"`
		Closing int     `json:"closing"`
	} `json:"servers"`
}

// ---------------------------------------------------------------- backends, weight, drain, enable

func TestCtlBackendsWeightDrainEnable(t *testing.T) {
	t.Parallel()
	x := startCtlEdge(t, nil)
	a1 := x.addr("api-1")
	held := mustDial(t, x.e.addr, clientOpts{SNI: "api.example.com"})
	heldAddr := x.addr(held.Backend)
	other := map[string]string{"api-1": "api-2", "api-2": "api-1"}[held.Backend]

	// The table: every server, its health, weights and live connections.
	rows := ctlTable(t, ctlOK(t, x.admin, "backends"), "POOL")
	if len(rows) != 4 {
		t.Fatalf("ctl backends: got %d rows; want 4: %v", len(rows), rows)
	}
	for _, w := range []struct{ pool, name, weight string }{
		{"api", "api-1", "1/1"}, {"api", "api-2", "2/2"}, {"devices", "dev-1", "1/1"}, {"devices", "dev-2", "1/1"},
	} {
		active := "0"
		if w.name == held.Backend {
			active = "1"
		}
		wantRow(t, "ctl backends: "+w.name, ctlRow(t, rows, "SERVER", x.addr(w.name)), map[string]string{
			"POOL": w.pool, "STATE": "up", "WEIGHT": w.weight, "ACTIVE": active, "STREAMS": active, "DRAINING": "-", "LAST-ERROR": "-"})
	}

	// -o json: the API's body, indented.
	var all struct {
		Backends []apiBackend `json:"backends"`
	}
	raw := ctlJSON(t, x.admin, &all, "backends")
	if !strings.HasPrefix(raw, "{\n  \"backends\": [\n    {\n") {
		t.Errorf("ctl -o json backends: got %q; want indented JSON", firstLine(raw))
	}
	if len(all.Backends) != 2 || all.Backends[0].Name != "api" || all.Backends[1].Name != "devices" {
		t.Fatalf("ctl -o json backends: got %+v; want pools api and devices", all.Backends)
	}
	for _, s := range all.Backends[0].Servers {
		want := map[string]int{x.addr("api-1"): 1, x.addr("api-2"): 2}[s.Address]
		active := map[bool]int64{true: 1}[s.Address == heldAddr]
		if want == 0 || s.Weight != want || s.ConfiguredWeight != want || s.Active != active || s.Health.State != "up" {
			t.Errorf("ctl -o json backends: api server %+v; want weight %d, active %d, up", s, want, active)
		}
	}

	// One pool, by name; an unknown one.
	if rows := ctlTable(t, ctlOK(t, x.admin, "backends", "devices"), "POOL"); len(rows) != 2 ||
		rows[0]["SERVER"] != x.addr("dev-1") || rows[1]["SERVER"] != x.addr("dev-2") {
		t.Errorf("ctl backends devices: got %v; want dev-1 %s and dev-2 %s", rows, x.addr("dev-1"), x.addr("dev-2"))
	}
	var one apiBackend
	ctlJSON(t, x.admin, &one, "backends", "api")
	if one.Name != "api" || len(one.Servers) != 2 || one.Servers[0].Address != a1 {
		t.Errorf("ctl -o json backends api: got %+v; want pool api, first server %s", one, a1)
	}
	if got := ctlErr(t, x.admin, 1, "backends", "nope"); got != "tlsedge ctl: no backend named \"nope\"\n" {
		t.Errorf("ctl backends nope: stderr got %q; want %q", got, "tlsedge ctl: no backend named \"nope\"\n")
	}

	// The address from TLSEDGE_ADMIN_ADDRESS, and as a URL.
	out, errOut, code := ctlRun(t, []string{"TLSEDGE_ADMIN_ADDRESS=" + x.admin}, "", "backends", "devices")
	if code != 0 || len(ctlTable(t, out, "POOL")) != 2 {
		t.Errorf("TLSEDGE_ADMIN_ADDRESS=%s ctl backends devices: exit %d\n%s%s", x.admin, code, out, errOut)
	}
	ctlRow(t, ctlTable(t, ctlOK(t, "http://"+x.admin+"/", "backends", "devices"), "POOL"), "SERVER", x.addr("dev-2"))

	// weight N: in force/configured, marked *; the API agrees.
	out = ctlOK(t, x.admin, "weight", "api", a1, "5")
	if want := a1 + " of api: weight 5 (the config says 1)"; firstLine(out) != want {
		t.Errorf("ctl weight: got %q; want %q", firstLine(out), want)
	}
	wantRow(t, "ctl weight", ctlRow(t, ctlTable(t, out, "POOL"), "SERVER", a1), map[string]string{"WEIGHT": "5/1*"})
	if s := x.api.server("api", a1); s.Weight != 5 || s.ConfiguredWeight != 1 || !slices.Contains(s.Overrides, "weight") {
		t.Errorf("after ctl weight 5, GET /api/v1/backends: %+v; want weight 5, configured 1, override weight", s)
	}
	var si apiServer
	ctlJSON(t, x.admin, &si, "weight", "api", a1, "7")
	if si.Address != a1 || si.Weight != 7 || si.ConfiguredWeight != 1 || !slices.Equal(si.Overrides, []string{"weight"}) {
		t.Errorf("ctl -o json weight 7: got %+v; want weight 7, configured 1, overrides [weight]", si)
	}
	out = ctlOK(t, x.admin, "backends", "api")
	wantRow(t, "ctl backends after weight 7", ctlRow(t, ctlTable(t, out, "POOL"), "SERVER", a1), map[string]string{"WEIGHT": "7/1*"})
	wantContains(t, "ctl backends after weight 7", out, "* = set at run time")
	si = apiServer{} // fields the answer omits must not keep old values
	ctlJSON(t, x.admin, &si, "weight", "api", a1, "--reset")
	if si.Weight != 1 || si.ConfiguredWeight != 1 || len(si.Overrides) != 0 {
		t.Errorf("ctl -o json weight --reset: got %+v; want weight 1/1 and no overrides", si)
	}
	out = ctlOK(t, x.admin, "weight", "api", a1, "--reset")
	wantRow(t, "ctl weight --reset", ctlRow(t, ctlTable(t, out, "POOL"), "SERVER", a1), map[string]string{"WEIGHT": "1/1"})
	wantContains(t, "ctl weight -1", ctlErr(t, x.admin, 1, "weight", "api", a1, "--", "-1"),
		`tlsedge ctl: want {"weight": N} with N from 0 (no new connections) to 21474836`)
	wantContains(t, "ctl weight without N", ctlErr(t, x.admin, 2, "weight", "api", a1), "give either N or --reset")

	// drain: no new connection reaches the server; the live one stays.
	var ds apiServer
	ctlJSON(t, x.admin, &ds, "drain", "api", heldAddr)
	if ds.Draining == nil || ds.Draining.By != "api" || ds.Draining.Left != 1 || !slices.Contains(ds.Overrides, "drain") {
		t.Fatalf("ctl -o json drain: got %+v (draining %+v); want draining by api, 1 left, override drain", ds, ds.Draining)
	}
	r := ctlRow(t, ctlTable(t, ctlOK(t, x.admin, "backends", "api"), "POOL"), "SERVER", heldAddr)
	if !strings.HasPrefix(r["DRAINING"], "by api, 1 left, closing in ") || r["ACTIVE"] != "1" {
		t.Errorf("ctl backends while draining: got DRAINING %q ACTIVE %q; want %q..., 1", r["DRAINING"], r["ACTIVE"], "by api, 1 left, closing in ")
	}
	for i := 0; i < 4; i++ {
		if got := oneShot(t, x.e.addr, clientOpts{SNI: "api.example.com"}); got != other {
			t.Fatalf("connection %d while %s drains: got %q; want %q", i, held.Backend, got, other)
		}
	}
	if err := held.echo("still here\n"); err != nil {
		t.Errorf("the live connection of the draining server: %v", err)
	}
	out = ctlOK(t, x.admin, "enable", "api", heldAddr)
	if want := heldAddr + " of api: enabled; it takes new connections (health up)"; firstLine(out) != want {
		t.Errorf("ctl enable: got %q; want %q", firstLine(out), want)
	}
	wantRow(t, "ctl enable", ctlRow(t, ctlTable(t, out, "POOL"), "SERVER", heldAddr), map[string]string{"DRAINING": "-"})
	if !poll(waitLong, func() bool { return oneShot(t, x.e.addr, clientOpts{SNI: "api.example.com"}) == held.Backend }) {
		t.Errorf("after ctl enable, no connection reached %s within %v", held.Backend, waitLong)
	}

	// The other forms: drain as a table, enable as JSON; unknown server.
	d1 := x.addr("dev-1")
	out = ctlOK(t, x.admin, "drain", "devices", d1)
	if want := d1 + " of devices: draining; no new connections, live ones close after the pool's drain_timeout"; firstLine(out) != want {
		t.Errorf("ctl drain: got %q; want %q", firstLine(out), want)
	}
	if r := ctlRow(t, ctlTable(t, out, "POOL"), "SERVER", d1); !strings.HasPrefix(r["DRAINING"], "by api, 0 left, closing in ") {
		t.Errorf("ctl drain devices: DRAINING got %q; want %q...", r["DRAINING"], "by api, 0 left, closing in ")
	}
	si = apiServer{}
	ctlJSON(t, x.admin, &si, "enable", "devices", d1)
	if si.Address != d1 || si.Draining != nil || len(si.Overrides) != 0 {
		t.Errorf("ctl -o json enable: got %+v; want %s not draining, no overrides", si, d1)
	}
	wantContains(t, "ctl drain of an unknown server", ctlErr(t, x.admin, 1, "drain", "api", "127.0.0.1:1"),
		`tlsedge ctl: backend api has no server "127.0.0.1:1"`)
}

// ---------------------------------------------------------------- rebalance

func TestCtlRebalance(t *testing.T) {
	t.Parallel()
	x := startCtlEdge(t, nil)
	a1, a2 := x.addr("api-1"), x.addr("api-2")
	// api-2 takes nothing while 4 connections land on api-1; then its
	// weight 2 comes back: api-1 holds 4 where its share is 4/3.
	ctlOK(t, x.admin, "weight", "api", a2, "0")
	type end struct {
		i   int
		err error
	}
	ended := make(chan end, 4)
	for i := 0; i < 4; i++ {
		c := mustDial(t, x.e.addr, clientOpts{SNI: "api.example.com"})
		if c.Backend != "api-1" {
			t.Fatalf("connection %d: got %q; want api-1 (api-2 has weight 0)", i, c.Backend)
		}
		go func() {
			_ = c.SetReadDeadline(time.Now().Add(40 * time.Second))
			_, err := c.r.ReadByte()
			ended <- end{i, err}
		}()
	}
	ctlOK(t, x.admin, "weight", "api", a2, "--reset")

	// 2 to close (4 - ceil(4/3)); at 0.1/s the second closes 10 s after the first.
	out := ctlOK(t, x.admin, "rebalance", "api", "--above", "1", "--rate", "0.1")
	if want := "rebalance of api started: closing 2 of 4 connection(s) at 0.1/s, on servers above 1 × their fair share"; firstLine(out) != want {
		t.Errorf("ctl rebalance: got %q; want %q", firstLine(out), want)
	}
	rows := ctlTable(t, out, "SERVER")
	wantRow(t, "ctl rebalance: api-1", ctlRow(t, rows, "SERVER", a1), map[string]string{"ACTIVE": "4", "FAIR-SHARE": "1.33", "CLOSING": "2"})
	wantRow(t, "ctl rebalance: api-2", ctlRow(t, rows, "SERVER", a2), map[string]string{"ACTIVE": "0", "FAIR-SHARE": "2.67", "CLOSING": "0"})

	out = ctlOK(t, x.admin, "rebalance", "api", "--status")
	if !strings.HasPrefix(out, "rebalance of api running since ") {
		t.Errorf("ctl rebalance --status: got %q; want %q...", firstLine(out), "rebalance of api running since ")
	}
	wantContains(t, "ctl rebalance --status", firstLine(out), "closing 2 of 4 connection(s) at 0.1/s")
	var plan ctlPlan
	ctlJSON(t, x.admin, &plan, "rebalance", "api", "--status")
	if plan.Pool != "api" || plan.Above != 1 || plan.Rate != 0.1 || plan.Total != 4 || plan.Closing != 2 ||
		len(plan.Servers) != 2 || plan.Servers[0].Address != a1 || plan.Servers[0].Closing != 2 {
		t.Errorf("ctl -o json rebalance --status: got %+v; want pool api, above 1, rate 0.1, 4 connections, closing 2 on %s", plan, a1)
	}
	wantContains(t, "ctl backends during a rebalance", ctlOK(t, x.admin, "backends", "api"),
		"rebalance of api running: closing 2 connection(s) at 0.1/s")
	wantContains(t, "a second ctl rebalance", ctlErr(t, x.admin, 1, "rebalance", "api"),
		"a rebalance of this pool is already running")

	// The clients see two of their connections end, and only two.
	for n := 0; n < 2; n++ {
		select {
		case e := <-ended:
			var ne net.Error
			if errors.As(e.err, &ne) && ne.Timeout() {
				t.Fatalf("connection %d: got %v; want tlsedge to close it", e.i, e.err)
			}
		case <-time.After(25 * time.Second):
			var errs []string
			for _, l := range x.e.findLogs(func(l logLine) bool { return l.str("level") == "error" }) {
				errs = append(errs, l.msg()+": "+l.str("panic"))
			}
			t.Fatalf("rebalance: %d of 2 connections ended within 25 s; tlsedge's errors: %q", n, errs)
		}
	}
	var errOut string
	if !poll(waitLong, func() bool {
		_, errOut, _ = ctlRun(t, nil, x.admin, "rebalance", "api", "--status")
		return strings.Contains(errOut, "no rebalance")
	}) {
		t.Fatalf("ctl rebalance --status after the rebalance: got %q; want %q", errOut, `tlsedge ctl: no rebalance of "api" is running`)
	}
	wantRow(t, "ctl backends after the rebalance", ctlRow(t, ctlTable(t, ctlOK(t, x.admin, "backends", "api"), "POOL"), "SERVER", a1),
		map[string]string{"ACTIVE": "2"})
	select {
	case e := <-ended:
		t.Errorf("connection %d ended too (%v); want only 2 closed", e.i, e.err)
	default:
	}

	// A pool with nothing to move; flags set alone; a bad value.
	if got, want := firstLine(ctlOK(t, x.admin, "rebalance", "devices")),
		"rebalance of devices: nothing to close; no server holds more than 1.25 × its fair share of 0 connection(s)"; got != want {
		t.Errorf("ctl rebalance devices: got %q; want %q", got, want)
	}
	plan = ctlPlan{}
	ctlJSON(t, x.admin, &plan, "rebalance", "devices", "--rate", "5")
	if plan.Pool != "devices" || plan.Rate != 5 || plan.Above != 1.25 || plan.Closing != 0 {
		t.Errorf("ctl -o json rebalance devices --rate 5: got %+v; want rate 5, above 1.25, closing 0", plan)
	}
	wantContains(t, "ctl rebalance --above 0.5", ctlErr(t, x.admin, 1, "rebalance", "api", "--above", "0.5"),
		"tlsedge ctl: above must be from 1 to 100")
}

// ---------------------------------------------------------------- connections, close

func TestCtlReload(t *testing.T) {
	t.Parallel()
	x := startCtlEdge(t, nil)
	path := x.e.cfgPath
	fileHash := func() string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		s := sha256.Sum256(b)
		return hex.EncodeToString(s[:])
	}
	out := ctlOK(t, x.admin, "reload")
	if want := "reloaded " + path + " (trigger: admin API)"; firstLine(out) != want {
		t.Errorf("ctl reload: got %q; want %q", firstLine(out), want)
	}
	wantRow(t, "ctl reload", ctlFields(out), map[string]string{"changed": "no (the file is the one in force)", "hash": fileHash(),
		"listeners": "1", "routes": "3", "backends": "2", "servers": "4"})

	// -o json prints the API's own answer.
	var sum struct {
		Hash    string `json:"hash"`
		Servers int    `json:"servers"`
		Trigger string `json:"trigger"`
	}
	raw := ctlJSON(t, x.admin, &sum, "reload")
	resp, err := http.Post("http://"+x.admin+"/api/v1/reload", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	direct, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(direct, []byte(raw)) {
		t.Errorf("ctl -o json reload: got\n%s\nwant the API's answer (%d, %v)\n%s", raw, resp.StatusCode, err, direct)
	}

	// A new server: in force after the reload.
	api3 := startBackend(t, "api-3")
	bm := backendCfg(t, x.cfg, "api")
	bm["servers"] = append(asList(t, bm["servers"], "servers"), cfgMap{"address": api3.Addr()})
	rewriteConfig(t, path, x.cfg)
	ctlJSON(t, x.admin, &sum, "reload")
	if sum.Servers != 5 || sum.Hash != fileHash() || sum.Trigger != "admin API" {
		t.Errorf("ctl -o json reload with a new server: got %+v; want 5 servers, hash %s", sum, fileHash())
	}
	rows := ctlTable(t, ctlOK(t, x.admin, "backends", "api"), "POOL")
	wantRow(t, "ctl backends api after the reload", ctlRow(t, rows, "SERVER", api3.Addr()), map[string]string{"WEIGHT": "1/1"})

	// A bad file: refused with every line validate prints; the old config serves.
	routeCfg(t, x.cfg, 0, "api.example.com")["backend"] = "nope"
	rewriteConfig(t, path, x.cfg)
	_, vOut, vCode := runTlsedge(t, "validate", "-c", path)
	if vCode != 1 || !strings.Contains(vOut, `listeners[0].routes[0].backend: no backend named "nope"`) {
		t.Fatalf("tlsedge validate of the bad file: exit %d, %q; want 1 and the bad backend", vCode, vOut)
	}
	want := "tlsedge ctl: config refused; the old config keeps serving\n" + vOut
	for _, args := range [][]string{{"reload"}, {"-o", "json", "reload"}} {
		if got := ctlErr(t, x.admin, 1, args...); got != want {
			t.Errorf("ctl %s of a bad file: stderr got %q; want %q", strings.Join(args, " "), got, want)
		}
	}
	if rows := ctlTable(t, ctlOK(t, x.admin, "backends", "api"), "POOL"); len(rows) != 3 {
		t.Errorf("ctl backends api after a refused reload: got %d servers; want 3 (the old config)", len(rows))
	}
	oneShot(t, x.e.addr, clientOpts{SNI: "api.example.com"})

	// health
	if got := ctlOK(t, x.admin, "health"); got != "ready\n" {
		t.Errorf("ctl health: got %q; want %q", got, "ready\n")
	}
	var h struct {
		Status string `json:"status"`
	}
	ctlJSON(t, x.admin, &h, "health")
	if h.Status != "ready" {
		t.Errorf("ctl -o json health: got %q; want %q", h.Status, "ready")
	}
}

// Spec: /readyz answers 503 while stopping; ctl health exits 1 then.
func TestCtlHealthNotReady(t *testing.T) {
	t.Parallel()
	x := startCtlEdge(t, func(cfg cfgMap) { cfg["shutdown"] = cfgMap{"delay": "8s"} })
	if got := ctlOK(t, x.admin, "health"); got != "ready\n" {
		t.Fatalf("ctl health: got %q; want %q", got, "ready\n")
	}
	x.e.signal(syscall.SIGTERM) // shutdown.delay: the admin API serves on, not ready
	var out, errOut string
	var code int
	if !poll(waitLong, func() bool { out, errOut, code = ctlRun(t, nil, x.admin, "health"); return code != 0 }) {
		t.Fatalf("ctl health after SIGTERM: exit 0 for %v; want 1", waitLong)
	}
	if code != 1 || out != "not ready: starting or shutting down\n" || errOut != "" {
		t.Errorf("ctl health while stopping: exit %d, stdout %q, stderr %q; want 1, %q", code, out, errOut, "not ready: starting or shutting down\n")
	}
	out, _, code = ctlRun(t, nil, x.admin, "-o", "json", "health")
	var h struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &h); err != nil || code != 1 || h.Status != "not ready: starting or shutting down" {
		t.Errorf("ctl -o json health while stopping: exit %d, %q (%v); want 1 and the not-ready status", code, out, err)
	}
	x.e.stop()
}

func TestCtlUnreachableAdmin(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t) // nothing listens there
	errOut := ctlErr(t, addr, 1, "backends")
	if want := "tlsedge ctl: cannot reach the admin API at http://" + addr + " (address from --admin): dial tcp " + addr; !strings.HasPrefix(errOut, want) {
		t.Errorf("ctl against nothing: got %q; want %q...", errOut, want)
	}
	wantContains(t, "ctl against nothing", errOut, "hint: point --admin (or TLSEDGE_ADMIN_ADDRESS) at the admin.address")
	_, errOut, code := ctlRun(t, []string{"TLSEDGE_ADMIN_ADDRESS=" + addr}, "", "health")
	if code != 1 || !strings.Contains(errOut, "at http://"+addr+" (address from TLSEDGE_ADMIN_ADDRESS)") {
		t.Errorf("TLSEDGE_ADMIN_ADDRESS=%s ctl health: exit %d, %q; want 1 naming the address and the variable", addr, code, errOut)
	}
	if got, want := ctlErr(t, addr, 2, "-o", "yaml", "backends"), "tlsedge ctl: --output \"yaml\": want table or json\n"; got != want {
		t.Errorf("ctl -o yaml: got %q; want %q", got, want)
	}
}

// ---------------------------------------------------------------- admin over TLS with client certificates
