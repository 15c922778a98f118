package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMedian(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{5}, 5},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v; want %v", tc.in, got, tc.want)
		}
	}
}

func TestBestPeer(t *testing.T) {
	t.Parallel()
	v := map[string]float64{"direct": 1, "tlsedge": 2, "haproxy": 30, "nginx": 20}
	if s, b := bestPeer(v, true); s != "nginx" || b != 20 {
		t.Errorf("lower is better: %s %v; want nginx 20 (direct and tlsedge are no peers)", s, b)
	}
	if s, b := bestPeer(v, false); s != "haproxy" || b != 30 {
		t.Errorf("higher is better: %s %v; want haproxy 30", s, b)
	}
	if s, _ := bestPeer(map[string]float64{"tlsedge": 1, "direct": 2}, true); s != "" {
		t.Errorf("no peer: got %q; want none", s)
	}
}

func TestFormatNum(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		v    float64
		dec  int
		want string
	}{
		{9000, 0, "9,000"}, {123456.789, 1, "123,456.8"}, {12.345, 2, "12.35"}, {-1234, 0, "-1,234"}, {999, 0, "999"},
	} {
		if got := formatNum(tc.v, tc.dec); got != tc.want {
			t.Errorf("formatNum(%v, %d) = %q; want %q", tc.v, tc.dec, got, tc.want)
		}
	}
}

