package edge

import "time"

// The defaults, in one place. A zero value in the file means "use the default".
const (
	DefaultClientHelloTimeout = 5 * time.Second
	DefaultConnectTimeout     = 3 * time.Second
	DefaultRetries            = 2
	DefaultDrainTimeout       = 30 * time.Second
	DefaultHealthInterval     = 2 * time.Second
	DefaultHealthTimeout      = 1 * time.Second
	DefaultHealthRise         = 2
	DefaultHealthFall         = 3
	DefaultDrainRate          = 100 // connections a second, per pool
	DefaultRebalanceAbove     = 1.25
	DefaultRebalanceRate      = 10 // connections a second, per pool
	DefaultRebalanceInterval  = 30 * time.Second
	DefaultTCPKeepalive       = 15 * time.Second
	DefaultShutdownGrace      = 10 * time.Second
	DefaultHealthPath         = "/"

	DefaultHandshakeTimeout    = 10 * time.Second
	DefaultMaxConnections      = 10000
	DefaultMaxConnectionsPerIP = 1000
	DefaultConnectionRatePerIP = 100.0 // new connections a second, burst twice that
	DefaultMaxHandshakes       = 1024
	DefaultQueueTimeout        = 3 * time.Second
	DefaultMaxResponseHeader   = 64 << 10
	DefaultFailureBurst        = 20
	DefaultFailureInterval     = 10 * time.Second
	DefaultTicketRotation      = time.Hour
	DefaultTLSProfile          = "intermediate"
)

func applyDefaults(c *Config) {
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "json"
	}
	if c.Log.Access == nil {
		t := true
		c.Log.Access = &t
	}
	if c.Log.FailureBurst == nil {
		n := DefaultFailureBurst
		c.Log.FailureBurst = &n
	}
	if c.Log.FailureInterval == 0 {
		c.Log.FailureInterval = DefaultFailureInterval
	}
	if c.Shutdown.Grace == 0 {
		c.Shutdown.Grace = DefaultShutdownGrace
	}
	if t := &c.Admin.TLS; len(t.ClientCA) > 0 && t.ClientAuth == "" {
		t.ClientAuth = "require"
	}
	for i := range c.Listeners {
		l := &c.Listeners[i]
		if l.ProxyProtocol == "" {
			l.ProxyProtocol = "off"
		}
		if l.ClientHelloTimeout == 0 {
			l.ClientHelloTimeout = DefaultClientHelloTimeout
		}
		if l.TCPKeepalive == 0 {
			l.TCPKeepalive = DefaultTCPKeepalive
		}
		if l.HandshakeTimeout == 0 {
			l.HandshakeTimeout = DefaultHandshakeTimeout
		}
		setInt(&l.MaxConnections, DefaultMaxConnections)
		setInt(&l.MaxConnectionsPerIP, DefaultMaxConnectionsPerIP)
		setInt(&l.MaxHandshakes, DefaultMaxHandshakes)
		if l.ConnectionRatePerIP == nil {
			r := DefaultConnectionRatePerIP
			l.ConnectionRatePerIP = &r
		}
		if l.ConnectionBurstPerIP == 0 {
			l.ConnectionBurstPerIP = int(2 * *l.ConnectionRatePerIP)
		}
		for j := range l.Routes {
			r := &l.Routes[j]
			if r.Mode == "" {
				r.Mode = "passthrough"
			}
			if r.Protocol == "" {
				r.Protocol = "tcp"
			}
			if r.Mode != "passthrough" {
				if r.TLS.Profile == "" {
					r.TLS.Profile = DefaultTLSProfile
				}
				if r.TLS.SessionTicketRotation == 0 {
					r.TLS.SessionTicketRotation = DefaultTicketRotation
				}
			}
		}
	}
	for i := range c.Backends {
		b := &c.Backends[i]
		if b.Balance == "" {
			b.Balance = "roundrobin"
		}
		if b.Affinity == "" {
			b.Affinity = "none"
		}
		if b.ProxyProtocol == "" {
			b.ProxyProtocol = "off"
		}
		if b.ConnectTimeout == 0 {
			b.ConnectTimeout = DefaultConnectTimeout
		}
		if b.Retries == nil {
			n := DefaultRetries
			b.Retries = &n
		}
		if b.DrainTimeout == 0 {
			b.DrainTimeout = DefaultDrainTimeout
		}
		if b.DrainRate == 0 {
			b.DrainRate = DefaultDrainRate
		}
		if b.TCPKeepalive == 0 {
			b.TCPKeepalive = DefaultTCPKeepalive
		}
		if b.QueueTimeout == 0 {
			b.QueueTimeout = DefaultQueueTimeout
		}
		if b.MaxResponseHeaderBytes == 0 {
			b.MaxResponseHeaderBytes = DefaultMaxResponseHeader
		}
		if r := b.Rebalance; r != nil {
			if r.Above == 0 {
				r.Above = DefaultRebalanceAbove
			}
			if r.Rate == 0 {
				r.Rate = DefaultRebalanceRate
			}
			if r.Interval == 0 {
				r.Interval = DefaultRebalanceInterval
			}
		}
		for j := range b.Servers {
			if b.Servers[j].Weight == nil {
				w := 1
				b.Servers[j].Weight = &w
			}
		}
		h := &b.Health
		if h.Type == "" {
			h.Type = "tcp"
		}
		if h.Type == "none" {
			continue // its other keys are refused by validate
		}
		if h.Interval == 0 {
			h.Interval = DefaultHealthInterval
		}
		if h.Timeout == 0 {
			h.Timeout = DefaultHealthTimeout
		}
		if h.Rise == 0 {
			h.Rise = DefaultHealthRise
		}
		if h.Fall == 0 {
			h.Fall = DefaultHealthFall
		}
		if h.Type == "http" && h.Path == "" {
			h.Path = DefaultHealthPath
		}
	}
}

// setInt sets *p to def when the key was not given.
func setInt(p **int, def int) {
	if *p == nil {
		*p = &def
	}
}
