package edge

import (
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
)

// decode copies the generic tree viper read (maps, slices, scalars) into the
// typed struct out, collecting one Problem per unknown key or badly typed
// value instead of stopping at the first, so that `validate` lists them all.
// Struct fields are matched by their `key` tag; a tag of "-" is never read.
func decode(in map[string]any, out *Config, ps *Problems) {
	decodeValue(in, reflect.ValueOf(out).Elem(), "", ps)
}

var durationType = reflect.TypeOf(time.Duration(0))

func decodeValue(in any, out reflect.Value, path string, ps *Problems) {
	if in == nil {
		return // an empty key ("key:" in YAML) keeps the zero value
	}
	if out.Type() == reflect.TypeOf(IdentityConfig{}) {
		decodeIdentity(in, out.Addr().Interface().(*IdentityConfig), path, ps)
		return
	}
	switch out.Kind() {
	case reflect.Struct:
		m, ok := asMap(in)
		if !ok {
			ps.Add(path, "want a map of keys, got %s", describe(in))
			return
		}
		decodeStruct(m, out, path, ps)
	case reflect.Pointer:
		v := reflect.New(out.Type().Elem())
		before := len(ps.List)
		decodeValue(in, v.Elem(), path, ps)
		if len(ps.List) == before {
			out.Set(v)
		}
	case reflect.Slice:
		list, ok := in.([]any)
		if !ok {
			if out.Type().Elem().Kind() == reflect.String {
				// "client_ca: one.pem" is the same as a one-element list.
				list = []any{in}
			} else {
				ps.Add(path, "want a list, got %s", describe(in))
				return
			}
		}
		s := reflect.MakeSlice(out.Type(), len(list), len(list))
		for i, item := range list {
			decodeValue(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i), ps)
		}
		out.Set(s)
	case reflect.Map:
		m, ok := asMap(in)
		if !ok {
			ps.Add(path, "want a map, got %s", describe(in))
			return
		}
		mv := reflect.MakeMapWithSize(out.Type(), len(m))
		for k, v := range m {
			ev := reflect.New(out.Type().Elem()).Elem()
			decodeValue(v, ev, join(path, k), ps)
			mv.SetMapIndex(reflect.ValueOf(k), ev)
		}
		out.Set(mv)
	case reflect.String:
		switch v := in.(type) {
		case string:
			out.SetString(v)
		case bool:
			// YAML 1.1 readers turn off/on/yes/no into booleans; take them back.
			out.SetString(map[bool]string{true: "on", false: "off"}[v])
		case int, int64, float64, uint64:
			out.SetString(fmt.Sprint(v))
		default:
			ps.Add(path, "want a string, got %s", describe(in))
		}
	case reflect.Bool:
		switch v := in.(type) {
		case bool:
			out.SetBool(v)
		case string:
			b, err := strconv.ParseBool(v)
			if err != nil {
				ps.Add(path, "want true or false, got %q", v)
				return
			}
			out.SetBool(b)
		default:
			ps.Add(path, "want true or false, got %s", describe(in))
		}
	case reflect.Int, reflect.Int64:
		if out.Type() == durationType {
			if in == false { // "off", read as a YAML 1.1 boolean
				in = "off"
			}
			s, ok := in.(string)
			if !ok {
				ps.Add(path, "want a duration with a unit such as \"5s\" or \"250ms\", got %s", describe(in))
				return
			}
			if strings.EqualFold(s, "off") {
				out.SetInt(-1) // validate accepts it only where "off" is documented
				return
			}
			d, err := time.ParseDuration(s)
			if err != nil {
				ps.Add(path, "%q is not a duration: write it like \"5s\", \"250ms\" or \"1m30s\"", s)
				return
			}
			out.SetInt(int64(d))
			return
		}
		n, ok := asInt(in)
		if !ok {
			ps.Add(path, "want a whole number, got %s", describe(in))
			return
		}
		out.SetInt(n)
	case reflect.Float64:
		switch v := in.(type) {
		case float64:
			out.SetFloat(v)
		case string:
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				ps.Add(path, "want a number, got %q", v)
				return
			}
			out.SetFloat(f)
		default:
			n, ok := asInt(in)
			if !ok {
				ps.Add(path, "want a number, got %s", describe(in))
				return
			}
			out.SetFloat(float64(n))
		}
	default:
		panic("edge: decode: unsupported field kind " + out.Kind().String())
	}
}

func decodeStruct(m map[string]any, out reflect.Value, path string, ps *Problems) {
	t := out.Type()
	known := make(map[string]int, t.NumField())
	names := make([]string, 0, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		k := t.Field(i).Tag.Get("key")
		if k == "" || k == "-" {
			continue
		}
		known[k] = i
		names = append(names, k)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys) // problems in a stable order
	for _, k := range keys {
		i, ok := known[strings.ToLower(k)]
		if !ok {
			ps.Add(join(path, k), "unknown key; known keys here: %s", strings.Join(names, ", "))
			continue
		}
		decodeValue(m[k], out.Field(i), join(path, k), ps)
	}
}

// decodeIdentity accepts "identity: xfcc" or "identity: {Header-Name: field}".
func decodeIdentity(in any, out *IdentityConfig, path string, ps *Problems) {
	switch v := in.(type) {
	case string:
		out.Preset = v
	case bool:
		if !v {
			out.Preset = "none"
			return
		}
		ps.Add(path, "want xfcc, ssl, rfc9440, none or a map of header name to field, got true")
	default:
		m, ok := asMap(in)
		if !ok {
			ps.Add(path, "want xfcc, ssl, rfc9440, none or a map of header name to field, got %s", describe(in))
			return
		}
		out.Headers = make(map[string]string, len(m))
		for k, f := range m {
			s, ok := f.(string)
			if !ok {
				ps.Add(join(path, k), "want a field name, got %s", describe(f))
				continue
			}
			out.Headers[k] = s
		}
	}
}

func asMap(in any) (map[string]any, bool) {
	switch m := in.(type) {
	case map[string]any:
		return m, true
	case map[any]any:
		out := make(map[string]any, len(m))
		for k, v := range m {
			out[fmt.Sprint(k)] = v
		}
		return out, true
	}
	return nil, false
}

func asInt(in any) (int64, bool) {
	switch v := in.(type) {
	case int:
		return int64(v), true
	case int64:
		return v, true
	case uint64:
		if v > math.MaxInt64 {
			return 0, false
		}
		return int64(v), true
	case float64:
		if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
			return int64(v), true
		}
	case string:
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		return n, err == nil
	}
	return 0, false
}

func describe(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("the string %q", v)
	case []any:
		return "a list"
	case map[string]any, map[any]any:
		return "a map"
	case bool:
		return fmt.Sprintf("the boolean %v", v)
	default:
		return fmt.Sprintf("%v", v)
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
