package tlsmode

import "time"

// The bounds of an HTTP proxy, and their defaults.

// HTTPLimits bound what a client or a server can make us hold. Zero values
// take the defaults in brackets.
type HTTPLimits struct {
	ReadHeaderTimeout     time.Duration // a client's request head [10s]
	IdleTimeout           time.Duration // a keep-alive client between requests [2m]
	ResponseHeaderTimeout time.Duration // a server's response head [60s]
	MaxHeaderBytes        int           // a request head [64 KiB]
	MaxRequestBody        int64         // a request body; 0 = unlimited (streamed)
	WriteTimeout          time.Duration // each write to the client [60s]
	ReadBodyTimeout       time.Duration // each wait for request body bytes [60s]
	MaxResponseHeader     int           // a server's response head [64 KiB]
	H2                    H2Limits
}

// H2Limits bound an HTTP/2 client. Zero values take the defaults in
// brackets.
type H2Limits struct {
	MaxConcurrentStreams    int           // [100]
	ReceiveWindow           int           // bytes a stream may have unread [1 MiB]
	ConnectionReceiveWindow int           // bytes the connection may have unread [1 MiB]
	PingInterval            time.Duration // silence before a ping [30s]; < 0 = no pings
	PingTimeout             time.Duration // the answer to a ping [15s]
}

// WithDefaults is l with each zero value replaced by its default.
func (l HTTPLimits) WithDefaults() HTTPLimits {
	if l.ReadHeaderTimeout <= 0 {
		l.ReadHeaderTimeout = 10 * time.Second
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = 2 * time.Minute
	}
	if l.ResponseHeaderTimeout <= 0 {
		l.ResponseHeaderTimeout = 60 * time.Second
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = 64 << 10
	}
	if l.WriteTimeout <= 0 {
		l.WriteTimeout = 60 * time.Second
	}
	if l.ReadBodyTimeout <= 0 {
		l.ReadBodyTimeout = 60 * time.Second
	}
	if l.MaxResponseHeader <= 0 {
		l.MaxResponseHeader = 64 << 10
	}
	h := &l.H2
	if h.MaxConcurrentStreams <= 0 {
		h.MaxConcurrentStreams = 100
	}
	if h.ReceiveWindow <= 0 {
		h.ReceiveWindow = 1 << 20
	}
	if h.ConnectionReceiveWindow <= 0 {
		h.ConnectionReceiveWindow = 1 << 20
	}
	if h.PingInterval == 0 {
		h.PingInterval = 30 * time.Second
	}
	if h.PingTimeout <= 0 {
		h.PingTimeout = 15 * time.Second
	}
	return l
}
