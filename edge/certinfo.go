package edge

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tlsedge/tlsedge/certs"
)

// CertificateInfo is one certificate in GET /api/v1/certificates: every
// certificate tlsedge serves, from files and from ACME.
type CertificateInfo struct {
	Names    []string  `json:"names"`
	Issuer   string    `json:"issuer"`
	Serial   string    `json:"serial"` // hex
	NotAfter time.Time `json:"not_after"`
	// Source is "file" (a route's cert and key) or "acme" (managed:
	// obtained and renewed by tlsedge).
	Source string `json:"source"`
}

// certificates lists the certificates in the cache.
func (e *Edge) certificates() []CertificateInfo {
	m := e.certsLive.Load()
	out := []CertificateInfo{}
	if m == nil {
		return out
	}
	for _, c := range m.Certificates() {
		out = append(out, CertificateInfo{Names: c.Names, Issuer: c.Issuer, Serial: c.Serial, NotAfter: c.NotAfter.UTC(), Source: certSource(c)})
	}
	return out
}

func certSource(c certs.CertInfo) string {
	if c.Managed {
		return "acme"
	}
	return "file"
}

func (e *Edge) handleCertificates(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"certificates": e.certificates()})
}

// certCollector exports each served certificate's expiry.
type certCollector struct{ e *Edge }

var descCertExpiry = prometheus.NewDesc("tlsedge_certificate_expiry_timestamp_seconds",
	"When each certificate tlsedge serves expires (Unix time), by its first name, serial (hex) and kind (file: from a route's cert and key; acme: managed). Alert on it minus time().",
	[]string{"name", "serial", "kind"}, nil)

func (c *certCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descCertExpiry }

func (c *certCollector) Collect(ch chan<- prometheus.Metric) {
	seen := map[[3]string]bool{} // a series twice would fail the scrape
	for _, ci := range c.e.certificates() {
		name := ""
		if len(ci.Names) > 0 {
			name = ci.Names[0]
		}
		k := [3]string{name, ci.Serial, ci.Source}
		if seen[k] {
			continue
		}
		seen[k] = true
		ch <- prometheus.MustNewConstMetric(descCertExpiry, prometheus.GaugeValue, float64(ci.NotAfter.Unix()), name, ci.Serial, ci.Source)
	}
}
