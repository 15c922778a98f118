package main

import (
	"crypto/tls"
	"fmt"
	"strings"
	"syscall"
	"time"
)

// result is one load run. JSON field names are stable: compare.sh reads them.
type result struct {
	Mode        string  `json:"mode"`
	Label       string  `json:"label,omitempty"`
	Addr        string  `json:"addr"`
	SNI         string  `json:"sni"`
	Concurrency int     `json:"concurrency"`
	Size        int64   `json:"size_bytes"` // per connection (throughput) or round trip (echo)
	Seconds     float64 `json:"seconds"`
	// Ops are handshakes (handshake), completed -size transfers (throughput)
	// or round trips (echo).
	Ops       int64   `json:"ops"`
	OpsPerSec float64 `json:"ops_per_sec"`
	// Bytes is the payload read back by the client; MBPerSec is Bytes/10^6/Seconds.
	Bytes    int64   `json:"bytes"`
	MBPerSec float64 `json:"mb_per_sec"`
	// Latencies in milliseconds: dial to echo (handshake) or one round trip
	// (echo); 0 for throughput.
	P50Ms      float64 `json:"p50_ms"`
	P90Ms      float64 `json:"p90_ms"`
	P99Ms      float64 `json:"p99_ms"`
	MaxMs      float64 `json:"max_ms"`
	Errors     int64   `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	TLS        string  `json:"tls,omitempty"` // version, cipher suite, key exchange of the first connection
	// CPUSeconds is user+system CPU time of this process over the run.
	CPUSeconds float64 `json:"cpu_s"`
}

func (r *result) fill(h *hist, st tls.ConnectionState) {
	if r.Seconds > 0 {
		r.OpsPerSec = float64(r.Ops) / r.Seconds
		r.MBPerSec = float64(r.Bytes) / 1e6 / r.Seconds
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	if h.n > 0 {
		r.P50Ms, r.P90Ms, r.P99Ms, r.MaxMs = ms(h.quantile(0.5)), ms(h.quantile(0.9)), ms(h.quantile(0.99)), ms(h.max)
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		r.CPUSeconds = time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	}
	if st.Version != 0 {
		r.TLS = fmt.Sprintf("%s %s %s", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite), st.CurveID)
	}
}

// human is the one-line summary.
func (r *result) human() string {
	var b strings.Builder
	if r.Label != "" {
		fmt.Fprintf(&b, "%-8s ", r.Label)
	}
	fmt.Fprintf(&b, "%-10s %s sni=%s c=%d %.1fs: ", r.Mode, r.Addr, r.SNI, r.Concurrency, r.Seconds)
	switch r.Mode {
	case "throughput":
		fmt.Fprintf(&b, "%.1f MB/s echoed (%d MB, %d transfers of %d MiB)", r.MBPerSec, r.Bytes/1e6, r.Ops, r.Size>>20)
	case "handshake":
		fmt.Fprintf(&b, "%.0f handshakes/s, p50 %.3fms p90 %.3fms p99 %.3fms max %.3fms", r.OpsPerSec, r.P50Ms, r.P90Ms, r.P99Ms, r.MaxMs)
	case "echo":
		fmt.Fprintf(&b, "%.0f round trips/s of %dB, p50 %.3fms p90 %.3fms p99 %.3fms max %.3fms", r.OpsPerSec, r.Size, r.P50Ms, r.P90Ms, r.P99Ms, r.MaxMs)
	}
	fmt.Fprintf(&b, ", %d errors, client CPU %.1fs", r.Errors, r.CPUSeconds)
	if r.FirstError != "" {
		fmt.Fprintf(&b, " (first: %s)", r.FirstError)
	}
	if r.TLS != "" {
		fmt.Fprintf(&b, " [%s]", r.TLS)
	}
	return b.String()
}
