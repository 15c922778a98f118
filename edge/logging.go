package edge

import (
	"io"
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
