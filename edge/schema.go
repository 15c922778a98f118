package edge

import (
	"bytes"
	"encoding/json"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/invopop/jsonschema"
)

// The JSON Schema (draft 2020-12) of the config file, for editors
// (yaml-language-server, VS Code's YAML extension) to complete and check
// edge.yaml. It is reflected from the Go types of config.go by the `key`
// tags the decoder reads (so it has every key the decoder accepts, and
// additionalProperties false everywhere, as the decoder refuses unknown
// keys); descriptions, defaults, enums, ranges and required keys come from
// the key tables of docs/config.md, compiled into schemaDocs
// (schema_docs.go). docs/edge.schema.json is the checked-in output;
// schema_test.go fails when either is stale and rewrites both with
// `go test ./edge -run TestSchema -update`; `tlsedge schema` prints it.

// schemaDoc is one row of a key table of docs/config.md.
type schemaDoc struct {
	Key     string // the key path: listeners[].routes[].tls.cert
	Type    string // the type column, as written (`off` \| `soft`, duration or `off`, ...)
	Default string // the default column, as written; "required" for required keys
	Modes   string // the modes column (P, T, R, http, ...); "" where the table has none
	Meaning string // the meaning column, markdown
}

// schemaDurationPattern is what time.ParseDuration accepts: "0", or
// numbers with units ("5s", "1m30s", "250ms", ".5h"), optionally signed.
const schemaDurationPattern = `^[-+]?(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$`

// schemaDurationOffPattern also accepts "off" in any letter case, for the
// keys whose type is "duration or `off`".
const schemaDurationOffPattern = `^([oO][fF][fF]|[-+]?(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+))$`

// schemaItemEnums are the allowed items of list keys whose values the
// docs table names in its meaning column rather than its type column.
var schemaItemEnums = map[string][]string{
	"certs.acme.challenges": {"tls-alpn-01", "http-01"},
}

// schemaNumberItems are list keys whose items may be YAML numbers (the
// decoder reads a number into a string): expect_status: [200, 204].
var schemaNumberItems = map[string]bool{
	"backends[].health.expect_status": true,
}

// Schema is the config file's JSON Schema, with the descriptions of the
// docs/config.md compiled into this binary.
func Schema() *jsonschema.Schema { return schemaBuild(schemaDocs) }

// SchemaJSON is Schema as indented JSON ending in a newline: the bytes of
// docs/edge.schema.json.
func SchemaJSON() ([]byte, error) { return schemaMarshal(Schema()) }

func schemaMarshal(s *jsonschema.Schema) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // keep "<", ">" and "&" of descriptions readable
	enc.SetIndent("", "  ")
	if err := enc.Encode(s); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// schemaBuild reflects Config and decorates every key with its docs row.
func schemaBuild(docs []schemaDoc) *jsonschema.Schema {
	r := &jsonschema.Reflector{
		FieldNameTag:               "key",
		DoNotReference:             true, // inline: each key path gets its own description
		ExpandedStruct:             true, // the root is the object itself, not a $ref
		Anonymous:                  true, // no $id made up from the Go package path
		RequiredFromJSONSchemaTags: true, // required keys come from the docs, not from tags
		Mapper:                     schemaMapper,
	}
	s := r.Reflect(&Config{})
	s.Title = "tlsedge configuration"
	s.Description = "The config file of tlsedge, a TLS edge load balancer (docs/config.md). " +
		"Generated from the Go types and docs/config.md by `tlsedge schema`."
	byKey := make(map[string]schemaDoc, len(docs))
	for _, d := range docs {
		if _, dup := byKey[d.Key]; !dup {
			byKey[d.Key] = d
		}
	}
	schemaDecorate(s, "", byKey)
	return s
}

var schemaStringsType = reflect.TypeOf([]string(nil))

// schemaMapper gives the types the decoder reads specially their schema:
// durations are strings such as "5s", and a list of strings may be one
// string ("client_ca: ca.pem" is the list [ca.pem]).
func schemaMapper(t reflect.Type) *jsonschema.Schema {
	switch t {
	case durationType:
		return &jsonschema.Schema{Type: "string", Pattern: schemaDurationPattern}
	case schemaStringsType:
		return &jsonschema.Schema{AnyOf: []*jsonschema.Schema{
			{Type: "string"},
			{Type: "array", Items: &jsonschema.Schema{Type: "string"}},
		}}
	}
	return nil
}

