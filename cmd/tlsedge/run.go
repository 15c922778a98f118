package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/tlsedge/tlsedge/edge"
)

// shutdownGrace is how long connections may go on after SIGTERM/SIGINT.
const shutdownGrace = 10 * time.Second

func runCmd(env *viper.Viper) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run -c FILE",
		Short: "serve; SIGHUP or a change of the file reloads it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, err := configPath(cmd, env)
			if err != nil {
				return err
			}
			cfg, err := edge.LoadFile(path)
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), err)
				return exitError{1}
			}
			log := edge.NewLogger(cfg.Log, os.Stderr)
			return run(path, cfg, log)
		},
	}
	configFlag(cmd)
	return cmd
}

func run(path string, cfg *edge.Config, log zerolog.Logger) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Signals and the file watcher first: a SIGHUP or an edit that comes
	// as soon as the listeners accept must reload, not kill or be missed.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
	changed := watchFile(ctx, path, log)

	e := edge.New(ctx, log)
	if err := e.Start(cfg); err != nil {
		log.Error().Err(err).Str("config", path).Msg("cannot start")
		return exitError{1}
	}
	log.Info().Str("config", path).Str("version", versionString()).Msg("tlsedge started")
	if cfg.Admin.Address != "" {
		log.Warn().Str("admin.address", cfg.Admin.Address).Msg("the admin API is not in this version yet: admin.address is ignored")
	}
	for {
		select {
		case s := <-sigs:
			if s != syscall.SIGHUP {
				log.Info().Str("signal", s.String()).Dur("grace", shutdownGrace).Msg("shutting down")
				e.Shutdown(shutdownGrace)
				return nil
			}
			reload(e, path, "SIGHUP", log)
		case <-changed:
			reload(e, path, "file changed", log)
		}
	}
}

// reload loads path again; a bad file is logged problem by problem and the
// running config keeps serving.
func reload(e *edge.Edge, path, why string, log zerolog.Logger) {
	cfg, err := edge.LoadFile(path)
	if err == nil {
		err = e.Reload(cfg)
	}
	if err != nil {
		if ps, ok := err.(*edge.Problems); ok {
			for _, p := range ps.List {
				log.Error().Str("config", path).Str("key", p.Path).Str("problem", p.Msg).Msg("reload refused: config problem")
			}
		} else {
			log.Error().Err(err).Str("config", path).Msg("reload refused")
		}
		log.Warn().Str("config", path).Msg("old config keeps serving")
		return
	}
	log.Info().Str("config", path).Str("trigger", why).Msg("config reloaded")
}

// watchFile signals when the config file changes. It watches the folder, not
// the file, so editors that replace the file and Kubernetes ConfigMaps (which
// swap a symlink) are seen too; bursts of events are coalesced.
func watchFile(ctx context.Context, path string, log zerolog.Logger) <-chan struct{} {
	out := make(chan struct{}, 1)
	w, err := fsnotify.NewWatcher()
	if err != nil {
		log.Warn().Err(err).Msg("cannot watch the config file; reload with SIGHUP")
		return out
	}
	dir := filepath.Dir(path)
	if err := w.Add(dir); err != nil {
		log.Warn().Err(err).Str("dir", dir).Msg("cannot watch the config folder; reload with SIGHUP")
		w.Close()
		return out
	}
	base := filepath.Base(path)
	go func() {
		defer w.Close()
		var fire <-chan time.Time
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				name := filepath.Base(ev.Name)
				if name == base || name == "..data" {
					fire = time.After(300 * time.Millisecond)
				}
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				log.Warn().Err(err).Msg("config watch error")
			case <-fire:
				fire = nil
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}
	}()
	return out
}
