package edge

// A connection's access line and the reasons it gives for a read that
// failed before routing; the client address helpers of the listener.

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/rs/zerolog"
	"github.com/tlsedge/tlsedge/tlsmode"
)

// accessLog writes a connection's line: info, warn for failures (at most
// log.failure_burst of one kind per log.failure_interval, see failureLog),
// debug for port probes.
func (l *listener) accessLog(st *listenerState, tc *tlsmode.Conn, route *Route, start time.Time, failed bool) {
	name := st.name
	level := zerolog.InfoLevel
	switch {
	case tc.Reason == reasonEmpty:
		// Port probes and L4 balancer health checks: debug only (HAProxy's
		// "option dontlognull").
		level = zerolog.DebugLevel
	case failed:
		level = zerolog.WarnLevel
	}
	if level < l.log.GetLevel() || level < zerolog.GlobalLevel() {
		return
	}
	if level == zerolog.WarnLevel && !l.fails.allow(name, tc.Reason, st.limits.failureBurst, st.limits.failureInterval, time.Now()) {
		return
	}
	ev := l.log.WithLevel(level)
	if !ev.Enabled() {
		return
	}
	ev = ev.Str("listener", name).Str("client", tc.Source.String())
	if tc.Hello != nil {
		ev = ev.Str("sni", tc.Hello.ServerName).Strs("alpn", tc.Hello.ALPN)
	}
	if route != nil {
		ev = ev.Str("route", route.Pattern).Str("mode", route.Mode).Str("backend", route.Backend)
	}
	if tc.Client != "" {
		ev = ev.Str("client_cert", tc.Client)
	}
	if tc.Requests > 0 {
		ev = ev.Int64("requests", tc.Requests)
	}
	ev.Str("server", tc.Server).
		Int64("bytes_up", tc.BytesUp).Int64("bytes_down", tc.BytesDown).
		Dur("duration_ms", time.Since(start)).Str("reason", tc.Reason).Msg("connection")
}

// reasonEmpty: the client connected and closed without sending a byte.
const reasonEmpty = "client closed without sending anything"

// readErrKind is the clienthello_errors kind of a failed read.
func readErrKind(err error) string {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.Is(err, io.EOF):
		return "empty"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "incomplete"
	case errors.Is(err, net.ErrClosed):
		return ""
	}
	return "read_error"
}

func readErrReason(err error) string {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "clienthello timeout"
	case errors.Is(err, io.EOF):
		return reasonEmpty
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "client closed before its hello was complete"
	case errors.Is(err, net.ErrClosed):
		return "closed"
	}
	return "reading client hello: " + err.Error()
}

func trustedPeer(trusted []netip.Prefix, a netip.AddrPort) bool {
	ip := a.Addr().Unmap()
	for _, p := range trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func addrPort(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		return unmap(t.AddrPort())
	}
	if a == nil { // a conn that could not tell (FDConn.LocalAddr after its socket left)
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

func unmap(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}
