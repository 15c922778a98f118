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
	// Streams is the requests in flight per connection (http with -h2).
	Streams int `json:"streams,omitempty"`
	// Ops are handshakes (handshake), completed -size transfers (throughput),
	// round trips (echo), requests (http) or connections of one request
	// each (handshake-http).
	Ops       int64   `json:"ops"`
	OpsPerSec float64 `json:"ops_per_sec"`
	// Bytes is the payload read back by the client (the response bodies in
	// the http modes); MBPerSec is Bytes/10^6/Seconds.
	Bytes    int64   `json:"bytes"`
	MBPerSec float64 `json:"mb_per_sec"`
	// Conns is the TLS connections the client opened (dialled, whether or
	// not the handshake succeeded): -c for a keep-alive http run that never
	// reconnected, one per op for handshake-http.
	Conns int64 `json:"conns"`
	// WireIn and WireOut are the bytes read and written on the client's TCP
	// connections (TLS records and all).
	WireIn  int64 `json:"wire_in"`
	WireOut int64 `json:"wire_out"`
	// Proto is the HTTP version of the first good response and Identity its
	// X-Load-Identity header: who the -serve-http server thinks the client is.
	Proto    string `json:"proto,omitempty"`
	Identity string `json:"identity,omitempty"`
	// Latencies in milliseconds: dial to echo (handshake), one round trip
	// (echo), one request to the end of its response (http; handshake-http:
	// dial and handshake included); 0 for throughput.
	P50Ms      float64 `json:"p50_ms"`
	P90Ms      float64 `json:"p90_ms"`
	P99Ms      float64 `json:"p99_ms"`
	MaxMs      float64 `json:"max_ms"`
	Errors     int64   `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	TLS        string  `json:"tls,omitempty"` // version, cipher suite, key exchange of the first connection
	// The idle modes: Attempted connections were tried, Ops of them opened
	// and answered one round trip, Held answered another at the end; GaveUp
	// says the opening stopped after too many failures in a row.
	Attempted int64 `json:"attempted,omitempty"`
	Held      int64 `json:"held"`
	GaveUp    bool  `json:"gave_up,omitempty"`
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
	case "http":
		streams := ""
		if r.Streams > 0 {
			streams = fmt.Sprintf(" x %d streams", r.Streams)
		}
		fmt.Fprintf(&b, "%.0f requests/s (%s, %d connections%s opened), p50 %.3fms p90 %.3fms p99 %.3fms max %.3fms",
			r.OpsPerSec, r.Proto, r.Conns, streams, r.P50Ms, r.P90Ms, r.P99Ms, r.MaxMs)
	case "handshake-http":
		perConn := int64(0)
		if r.Conns > 0 {
			perConn = r.WireIn / r.Conns
		}
		fmt.Fprintf(&b, "%.0f connections/s (full handshake + 1 GET each, %dB read per connection), p50 %.3fms p90 %.3fms p99 %.3fms max %.3fms",
			r.OpsPerSec, perConn, r.P50Ms, r.P90Ms, r.P99Ms, r.MaxMs)
	case "idle", "idle-http", "idle-ws":
		fmt.Fprintf(&b, "%d of %d connections opened (%.0f/s, %d attempted), %d held to the end, open p50 %.3fms p99 %.3fms",
			r.Ops, r.Concurrency, r.OpsPerSec, r.Attempted, r.Held, r.P50Ms, r.P99Ms)
		if r.GaveUp {
			fmt.Fprintf(&b, ", gave up after %d failures in a row", idleGiveUp)
		}
	}
	if r.Identity != "" {
		fmt.Fprintf(&b, ", server saw %q", r.Identity)
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
