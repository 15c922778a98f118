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
		Long: `run serves the config file until SIGTERM or SIGINT.

The config is validated first: a bad file names the file, the key and the
fix, one problem a line, and run exits 1 without listening.

RELOAD
  SIGHUP, POST /api/v1/reload (tlsedge ctl reload), a change of the config
  file, or a change of a file it names (certificates, keys, client CAs,
  CRLs) reloads the config. Everything new is built and validated before it
  is swapped in; a bad file is logged and the old config keeps serving.
  Connections in flight go on.

SHUTDOWN
  SIGTERM or SIGINT: /readyz answers 503, tlsedge keeps serving for
  shutdown.delay, then stops accepting and gives open connections
  shutdown.grace to end.

ENVIRONMENT
  TLSEDGE_CONFIG          the config file, when -c is not given
  TLSEDGE_LOG_LEVEL, TLSEDGE_LOG_FORMAT, TLSEDGE_LOG_ACCESS,
  TLSEDGE_ADMIN_ADDRESS   override log.level, log.format, log.access and
                          admin.address of the file
  XDG_DATA_HOME           certs.storage defaults to $XDG_DATA_HOME/tlsedge

OUTPUT
  JSON log lines on stderr (log.format console: human-readable): one access
  line per connection, reloads, health changes, refusals with their reason.

EXIT STATUS
  0 after a clean shutdown; 1 when the config is bad or cannot be served.

EXAMPLES
  tlsedge run -c /etc/tlsedge/edge.yaml
  TLSEDGE_LOG_LEVEL=debug tlsedge run -c edge.yaml
  kill -HUP $(pidof tlsedge)     # reload

See docs/config.md for every key and docs/operations.md for the admin API.`,
		Args: cobra.NoArgs,
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
	lines := edge.NewLogWriter(os.Stderr) // one goroutine writes the log (edge/logwriter.go)
	defer lines.Close()
	out := edge.NewLogOutput(lines, cfg.Log.Format)
	zerolog.SetGlobalLevel(edge.ParseLevel(cfg.Log.Level))
	log := zerolog.New(out).With().Timestamp().Logger()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Signals first: a SIGHUP that comes as soon as the listeners accept
	// must reload, not kill. The file watch starts once the config runs.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
	e := edge.New(ctx, log)
	go edge.TrimMemoryWhenQuiet(ctx, log)
	edge.TuneGC(ctx, log) // a floor under the GC's heap goal while the live heap is small (edge/gctune.go)
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
