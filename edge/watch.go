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

// Timing of the file watch.
const (
	// watchSettle is how long Watch waits after the last event of a burst
	// before it looks at the files (a pair written in two steps, an
	// editor's save).
	watchSettle = 300 * time.Millisecond
	// watchPoll is how often the files are also looked at without an
	// event (a folder deleted and made again, a symlink swapped higher up
	// the path, a file bind-mounted into a container, a lost event).
	watchPoll = 2 * time.Second
	// watchRetry is when a reload that a file change started, and that
	// was refused, is tried once more (the other half of a pair written
	// more than watchSettle later).
	watchRetry = 3 * time.Second
)

// Watch reloads the running config (ReloadFile) when its file changes, or
// when the contents of a file it names change: route certificates and
// keys, client CAs, CRLs, allow issuer files, backend and admin TLS files,
// the ACME CA root. It watches the folders, not the files, so a file
// replaced by a rename (editors, certbot's symlinks, Kubernetes secret and
// ConfigMap mounts, which swap a `..data` symlink) is seen as well as one
// written in place; and it looks at the files every watchPoll anyway. A
// reload that fails (a broken or mismatched new pair, a CRL not signed by
// the route's CAs) leaves the old config serving and is logged with the
// file and the reason; one started by a file change is tried once more
// after watchRetry, and again at the next change. Watch returns at once;
// it stops with ctx.
func (e *Edge) Watch(ctx context.Context) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		e.log.Warn().Err(err).Msg("cannot watch the config and certificate files; reload with SIGHUP")
		return
	}
	fw := &fileWatch{e: e, w: w, log: e.log, dirs: map[string]bool{}, stats: map[string]os.FileInfo{}}
	fw.refresh(true)
	fw.sums = fw.contents()
	fw.statChanged()
	go fw.run(ctx)
}

type fileWatch struct {
	e    *Edge
	w    *fsnotify.Watcher
	log  zerolog.Logger
	dirs map[string]bool // folders watched
	cfg  *Config         // the config the lists below are of
	// config is the config file; configs it and where its symlinks
	// lead; files every file the config names (as written, and where
	// symlinks lead).
	config  string
	configs map[string]bool
	files   map[string]bool
	sums    map[string]string      // the contents (hashed) the running config was built from, as far as known
	stats   map[string]os.FileInfo // what the last poll saw, by file
}

func (fw *fileWatch) run(ctx context.Context) {
	defer fw.w.Close()
	tick := time.NewTicker(watchPoll)
	defer tick.Stop()
	var fire <-chan time.Time
	var configChanged bool
	var retry []string // files of a refused reload, to try once more
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if fw.refresh(false) {
				// Reloaded meanwhile (SIGHUP, the admin API): learn the
				// files it named that are new to the list.
				fw.learn()
			}
			if c, f := fw.statChanged(); (c || f) && fire == nil {
				configChanged = configChanged || c
				fire = time.After(watchSettle)
			}
		case ev, ok := <-fw.w.Events:
			if !ok {
				return
			}
			name := filepath.Clean(ev.Name)
			if fw.dirs[name] && ev.Has(fsnotify.Remove|fsnotify.Rename) {
				delete(fw.dirs, name) // watched again once it exists (refresh)
			}
			switch {
			case fw.configs[name]:
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
			fire = time.After(watchSettle) // events may be lost: look
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
			var err error
			tried := configChanged || len(changed) > 0
			switch {
			case configChanged:
				_, err = fw.e.ReloadFile(TriggerConfigFile)
			case len(changed) > 0:
				fw.log.Info().Strs("files", changed).Msg("certificate files changed: reloading")
				_, err = fw.e.ReloadFile(TriggerFiles)
			case retry != nil:
				fw.log.Info().Strs("files", retry).Msg("certificate files changed: trying the refused reload once more")
				_, _ = fw.e.ReloadFile(TriggerFiles)
			}
			retry = nil
			if err != nil && !configChanged {
				retry, fire = changed, time.After(watchRetry)
			}
			configChanged = false
			if tried {
				// What this reload read, not what is on disk now: a write
				// that came during the reload is a change still to see.
				fw.sums = sums
			}
			fw.refresh(true)
			fw.learn()
			fw.statChanged()
		}
	}
}

