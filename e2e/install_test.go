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
	cmd := exec.Command("make", "-C", moduleRoot, "install", "DESTDIR="+dest, "PREFIX=/opt/tlsedge", "BIN="+bin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	for _, f := range []string{
		"opt/tlsedge/bin/tlsedge",
		"opt/tlsedge/lib/systemd/system/tlsedge.service",
		"opt/tlsedge/lib/sysusers.d/tlsedge.conf",
		"opt/tlsedge/share/doc/tlsedge/README.md",
		"opt/tlsedge/share/doc/tlsedge/config.md",
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
	out, err := exec.Command(filepath.Join(dest, "opt/tlsedge/bin/tlsedge"), "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "tlsedge ") || !strings.Contains(string(out), "commit: ") {
		t.Errorf("the installed binary: tlsedge version: %v\n%s", err, out)
	}
}
