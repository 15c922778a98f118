package edge

import (
	"strings"
	"time"
)

// Config is the typed form of a tlsedge config file (docs/config.md is the
// reference of every key).
// Every field documents its zero value; defaults are applied in one place,
// applyDefaults in defaults.go, after decoding and before validation.
type Config struct {
	Admin     AdminConfig      `key:"admin"`
	Log       LogConfig        `key:"log"`
	Certs     CertsConfig      `key:"certs"`
	Shutdown  ShutdownConfig   `key:"shutdown"`
	Listeners []ListenerConfig `key:"listeners"`
	Backends  []BackendConfig  `key:"backends"`

	// File is the path the config was read from ("" when built in code);
	// relative paths inside the config are resolved against its folder.
	File string `key:"-"`
	// Hash is the SHA-256 (hex) of the file's bytes as read ("" when built
	// in code): the admin API and the tlsedge_config_hash metric show it.
	Hash string `key:"-"`

	// files: the certificate, key, CA and CRL files this config names,
	// read once (files.go).
	files *configFiles
}

// AdminConfig is the admin HTTP endpoint (API, /metrics, /healthz, /readyz).
// Empty Address disables it. On an address other than loopback it needs TLS
// with client certificates required (validate refuses it otherwise).
type AdminConfig struct {
	Address string         `key:"address"`
	TLS     AdminTLSConfig `key:"tls"`
}

// AdminTLSConfig is the admin endpoint's TLS. Zero: plain HTTP (loopback only).
type AdminTLSConfig struct {
	Cert       string   `key:"cert"`
	Key        string   `key:"key"`
	ClientAuth string   `key:"client_auth"` // none | require; "" = require when client_ca is set
	ClientCA   []string `key:"client_ca"`
}

// ShutdownConfig is what SIGTERM / SIGINT do. Zero values: no delay, 10s grace.
type ShutdownConfig struct {
	// Delay keeps serving (and accepting) after the signal while /readyz
	// answers 503, so a balancer in front stops sending first. 0 = none.
	Delay time.Duration `key:"delay"`
	// Grace is how long open connections may go on once accepting stopped;
	// then the rest are closed. 0 = 10s.
	Grace time.Duration `key:"grace"`
}

// LogConfig selects the logger. Zero values: level info, format json, access on.
type LogConfig struct {
	Level  string `key:"level"`  // debug | info | warn | error; "" = info
	Format string `key:"format"` // json | console; "" = json
	Access *bool  `key:"access"` // nil = true: one line per connection
	// FailureBurst and FailureInterval bound the warn lines of failed
	// connections: at most FailureBurst lines of one kind (listener and
	// reason) each FailureInterval, then one line saying how many were left
	// out. nil = 20; 0 = every failure is logged. 0 interval = 10s.
	FailureBurst    *int          `key:"failure_burst"`
	FailureInterval time.Duration `key:"failure_interval"`
}

// CertsConfig is shared by terminate and reencrypt routes.
type CertsConfig struct {
	Storage string     `key:"storage"` // certmagic storage folder; "" = $XDG_DATA_HOME/tlsedge (see Config.storage)
	ACME    ACMEConfig `key:"acme"`
}

