package edge

import "github.com/invopop/jsonschema"

// The JSON Schemas of the config types the decoder reads in a special way
// (see schema.go for the rest).

// schemaIdentityPresets and schemaIdentityFields are what
// identity.Parse accepts (schema_test.go checks each against it).
var (
	schemaIdentityPresets = []string{"xfcc", "ssl", "rfc9440", "none"}
	schemaIdentityFields  = []string{"subject", "issuer", "serial", "sha256", "cert", "chain",
		"uri", "dns", "email", "not_before", "not_after", "verify"}
)

// JSONSchema: identity is a preset name (false, a YAML 1.1 "off", means
// none) or a map of header name to certificate field.
func (IdentityConfig) JSONSchema() *jsonschema.Schema {
	presets := &jsonschema.Schema{}
	for _, p := range schemaIdentityPresets {
		presets.Enum = append(presets.Enum, p)
	}
	presets.Enum = append(presets.Enum, false)
	field := &jsonschema.Schema{}
	for _, f := range schemaIdentityFields {
		field.Enum = append(field.Enum, f)
	}
	return &jsonschema.Schema{AnyOf: []*jsonschema.Schema{
		presets,
		{Type: "object", AdditionalProperties: field},
	}}
}

// JSONSchema: tls.acme is true, false or on_demand; the decoder reads
// YAML booleans as "on" / "off", so those strings are accepted too.
func (ACMEMode) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{Enum: []any{true, false, "on_demand", "on", "off"}}
}
