package edge

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"
)

// Triggers of the reloads that Watch starts.
const (
	TriggerConfigFile = "file changed"              // the config file itself
	TriggerFiles      = "certificate files changed" // a file the config names
)

// watchSettle is how long Watch waits after the last event of a burst
// before it looks at the files (a pair written in two steps, an editor's
// save).
const watchSettle = 300 * time.Millisecond

// Watch reloads the running config (ReloadFile) when its file changes, or
// when the contents of a file it names change: route certificates and
// keys, client CAs, CRLs, allow issuer files, backend and admin TLS files.
// It watches the folders, not the files, so a file replaced by a rename
// (editors, certbot's symlinks, Kubernetes secret and ConfigMap mounts,
// which swap a `..data` symlink) is seen as well as one written in place.
// A reload that fails (a broken or mismatched new pair, a CRL not signed by
// the route's CAs) leaves the old config serving, and is logged with the
// file and the reason; the next change is tried again. Watch returns at
// once; it stops with ctx. The files are looked up again every few seconds,
// so those of a reloaded config are watched too.
func (e *Edge) Watch(ctx context.Context) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		e.log.Warn().Err(err).Msg("cannot watch the config and certificate files; reload with SIGHUP")
		return
	}
	fw := &fileWatch{e: e, w: w, log: e.log, dirs: map[string]bool{}}
	fw.refresh(true)
	fw.sums = fw.contents()
	go fw.run(ctx)
}

type fileWatch struct {
	e    *Edge
	w    *fsnotify.Watcher
	log  zerolog.Logger
	dirs map[string]bool // folders watched
	// config is the config file; files every file the config names
	// (as written, and where symlinks lead).
	cfg    *Config // the config the lists below are of
	config string
	files  map[string]bool
	sums   map[string]string // what contents() gave when last looked at
}

func (fw *fileWatch) run(ctx context.Context) {
	defer fw.w.Close()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	var fire <-chan time.Time
	var configChanged bool
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if fw.refresh(false) {
				// Reloaded meanwhile (SIGHUP, the admin API): learn the
				// files it named that are new to the list.
				for f, h := range fw.contents() {
					if _, ok := fw.sums[f]; !ok {
						fw.sums[f] = h
					}
				}
			}
		case ev, ok := <-fw.w.Events:
			if !ok {
				return
			}
			name := filepath.Clean(ev.Name)
			switch {
			case name == fw.config:
				configChanged = true
			case fw.files[name], filepath.Base(name) == "..data":
			default:
				continue
			}
			if filepath.Base(name) == "..data" && filepath.Dir(name) == filepath.Dir(fw.config) {
				configChanged = true // a ConfigMap mount swapped
			}
			fire = time.After(watchSettle)
		case err, ok := <-fw.w.Errors:
			if !ok {
				return
			}
			fw.log.Warn().Err(err).Msg("file watch error")
		case <-fire:
			fire = nil
			sums := fw.contents()
			var changed []string
			for f, h := range sums {
				// A file new to the list came with a reload: not a change.
				if old, known := fw.sums[f]; known && old != h {
					changed = append(changed, f)
				}
			}
			slices.Sort(changed)
			reloaded := configChanged || len(changed) > 0
			switch {
			case configChanged:
				_, _ = fw.e.ReloadFile(TriggerConfigFile)
			case len(changed) > 0:
				fw.log.Info().Strs("files", changed).Msg("certificate files changed: reloading")
				_, _ = fw.e.ReloadFile(TriggerFiles)
			}
			configChanged, fw.sums = false, sums
			if reloaded {
				fw.sums = fw.contents() // the files of the config now running
			}
			fw.refresh(true)
		}
	}
}

// refresh watches the folders of the running config's file and of every
// file it names. It reports whether the running config is another one than
// at the last call. force looks again anyway (symlinks may lead elsewhere
// now).
func (fw *fileWatch) refresh(force bool) bool {
	c := fw.e.Config()
	if c == nil || c.File == "" || (c == fw.cfg && !force) {
		return false
	}
	fw.cfg = c
	fw.config = filepath.Clean(c.File)
	fw.files = map[string]bool{}
	for _, f := range c.namedFiles() {
		fw.files[filepath.Clean(f)] = true
		if r, err := filepath.EvalSymlinks(f); err == nil {
			fw.files[filepath.Clean(r)] = true
		}
	}
	want := map[string]bool{filepath.Dir(fw.config): true}
	for f := range fw.files {
		want[filepath.Dir(f)] = true
	}
	for d := range want {
		if fw.dirs[d] {
			continue
		}
		if err := fw.w.Add(d); err != nil {
			fw.log.Warn().Err(err).Str("dir", d).Msg("cannot watch this folder: changes in it need a reload (SIGHUP)")
			continue
		}
		fw.dirs[d] = true
	}
	for d := range fw.dirs {
		if !want[d] {
			_ = fw.w.Remove(d)
			delete(fw.dirs, d)
		}
	}
	return true
}

// contents hashes each file the running config names ("" for one that
// cannot be read).
func (fw *fileWatch) contents() map[string]string {
	out := map[string]string{}
	c := fw.e.Config()
	if c == nil {
		return out
	}
	for _, f := range c.namedFiles() {
		b, err := os.ReadFile(f)
		if err != nil {
			out[f] = ""
			continue
		}
		sum := sha256.Sum256(b)
		out[f] = hex.EncodeToString(sum[:])
	}
	return out
}

// namedFiles is every file the config names (resolved against its
// folder), sorted, without duplicates: route certificates, keys, client
// CAs, CRLs and allow issuer files, backend TLS files, the admin
// endpoint's TLS files and the ACME CA root.
func (c *Config) namedFiles() []string {
	var out []string
	add := func(fs ...string) {
		for _, f := range fs {
			if f != "" {
				out = append(out, c.resolve(f))
			}
		}
	}
	for _, l := range c.Listeners {
		for _, r := range l.Routes {
			t := &r.TLS
			add(t.Cert, t.Key)
			add(t.ClientCA...)
			add(t.CRL...)
			for _, a := range r.Allow {
				if a.Issuer != "" && !strings.Contains(a.Issuer, "=") {
					add(a.Issuer) // a CA file, not a DN
				}
			}
		}
	}
	for _, b := range c.Backends {
		add(b.TLS.CA, b.TLS.Cert, b.TLS.Key)
	}
	add(c.Admin.TLS.Cert, c.Admin.TLS.Key)
	add(c.Admin.TLS.ClientCA...)
	add(c.Certs.ACME.CARoot)
	slices.Sort(out)
	return slices.Compact(out)
}
