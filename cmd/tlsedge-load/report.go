package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// The report (-report DIR) turns the runs compare.sh recorded into one
// markdown table: per proxy mode and figure, the median over the rounds of
// each setup, tlsedge's ratio to the best peer (HAProxy or nginx), and the
// highest "other CPU" of the runs behind the row. With -report-json it also
// writes every run and the table as JSON.

// runRec is one run as compare.sh records it: the load's result plus what the
// script measured around it. Only the fields the report reads are named.
type runRec struct {
	Setup    string `json:"setup"`    // direct, tlsedge, haproxy, nginx
	Proxy    string `json:"proxy"`    // passthrough, terminate, reencrypt
	Workload string `json:"workload"` // keepalive, newconn, bulk, idle, idlews
	Round    int    `json:"round"`

	Concurrency int     `json:"concurrency"`
	Ops         int64   `json:"ops"`
	OpsPerSec   float64 `json:"ops_per_sec"`
	Bytes       int64   `json:"bytes"`
	MBPerSec    float64 `json:"mb_per_sec"`
	Errors      int64   `json:"errors"`
	Held        int64   `json:"held"`

	// BalancerCPU is the proxy's CPU seconds over the run (nil for direct),
	// OtherCPU the share of the machine used by processes outside the run.
	BalancerCPU *float64 `json:"balancer_cpu_s"`
	OtherCPU    float64  `json:"other_cpu_pct"`
	// Idle runs: the proxy's RSS (KiB) and open file descriptors before the
	// connections were opened and while they were held (IDLE_SETTLE seconds
	// after the last opened); RSSReady is the RSS as the last opened.
	RSSBase  *float64 `json:"rss_kb_base"`
	RSSReady *float64 `json:"rss_kb_ready"`
	RSSHeld  *float64 `json:"rss_kb_held"`
	FDsBase  *float64 `json:"fds_base"`
	FDsHeld  *float64 `json:"fds_held"`
}

// figure is one row of the table. held marks the connections-held rows of
// the idle workloads: their name says how many were asked for.
type figure struct {
	workload, name string
	dec            int
	lowerIsBetter  bool
	held           bool
	value          func(*runRec) (float64, bool)
	optional       bool // runs of older versions lack it: no row when none has it
}

// cpuPer is the proxy's CPU per operation in microseconds.
func cpuPer(r *runRec) (float64, bool) {
	if r.BalancerCPU == nil || r.Ops <= 0 {
		return 0, false
	}
	return *r.BalancerCPU * 1e6 / float64(r.Ops), true
}

// perConn is (held-base)/ops: a resource per idle connection.
func perConn(base, held *float64, ops int64) (float64, bool) {
	if base == nil || held == nil || ops <= 0 {
		return 0, false
	}
	return (*held - *base) / float64(ops), true
}

// heldFig, rssFig and fdsFig are the figures of the idle workloads: the
// connections that answered the final round trip, and the proxy's RSS and
// file descriptors per connection opened.
func heldFig(r *runRec) (float64, bool) { return float64(r.Held), r.Concurrency > 0 }
func rssFig(r *runRec) (float64, bool)  { return perConn(r.RSSBase, r.RSSHeld, r.Ops) }
func rssReadyFig(r *runRec) (float64, bool) {
	return perConn(r.RSSBase, r.RSSReady, r.Ops)
}
func fdsFig(r *runRec) (float64, bool) { return perConn(r.FDsBase, r.FDsHeld, r.Ops) }

