package certs

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// certmagic's zap entries reach zerolog at the matching level, with their
// fields (typed) and the logger's name; levels below zerolog's are not
// written.
func TestAcmeZapBridgeLevels(t *testing.T) {
	for _, tt := range []struct {
		zap  zapcore.Level
		want string
	}{
		{zapcore.DebugLevel, "debug"},
		{zapcore.InfoLevel, "info"},
		{zapcore.WarnLevel, "warn"},
		{zapcore.ErrorLevel, "error"},
		{zapcore.DPanicLevel, "error"},
	} {
		var buf bytes.Buffer
		z := newZapLogger(zerolog.New(&buf).Level(zerolog.DebugLevel)).Named("obtain").With(zap.String("identifier", "a.example.com"))
		if ce := z.Check(tt.zap, "certificate obtained"); ce != nil {
			ce.Write(zap.Error(errors.New("boom")), zap.Duration("retrying_in", 2*time.Second), zap.Int("attempt", 3), zap.Strings("names", []string{"a", "b"}))
		}
		var got map[string]any
		if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
			t.Fatalf("zap %v: not one JSON line: %q", tt.zap, buf.String())
		}
		checks := map[string]any{"level": tt.want, "message": "certificate obtained", "logger": "obtain",
			"component": "certmagic", "identifier": "a.example.com", "error": "boom", "retrying_in": 2000.0, "attempt": 3.0}
		for k, v := range checks {
			if got[k] != v {
				t.Errorf("zap %v: field %s = %v; want %v", tt.zap, k, got[k], v)
			}
		}
		if names, _ := got["names"].([]any); len(names) != 2 {
			t.Errorf("zap %v: names = %v; want [a b]", tt.zap, got["names"])
		}
	}
	// Below the zerolog logger's level: nothing.
	var buf bytes.Buffer
	z := newZapLogger(zerolog.New(&buf).Level(zerolog.WarnLevel))
	z.Info("hidden")
	z.Debug("hidden")
	z.Warn("shown")
	if out := buf.String(); strings.Contains(out, "hidden") || !strings.Contains(out, "shown") {
		t.Errorf("zerolog at warn wrote %q; want only the warn entry", out)
	}
}

// Fatal and Panic entries are written at error and neither end the
// process nor panic; fields come out sorted; certmagic's "tls-alpn
// challenge" error (one per acme-tls/1 hello anyone sends) is written at
// debug. (Findings 14 and 11.)
func TestAcmeZapBridgeNoExitSortedQuiet(t *testing.T) {
	var buf bytes.Buffer
	z := newZapLogger(zerolog.New(&buf).Level(zerolog.DebugLevel))
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Errorf("zap Panic panicked: %v", r)
			}
		}()
		z.Panic("panic entry")
	}()
	z.Fatal("fatal entry", zap.String("zeta", "1"), zap.String("alpha", "2"), zap.String("mid", "3"))
	z.Error("tls-alpn challenge", zap.String("remote_addr", "192.0.2.1:5"))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("wrote %d lines; want 3: %q", len(lines), buf.String())
	}
	for i, want := range []string{`"level":"error"`, `"level":"error"`, `"level":"debug"`} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("line %d = %s; want %s", i, lines[i], want)
		}
	}
	a, m, zz := strings.Index(lines[1], `"alpha"`), strings.Index(lines[1], `"mid"`), strings.Index(lines[1], `"zeta"`)
	if a < 0 || !(a < m && m < zz) {
		t.Errorf("fields not sorted: %s", lines[1])
	}
}