// ACMEConfig configures automatic certificates (routes with tls.acme).
// Zero values: Let's Encrypt's production directory, the system's roots,
// tls-alpn-01 answered on tlsedge's own TLS listeners, certmagic's renewal
// schedule, no on-demand issuance.
type ACMEConfig struct {
	Email     string `key:"email"`     // the ACME account's contact; required by routes with acme
	Directory string `key:"directory"` // ACME directory URL; "" = Let's Encrypt production
	CARoot    string `key:"ca_root"`   // PEM of the roots of the ACME server's own HTTPS (private CAs, Pebble)
	// OnDemand is the master switch of on-demand issuance: routes with
	// acme: on_demand need it true.
	OnDemand bool `key:"on_demand"`
	// Challenges are the challenge types offered: tls-alpn-01 (answered on
	// the TLS listeners) and http-01 (on HTTPAddress). nil = [tls-alpn-01].
	Challenges []string `key:"challenges"`
	// HTTPAddress is the plain HTTP listener tlsedge opens for http-01
	// (host:port, reachable on port 80 of the names). "" = none.
	HTTPAddress string `key:"http_address"`
	// RenewalWindowRatio is the part of a certificate's lifetime left when
	// it is renewed, between 0 and 1. 0 = 1/3 (certmagic's).
	RenewalWindowRatio float64 `key:"renewal_window_ratio"`
	// RenewInterval is how often certificates are checked for renewal.
	// 0 = 10m. Read at start only.
	RenewInterval time.Duration `key:"renew_interval"`
	// Ask is an http(s) URL asked (GET ?domain=NAME) before an on-demand
	// certificate is ordered; only a 2xx answer allows it. "" = not asked.
	Ask string `key:"ask"`
	// OnDemandOrders is how many on-demand orders may be placed per
	// OnDemandInterval, over the whole instance. 0 = 10; 0 interval = 1m.
	OnDemandOrders   int           `key:"on_demand_orders"`
	OnDemandInterval time.Duration `key:"on_demand_interval"`
}

// ACMEMode is a route's tls.acme: true (certificates for its exact sni
// names, obtained at start), on_demand (for names its wildcard sni
// matches, at their first handshake) or false. Decoded as a string: YAML
// booleans arrive as "on" / "off".
type ACMEMode string

// Mode is the canonical value: "off", "on", "on_demand", or "" when the
// value is not one of them.
func (a ACMEMode) Mode() string {
	switch strings.ToLower(string(a)) {
	case "", "off", "false":
		return "off"
	case "on", "true":
		return "on"
	case "on_demand":
		return "on_demand"
	}
	return ""
}

// Enabled reports whether the route's certificates come from ACME.
func (a ACMEMode) Enabled() bool { m := a.Mode(); return m == "on" || m == "on_demand" }

// ListenerConfig is one address clients connect to.
type ListenerConfig struct {
	Name               string        `key:"name"`
	Address            string        `key:"address"`
	ProxyProtocol      string        `key:"proxy_protocol"`      // off | optional | required; "" = off
	TrustedProxies     []string      `key:"trusted_proxies"`     // CIDRs or single IPs allowed to send PROXY headers
	ClientHelloTimeout time.Duration `key:"clienthello_timeout"` // 0 = 5s
	// HandshakeTimeout bounds the rest of the handshake once routed: the
	// whole TLS handshake of terminate and reencrypt routes; for
	// passthrough, the client's next bytes after its hello. 0 = 10s.
	HandshakeTimeout time.Duration `key:"handshake_timeout"`
	// MaxConnections caps the listener's open connections; excess ones wait
	// in the kernel's accept queue. nil = 10,000; 0 = unlimited.
	MaxConnections *int `key:"max_connections"`
	// MaxConnectionsPerIP caps one client address's open connections (the
	// address a trusted PROXY header gives); excess ones are closed.
	// nil = 1,000; 0 = unlimited.
	MaxConnectionsPerIP *int `key:"max_connections_per_ip"`
	// ConnectionRatePerIP is how many new connections a second one client
	// address may open (a token bucket of ConnectionBurstPerIP); excess
	// ones are closed. nil = 100; 0 = unlimited. Burst 0 = 2 × the rate.
	ConnectionRatePerIP  *float64 `key:"connection_rate_per_ip"`
	ConnectionBurstPerIP int      `key:"connection_burst_per_ip"`
	// MaxHandshakes caps the connections in their handshake at once (from
	// accept until routed, and for terminate until the TLS handshake is
	// done); a new one waits for a slot at most clienthello_timeout.
	// nil = 1,024; 0 = unlimited.
	MaxHandshakes *int `key:"max_handshakes"`
	// TCPKeepalive is the idle time before the first TCP keepalive probe on
	// client connections, and the interval between probes (9 probes).
	// 0 = 15s; "off" (decoded as -1) = no keepalive.
	TCPKeepalive time.Duration `key:"tcp_keepalive"`
	Routes       []RouteConfig `key:"routes"`
}