var figures = []figure{
	{"keepalive", "keep-alive requests/s", 0, false, false, func(r *runRec) (float64, bool) { return r.OpsPerSec, r.Ops > 0 }, false},
	{"keepalive", "proxy CPU µs per keep-alive request", 1, true, false, cpuPer, false},
	{"newconn", "new connections/s (full handshake)", 0, false, false, func(r *runRec) (float64, bool) { return r.OpsPerSec, r.Ops > 0 }, false},
	{"newconn", "proxy CPU µs per new connection", 0, true, false, cpuPer, false},
	{"bulk", "bulk MB/s", 0, false, false, func(r *runRec) (float64, bool) { return r.MBPerSec, r.Bytes > 0 }, false},
	{"bulk", "proxy CPU s per GiB", 2, true, false, func(r *runRec) (float64, bool) {
		if r.BalancerCPU == nil || r.Bytes <= 0 {
			return 0, false
		}
		return *r.BalancerCPU / (float64(r.Bytes) / (1 << 30)), true
	}, false},
	{"idle", "idle connections held", 0, false, true, heldFig, false},
	{"idle", "proxy RSS KiB per idle connection", 1, true, false, rssFig, false},
	{"idle", "proxy RSS KiB per idle connection, just opened", 1, true, false, rssReadyFig, true},
	{"idle", "proxy fds per idle connection", 2, true, false, fdsFig, false},
	// idlews: WebSockets upgraded through the proxy, one message each way, held.
	{"idlews", "idle WebSockets held", 0, false, true, heldFig, false},
	{"idlews", "proxy RSS KiB per idle WebSocket", 1, true, false, rssFig, false},
	{"idlews", "proxy RSS KiB per idle WebSocket, just opened", 1, true, false, rssReadyFig, true},
	{"idlews", "proxy fds per idle WebSocket", 2, true, false, fdsFig, false},
}

// idleWorkload says whether runs of workload w hold connections (their
// Concurrency is the connections asked for).
func idleWorkload(w string) bool { return w == "idle" || w == "idlews" }

var (
	proxyOrder = []string{"passthrough", "terminate", "reencrypt"}
	setupOrder = []string{"direct", "tlsedge", "haproxy", "nginx"}
)

// tableRow is one row of the table, as -report-json writes it.
type tableRow struct {
	Proxy     string             `json:"proxy"`
	Workload  string             `json:"workload"`
	Figure    string             `json:"figure"`
	Values    map[string]float64 `json:"values"` // median over the rounds, per setup
	Rounds    map[string]int     `json:"rounds"` // runs behind each median
	BestPeer  string             `json:"best_peer,omitempty"`
	Ratio     *float64           `json:"ratio,omitempty"` // tlsedge / best peer
	Lower     bool               `json:"lower_is_better"`
	OtherCPU  float64            `json:"other_cpu_pct_max"`
	Requested int                `json:"requested,omitempty"` // idle connections asked for
	dec       int
	held      bool
}

// median of vs (not empty); sorts vs.
func median(vs []float64) float64 {
	sort.Float64s(vs)
	n := len(vs)
	if n%2 == 1 {
		return vs[n/2]
	}
	return (vs[n/2-1] + vs[n/2]) / 2
}

// bestPeer is the best value among the setups other than tlsedge and direct:
// the lowest when lower is better, else the highest ("" when none has one).
func bestPeer(values map[string]float64, lower bool) (string, float64) {
	var best string
	var bv float64
	names := make([]string, 0, len(values))
	for s := range values {
		names = append(names, s)
	}
	sort.Strings(names) // ties go to the first name
	for _, s := range names {
		v := values[s]
		if s == "tlsedge" || s == "direct" {
			continue
		}
		if best == "" || (lower && v < bv) || (!lower && v > bv) {
			best, bv = s, v
		}
	}
	return best, bv
}

// buildTable computes the rows from the runs, in proxy and figure order.
func buildTable(runs []runRec) []tableRow {
	var rows []tableRow
	proxies := orderOf(runs, func(r *runRec) string { return r.Proxy }, proxyOrder)
	for _, p := range proxies {
		for _, f := range figures {
			row := tableRow{Proxy: p, Workload: f.workload, Figure: f.name, Lower: f.lowerIsBetter, dec: f.dec, held: f.held,
				Values: map[string]float64{}, Rounds: map[string]int{}}
			per := map[string][]float64{}
			any := false
			for i := range runs {
				r := &runs[i]
				if r.Proxy != p || r.Workload != f.workload {
					continue
				}
				any = true
				row.OtherCPU = math.Max(row.OtherCPU, r.OtherCPU)
				row.Requested = max(row.Requested, r.Concurrency)
				if v, ok := f.value(r); ok {
					per[r.Setup] = append(per[r.Setup], v)
				}
			}
			if !any || (f.optional && len(per) == 0) {
				continue
			}
			if !idleWorkload(f.workload) {
				row.Requested = 0
			}
			for s, vs := range per {
				row.Rounds[s] = len(vs)
				row.Values[s] = median(vs)
			}
			if best, bv := bestPeer(row.Values, f.lowerIsBetter); best != "" {
				row.BestPeer = best
				if ev, ok := row.Values["tlsedge"]; ok && bv != 0 {
					ratio := ev / bv
					row.Ratio = &ratio
				}
			}
			rows = append(rows, row)
		}
	}
	return rows
}

