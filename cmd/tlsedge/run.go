package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/tlsedge/tlsedge/edge"
)

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
			return run(path, cfg)
		},
	}
	configFlag(cmd)
	return cmd
}

// run serves cfg until SIGTERM or SIGINT. log.level and log.format of each
// config put in force apply at once (the level through zerolog's process
// level: this is the process's one logger).
func run(path string, cfg *edge.Config) error {
	out := edge.NewLogOutput(os.Stderr, cfg.Log.Format)
	zerolog.SetGlobalLevel(edge.ParseLevel(cfg.Log.Level))
	log := zerolog.New(out).With().Timestamp().Logger()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Signals and the file watcher first: a SIGHUP or an edit that comes
	// as soon as the listeners accept must reload, not kill or be missed.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
	e := edge.New(ctx, log)
	e.OnConfig = func(c *edge.Config) {
		zerolog.SetGlobalLevel(edge.ParseLevel(c.Log.Level))
		out.SetFormat(c.Log.Format)
	}
	if err := e.Start(cfg); err != nil {
		log.Error().Err(err).Str("config", path).Msg("cannot start")
		return exitError{1}
	}
	b := readBuildInfo()
	ev := log.Info().Str("config", path).Str("version", b.Version).Str("commit", b.Commit).Str("built", b.Date).Str("go", b.Go)
	if a := e.AdminAddr(); a != nil {
		ev = ev.Str("admin", a.String())
	}
	ev.Msg("tlsedge started")
	e.Watch(ctx) // reloads when the config file, or a file it names, changes
	for s := range sigs {
		if s != syscall.SIGHUP {
			shutdown(e, s, log)
			return nil
		}
		_, _ = e.ReloadFile("SIGHUP")
	}
	return nil
}

// shutdown makes /readyz answer 503, keeps serving for shutdown.delay so a
// balancer in front stops sending, then stops accepting and gives open
// connections shutdown.grace to finish.
func shutdown(e *edge.Edge, s os.Signal, log zerolog.Logger) {
	c := e.Config().Shutdown
	e.NotReady()
	log.Info().Str("signal", s.String()).Dur("delay", c.Delay).Dur("grace", c.Grace).Msg("shutting down")
	if c.Delay > 0 {
		time.Sleep(c.Delay)
	}
	e.Shutdown(c.Grace)
}
