package edge

import (
	"github.com/prometheus/client_golang/prometheus"
)

// serverCollector reads every server's state at scrape time (health,
// weights, drain, live and total connections, bytes), for the servers of
// the config in force and those a reload removed that are still draining.
type serverCollector struct{ e *Edge }

var (
	descServerUp = prometheus.NewDesc("tlsedge_server_up",
		"1 when the server's health checks pass (or it has none), 0 when it is down.", []string{"backend", "server"}, nil)
	descServerWeight = prometheus.NewDesc("tlsedge_server_weight",
		"The weight in force: the API's override, else the config's scaled by the load the server reports (agent check, X-Tlsedge-Weight); 0.25 for weight 1 at 25%.", []string{"backend", "server"}, nil)
	descServerEjected = prometheus.NewDesc("tlsedge_server_ejected",
		"1 while passive ejection (outlier) keeps the server out of picking, else 0.", []string{"backend", "server"}, nil)
	descServerConfWeight = prometheus.NewDesc("tlsedge_server_configured_weight",
		"The weight the config gives.", []string{"backend", "server"}, nil)
	descServerDraining = prometheus.NewDesc("tlsedge_server_draining",
		"1 while the server drains (API, or removed from the config by a reload).", []string{"backend", "server"}, nil)
	descServerActive = prometheus.NewDesc("tlsedge_server_active_connections",
		"Connections (and HTTP requests in flight) holding the server now: what leastconn counts.", []string{"backend", "server"}, nil)
	descServerTotal = prometheus.NewDesc("tlsedge_server_connections_total",
		"TCP connections tlsedge opened to the server.", []string{"backend", "server"}, nil)
	descServerBytes = prometheus.NewDesc("tlsedge_server_bytes_total",
		"Bytes of client connections that streamed to the server (in = from clients), counted when they end.",
		[]string{"backend", "server", "direction"}, nil)
)

func (c *serverCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descServerUp, descServerWeight, descServerConfWeight, descServerDraining,
		descServerActive, descServerTotal, descServerBytes, descServerEjected} {
		ch <- d
	}
}

func (c *serverCollector) Collect(ch chan<- prometheus.Metric) {
	c.e.eachServer(func(pool string, st *serverState, _ bool) {
		s := st.srv
		conf, eff, _ := st.weights()
		gauge := func(d *prometheus.Desc, v float64, extra ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append([]string{pool, s.Address}, extra...)...)
		}
		counter := func(d *prometheus.Desc, v float64, extra ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, append([]string{pool, s.Address}, extra...)...)
		}
		gauge(descServerUp, b2f(s.Healthy()))
		gauge(descServerWeight, eff)
		gauge(descServerConfWeight, float64(conf))
		gauge(descServerDraining, b2f(s.Draining()))
		gauge(descServerEjected, b2f(s.Ejected()))
		gauge(descServerActive, float64(max(s.Active(), 0)))
		counter(descServerTotal, float64(st.total.Load()))
		counter(descServerBytes, float64(st.bytesIn.Load()), "in")
		counter(descServerBytes, float64(st.bytesOut.Load()), "out")
	})
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
