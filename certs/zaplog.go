package certs

import (
	"math"
	"slices"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// zapToZerolog is a zap core that writes certmagic's log entries to a
// zerolog logger: levels mapped one to one (DPanic, Panic and Fatal as
// error: a library must not end the process), fields kept with their
// types, the logger's name as "logger".
type zapToZerolog struct {
	log    zerolog.Logger
	fields []zapcore.Field // added with With, written before the entry's own
}

// newZapLogger returns a zap logger writing to log through zapToZerolog.
func newZapLogger(log zerolog.Logger) *zap.Logger {
	// Without the hook zap ends the process after a Fatal entry (and
	// panics after Panic) whatever the core does.
	return zap.New(&zapToZerolog{log: log}, zap.WithFatalHook(zapNoExit{}), zap.WithPanicHook(zapNoExit{}))
}

// zapNoExit is the hook after a Fatal or Panic entry: nothing (zap
// replaces zapcore.WriteThenNoop there by exit or panic, not this).
type zapNoExit struct{}

func (zapNoExit) OnWrite(*zapcore.CheckedEntry, []zapcore.Field) {}

// zapQuiet lists certmagic messages written at debug whatever their
// level: certmagic logs "tls-alpn challenge" at error for every acme-tls/1
// hello naming a managed name with no validation in progress, which
// anyone can send.
var zapQuiet = map[string]bool{"tls-alpn challenge": true}

// zerologLevel maps a zap level to zerolog's.
func zerologLevel(l zapcore.Level) zerolog.Level {
	switch {
	case l <= zapcore.DebugLevel:
		return zerolog.DebugLevel
	case l == zapcore.InfoLevel:
		return zerolog.InfoLevel
	case l == zapcore.WarnLevel:
		return zerolog.WarnLevel
	default: // error, dpanic, panic, fatal
		return zerolog.ErrorLevel
	}
}

// Enabled reports whether the zerolog logger writes entries of level l.
func (z *zapToZerolog) Enabled(l zapcore.Level) bool {
	lvl := zerologLevel(l)
	return lvl >= z.log.GetLevel() && lvl >= zerolog.GlobalLevel()
}

// level is the zerolog level an entry is written at.
func (z *zapToZerolog) level(e zapcore.Entry) zerolog.Level {
	if zapQuiet[e.Message] {
		return zerolog.DebugLevel
	}
	return zerologLevel(e.Level)
}

func (z *zapToZerolog) With(fields []zapcore.Field) zapcore.Core {
	return &zapToZerolog{log: z.log, fields: append(append([]zapcore.Field(nil), z.fields...), fields...)}
}

func (z *zapToZerolog) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if lvl := z.level(e); lvl >= z.log.GetLevel() && lvl >= zerolog.GlobalLevel() {
		return ce.AddCore(e, z)
	}
	return ce
}

func (z *zapToZerolog) Write(e zapcore.Entry, fields []zapcore.Field) error {
	ev := z.log.WithLevel(z.level(e))
	if ev == nil {
		return nil
	}
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range z.fields {
		f.AddTo(enc)
	}
	for _, f := range fields {
		f.AddTo(enc)
	}
	ev = ev.Str("component", "certmagic")
	if e.LoggerName != "" {
		ev = ev.Str("logger", e.LoggerName)
	}
	keys := make([]string, 0, len(enc.Fields))
	for k := range enc.Fields {
		keys = append(keys, k)
	}
	slices.Sort(keys) // the same order for the same fields
	for _, k := range keys {
		switch v := enc.Fields[k].(type) {
		case error:
			ev = ev.AnErr(k, v)
		case time.Duration:
			ev = ev.Dur(k, v)
		case float64:
			if math.IsInf(v, 0) || math.IsNaN(v) { // not JSON
				ev = ev.Str(k, zapFloat(v))
				continue
			}
			ev = ev.Float64(k, v)
		default:
			ev = ev.Interface(k, v)
		}
	}
	ev.Msg(e.Message)
	return nil
}

func zapFloat(v float64) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case v > 0:
		return "+Inf"
	}
	return "-Inf"
}

func (z *zapToZerolog) Sync() error { return nil }
