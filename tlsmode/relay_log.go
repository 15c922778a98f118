package tlsmode

import (
	"runtime/debug"
	"sync/atomic"

	"github.com/rs/zerolog"
)

// rlLog is where the relay logs (SetRelayLogger); nil: nowhere.
var rlLog atomic.Pointer[zerolog.Logger]

// SetRelayLogger sets the logger of the passthrough relay (its start-up
// failures, a panic in it, falling back from splice). The relay serves
// the whole process: the last logger set wins.
func SetRelayLogger(l zerolog.Logger) { rlLog.Store(&l) }

func rlLogger() *zerolog.Logger {
	if l := rlLog.Load(); l != nil {
		return l
	}
	nop := zerolog.Nop()
	return &nop
}

// rlLogPanic logs a panic recovered in the relay, with its stack.
func rlLogPanic(msg string, r any) {
	rlLogger().Error().Interface("panic", r).Bytes("stack", debug.Stack()).Msg(msg)
}