// TestReport: recorded runs in, the exact table and JSON out.
func TestReport(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name string, r map[string]any) {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".run.json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// keep-alive: 1000 requests in each run; tlsedge's CPU 0.02, 0.04, 0.03
	// s over three rounds (median 30 µs), HAProxy's 0.02 (20 µs), nginx's
	// 0.025 (25 µs); other CPU peaks at 12 %.
	for i, cpu := range []float64{0.02, 0.04, 0.03} {
		write(fmt.Sprintf("tlsedge.pt.ka.%d", i), map[string]any{"setup": "tlsedge", "proxy": "passthrough", "workload": "keepalive",
			"round": i + 1, "ops": 1000, "ops_per_sec": 100.0 * float64(i+1), "balancer_cpu_s": cpu, "other_cpu_pct": 3.0 * float64(i)})
	}
	write("haproxy.pt.ka.1", map[string]any{"setup": "haproxy", "proxy": "passthrough", "workload": "keepalive",
		"round": 1, "ops": 1000, "ops_per_sec": 400.0, "balancer_cpu_s": 0.02, "other_cpu_pct": 12.0})
	write("nginx.pt.ka.1", map[string]any{"setup": "nginx", "proxy": "passthrough", "workload": "keepalive",
		"round": 1, "ops": 1000, "ops_per_sec": 300.0, "balancer_cpu_s": 0.025, "other_cpu_pct": 1.0})
	write("direct.pt.ka.1", map[string]any{"setup": "direct", "proxy": "passthrough", "workload": "keepalive",
		"round": 1, "ops": 1000, "ops_per_sec": 800.0, "balancer_cpu_s": nil, "other_cpu_pct": 0.0})
	// idle: tlsedge held 3000 of 9000 with 6 fds and 21 KiB each; HAProxy
	// all 9000 with 2 fds and 3.5 KiB each.
	write("tlsedge.pt.idle.1", map[string]any{"setup": "tlsedge", "proxy": "passthrough", "workload": "idle", "round": 1,
		"concurrency": 9000, "ops": 3000, "held": 3000, "rss_kb_base": 10000.0, "rss_kb_held": 10000.0 + 3000*21,
		"fds_base": 10.0, "fds_held": 10.0 + 3000*6, "other_cpu_pct": 2.0})
	write("haproxy.pt.idle.1", map[string]any{"setup": "haproxy", "proxy": "passthrough", "workload": "idle", "round": 1,
		"concurrency": 9000, "ops": 9000, "held": 9000, "rss_kb_base": 5000.0, "rss_kb_held": 5000.0 + 9000*3.5,
		"fds_base": 20.0, "fds_held": 20.0 + 9000*2, "other_cpu_pct": 4.0})
	// terminate bulk: 2 GiB, tlsedge 1 s of CPU, nginx 0.5 s.
	write("tlsedge.t.bulk.1", map[string]any{"setup": "tlsedge", "proxy": "terminate", "workload": "bulk", "round": 1,
		"ops": 32, "bytes": 2 << 30, "mb_per_sec": 500.0, "balancer_cpu_s": 1.0})
	write("nginx.t.bulk.1", map[string]any{"setup": "nginx", "proxy": "terminate", "workload": "bulk", "round": 1,
		"ops": 32, "bytes": 2 << 30, "mb_per_sec": 700.0, "balancer_cpu_s": 0.5})
	if err := os.WriteFile(filepath.Join(dir, "meta.json"), []byte(`{"nproc": 2}`), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	jsonPath := filepath.Join(t.TempDir(), "results.json")
	if err := report(dir, jsonPath, &out); err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		"| mode | figure | direct | tlsedge | haproxy | nginx | tlsedge / best peer | other CPU % (max) |",
		"|---|---|---:|---:|---:|---:|---:|---:|",
		"| passthrough | keep-alive requests/s | 800 | **200** | 400 | 300 | 0.50 (haproxy) | 12 |",
		"| passthrough | proxy CPU µs per keep-alive request | - | **30.0** | 20.0 | 25.0 | 1.50 (haproxy) | 12 |",
		"| passthrough | idle connections held (of 9000) | - | **3,000** | 9,000 | - | 0.33 (haproxy) | 4 |",
		"| passthrough | proxy RSS KiB per idle connection | - | **21.0** | 3.5 | - | 6.00 (haproxy) | 4 |",
		"| passthrough | proxy fds per idle connection | - | **6.00** | 2.00 | - | 3.00 (haproxy) | 4 |",
		"| terminate | bulk MB/s | - | **500** | - | 700 | 0.71 (nginx) | 0 |",
		"| terminate | proxy CPU s per GiB | - | **0.50** | - | 0.25 | 2.00 (nginx) | 0 |",
		"",
	}, "\n")
	if got := out.String(); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Meta  map[string]any   `json:"meta"`
		Runs  []map[string]any `json:"runs"`
		Table []tableRow       `json:"table"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	switch {
	case got.Meta["nproc"] != 2.0:
		t.Errorf("meta %v; want meta.json's", got.Meta)
	case len(got.Runs) != 10:
		t.Errorf("%d runs; want 10", len(got.Runs))
	case len(got.Table) != 7:
		t.Errorf("%d rows; want 7", len(got.Table))
	case got.Table[1].Rounds["tlsedge"] != 3 || got.Table[1].Values["tlsedge"] != 30:
		t.Errorf("row 2: %+v; want tlsedge's median 30 of 3 rounds", got.Table[1])
	case got.Table[1].Ratio == nil || *got.Table[1].Ratio != 1.5 || !got.Table[1].Lower:
		t.Errorf("row 2: %+v; want ratio 1.5, lower is better", got.Table[1])
	}
}

// TestReportIdleWebSocketRows: idlews runs get their own rows, after idle's,
// with the WebSockets asked for in the held row's name; the RSS just opened
// has a row where runs recorded it.
func TestReportIdleWebSocketRows(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for i, r := range []map[string]any{
		{"setup": "tlsedge", "proxy": "terminate", "workload": "idle", "round": 1, "concurrency": 2000, "ops": 2000, "held": 2000,
			"rss_kb_base": 8000.0, "rss_kb_held": 8000.0 + 2000*40, "fds_base": 12.0, "fds_held": 12.0 + 2000*1},
		{"setup": "tlsedge", "proxy": "terminate", "workload": "idlews", "round": 1, "concurrency": 2000, "ops": 2000, "held": 1990,
			"rss_kb_base": 8000.0, "rss_kb_ready": 8000.0 + 2000*45, "rss_kb_held": 8000.0 + 2000*30, "fds_base": 12.0, "fds_held": 12.0 + 2000*2},
		{"setup": "nginx", "proxy": "terminate", "workload": "idlews", "round": 1, "concurrency": 2000, "ops": 2000, "held": 2000,
			"rss_kb_base": 3000.0, "rss_kb_held": 3000.0 + 2000*12, "fds_base": 30.0, "fds_held": 30.0 + 2000*2},
		{"setup": "haproxy", "proxy": "reencrypt", "workload": "idlews", "round": 1, "concurrency": 2000, "ops": 1000, "held": 1000,
			"rss_kb_base": 5000.0, "rss_kb_held": 5000.0 + 1000*25, "fds_base": 20.0, "fds_held": 20.0 + 1000*2},
	} {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%d.run.json", i)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	if err := report(dir, "", &out); err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		"| mode | figure | tlsedge | haproxy | nginx | tlsedge / best peer | other CPU % (max) |",
		"|---|---|---:|---:|---:|---:|---:|",
		"| terminate | idle connections held (of 2000) | **2,000** | - | - | - | 0 |",
		"| terminate | proxy RSS KiB per idle connection | **40.0** | - | - | - | 0 |",
		"| terminate | proxy fds per idle connection | **1.00** | - | - | - | 0 |",
		"| terminate | idle WebSockets held (of 2000) | **1,990** | - | 2,000 | 0.99 (nginx) | 0 |",
		"| terminate | proxy RSS KiB per idle WebSocket | **30.0** | - | 12.0 | 2.50 (nginx) | 0 |",
		"| terminate | proxy RSS KiB per idle WebSocket, just opened | **45.0** | - | - | - | 0 |",
		"| terminate | proxy fds per idle WebSocket | **2.00** | - | 2.00 | 1.00 (nginx) | 0 |",
		"| reencrypt | idle WebSockets held (of 2000) | - | 1,000 | - | - | 0 |",
		"| reencrypt | proxy RSS KiB per idle WebSocket | - | 25.0 | - | - | 0 |",
		"| reencrypt | proxy fds per idle WebSocket | - | 2.00 | - | - | 0 |",
		"",
	}, "\n")
	if got := out.String(); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
}

func TestReportNeedsRuns(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := report(t.TempDir(), "", &out); err == nil || !strings.Contains(err.Error(), "no *.run.json") {
		t.Errorf("empty folder: %v; want no *.run.json", err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "x.run.json"), []byte(`{"setup":"tlsedge"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := report(dir, "", &out); err == nil || !strings.Contains(err.Error(), "required") {
		t.Errorf("record without proxy and workload: %v; want an error", err)
	}
}