// schemaDecorate walks the properties of the object s (at path) and gives
// each its docs row; a required row makes the key required in s.
func schemaDecorate(s *jsonschema.Schema, path string, docs map[string]schemaDoc) {
	if s.Properties == nil {
		return
	}
	for pair := s.Properties.Oldest(); pair != nil; pair = pair.Next() {
		key, child := pair.Key, pair.Value
		p := join(path, key)
		if d, ok := docs[p]; ok {
			schemaApply(child, d)
			if d.Default == "required" {
				s.Required = append(s.Required, key)
			}
		}
		switch {
		case child.Type == "object" && child.Properties != nil:
			schemaDecorate(child, p, docs)
		case child.Type == "array" && child.Items != nil:
			schemaDecorate(child.Items, p+"[]", docs)
		}
	}
}

var (
	schemaEnumRe  = regexp.MustCompile("^`[^`]+`( \\\\\\| `[^`]+`)*$")
	schemaRangeRe = regexp.MustCompile(`number, ([0-9.e+-]+) to ([0-9.e+-]+)`)
	schemaLinkRe  = regexp.MustCompile(`\[([^\]]+)\]\([^)]*\)`)
	schemaModeRe  = regexp.MustCompile(`\b[PTR]\b`)
	schemaDefRe   = regexp.MustCompile("^`([^`]*)`( = .*| \\(.*\\))?$")
)

// schemaApply sets s's description, default, enum and range from d.
func schemaApply(s *jsonschema.Schema, d schemaDoc) {
	if vals := schemaEnum(d.Type); vals != nil && s.Type == "string" {
		// A string enum; "off" and "on" may arrive as YAML 1.1 booleans,
		// which the decoder takes back as "off" / "on".
		s.Type = ""
		for _, v := range vals {
			s.Enum = append(s.Enum, v)
		}
		for _, v := range vals {
			switch v {
			case "off":
				s.Enum = append(s.Enum, false)
			case "on":
				s.Enum = append(s.Enum, true)
			}
		}
	}
	if s.Pattern == schemaDurationPattern && strings.Contains(d.Type, "`off`") {
		// "off" (or a YAML 1.1 false) turns the duration off.
		*s = jsonschema.Schema{AnyOf: []*jsonschema.Schema{
			{Type: "string", Pattern: schemaDurationOffPattern},
			{Const: false},
		}}
	}
	if m := schemaRangeRe.FindStringSubmatch(d.Type); m != nil && s.Type == "number" {
		s.Minimum, s.Maximum = json.Number(m[1]), json.Number(m[2])
	}
	if items, ok := schemaItemEnums[d.Key]; ok && len(s.AnyOf) == 2 {
		for _, alt := range []*jsonschema.Schema{s.AnyOf[0], s.AnyOf[1].Items} {
			alt.Type = ""
			for _, v := range items {
				alt.Enum = append(alt.Enum, v)
			}
		}
	}
	if schemaNumberItems[d.Key] && len(s.AnyOf) == 2 {
		for _, alt := range []*jsonschema.Schema{s.AnyOf[0], s.AnyOf[1].Items} {
			*alt = jsonschema.Schema{AnyOf: []*jsonschema.Schema{{Type: "string"}, {Type: "integer"}}}
		}
	}

	var desc []string
	meaning := schemaText(d.Meaning)
	if meaning == "" {
		meaning = schemaText(d.Type) // the row says no more: its type
	}
	desc = append(desc, meaning)
	if d.Modes != "" {
		modes := schemaModeRe.ReplaceAllStringFunc(d.Modes, func(m string) string {
			return map[string]string{"P": "passthrough", "T": "terminate", "R": "reencrypt"}[m]
		})
		if modes == "all" {
			modes = "all modes"
		}
		desc = append(desc, "Applies to: "+modes+".")
	}
	if d.Default != "" && d.Default != "required" {
		v, ok, plain := schemaDefault(d.Default, s)
		if ok {
			s.Default = v
		}
		if !plain || d.Meaning == "" {
			desc = append(desc, "Default: "+schemaText(d.Default))
		}
	} else if d.Default == "required" {
		desc = append(desc, "Required.")
	}
	for i, d := range desc {
		if !strings.HasSuffix(d, ".") {
			desc[i] = d + "."
		}
	}
	s.Description = strings.Join(desc, " ")
}

