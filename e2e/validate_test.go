package e2e

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/tlsedge/tlsedge/certs"
)

// Spec: "tlsedge validate -c edge.yaml  # check a config; exit 0 ok"; design:
// "examples: one config per use case, each validated and run by e2e".
func TestValidateExamples(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join(moduleRoot, "examples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no examples/*.yaml")
	}
	for _, src := range files {
		// As cloned, with the committed throwaway PKI of examples/certs.
		t.Run("as cloned/"+filepath.Base(src), func(t *testing.T) {
			t.Parallel()
			stdout, stderr, code := runTlsedge(t, "validate", "-c", src)
			if code != 0 || stdout != src+": ok\n" || stderr != "" {
				t.Errorf("tlsedge validate -c %s (as cloned): exit %d, stdout %q, stderr %q; want exit 0 and ok", src, code, stdout, stderr)
			}
		})
		t.Run(filepath.Base(src), func(t *testing.T) {
			t.Parallel()
			f := materializeExample(t, src)
			stdout, stderr, code := runTlsedge(t, "validate", "-c", f)
			if code != 0 {
				t.Fatalf("tlsedge validate -c %s: exit %d; want 0\nstderr:\n%s", f, code, stderr)
			}
			if want := f + ": ok\n"; stdout != want {
				t.Errorf("stdout %q; want %q", stdout, want)
			}
			if stderr != "" {
				t.Errorf("stderr %q; want nothing", stderr)
			}
		})
	}
}

// Spec: "exit 1 with every problem listed, one a line:
// edge.yaml: listeners[0].routes[1].backend: no backend named "api"
// (file, the key path as written in the file, why and how to fix)".
// `run` refuses the same file with the same lines.
func TestValidateListsEveryProblem(t *testing.T) {
	t.Parallel()
	bad, err := filepath.Abs("testdata/bad.yaml")
	if err != nil {
		t.Fatal(err)
	}
	golden := "testdata/bad.golden"
	normalize := func(s string) string { return strings.ReplaceAll(s, bad, "bad.yaml") }

	stdout, stderr, code := runTlsedge(t, "validate", "-c", bad)
	if code != 1 {
		t.Fatalf("validate on a bad config: exit %d; want 1\nstderr:\n%s", code, stderr)
	}
	if stdout != "" {
		t.Errorf("validate on a bad config printed %q on stdout; want nothing", stdout)
	}
	got := normalize(stderr)
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("validate output differs from %s:\ngot:\n%s\nwant:\n%s", golden, got, want)
	}
	for i, line := range strings.Split(strings.TrimSuffix(got, "\n"), "\n") {
		if !strings.HasPrefix(line, "bad.yaml: ") {
			t.Errorf("line %d %q does not start with the file name", i+1, line)
		}
	}

	_, runErr, runCode := runTlsedge(t, "run", "-c", bad)
	if runCode != 1 {
		t.Errorf("run on a bad config: exit %d; want 1", runCode)
	}
	if normalize(runErr) != string(want) {
		t.Errorf("run on a bad config printed:\n%s\nwant the validate lines:\n%s", normalize(runErr), want)
	}
}

// Spec: "Flags may also come from the environment as TLSEDGE_<KEY>" (here
// TLSEDGE_CONFIG for -c); "tlsedge version".
func TestConfigFromEnvironmentAndVersion(t *testing.T) {
	t.Parallel()
	f := filepath.Join(moduleRoot, "examples", "passthrough.yaml")
	stdout, stderr, code := runTlsedgeEnv(t, []string{"TLSEDGE_CONFIG=" + f}, "validate")
	if code != 0 || stdout != f+": ok\n" {
		t.Errorf("TLSEDGE_CONFIG=%s tlsedge validate: exit %d, stdout %q, stderr %q; want exit 0 and %q", f, code, stdout, stderr, f+": ok\n")
	}
	_, stderr, code = runTlsedge(t, "validate")
	if code == 0 || !strings.Contains(stderr, "TLSEDGE_CONFIG") {
		t.Errorf("tlsedge validate without -c: exit %d, stderr %q; want a failure that mentions -c / TLSEDGE_CONFIG", code, stderr)
	}
	stdout, _, code = runTlsedge(t, "version")
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if code != 0 || len(lines) != 4 || !strings.HasPrefix(lines[0], "tlsedge ") || !strings.HasPrefix(lines[1], "commit: ") ||
		!strings.HasPrefix(lines[2], "built: ") || lines[3] != "go:     "+runtime.Version() {
		t.Errorf("tlsedge version: exit %d, stdout %q; want exit 0 and four lines: tlsedge <version>, commit, built, go %s", code, stdout, runtime.Version())
	}
	if len(lines) > 1 && lines[1] != "commit: "+builtCommit {
		t.Errorf("tlsedge version says %q; want the commit it was built with, %s", lines[1], builtCommit)
	}
}

// materializeExample copies the example at src, byte for byte, into a new
// temp folder and writes every file it refers to (relative to the config, as
// the spec says) from the throwaway PKI: a route's tls.cert/key (a server
// certificate), client_ca, crl; a backend's tls.ca, cert/key (tlsedge's
// client certificate). It returns the copy's path.
func materializeExample(t *testing.T, src string) string {
	t.Helper()
	dir := t.TempDir()
	raw, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, filepath.Base(src))
	if err := os.WriteFile(dst, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	write := func(rel string, data []byte) {
		t.Helper()
		if rel == "" || filepath.IsAbs(rel) {
			return
		}
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	strs := func(v any) []string {
		switch v := v.(type) {
		case string:
			return []string{v}
		case []any:
			var out []string
			for _, x := range v {
				if s, ok := x.(string); ok {
					out = append(out, s)
				}
			}
			return out
		}
		return nil
	}
	pair := func(tls cfgMap, ca *certs.Authority, leaf certs.Leaf) {
		t.Helper()
		cert, _ := tls["cert"].(string)
		key, _ := tls["key"].(string)
		if cert == "" && key == "" {
			return
		}
		is := pkMint(t).issue(ca, leaf)
		write(cert, is.CertPEM)
		write(key, is.KeyPEM)
	}
	cfg := loadYAML(t, src)
	if ls, ok := cfg["listeners"].([]any); ok {
		for _, l := range ls {
			routes, _ := l.(cfgMap)["routes"].([]any)
			for _, r := range routes {
				tls, ok := r.(cfgMap)["tls"].(cfgMap)
				if !ok {
					continue
				}
				pair(tls, thePKI.serverCA, certs.Leaf{CommonName: "tlsedge", DNSNames: serverNames, Server: true})
				for _, f := range strs(tls["client_ca"]) {
					write(f, thePKI.clientCA.PEM)
				}
				for _, f := range strs(tls["crl"]) {
					write(f, pkMint(t).crl(thePKI.clientCA))
				}
			}
		}
	}
	if bs, ok := cfg["backends"].([]any); ok {
		for _, b := range bs {
			tls, ok := b.(cfgMap)["tls"].(cfgMap)
			if !ok {
				continue
			}
			pair(tls, thePKI.clientCA, certs.Leaf{CommonName: "tlsedge upstream client", Client: true})
			if ca, _ := tls["ca"].(string); ca != "" {
				write(ca, thePKI.serverCA.PEM)
			}
		}
	}
	return dst
}
