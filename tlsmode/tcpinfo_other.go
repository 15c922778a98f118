//go:build !linux

package tlsmode

import (
	"syscall"
	"time"
)

// socketBytes is not available without Linux's TCP_INFO.
func socketBytes(syscall.Conn) (in, out int64, ok bool) { return 0, 0, false }

// socketQuiet is not available without Linux's TCP_INFO: idle_timeout
// needs Linux.
func socketQuiet(syscall.Conn) (time.Duration, bool) { return 0, false }

// handedOver: no FDConns here.
func handedOver(syscall.Conn) bool { return false }
