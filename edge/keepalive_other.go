//go:build !linux

package edge

import (
	"net"
	"syscall"
	"time"
)

// listenerKeepalive: elsewhere each accepted connection gets its own.
func listenerKeepalive(*net.TCPListener, net.KeepAliveConfig) bool { return false }

func keepaliveInherited(syscall.Conn, net.KeepAliveConfig) bool { return false }

func socketKeepalive(uintptr, net.KeepAliveConfig) bool { return false }

// serverDialer connects to servers with cfg's keepalive (Go sets it after
// the connect). KeepAlive -1: Go's own 15 s default applies only when cfg
// is disabled, and "off" must stay off.
func serverDialer(timeout time.Duration, cfg net.KeepAliveConfig, _ bool) net.Dialer {
	return net.Dialer{Timeout: timeout, KeepAlive: -1, KeepAliveConfig: cfg}
}
