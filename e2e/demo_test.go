package e2e

import (
	"context"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Spec: "tlsedge demo  # self-contained demo: throwaway PKI, built-in demo
// backends, ... prints openssl s_client / curl lines to try". The printed
// lines work as printed.
func TestDemoPrintsWorkingLines(t *testing.T) {
	t.Parallel()
	needTools(t, "curl")
	listen := freeAddr(t)
	dir := t.TempDir()
	demo := startCommand(t, 2*time.Minute, binPath, "demo", "--listen", listen, "--dir", dir)
	t.Cleanup(func() {
		_ = demo.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-demo.done:
			if demo.err != nil {
				t.Errorf("tlsedge demo exited with %v after SIGTERM; want a clean exit\n%s", demo.err, demo.out.String())
			}
			if strings.Contains(demo.out.String(), "WARNING: DATA RACE") {
				t.Errorf("data race in tlsedge demo:\n%s", demo.out.String())
			}
		case <-time.After(20 * time.Second):
			t.Errorf("tlsedge demo did not exit within 20 s of SIGTERM")
		}
	})
	if !demo.waitOutput("Press Ctrl-C to stop.", waitLong) {
		t.Fatalf("tlsedge demo did not print its lines within %v:\n%s", waitLong, demo.out.String())
	}
	out := demo.out.String()

	var withCert, withoutCert string
	lines := strings.Split(out, "\n")
	for i, line := range lines {
		line = strings.TrimSpace(line)
		if withCert == "" && strings.HasPrefix(line, "curl ") {
			withCert = line
		}
		if strings.HasPrefix(strings.ToLower(line), "without a client certificate") && i+1 < len(lines) {
			withoutCert = strings.TrimSpace(lines[i+1])
		}
	}
	if withCert == "" || withoutCert == "" || !strings.HasPrefix(withoutCert, "curl ") {
		t.Fatalf("demo output lacks the curl lines (with: %q, without: %q):\n%s", withCert, withoutCert, out)
	}
	if !strings.Contains(withCert, "--cert") || strings.Contains(withoutCert, "--cert") {
		t.Fatalf("curl lines mixed up: with %q, without %q", withCert, withoutCert)
	}

	run := func(line string) (string, error) {
		f := strings.Fields(line)
		f = append(f, "--max-time", "10", "--silent", "--show-error")
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, f[0], f[1:]...)
		cmd.Env = cleanEnv()
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	got, err := run(withCert)
	if err != nil {
		t.Fatalf("%s\nfailed: %v\n%s", withCert, err, got)
	}
	if !strings.Contains(got, "hello demo-client") {
		t.Errorf("%s\nprinted %q; want \"hello demo-client\"", withCert, got)
	}
	got, err = run(withoutCert)
	if err == nil {
		t.Errorf("%s\nsucceeded without a client certificate (printed %q); want it refused", withoutCert, got)
	}
	if strings.Contains(got, "hello") {
		t.Errorf("without a client certificate the demo server answered %q", got)
	}
}