// RouteConfig maps SNI patterns to a backend in one mode.
type RouteConfig struct {
	SNI      []string        `key:"sni"`
	Mode     string          `key:"mode"` // passthrough | terminate | reencrypt; "" = passthrough
	Backend  string          `key:"backend"`
	Protocol string          `key:"protocol"` // http | tcp | redirect; "" = tcp
	TLS      RouteTLSConfig  `key:"tls"`
	Identity IdentityConfig  `key:"identity"`
	HTTP     RouteHTTPConfig `key:"http"`
	// Upgrades lists the protocols an http route lets clients switch to
	// (Upgrade: ...); any other is refused with 400. nil = [websocket];
	// an empty list: none.
	Upgrades []string `key:"upgrades"`
	// StripHeaders names more request headers to remove before a request
	// is forwarded (site-specific identity or trust headers); a name ending
	// in "*" is a prefix. Case-insensitive, "_" read as "-".
	StripHeaders []string `key:"strip_headers"`
	// Allow admits only the verified client certificates one entry
	// matches (terminate, reencrypt); any other fails the handshake with
	// alert 49. nil = every verified certificate.
	Allow []ClientPatternConfig `key:"allow"`
	// Authorize are path rules for protocol http routes: the first rule
	// whose paths (and methods) match a request decides; no match: 403.
	Authorize []AuthorizeRuleConfig `key:"authorize"`
	// AllowUnauthenticatedPaths are served to clients without a
	// certificate (client_auth verify_if_given) on a route with allow or
	// authorize; every other path gets 403 without one.
	AllowUnauthenticatedPaths []string `key:"allow_unauthenticated_paths"`
	// ReauthorizeOnReload: after a reload, open connections whose client
	// the route no longer admits (allow, client_ca, CRL) are ended. nil =
	// true.
	ReauthorizeOnReload *bool `key:"reauthorize_on_reload"`
	// ClientLimits bound each verified client (by its certificate) across
	// all of its connections to the route. nil = none.
	ClientLimits *ClientLimitsConfig `key:"client_limits"`
	// RedirectStatus is the status of a protocol redirect route's answers:
	// 301, 302, 303, 307 or 308. 0 = 307.
	RedirectStatus int `key:"redirect_status"`
	// RedirectToken, when set, adds a signed, short-lived token carrying
	// the client's verified identity to each redirect's query. nil = none.
	RedirectToken *RedirectTokenConfig `key:"redirect_token"`
	// WebSocket sets how a protocol http route carries WebSockets.
	WebSocket RouteWebSocketConfig `key:"websocket"`
}

// isHTTP reports whether the route serves HTTP requests (protocol http, or
// redirect, which answers them itself).
func (r *RouteConfig) isHTTP() bool { return r.Protocol == "http" || r.Protocol == "redirect" }

// RedirectTokenConfig signs the token a redirect route adds to its
// Location (see tlsmode/redirect.go for the format).
type RedirectTokenConfig struct {
	KeyFile string        `key:"key_file"` // the secret key (at least 32 bytes)
	TTL     time.Duration `key:"ttl"`      // how long a token is valid; 0 = 30s
}

// RouteWebSocketConfig is a route's WebSocket handling.
type RouteWebSocketConfig struct {
	// Failover: tlsedge terminates the WebSocket on both sides, relays
	// whole messages and, when the server goes away, opens a new one to
	// another server on the same client connection. false = bytes are
	// relayed as they come.
	Failover bool `key:"failover"`
}

// ClientLimitsConfig are per-client limits of a terminate/reencrypt route.
type ClientLimitsConfig struct {
	Connections       int     `key:"connections"`         // open connections; 0 = no limit
	RequestsPerSecond float64 `key:"requests_per_second"` // protocol http; 0 = no limit
	Burst             int     `key:"burst"`               // 0 = max(1, requests_per_second)
	// Key is what identifies a client: sha256 (of the certificate; the
	// default), uri, dns, email, cn or subject (a certificate without that
	// field is counted by its sha256).
	Key string `key:"key"`
}