// schemaEnum is the values of a type column that lists them
// (`off` \| `soft` \| `hard`, `"1.2"` \| `"1.3"`), else nil.
func schemaEnum(typ string) []string {
	if !schemaEnumRe.MatchString(typ) {
		return nil
	}
	var vals []string
	for _, v := range strings.Split(typ, " \\| ") {
		vals = append(vals, strings.Trim(v, "`\""))
	}
	return vals
}

// schemaDefault reads a default column that starts with one literal
// (`15s`, `0` = unlimited, `[websocket]`) as a value of s's type. plain
// is whether the column is only that literal (nothing worth repeating in
// the description).
func schemaDefault(col string, s *jsonschema.Schema) (v any, ok, plain bool) {
	m := schemaDefRe.FindStringSubmatch(col)
	if m == nil {
		return nil, false, false
	}
	lit, plain := strings.Trim(m[1], `"`), m[2] == ""
	switch {
	case len(s.Enum) > 0:
		for _, e := range s.Enum { // a string value first: "on" before true
			if e == lit {
				return e, true, plain
			}
		}
		for _, e := range s.Enum {
			if b, isBool := e.(bool); isBool && strconv.FormatBool(b) == lit {
				return e, true, plain
			}
		}
	case s.Type == "integer":
		if n, err := strconv.ParseInt(lit, 10, 64); err == nil {
			return n, true, plain
		}
	case s.Type == "number":
		if f, err := strconv.ParseFloat(lit, 64); err == nil {
			return f, true, plain
		}
	case s.Type == "boolean":
		if b, err := strconv.ParseBool(lit); err == nil {
			return b, true, plain
		}
	case s.Type == "string":
		if s.Pattern == "" || regexp.MustCompile(s.Pattern).MatchString(lit) {
			return lit, true, plain
		}
	case len(s.AnyOf) > 0 && s.AnyOf[0].Pattern == schemaDurationOffPattern:
		if _, err := time.ParseDuration(lit); err == nil || strings.EqualFold(lit, "off") {
			return lit, true, plain
		}
	case len(s.AnyOf) == 2 && s.AnyOf[1].Type == "array":
		if strings.HasPrefix(lit, "[") && strings.HasSuffix(lit, "]") {
			list := []any{}
			for _, item := range strings.Split(strings.Trim(lit, "[]"), ",") {
				if item = strings.TrimSpace(item); item != "" {
					list = append(list, item)
				}
			}
			return list, true, plain
		}
	}
	return nil, false, false
}

// schemaText makes a markdown cell plain: links keep their text, bold
// marks and table escapes go.
func schemaText(md string) string {
	md = schemaLinkRe.ReplaceAllString(md, "$1")
	md = strings.ReplaceAll(md, "**", "")
	md = strings.ReplaceAll(md, `\|`, "|")
	return strings.TrimSpace(md)
}

// schemaParseDocs reads the key tables of docs/config.md: every row whose
// first cell is a `key`, in a table with a type column (the "at a glance"
// table repeats keys without one and is skipped).
func schemaParseDocs(md string) []schemaDoc {
	var out []schemaDoc
	cols := map[string]int{}
	for _, line := range strings.Split(md, "\n") {
		if !strings.HasPrefix(line, "|") {
			cols = map[string]int{}
			continue
		}
		// "\|" inside a cell (enum types) is not a column separator.
		cells := strings.Split(strings.Trim(strings.ReplaceAll(line, `\|`, "\x00"), "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(strings.ReplaceAll(cells[i], "\x00", `\|`))
		}
		if cells[0] == "key" {
			cols = map[string]int{}
			for i, c := range cells {
				cols[c] = i
			}
			continue
		}
		_, hasType := cols["type"]
		if !hasType || !strings.HasPrefix(cells[0], "`") {
			continue
		}
		cell := func(name string) string {
			if i, ok := cols[name]; ok && i < len(cells) {
				return cells[i]
			}
			return ""
		}
		out = append(out, schemaDoc{
			Key:     strings.Trim(cells[0], "`"),
			Type:    cell("type"),
			Default: cell("default"),
			Modes:   cell("modes"),
			Meaning: cell("meaning"),
		})
	}
	return out
}
