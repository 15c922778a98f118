package edge

import "time"

// Config is the typed form of a tlsedge config file (see ../shared/spec/config.md).
// Every field documents its zero value; defaults are applied in one place,
// applyDefaults in defaults.go, after decoding and before validation.
type Config struct {
	Admin     AdminConfig      `key:"admin"`
	Log       LogConfig        `key:"log"`
	Certs     CertsConfig      `key:"certs"`
	Listeners []ListenerConfig `key:"listeners"`
	Backends  []BackendConfig  `key:"backends"`

	// File is the path the config was read from ("" when built in code);
	// relative paths inside the config are resolved against its folder.
	File string `key:"-"`
}

// AdminConfig is the admin HTTP endpoint. Empty Address disables it.
type AdminConfig struct {
	Address string `key:"address"`
}

// LogConfig selects the logger. Zero values: level info, format json, access on.
type LogConfig struct {
	Level  string `key:"level"`  // debug | info | warn | error; "" = info
	Format string `key:"format"` // json | console; "" = json
	Access *bool  `key:"access"` // nil = true: one line per connection
}

// CertsConfig is shared by terminate and reencrypt routes.
type CertsConfig struct {
	Storage string     `key:"storage"` // certmagic storage folder; "" = ./data beside the config
	ACME    ACMEConfig `key:"acme"`
}

// ACMEConfig configures automatic certificates.
type ACMEConfig struct {
	Email     string `key:"email"`
	Directory string `key:"directory"`
	CARoot    string `key:"ca_root"`
	OnDemand  bool   `key:"on_demand"`
}

// ListenerConfig is one address clients connect to.
type ListenerConfig struct {
	Name               string        `key:"name"`
	Address            string        `key:"address"`
	ProxyProtocol      string        `key:"proxy_protocol"`      // off | optional | required; "" = off
	TrustedProxies     []string      `key:"trusted_proxies"`     // CIDRs or single IPs allowed to send PROXY headers
	ClientHelloTimeout time.Duration `key:"clienthello_timeout"` // 0 = 5s
	MaxConnections     int           `key:"max_connections"`     // 0 = unlimited
	Routes             []RouteConfig `key:"routes"`
}

// RouteConfig maps SNI patterns to a backend in one mode.
type RouteConfig struct {
	SNI      []string        `key:"sni"`
	Mode     string          `key:"mode"` // passthrough | terminate | reencrypt; "" = passthrough
	Backend  string          `key:"backend"`
	Protocol string          `key:"protocol"` // http | tcp; "" = tcp
	TLS      RouteTLSConfig  `key:"tls"`
	Identity IdentityConfig  `key:"identity"`
	HTTP     RouteHTTPConfig `key:"http"`
}

// RouteHTTPConfig bounds what clients and servers of a protocol http route
// can make tlsedge hold. Zero values: the defaults in tlsmode.HTTPLimits
// (read_header_timeout 10s, idle_timeout 2m, response_header_timeout 60s,
// max_header_bytes 64 KiB, max_request_body unlimited).
type RouteHTTPConfig struct {
	ReadHeaderTimeout     time.Duration `key:"read_header_timeout"`
	IdleTimeout           time.Duration `key:"idle_timeout"`
	ResponseHeaderTimeout time.Duration `key:"response_header_timeout"`
	MaxHeaderBytes        int           `key:"max_header_bytes"`
	MaxRequestBody        int64         `key:"max_request_body"` // bytes; 0 = unlimited (streamed)
}

// RouteTLSConfig is the server side TLS of a terminate / reencrypt route.
type RouteTLSConfig struct {
	Cert       string   `key:"cert"`
	Key        string   `key:"key"`
	ACME       bool     `key:"acme"`
	ClientAuth string   `key:"client_auth"` // none | request | verify_if_given | require; "" = none
	ClientCA   []string `key:"client_ca"`   // one file or a list
	CRL        []string `key:"crl"`
	OCSP       string   `key:"ocsp"`        // off | soft | hard; "" = off
	MinVersion string   `key:"min_version"` // "1.2" | "1.3"; "" = 1.2
	ALPN       []string `key:"alpn"`
}

// IdentityConfig is either a preset name (xfcc | ssl | rfc9440 | none) or a
// map of header name to certificate field.
type IdentityConfig struct {
	Preset  string
	Headers map[string]string
}

// BackendConfig is a pool of servers.
type BackendConfig struct {
	Name              string            `key:"name"`
	Balance           string            `key:"balance"`  // roundrobin | leastconn | random; "" = roundrobin
	Affinity          string            `key:"affinity"` // none | source_ip | class_c | five_tuple; "" = none
	HashBalanceFactor float64           `key:"hash_balance_factor"`
	Servers           []ServerConfig    `key:"servers"`
	Discovery         DiscoveryConfig   `key:"discovery"`
	TLS               BackendTLSConfig  `key:"tls"`
	ProxyProtocol     string            `key:"proxy_protocol"`  // off | v1 | v2; "" = off
	ConnectTimeout    time.Duration     `key:"connect_timeout"` // 0 = 3s
	Retries           *int              `key:"retries"`         // nil = 2
	DrainTimeout      time.Duration     `key:"drain_timeout"`   // 0 = 30s
	Health            HealthCheckConfig `key:"health"`
}

// ServerConfig is one server of a pool.
type ServerConfig struct {
	Address string `key:"address"`
	Weight  *int   `key:"weight"` // nil = 1; 0 = takes no new connections
}

// DiscoveryConfig finds servers in DNS.
type DiscoveryConfig struct {
	DNS     string        `key:"dns"`
	Refresh time.Duration `key:"refresh"`
}

// BackendTLSConfig is the balancer's TLS client towards servers (reencrypt).
type BackendTLSConfig struct {
	CA                 string `key:"ca"`
	ServerName         string `key:"server_name"`
	Cert               string `key:"cert"`
	Key                string `key:"key"`
	InsecureSkipVerify bool   `key:"insecure_skip_verify"`
}

// HealthCheckConfig is the active health check of a pool's servers.
// Zero values: type tcp, interval 2s, timeout 1s, rise 2, fall 3.
type HealthCheckConfig struct {
	Type     string        `key:"type"` // tcp | tls | http | none; "" = tcp
	Interval time.Duration `key:"interval"`
	Timeout  time.Duration `key:"timeout"`
	Rise     int           `key:"rise"`
	Fall     int           `key:"fall"`
	Path     string        `key:"path"`
}