// ClientPatternConfig is one identity pattern: every key set must match
// the verified client certificate. uri, dns, cn and email are globs ("*"
// within a path segment or DNS label, "**" across "/" in a URI).
type ClientPatternConfig struct {
	URI   string `key:"uri"`
	DNS   string `key:"dns"`
	CN    string `key:"cn"`
	Email string `key:"email"`
	// Issuer is a CA's subject DN (RFC 4514, as
	// `openssl x509 -noout -subject -nameopt RFC2253` prints it; a value
	// with "=") or a PEM file of CA certificates: the chain went through
	// that CA.
	Issuer string `key:"issuer"`
	// SHA256 pins certificates by the SHA-256 of their DER (hex, colons
	// allowed).
	SHA256 []string `key:"sha256"`
}

// AuthorizeRuleConfig is one path rule of a protocol http route.
type AuthorizeRuleConfig struct {
	Paths   []string              `key:"paths"`
	Methods []string              `key:"methods"`
	Allow   []ClientPatternConfig `key:"allow"` // nil = any verified certificate
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
	// WriteTimeout bounds each write to the client: a client that stops
	// reading a response (or a WebSocket) for this long is cut and its
	// server slot freed. 0 = 60s.
	WriteTimeout time.Duration `key:"write_timeout"`
	// ReadBodyTimeout bounds the wait for each piece of a request body: a
	// client that stops sending its body for this long gets 408. 0 = 60s.
	ReadBodyTimeout time.Duration `key:"read_body_timeout"`
	// H2 sets the HTTP/2 server of the route.
	H2 RouteH2Config `key:"h2"`
}

// RouteH2Config bounds an HTTP/2 client. Zero values: 100 streams, 1 MiB
// windows, a ping after 30s of silence answered within 15s.
type RouteH2Config struct {
	MaxConcurrentStreams    int           `key:"max_concurrent_streams"`
	ReceiveWindow           int           `key:"receive_window"`            // bytes a stream may have unread
	ConnectionReceiveWindow int           `key:"connection_receive_window"` // bytes a connection may have unread
	PingInterval            time.Duration `key:"ping_interval"`             // silence before a ping; "off" = none
	PingTimeout             time.Duration `key:"ping_timeout"`              // the ping's answer, or the connection is closed
}

// RouteTLSConfig is the server side TLS of a terminate / reencrypt route.
type RouteTLSConfig struct {
	Cert       string   `key:"cert"`
	Key        string   `key:"key"`
	ACME       ACMEMode `key:"acme"`        // true | false | on_demand; "" = false
	ClientAuth string   `key:"client_auth"` // none | request | verify_if_given | require; "" = none
	ClientCA   []string `key:"client_ca"`   // one file or a list
	CRL        []string `key:"crl"`
	OCSP       string   `key:"ocsp"` // off | soft | hard; "" = off
	// OCSPStapling staples the OCSP response of the route's own
	// certificate (fetched in the background from its issuer's responder)
	// to each handshake: on | off; "" = on.
	OCSPStapling string   `key:"ocsp_stapling"`
	MinVersion   string   `key:"min_version"` // "1.2" | "1.3"; "" = 1.2
	ALPN         []string `key:"alpn"`
	// Profile is Mozilla's server side TLS profile: intermediate (TLS 1.2
	// with AEAD suites and forward secrecy only, and TLS 1.3) or modern
	// (TLS 1.3 only). "" = intermediate.
	Profile string `key:"profile"`
	// CipherSuites replaces the TLS 1.2 suites of the profile (Go/IANA
	// names); TLS 1.3 suites are not configurable. nil = the profile's.
	CipherSuites []string `key:"cipher_suites"`
	// SessionTicketRotation is how often the route's session ticket key is
	// replaced; a ticket stays usable for at most 24 keys' worth, never more
	// than a day. 0 = 1h; "off" = no session tickets (full handshakes).
	SessionTicketRotation time.Duration `key:"session_ticket_rotation"`
}

