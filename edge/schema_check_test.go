package edge

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// No JSON Schema validator is in the module graph, and the project adds
// none for a test: schemaCheck below validates a YAML document against the
// schema for the keywords the schema uses (TestSchemaKeywordsKnown fails
// if it starts using another, so nothing is skipped in silence).

// schemaKeywords are the keywords schemaCheck understands.
var schemaKeywords = map[string]bool{
	"$schema": true, "title": true, "description": true, "default": true, // annotations
	"type": true, "enum": true, "const": true, "pattern": true, "minimum": true, "maximum": true,
	"properties": true, "additionalProperties": true, "required": true, "items": true, "anyOf": true,
}

// schemaCheck appends to errs one line per way v breaks s, at path
// (key paths as the decoder writes them: listeners[0].routes[1].mode).
func schemaCheck(s map[string]any, v any, path string, errs *[]string) {
	bad := func(format string, args ...any) {
		*errs = append(*errs, fmt.Sprintf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	if alts, ok := s["anyOf"].([]any); ok {
		var best []string
		for _, a := range alts {
			var e []string
			schemaCheck(a.(map[string]any), v, path, &e)
			if len(e) == 0 {
				best = nil
				break
			}
			if best == nil || len(e) < len(best) {
				best = e
			}
		}
		*errs = append(*errs, best...)
	}
	if t, ok := s["type"].(string); ok && !schemaIsType(v, t) {
		bad("want %s, got %s", t, schemaTypeOf(v))
		return
	}
	if c, ok := s["const"]; ok && !reflect.DeepEqual(c, v) {
		bad("want %v, got %v", c, v)
	}
	if enum, ok := s["enum"].([]any); ok {
		found := false
		for _, e := range enum {
			found = found || reflect.DeepEqual(e, schemaJSONValue(v))
		}
		if !found {
			bad("%v is not one of %v", v, enum)
		}
	}
	if p, ok := s["pattern"].(string); ok {
		if str, isStr := v.(string); isStr && !regexp.MustCompile(p).MatchString(str) {
			bad("%q does not match %s", str, p)
		}
	}
	if n, isNum := schemaJSONValue(v).(float64); isNum {
		if lo, ok := s["minimum"].(float64); ok && n < lo {
			bad("%v is below %v", n, lo)
		}
		if hi, ok := s["maximum"].(float64); ok && n > hi {
			bad("%v is above %v", n, hi)
		}
	}
	if m, isMap := v.(map[string]any); isMap {
		props, _ := s["properties"].(map[string]any)
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if ps, ok := props[k].(map[string]any); ok {
				schemaCheck(ps, m[k], join(path, k), errs)
				continue
			}
			switch ap := s["additionalProperties"].(type) {
			case bool:
				if !ap {
					*errs = append(*errs, fmt.Sprintf("%s: unknown key", join(path, k)))
				}
			case map[string]any:
				schemaCheck(ap, m[k], join(path, k), errs)
			}
		}
		req, _ := s["required"].([]any)
		for _, r := range req {
			if _, ok := m[r.(string)]; !ok {
				bad("missing required key %s", r)
			}
		}
	}
	if list, isList := v.([]any); isList {
		if items, ok := s["items"].(map[string]any); ok {
			for i, item := range list {
				schemaCheck(items, item, fmt.Sprintf("%s[%d]", path, i), errs)
			}
		}
	}
}

// schemaJSONValue is v as encoding/json would decode it (numbers float64).
func schemaJSONValue(v any) any {
	switch n := v.(type) {
	case int:
		return float64(n)
	case int64:
		return float64(n)
	case uint64:
		return float64(n)
	}
	return v
}

func schemaIsType(v any, t string) bool {
	got := schemaTypeOf(v)
	return got == t || t == "number" && got == "integer"
}

func schemaTypeOf(v any) string {
	switch n := schemaJSONValue(v).(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case float64:
		if n == math.Trunc(n) {
			return "integer"
		}
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

// schemaCheckYAML validates one YAML document against the checked-in schema.
func schemaCheckYAML(t *testing.T, s map[string]any, doc []byte) []string {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(doc, &v); err != nil {
		t.Fatal(err)
	}
	var errs []string
	schemaCheck(s, v, "", &errs)
	return errs
}

// Every keyword in the schema is one schemaCheck applies.
func TestSchemaKeywordsKnown(t *testing.T) {
	var walk func(v any, at string)
	walk = func(v any, at string) {
		s, ok := v.(map[string]any)
		if !ok {
			return
		}
		for k, sub := range s {
			if !schemaKeywords[k] {
				t.Errorf("%s: keyword %q is not checked by schemaCheck", at, k)
			}
			switch k {
			case "properties":
				for name, p := range sub.(map[string]any) {
					walk(p, at+"/"+name)
				}
			case "items", "additionalProperties":
				walk(sub, at+"/"+k)
			case "anyOf":
				for i, a := range sub.([]any) {
					walk(a, fmt.Sprintf("%s/anyOf/%d", at, i))
				}
			}
		}
	}
	walk(schemaLoad(t), "#")
}

// Every example and every valid e2e config validates against the schema.
func TestSchemaValidatesExamples(t *testing.T) {
	s := schemaLoad(t)
	files, _ := filepath.Glob("../examples/*.yaml")
	e2e, _ := filepath.Glob("../e2e/testdata/*.yaml")
	files = append(files, e2e...)
	if len(files) < 8 {
		t.Fatalf("found only %d config files: %v", len(files), files)
	}
	for _, f := range files {
		if filepath.Base(f) == "bad.yaml" {
			continue // refused on purpose: TestSchemaRefusesBadConfig
		}
		t.Run(filepath.Base(filepath.Dir(f))+"/"+filepath.Base(f), func(t *testing.T) {
			doc, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if errs := schemaCheckYAML(t, s, doc); len(errs) > 0 {
				t.Errorf("%s does not validate:\n%s", f, strings.Join(errs, "\n"))
			}
		})
	}
}

// e2e/testdata/bad.yaml's mistakes that a schema can see are each found,
// at their key; the others (bad CIDRs, duplicates, a missing port, a
// backend that does not exist) are for validate.
func TestSchemaRefusesBadConfig(t *testing.T) {
	doc, err := os.ReadFile("../e2e/testdata/bad.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, e := range schemaCheckYAML(t, schemaLoad(t), doc) {
		p, _, _ := strings.Cut(e, ": ")
		paths = append(paths, p)
	}
	want := []string{
		"backends[0].balance",
		"backends[0].connect_timeout",
		"backends[0].health.interval",
		"listeners[0].clienthello_timeout",
		"listeners[0].routes[2].mode",
		"listeners[0].routes[3].timeout",
		"log.colour",
		"log.level",
	}
	sort.Strings(paths)
	if !reflect.DeepEqual(paths, want) {
		t.Errorf("schema errors at\n%s\nwant\n%s", strings.Join(paths, "\n"), strings.Join(want, "\n"))
	}
}

// schemaBase is a config LoadFile accepts with no file beside it; the
// cases below change one thing in it.
const schemaBase = `
listeners:
  - name: public
    address: "127.0.0.1:0"
    routes:
      - sni: ["*"]
        backend: app
backends:
  - name: app
    servers:
      - address: 127.0.0.1:9
`

// The schema and tlsedge itself (LoadFile: decode and validate) agree on
// the values the decoder reads in a special way: one string for a list,
// "off" where a duration allows it, range limits, enums, and the type
// mistakes a schema can see.
func TestSchemaAgreesWithLoader(t *testing.T) {
	s := schemaLoad(t)
	for _, c := range []struct {
		name, edit, with string // replace edit in schemaBase by with
		ok               bool
	}{
		{"base", "", "", true},
		{"listener keepalive off", "    routes:", "    tcp_keepalive: off\n    routes:", true},
		{"backend idle_timeout off", "    servers:", "    idle_timeout: off\n    servers:", true},
		{"connect_timeout off is not documented", "    servers:", "    connect_timeout: off\n    servers:", false},
		{"duration as a bare number", "    servers:", "    connect_timeout: 3\n    servers:", false},
		{"duration with a unit", "    servers:", "    connect_timeout: 250ms\n    servers:", true},
		{"one string for a list", "    routes:", "    proxy_protocol: optional\n    trusted_proxies: 10.0.0.0/8\n    routes:", true},
		{"enum value", "    servers:", "    balance: leastconn\n    servers:", true},
		{"not an enum value", "    servers:", "    balance: fastest\n    servers:", false},
		{"proxy_protocol off", "    routes:", "    proxy_protocol: off\n    routes:", true},
		{"drain_rate in range", "    servers:", "    drain_rate: 0.5\n    servers:", true},
		{"drain_rate below range", "    servers:", "    drain_rate: 0.001\n    servers:", false},
		{"rebalance interval off", "    servers:", "    rebalance: {interval: off, above: 2}\n    servers:", true},
		{"rebalance above out of range", "    servers:", "    rebalance: {above: 0.5}\n    servers:", false},
		{"expect_status numbers", "    servers:", "    tls: {ca: CA_PEM}\n    health: {type: http, expect_status: [200, 2xx]}\n    servers:", true},
		{"int as a word", "      - address: 127.0.0.1:9", "      - address: 127.0.0.1:9\n        weight: two", false},
		{"bool", "backends:", "log: {access: false, failure_burst: 0}\nbackends:", true},
		{"unknown key", "backends:", "log: {colour: true}\nbackends:", false},
		{"unknown key in a route", "        backend: app", "        backend: app\n        timeout: 3s", false},
		{"list where a map is wanted", "backends:", "log: [info]\nbackends:", false},
		{"no backends", "backends:\n  - name: app\n    servers:\n      - address: 127.0.0.1:9\n", "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			doc := schemaBase
			if c.edit != "" {
				if !strings.Contains(doc, c.edit) {
					t.Fatalf("%q is not in the base config", c.edit)
				}
				doc = strings.Replace(doc, c.edit, c.with, 1)
			}
			ca, err := filepath.Abs("../examples/certs/backend-ca.pem")
			if err != nil {
				t.Fatal(err)
			}
			doc = strings.ReplaceAll(doc, "CA_PEM", ca)
			errs := schemaCheckYAML(t, s, []byte(doc))
			path := filepath.Join(t.TempDir(), "edge.yaml")
			if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
				t.Fatal(err)
			}
			_, loadErr := LoadFile(path)
			if (len(errs) == 0) != c.ok {
				t.Errorf("schema: errors %q, want ok=%v", errs, c.ok)
			}
			if (loadErr == nil) != c.ok {
				t.Errorf("LoadFile: %v, want ok=%v", loadErr, c.ok)
			}
		})
	}
}

// The YAML snippets of the docs use only keys and values the schema
// allows; a snippet is a part of a file, so the top level's required keys
// are not asked for.
func TestSchemaValidatesDocSnippets(t *testing.T) {
	s := schemaLoad(t)
	delete(s, "required")
	files, _ := filepath.Glob("../docs/*.md")
	files = append(files, "../README.md")
	n := 0
	for _, f := range files {
		md, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		blocks := strings.Split(string(md), "```yaml\n")
		for i, b := range blocks[1:] {
			snippet, _, _ := strings.Cut(b, "```")
			n++
			if errs := schemaCheckYAML(t, s, []byte(snippet)); len(errs) > 0 {
				t.Errorf("%s, YAML block %d does not validate:\n%s", f, i+1, strings.Join(errs, "\n"))
			}
		}
	}
	if n < 3 {
		t.Errorf("found only %d YAML blocks in the docs", n)
	}
}
