package edge

import (
	"bufio"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// docs/config.md is the user's reference: it must list every key the
// decoder accepts, and nothing it does not.
func TestConfigReferenceListsEveryKey(t *testing.T) {
	decoded := map[string]bool{}
	configKeys(reflect.TypeOf(Config{}), "", decoded)

	f, err := os.Open("../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	documented := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		key, _, _ := strings.Cut(strings.TrimPrefix(line, "| `"), "`")
		documented[key] = true
	}
	var missing, extra []string
	for k := range decoded {
		if !documented[k] {
			missing = append(missing, k)
		}
	}
	for k := range documented {
		if !decoded[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 {
		t.Errorf("docs/config.md does not document these keys the decoder accepts:\n%s", strings.Join(missing, "\n"))
	}
	if len(extra) > 0 {
		t.Errorf("docs/config.md documents keys the decoder does not accept:\n%s", strings.Join(extra, "\n"))
	}
}

// configKeys adds every key path under t (as written in docs: lists as
// name[], nested keys with dots) to out.
func configKeys(t reflect.Type, prefix string, out map[string]bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		k := f.Tag.Get("key")
		if k == "" || k == "-" {
			continue
		}
		path := k
		if prefix != "" {
			path = prefix + "." + k
		}
		out[path] = true
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft == reflect.TypeOf(IdentityConfig{}):
		case ft.Kind() == reflect.Struct:
			configKeys(ft, path, out)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			configKeys(ft.Elem(), path+"[]", out)
		}
	}
}
