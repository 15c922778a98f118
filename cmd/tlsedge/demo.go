package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/tlsedge/tlsedge/edge"
)

func demoCmd() *cobra.Command {
	var opt edge.DemoOptions
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "self-contained demo: throwaway PKI, demo mTLS servers, the balancer, lines to try",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			opt.Out = cmd.OutOrStdout()
			log := edge.NewLogger(edge.LogConfig{Level: "info", Format: "console"}, os.Stderr)
			return edge.RunDemo(ctx, opt, log)
		},
	}
	cmd.Flags().StringVar(&opt.Listen, "listen", "127.0.0.1:8443", "address the demo balancer listens on")
	cmd.Flags().StringVar(&opt.Dir, "dir", "", "folder for the throwaway PKI and config (default: a new temp folder)")
	return cmd
}
