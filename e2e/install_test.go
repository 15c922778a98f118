package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// `make install` into a staging folder (DESTDIR) puts the binary, the
// systemd unit (its paths rewritten for PREFIX), the sysusers file, the
// docs and the examples where packagers expect them; the installed binary
// runs.
func TestMakeInstall(t *testing.T) {
	t.Parallel()
	needTools(t, "make")
	dest := t.TempDir()
	bin := filepath.Join(t.TempDir(), "tlsedge")
	if out, err := exec.Command("make", "-C", moduleRoot, "install", "DESTDIR="+dest, "BIN="+bin).CombinedOutput(); err == nil ||
		!strings.Contains(string(out), "run make first") {
		t.Errorf("make install before make build: %v; want a failure that says to run make first:\n%s", err, out)
	}
	for _, target := range []string{"build", "install"} {
		cmd := exec.Command("make", "-C", moduleRoot, target, "DESTDIR="+dest, "PREFIX=/opt/tlsedge", "BIN="+bin)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("make %s: %v\n%s", target, err, out)
		}
	}
	for _, f := range []string{
		"opt/tlsedge/bin/tlsedge",
		"opt/tlsedge/lib/systemd/system/tlsedge.service",
		"opt/tlsedge/lib/sysusers.d/tlsedge.conf",
		"opt/tlsedge/share/doc/tlsedge/README.md",
		"opt/tlsedge/share/doc/tlsedge/docs/config.md",
		"opt/tlsedge/share/doc/tlsedge/docs/guides/websocket-fleet.md",
		"opt/tlsedge/share/doc/tlsedge/examples/passthrough.yaml",
		"etc/tlsedge",
	} {
		if _, err := os.Stat(filepath.Join(dest, f)); err != nil {
			t.Errorf("make install did not install %s: %v", f, err)
		}
	}
	unit, err := os.ReadFile(filepath.Join(dest, "opt/tlsedge/lib/systemd/system/tlsedge.service"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "ExecStart=/opt/tlsedge/bin/tlsedge run -c /etc/tlsedge/edge.yaml") ||
		strings.Contains(string(unit), "/usr/local") {
		t.Errorf("the installed unit does not run the installed binary (PREFIX /opt/tlsedge):\n%s", unit)
	}
	if st, err := os.Stat(filepath.Join(dest, "opt/tlsedge/bin/tlsedge")); err == nil && st.Mode().Perm() != 0o755 {
		t.Errorf("the installed binary has mode %v; want 0755", st.Mode().Perm())
	}
	if st, err := os.Stat(filepath.Join(dest, "etc/tlsedge")); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("/etc/tlsedge: %v; want a folder of mode 0755 (the tlsedge user reads its config there)", err)
	}
	// The Makefile stamps the checkout's commit (+dirty when modified).
	out, err := exec.Command(filepath.Join(dest, "opt/tlsedge/bin/tlsedge"), "version").Output()
	lines := strings.Split(string(out), "\n")
	if err != nil || len(lines) < 2 || !strings.HasPrefix(lines[0], "tlsedge ") || lines[0] == "tlsedge dev" ||
		(lines[1] != "commit: "+builtCommit && lines[1] != "commit: "+builtCommit+"+dirty") {
		t.Errorf("the installed binary: tlsedge version: %v\n%s\nwant a version from git describe and commit %s", err, out, builtCommit)
	}
}
