package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version, commit and date are set at build time (the Makefile does):
// -ldflags "-X main.version=v1.2.3 -X main.commit=<git revision> -X main.date=2026-12-04T10:00:00Z".
var version, commit, date = "", "", ""

// buildInfo is what `tlsedge version` prints and `tlsedge run` logs.
type buildInfo struct {
	Version string // -X main.version, else the module version, else "dev"
	Commit  string // -X main.commit, else the VCS revision Go embedded ("+dirty": modified); "" unknown
	Date    string // -X main.date, else the commit's time; "" unknown
	Go      string // the Go release that built it
}

func readBuildInfo() buildInfo {
	b := buildInfo{Version: version, Commit: commit, Date: date, Go: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if ok {
		if b.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			b.Version = bi.Main.Version
		}
		var modified bool
		var revision, commitTime string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			case "vcs.time":
				commitTime = s.Value
			}
		}
		if b.Commit == "" && revision != "" {
			b.Commit = revision
			if modified {
				b.Commit += "+dirty"
			}
		}
		if b.Date == "" {
			b.Date = commitTime
		}
	}
	if b.Version == "" {
		b.Version = "dev"
	}
	return b
}

func versionString() string { return readBuildInfo().Version }

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print the version, commit, build date and Go release",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			b := readBuildInfo()
			w := cmd.OutOrStdout()
			fmt.Fprintln(w, "tlsedge", b.Version)
			fmt.Fprintln(w, "commit:", orUnknown(b.Commit))
			fmt.Fprintln(w, "built: ", orUnknown(b.Date))
			fmt.Fprintln(w, "go:    ", b.Go)
		},
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
