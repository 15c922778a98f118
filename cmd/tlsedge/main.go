// Command tlsedge is a TLS edge load balancer: it routes TLS connections by
// SNI to pools of servers. See README.md.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"
)

// exitError carries an exit code through cobra without printing usage.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func main() {
	root := &cobra.Command{
		Use:   "tlsedge",
		Short: "TLS edge load balancer: SNI routing in passthrough, terminate and reencrypt modes",
		Long: `tlsedge is a TLS edge load balancer. Clients connect over TLS to one address;
tlsedge routes each connection by SNI to a pool of servers, per route in one of
three modes: passthrough (never decrypt: mutual TLS runs end to end),
terminate (verify client certificates, forward the identity) or reencrypt
(terminate, then a new verified TLS connection to the server).

Start with: tlsedge demo. Every config key: docs/config.md; operations
(admin API, ctl, metrics): docs/operations.md; both are installed under
share/doc/tlsedge by make install.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	env := viper.New()
	env.SetEnvPrefix("TLSEDGE")
	env.AutomaticEnv()

	root.AddCommand(runCmd(env), validateCmd(env), demoCmd(), versionCmd(), ctlCmd(env), schemaCmd())
	if err := root.Execute(); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "tlsedge:", err)
		os.Exit(2)
	}
}

// configFlag adds -c/--config, also read from TLSEDGE_CONFIG.
func configFlag(cmd *cobra.Command) {
	cmd.Flags().StringP("config", "c", "", "config file (YAML, TOML or JSON); env TLSEDGE_CONFIG")
}

// configPath is -c, or else TLSEDGE_CONFIG.
func configPath(cmd *cobra.Command, env *viper.Viper) (string, error) {
	p, _ := cmd.Flags().GetString("config")
	if p == "" {
		p = env.GetString("config")
	}
	if p == "" {
		return "", errors.New("no config file: pass -c edge.yaml or set TLSEDGE_CONFIG")
	}
	return p, nil
}