// IdentityConfig is either a preset name (xfcc | ssl | rfc9440 | none) or a
// map of header name to certificate field.
type IdentityConfig struct {
	Preset  string
	Headers map[string]string
}

// BackendConfig is a pool of servers.
type BackendConfig struct {
	Name              string           `key:"name"`
	Balance           string           `key:"balance"`  // roundrobin | leastconn | random; "" = roundrobin
	Affinity          string           `key:"affinity"` // none | source_ip | class_c | five_tuple | cookie; "" = none
	HashBalanceFactor float64          `key:"hash_balance_factor"`
	Servers           []ServerConfig   `key:"servers"`
	Discovery         DiscoveryConfig  `key:"discovery"`
	TLS               BackendTLSConfig `key:"tls"`
	ProxyProtocol     string           `key:"proxy_protocol"`  // off | v1 | v2; "" = off
	ConnectTimeout    time.Duration    `key:"connect_timeout"` // 0 = 3s
	Retries           *int             `key:"retries"`         // nil = 2
	DrainTimeout      time.Duration    `key:"drain_timeout"`   // 0 = 30s
	// DrainRate is how many connections a second a drain may close in this
	// pool once drain_timeout has passed. 0 = 100.
	DrainRate float64 `key:"drain_rate"`
	// Rebalance, when set, closes connections of servers holding more than
	// Above × their share of the pool, every Interval. nil = only on request
	// (POST /api/v1/backends/{pool}/rebalance).
	Rebalance *RebalanceConfig `key:"rebalance"`
	// IdleTimeout closes a passthrough or tcp stream after this long with no
	// byte either way. 0 = off (streams may be quiet for days).
	IdleTimeout time.Duration `key:"idle_timeout"`
	// TCPKeepalive is as for listeners, on connections to servers.
	TCPKeepalive time.Duration `key:"tcp_keepalive"`
	// MaxConnectionsPerServer caps the connections (and HTTP requests in
	// flight) tlsedge holds to each server; past it, a new one waits up to
	// QueueTimeout for a slot, then gets 503 (http) or is closed (tcp).
	// 0 = unlimited; 0 QueueTimeout = 3s.
	MaxConnectionsPerServer int           `key:"max_connections_per_server"`
	QueueTimeout            time.Duration `key:"queue_timeout"`
	// MaxResponseHeaderBytes bounds a server's response head (http routes):
	// beyond it, 502. 0 = 64 KiB.
	MaxResponseHeaderBytes int               `key:"max_response_header_bytes"`
	Health                 HealthCheckConfig `key:"health"`
	// Outlier, when set, ejects servers that fail real traffic for a while
	// (passive ejection, Envoy's outlier detection; see outlier.go).
	Outlier *OutlierConfig `key:"outlier"`
	// Cookie sets the cookie of affinity cookie (http routes). nil with
	// affinity cookie = the defaults of CookieConfig.
	Cookie *CookieConfig `key:"cookie"`
}

// CookieConfig is the cookie that keeps an HTTP client on one server
// (affinity: cookie). Zero values: name tlsedge_server, a session cookie,
// secure true, http_only true, same_site lax.
type CookieConfig struct {
	Name     string        `key:"name"`
	TTL      time.Duration `key:"ttl"` // Max-Age; 0 = a session cookie
	Secure   *bool         `key:"secure"`
	HTTPOnly *bool         `key:"http_only"`
	SameSite string        `key:"same_site"` // lax | strict | none; "" = lax
	// KeyFile is the secret (at least 32 bytes, used as is) the values are
	// signed with; every instance behind one L4 balancer must have the
	// same. "" = a constant key (see tlsmode.CookieOptions.Key).
	KeyFile string `key:"key_file"`
}

