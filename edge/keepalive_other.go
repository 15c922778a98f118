//go:build !linux

package edge

import "net"

// listenerKeepalive: elsewhere each accepted connection gets its own.
func listenerKeepalive(*net.TCPListener, net.KeepAliveConfig) bool { return false }

func keepaliveInherited(*net.TCPConn, net.KeepAliveConfig) bool { return false }

func socketKeepalive(uintptr, net.KeepAliveConfig) bool { return false }
