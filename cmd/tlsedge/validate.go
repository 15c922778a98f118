package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/tlsedge/tlsedge/edge"
)

func validateCmd(env *viper.Viper) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "validate -c FILE",
		Short: "check a config file: exit 0 when good, 1 with every problem listed, one a line",
		Long: `validate reads a config file as run would (every key decoded and checked,
every certificate, key, CA and CRL file it names loaded) and changes nothing.

OUTPUT
  "FILE: ok" on stdout, or one problem a line on stderr:
    edge.yaml: listeners[0].routes[1].backend: no backend named "api": known backends are apii

EXIT STATUS
  0 when the file is good; 1 with every problem listed.

EXAMPLES
  tlsedge validate -c edge.yaml && systemctl reload tlsedge`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, err := configPath(cmd, env)
			if err != nil {
				return err
			}
			if _, err := edge.LoadFile(path); err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), err)
				return exitError{1}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", path)
			return nil
		},
	}
	configFlag(cmd)
	return cmd
}
