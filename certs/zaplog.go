package certs

import (
	"math"
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
	return zap.New(&zapToZerolog{log: log})
}

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

func (z *zapToZerolog) With(fields []zapcore.Field) zapcore.Core {
	return &zapToZerolog{log: z.log, fields: append(append([]zapcore.Field(nil), z.fields...), fields...)}
}

func (z *zapToZerolog) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if z.Enabled(e.Level) {
		return ce.AddCore(e, z)
	}
	return ce
}

func (z *zapToZerolog) Write(e zapcore.Entry, fields []zapcore.Field) error {
	ev := z.log.WithLevel(zerologLevel(e.Level))
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
	for k, v := range enc.Fields {
		switch v := v.(type) {
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