// OutlierConfig is a backend's passive ejection. Zero values:
// consecutive_failures 5, consecutive_5xx 0 (off), base_ejection_time
// 30s, max_ejection_time 300s (at least base_ejection_time),
// max_ejection_percent 50, interval base_ejection_time.
type OutlierConfig struct {
	// ConsecutiveFailures: connect failures or TLS handshake failures to
	// the server (reencrypt) in a row that eject it. nil = 5; 0 = off.
	ConsecutiveFailures *int `key:"consecutive_failures"`
	// Consecutive5xx: 5xx answers in a row (http routes). 0 = off.
	Consecutive5xx int `key:"consecutive_5xx"`
	// BaseEjectionTime × the server's ejection count is how long an
	// ejection lasts, at most MaxEjectionTime.
	BaseEjectionTime time.Duration `key:"base_ejection_time"`
	MaxEjectionTime  time.Duration `key:"max_ejection_time"`
	// MaxEjectionPercent bounds the share of the pool's servers ejected at
	// once (never the last available server). nil = 50.
	MaxEjectionPercent *int `key:"max_ejection_percent"`
	// Interval: each interval a server spends without being ejected takes
	// one off its ejection count (so the time grows only for repeat
	// offenders).
	Interval time.Duration `key:"interval"`
}

// RebalanceConfig spreads connections again after servers were added.
// Zero values: above 1.25, rate 10 a second, interval 30s.
type RebalanceConfig struct {
	// Above: a server holding more than Above × its fair share (the pool's
	// connections × its weight / the weights of available servers) gives
	// connections back down to its fair share.
	Above float64 `key:"above"`
	// Rate is how many connections a second are closed in the pool.
	Rate float64 `key:"rate"`
	// Interval is how often the pool is looked at.
	Interval time.Duration `key:"interval"`
}

// ServerConfig is one server of a pool.
type ServerConfig struct {
	Address string `key:"address"`
	Weight  *int   `key:"weight"` // nil = 1; 0 = takes no new connections
	// Public is the URL clients reach this server at directly
	// (wss://node-3.example.com/), for protocol redirect routes.
	Public string `key:"public"`
}

// DiscoveryConfig finds servers in DNS (see discovery.go). The zero value
// is off: the pool has only its configured servers.
type DiscoveryConfig struct {
	// DNS is an SRV name ("_svc._tcp.example.": targets, ports and weights
	// from the records of the lowest priority) or an A/AAAA name with a
	// port ("api.internal:8443", weight 1 each). "" = no discovery.
	DNS string `key:"dns"`
	// Refresh is how often the name is resolved again; an answer's TTL
	// can make it sooner, never more than once a second. 0 = 10s.
	Refresh time.Duration `key:"refresh"`
	// Resolver is the DNS server asked, host:port. "" = the nameservers
	// of /etc/resolv.conf, in order.
	Resolver string `key:"resolver"`
	// MaxServers bounds the servers taken from one answer (each costs
	// health checks and state): beyond it, the first by address are kept
	// and the rest dropped, logged and shown in the API. 0 = 256.
	MaxServers int `key:"max_servers"`
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
// Zero values: type tcp, interval 2s, timeout 1s, rise 2, fall 3; http
// checks: path /, host the backend's tls.server_name or the server's host,
// expect_status 200-399.
type HealthCheckConfig struct {
	Type     string        `key:"type"` // tcp | tls | http | none; "" = tcp
	Interval time.Duration `key:"interval"`
	Timeout  time.Duration `key:"timeout"`
	Rise     int           `key:"rise"`
	Fall     int           `key:"fall"`
	Path     string        `key:"path"` // http: the request path
	Host     string        `key:"host"` // http: the Host header (and TLS name when the backend sets none)
	// ExpectStatus lists the statuses (200) or ranges ("200-299", "2xx")
	// that mean healthy; empty = 200-399.
	ExpectStatus []string `key:"expect_status"`
	// Agent, when set, asks each server for its load (HAProxy's agent
	// check; see agent.go), whatever the type, also none.
	Agent *AgentCheckConfig `key:"agent"`
}

// AgentCheckConfig is HAProxy's agent-check: tlsedge connects to the
// server's host on Port every Interval and reads one line ("75%", "up",
// "down", "drain", "ready", "maint", or several). Zero values: interval
// 2s, timeout 1s.
type AgentCheckConfig struct {
	Port     int           `key:"port"`
	Interval time.Duration `key:"interval"`
	Timeout  time.Duration `key:"timeout"`
}
