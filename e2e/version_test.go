package e2e

import (
	"runtime"
	"testing"
)

// `tlsedge run` logs what it is at start: version, the commit it was built
// from, the build date and the Go release (as `tlsedge version` prints them).
func TestRunLogsBuildInfo(t *testing.T) {
	t.Parallel()
	cfg := cfgMap{
		"listeners": []any{cfgMap{"name": "public", "address": "127.0.0.1:0", "routes": []any{
			cfgMap{"sni": []any{"*"}, "backend": "b"},
		}}},
		"backends": []any{cfgMap{"name": "b", "servers": []any{cfgMap{"address": "127.0.0.1:9"}}}},
	}
	e := runEdge(t, cfg)
	l := e.waitLog(t, "the start line", func(l logLine) bool { return l.msg() == "tlsedge started" })
	if l.str("commit") != builtCommit || l.str("go") != runtime.Version() || l.str("version") == "" {
		t.Errorf("start line %v; want commit %s, go %s and a version", l, builtCommit, runtime.Version())
	}
}