// orderOf is the distinct values key gives the runs, known ones first in
// the order given, then the rest sorted.
func orderOf(runs []runRec, key func(*runRec) string, known []string) []string {
	seen := map[string]bool{}
	for i := range runs {
		seen[key(&runs[i])] = true
	}
	var out, rest []string
	for _, k := range known {
		if seen[k] {
			out = append(out, k)
			delete(seen, k)
		}
	}
	for k := range seen {
		rest = append(rest, k)
	}
	sort.Strings(rest)
	return append(out, rest...)
}

// writeMarkdown prints the table: one column per setup, the ratio to the
// best peer, the highest other CPU of the row's runs.
func writeMarkdown(w io.Writer, runs []runRec, rows []tableRow) {
	setups := orderOf(runs, func(r *runRec) string { return r.Setup }, setupOrder)
	fmt.Fprintf(w, "| mode | figure |")
	for _, s := range setups {
		fmt.Fprintf(w, " %s |", s)
	}
	fmt.Fprintln(w, " tlsedge / best peer | other CPU % (max) |")
	fmt.Fprint(w, "|---|---|")
	for range setups {
		fmt.Fprint(w, "---:|")
	}
	fmt.Fprintln(w, "---:|---:|")
	for _, row := range rows {
		name := row.Figure
		if row.Requested > 0 && row.held {
			name = fmt.Sprintf("%s (of %d)", row.Figure, row.Requested)
		}
		fmt.Fprintf(w, "| %s | %s |", row.Proxy, name)
		for _, s := range setups {
			v, ok := row.Values[s]
			if !ok {
				fmt.Fprint(w, " - |")
				continue
			}
			cell := formatNum(v, row.dec)
			if s == "tlsedge" {
				cell = "**" + cell + "**"
			}
			fmt.Fprintf(w, " %s |", cell)
		}
		ratio := "-"
		if row.Ratio != nil {
			ratio = fmt.Sprintf("%.2f (%s)", *row.Ratio, row.BestPeer)
		}
		fmt.Fprintf(w, " %s | %.0f |\n", ratio, row.OtherCPU)
	}
}

// formatNum prints v with dec decimals and thousands separators.
func formatNum(v float64, dec int) string {
	s := fmt.Sprintf("%.*f", dec, v)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	intPart, frac, _ := strings.Cut(s, ".")
	var b strings.Builder
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	out := b.String()
	if frac != "" {
		out += "." + frac
	}
	if neg {
		out = "-" + out
	}
	return out
}

// readRuns reads every run record (*.run.json) in dir, sorted by file name.
func readRuns(dir string) ([]runRec, []json.RawMessage, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.run.json"))
	if err != nil {
		return nil, nil, err
	}
	if len(files) == 0 {
		return nil, nil, fmt.Errorf("no *.run.json in %s", dir)
	}
	slices.Sort(files)
	var runs []runRec
	var raws []json.RawMessage
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, nil, err
		}
		var r runRec
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", f, err)
		}
		if r.Setup == "" || r.Proxy == "" || r.Workload == "" {
			return nil, nil, fmt.Errorf("%s: setup, proxy and workload are required", f)
		}
		runs = append(runs, r)
		raws = append(raws, json.RawMessage(b))
	}
	return runs, raws, nil
}

// report prints the markdown table of the runs in dir to w and, when
// jsonPath is set, writes {meta, runs, table} there (meta is dir/meta.json
// when present).
func report(dir, jsonPath string, w io.Writer) error {
	runs, raws, err := readRuns(dir)
	if err != nil {
		return err
	}
	rows := buildTable(runs)
	writeMarkdown(w, runs, rows)
	if jsonPath == "" {
		return nil
	}
	out := struct {
		Meta  json.RawMessage   `json:"meta,omitempty"`
		Runs  []json.RawMessage `json:"runs"`
		Table []tableRow        `json:"table"`
	}{Runs: raws, Table: rows}
	if b, err := os.ReadFile(filepath.Join(dir, "meta.json")); err == nil {
		if !json.Valid(b) {
			return errors.New("meta.json is not JSON")
		}
		out.Meta = b
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(jsonPath, append(b, '\n'), 0o644)
}
