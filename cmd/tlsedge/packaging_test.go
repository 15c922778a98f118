package main

// Offline checks of the packaging files at the repository root (make
// docker-lint): the Dockerfile and the systemd unit keep the project's
// rules, since neither is built or started by CI.

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func readRoot(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// dockerInstructions splits a Dockerfile into instructions (continuation
// lines joined, comments dropped): "FROM x AS y", "RUN ...".
func dockerInstructions(src string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(src, "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		cur.WriteString(trimmed)
		out = append(out, cur.String())
		cur.Reset()
	}
	return out
}

// The Dockerfile builds a static binary (CGO off) with the Go release of
// go.mod, on base images pinned to a version, and runs it as a non-root
// user in exec form, without ADD from URLs.
func TestDockerfileLint(t *testing.T) {
	ins := dockerInstructions(readRoot(t, "Dockerfile"))
	goMod := readRoot(t, "go.mod")
	goVersion := regexp.MustCompile(`(?m)^go (\S+)$`).FindStringSubmatch(goMod)
	if goVersion == nil {
		t.Fatal("go.mod has no go line")
	}
	var froms []string
	var lastUser, entrypoint string
	var staticBuild bool
	for _, in := range ins {
		word, rest, _ := strings.Cut(in, " ")
		switch strings.ToUpper(word) {
		case "ARG":
			if strings.HasPrefix(rest, "GO_VERSION=") && strings.TrimPrefix(rest, "GO_VERSION=") != goVersion[1] {
				t.Errorf("Dockerfile %s; want GO_VERSION=%s (go.mod's)", in, goVersion[1])
			}
		case "FROM":
			froms = append(froms, rest)
			lastUser = "" // each stage starts as root
			image := strings.Fields(rest)[0]
			if !strings.Contains(image, ":") || strings.HasSuffix(image, ":latest") {
				t.Errorf("Dockerfile %s: pin the base image to a version (no :latest, no bare name)", in)
			}
		case "RUN":
			if strings.Contains(rest, "go build") {
				staticBuild = strings.Contains(rest, "CGO_ENABLED=0") && strings.Contains(rest, "-trimpath")
			}
			if strings.Contains(rest, "curl ") || strings.Contains(rest, "wget ") {
				t.Errorf("Dockerfile %s: no downloads outside go mod download", in)
			}
		case "ADD":
			if strings.Contains(rest, "://") {
				t.Errorf("Dockerfile %s: ADD from a URL; COPY what the build needs", in)
			}
		case "USER":
			lastUser = rest
		case "ENTRYPOINT":
			entrypoint = rest
		}
	}
	if len(froms) < 2 {
		t.Errorf("Dockerfile has %d stage(s); want a build stage and a minimal runtime stage", len(froms))
	}
	if !staticBuild {
		t.Error("Dockerfile: the go build is not static (CGO_ENABLED=0) and reproducible (-trimpath)")
	}
	if u := strings.Split(lastUser, ":")[0]; u == "" || u == "root" || u == "0" {
		t.Errorf("Dockerfile: the final stage runs as %q; want a non-root USER", lastUser)
	}
	if len(froms) > 0 && !strings.Contains(froms[len(froms)-1], "distroless/static") {
		t.Errorf("Dockerfile: the runtime base is %q; want distroless/static (a static binary needs nothing else)", froms[len(froms)-1])
	}
	if !strings.HasPrefix(entrypoint, `["`) {
		t.Errorf("Dockerfile: ENTRYPOINT %s; want the exec form [\"/usr/local/bin/tlsedge\"] (signals reach tlsedge)", entrypoint)
	}
}

// unitSettings reads the [Service] section of a systemd unit: every value
// of each key, in order.
func unitSettings(src string) map[string][]string {
	out := map[string][]string{}
	section := ""
	for _, line := range strings.Split(src, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = line
		case section == "[Service]":
			k, v, _ := strings.Cut(line, "=")
			out[k] = append(out[k], v)
		}
	}
	return out
}

// The systemd unit runs tlsedge as an unprivileged user with only
// CAP_NET_BIND_SERVICE, a read-only system, reload by SIGHUP, the config
// validated before start.
func TestSystemdUnitHardened(t *testing.T) {
	s := unitSettings(readRoot(t, "tlsedge.service"))
	for k, want := range map[string]string{
		"User":                  "tlsedge",
		"AmbientCapabilities":   "CAP_NET_BIND_SERVICE",
		"CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
		"NoNewPrivileges":       "yes",
		"ProtectSystem":         "strict",
		"ProtectHome":           "yes",
		"PrivateTmp":            "yes",
		"PrivateDevices":        "yes",
		"RestrictSUIDSGID":      "yes",
		"ExecReload":            "/bin/kill -HUP $MAINPID",
		"ExecStart":             "/usr/local/bin/tlsedge run -c /etc/tlsedge/edge.yaml",
		"ExecStartPre":          "/usr/local/bin/tlsedge validate -c /etc/tlsedge/edge.yaml",
		"StateDirectory":        "tlsedge",
		"Environment":           "XDG_DATA_HOME=/var/lib",
		"KillSignal":            "SIGTERM",
	} {
		if got := s[k]; len(got) != 1 || got[0] != want {
			t.Errorf("tlsedge.service: %s=%v; want exactly %s=%s", k, got, k, want)
		}
	}
	if !strings.Contains(readRoot(t, "tlsedge.sysusers"), "u tlsedge ") {
		t.Error("tlsedge.sysusers does not create the tlsedge user the unit runs as")
	}
}
