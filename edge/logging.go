package edge

import (
	"io"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// NewLogger builds the one logger of the process from log.level and
// log.format ("" = info, json). Library code gets it passed in.
func NewLogger(c LogConfig, w io.Writer) zerolog.Logger {
	lvl, err := zerolog.ParseLevel(c.Level)
	if err != nil || c.Level == "" {
		lvl = zerolog.InfoLevel
	}
	if c.Format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339}
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger()
}

// LogOutput is the process's log writer whose format (json or console) can
// change while it runs: a reload applies log.format through it.
type LogOutput struct {
	out io.Writer
	w   atomic.Pointer[io.Writer]
}

// NewLogOutput writes to out in format.
func NewLogOutput(out io.Writer, format string) *LogOutput {
	o := &LogOutput{out: out}
	o.SetFormat(format)
	return o
}

// SetFormat switches to format: json (or "") or console.
func (o *LogOutput) SetFormat(format string) {
	var w io.Writer = o.out
	if format == "console" {
		w = zerolog.ConsoleWriter{Out: o.out, TimeFormat: time.RFC3339}
	}
	o.w.Store(&w)
}

// Write writes one log line in the current format.
func (o *LogOutput) Write(p []byte) (int, error) { return (*o.w.Load()).Write(p) }

// ParseLevel reads log.level ("" = info).
func ParseLevel(s string) zerolog.Level {
	lvl, err := zerolog.ParseLevel(s)
	if err != nil || s == "" {
		return zerolog.InfoLevel
	}
	return lvl
}
