package edge

import (
	"bufio"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// docRow is one row of a key table in docs/config.md.
type docRow struct {
	section string
	def     string // the default column, backticks removed
}

// docTables reads docs/config.md's key tables: key -> rows (a key is listed
// in its section's table and, for limits, in the glance table too).
func docTables(t *testing.T) map[string][]docRow {
	t.Helper()
	f, err := os.Open("../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows := map[string][]docRow{}
	section, defCol := "", -1
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			section, defCol = strings.TrimLeft(line, "# "), -1
			continue
		}
		if !strings.HasPrefix(line, "|") {
			continue
		}
		cols := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cols {
			cols[i] = strings.TrimSpace(cols[i])
		}
		if cols[0] == "key" {
			defCol = -1
			for i, c := range cols {
				if c == "default" {
					defCol = i
				}
			}
			continue
		}
		if !strings.HasPrefix(cols[0], "`") || defCol < 0 || defCol >= len(cols) {
			continue
		}
		key := strings.Trim(cols[0], "`")
		rows[key] = append(rows[key], docRow{section, strings.ReplaceAll(cols[defCol], "`", "")})
	}
	return rows
}

const glance = "Limits and timeouts at a glance"

// The glance table lists every limit and timeout, with the same default as
// the key's own row.
func TestConfigReferenceGlanceTable(t *testing.T) {
	rows := docTables(t)
	inGlance := 0
	for key, rs := range rows {
		var own, g []docRow
		for _, r := range rs {
			if r.section == glance {
				g = append(g, r)
			} else {
				own = append(own, r)
			}
		}
		bound := strings.Contains(key, "timeout") || strings.Contains(key, ".max_") ||
			strings.Contains(key, "_per_ip") || strings.Contains(key, "window") || strings.Contains(key, "ping_")
		// Renewal windows and ejection caps bound no peer.
		bound = bound && !strings.HasPrefix(key, "certs.acme.") && !strings.HasPrefix(key, "backends[].outlier.")
		if bound && len(g) == 0 {
			t.Errorf("%s is a limit or timeout: list it in the %q table", key, glance)
		}
		if len(g) == 0 {
			continue
		}
		inGlance++
		if len(own) != 1 {
			t.Errorf("%s: in the glance table but %d rows elsewhere", key, len(own))
			continue
		}
		if g[0].def != own[0].def {
			t.Errorf("%s: default %q in the glance table, %q in %s", key, g[0].def, own[0].def, own[0].section)
		}
	}
	if inGlance < 20 {
		t.Fatalf("only %d keys in the %q table: is the table still there?", inGlance, glance)
	}
}

// The glance table's defaults are the ones the code applies.
func TestConfigReferenceGlanceDefaults(t *testing.T) {
	in := map[string]any{
		"listeners": []any{map[string]any{"name": "a", "address": ":1",
			"routes": []any{map[string]any{"sni": []any{"*"}, "mode": "terminate", "protocol": "http", "backend": "b"}}}},
		"backends": []any{map[string]any{"name": "b", "servers": []any{map[string]any{"address": "127.0.0.1:1"}}}},
	}
	var c Config
	ps := &Problems{}
	decode(in, &c, ps)
	if err := ps.Err(); err != nil {
		t.Fatal(err)
	}
	applyDefaults(&c)
	lim := httpLimits(&c.Listeners[0].Routes[0], &c.Backends[0]).WithDefaults()
	runtime := map[string]any{ // defaults applied by tlsmode, not the decoder
		"listeners[].routes[].http.read_header_timeout":          lim.ReadHeaderTimeout,
		"listeners[].routes[].http.read_body_timeout":            lim.ReadBodyTimeout,
		"listeners[].routes[].http.idle_timeout":                 lim.IdleTimeout,
		"listeners[].routes[].http.write_timeout":                lim.WriteTimeout,
		"listeners[].routes[].http.response_header_timeout":      lim.ResponseHeaderTimeout,
		"listeners[].routes[].http.max_header_bytes":             lim.MaxHeaderBytes,
		"listeners[].routes[].http.max_request_body":             lim.MaxRequestBody,
		"listeners[].routes[].http.h2.max_concurrent_streams":    lim.H2.MaxConcurrentStreams,
		"listeners[].routes[].http.h2.receive_window":            lim.H2.ReceiveWindow,
		"listeners[].routes[].http.h2.connection_receive_window": lim.H2.ConnectionReceiveWindow,
		"listeners[].routes[].http.h2.ping_interval":             lim.H2.PingInterval,
		"listeners[].routes[].http.h2.ping_timeout":              lim.H2.PingTimeout,
		"backends[].max_response_header_bytes":                   lim.MaxResponseHeader,
		"listeners[].connection_burst_per_ip":                    2 * *c.Listeners[0].ConnectionRatePerIP,
		"backends[].health.agent.timeout":                        agAgentDefaultTimeout, // health.agent is unset by default
		"backends[].discovery.max_servers":                       DiscDefaultMaxServers, // applied by the discoverer
	}
	checked := 0
	for key, rs := range docTables(t) {
		var def string
		for _, r := range rs {
			if r.section == glance {
				def = r.def
			}
		}
		if def == "" {
			continue
		}
		got, ok := runtime[key]
		if !ok {
			v, found := configValue(reflect.ValueOf(c), strings.Split(key, "."))
			if !found {
				t.Errorf("%s: no such field in Config", key)
				continue
			}
			got = v.Interface()
		}
		if def == "twice the rate" {
			def = "200"
		}
		def, _, _ = strings.Cut(def, " ") // "0 = off" -> "0"
		if !sameDefault(got, def) {
			t.Errorf("%s: the docs say the default is %q, the code applies %v", key, def, got)
		}
		checked++
	}
	if checked < 20 {
		t.Fatalf("checked only %d defaults", checked)
	}
}

// configValue follows a documented key path (lists as name[], their first
// element) through c's key tags.
func configValue(v reflect.Value, path []string) (reflect.Value, bool) {
	for len(path) > 0 {
		for v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return v, false
			}
			v = v.Elem()
		}
		name, list := strings.CutSuffix(path[0], "[]")
		found := false
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).Tag.Get("key") == name {
				v, found = v.Field(i), true
				break
			}
		}
		if !found {
			return v, false
		}
		if list {
			if v.Len() == 0 {
				return v, false
			}
			v = v.Index(0)
		}
		path = path[1:]
	}
	for v.Kind() == reflect.Pointer && !v.IsNil() {
		v = v.Elem()
	}
	return v, true
}

// sameDefault compares a value with a documented default ("10s", "1024").
func sameDefault(got any, def string) bool {
	switch g := got.(type) {
	case time.Duration:
		d, err := time.ParseDuration(def)
		if def == "0" {
			d, err = 0, nil
		}
		return err == nil && d == g
	case int, int64, float64:
		f, err := strconv.ParseFloat(def, 64)
		return err == nil && f == reflect.ValueOf(g).Convert(reflect.TypeOf(float64(0))).Float()
	}
	return false
}