// learn adds the files the running config names that are new to sums,
// and forgets those it no longer names.
func (fw *fileWatch) learn() {
	named := map[string]bool{}
	var fresh []string
	if c := fw.e.Config(); c != nil {
		for _, f := range c.namedFiles() {
			named[f] = true
			if _, ok := fw.sums[f]; !ok {
				fresh = append(fresh, f)
			}
		}
	}
	for f := range fw.sums {
		if !named[f] {
			delete(fw.sums, f)
		}
	}
	for _, f := range fresh {
		fw.sums[f] = fileSum(f)
	}
}

// statChanged looks at the config file and every named file (size,
// modification time, identity, following symlinks) and reports whether
// the config file or another file differs from the last look.
func (fw *fileWatch) statChanged() (config, files bool) {
	c := fw.e.Config()
	if c == nil || c.File == "" {
		return false, false
	}
	paths := append([]string{filepath.Clean(c.File)}, c.namedFiles()...)
	seen := map[string]bool{}
	for i, p := range paths {
		seen[p] = true
		fi, err := os.Stat(p)
		old, had := fw.stats[p]
		same := err == nil && had && old != nil && os.SameFile(old, fi) && old.Size() == fi.Size() && old.ModTime().Equal(fi.ModTime())
		if err != nil {
			fi = nil
			same = had && old == nil
		}
		if had && !same {
			if i == 0 {
				config = true
			} else {
				files = true
			}
		}
		fw.stats[p] = fi
	}
	for p := range fw.stats {
		if !seen[p] {
			delete(fw.stats, p)
		}
	}
	return config, files
}

// refresh watches the folders of the running config's file and of every
// file it names (and of where their symlinks lead). It reports whether the
// running config is another one than at the last call. force looks again
// anyway (symlinks may lead elsewhere now, a folder may be back).
func (fw *fileWatch) refresh(force bool) bool {
	c := fw.e.Config()
	if c == nil || c.File == "" || (c == fw.cfg && !force) {
		return false
	}
	fw.cfg = c
	fw.config = filepath.Clean(c.File)
	withTargets := func(fs ...string) map[string]bool {
		out := map[string]bool{}
		for _, f := range fs {
			out[filepath.Clean(f)] = true
			if r, err := filepath.EvalSymlinks(f); err == nil {
				out[filepath.Clean(r)] = true
			}
		}
		return out
	}
	fw.configs = withTargets(fw.config)
	fw.files = withTargets(c.namedFiles()...)
	want := map[string]bool{}
	for f := range fw.configs {
		want[filepath.Dir(f)] = true
	}
	for f := range fw.files {
		want[filepath.Dir(f)] = true
	}
	watched := map[string]bool{}
	for _, d := range fw.w.WatchList() {
		watched[d] = true
	}
	for d := range want {
		if fw.dirs[d] && watched[d] {
			continue
		}
		if err := fw.w.Add(d); err != nil {
			if !os.IsNotExist(err) {
				fw.log.Warn().Err(err).Str("dir", d).Msg("cannot watch this folder: its files are looked at every few seconds")
			}
			delete(fw.dirs, d)
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

// contents hashes each file the running config names.
func (fw *fileWatch) contents() map[string]string {
	out := map[string]string{}
	if c := fw.e.Config(); c != nil {
		for _, f := range c.namedFiles() {
			out[f] = fileSum(f)
		}
	}
	return out
}

// fileSum is the SHA-256 (hex) of a file, "" when it cannot be read.
func fileSum(f string) string {
	b, err := os.ReadFile(f)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// namedFiles is every file the config names (resolved against its
// folder), sorted, without duplicates: route certificates, keys, client
// CAs, CRLs, allow issuer files and redirect token keys, backend TLS files and cookie keys, the admin
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
			if r.RedirectToken != nil {
				add(r.RedirectToken.KeyFile)
			}
			for _, a := range r.Allow {
				if a.Issuer != "" && !strings.Contains(a.Issuer, "=") {
					add(a.Issuer) // a CA file, not a DN
				}
			}
		}
	}
	for _, b := range c.Backends {
		add(b.TLS.CA, b.TLS.Cert, b.TLS.Key)
		if b.Cookie != nil {
			add(b.Cookie.KeyFile)
		}
	}
	add(c.Admin.TLS.Cert, c.Admin.TLS.Key)
	add(c.Admin.TLS.ClientCA...)
	add(c.Certs.ACME.CARoot)
	slices.Sort(out)
	return slices.Compact(out)
}
