package main

import (
	"github.com/spf13/cobra"
	"github.com/tlsedge/tlsedge/edge"
)

// schemaCmd prints the config file's JSON Schema (docs/edge.schema.json),
// for editors: `tlsedge schema > edge.schema.json`.
func schemaCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "schema",
		Short: "print the JSON Schema of the config file, for editors",
		Long: `schema prints the JSON Schema (draft 2020-12) of the config file: every key
with its type, default, allowed values and description (docs/config.md).
Editors that run yaml-language-server (VS Code's YAML extension, Neovim,
Helix, ...) complete and check edge.yaml with it:

  tlsedge schema > edge.schema.json

then put this first line in edge.yaml:

  # yaml-language-server: $schema=./edge.schema.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := edge.SchemaJSON()
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
}
