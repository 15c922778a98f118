package edge

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// The guides in docs/guides/ give configs to copy. Every complete one (a
// ```yaml block with a top-level listeners: key) must load as `tlsedge
// validate` loads it, from the repository's root (the guides say to save
// them there: their paths, examples/certs/..., are relative to it), and
// every other ```yaml block (a part of a config) must use only keys and
// values the config's JSON Schema allows.

// guideDir is where the guides are, from this package's folder.
const guideDir = "../docs/guides"

// guideBlock is one ```yaml block of a guide.
type guideBlock struct {
	file string // the guide, as docs/guides/NAME.md
	line int    // the line of its ```yaml fence, from 1
	text string // its content, fences excluded
}

// whole reports whether b is a complete config: one with a top-level
// listeners: key.
func (b guideBlock) whole() bool {
	for _, l := range strings.Split(b.text, "\n") {
		if strings.HasPrefix(l, "listeners:") {
			return true
		}
	}
	return false
}

// guideBlocks returns every ```yaml block of every guide, in file and line
// order.
func guideBlocks(t *testing.T) []guideBlock {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(guideDir, "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no guides in %s", guideDir)
	}
	var blocks []guideBlock
	for _, f := range files {
		blocks = append(blocks, guideFileBlocks(t, f)...)
	}
	return blocks
}

// guideFileBlocks returns the ```yaml blocks of the markdown file f. A block
// left open at the end of the file fails the test.
func guideFileBlocks(t *testing.T, f string) []guideBlock {
	t.Helper()
	fh, err := os.Open(f)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	name := "docs/guides/" + filepath.Base(f)
	var (
		blocks []guideBlock
		cur    *guideBlock
		body   []string
		n      int
	)
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		n++
		l := sc.Text()
		switch {
		case cur == nil && strings.TrimSpace(l) == "```yaml":
			cur, body = &guideBlock{file: name, line: n}, nil
		case cur != nil && strings.TrimSpace(l) == "```":
			cur.text = strings.Join(body, "\n") + "\n"
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			body = append(body, l)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cur != nil {
		t.Fatalf("%s:%d: ```yaml block is never closed", name, cur.line)
	}
	return blocks
}

// guideRoot makes a folder that stands for the repository's root: a
// symbolic link to each of the root's entries, so that a config written
// there finds examples/certs/... as it would in a clone, while nothing is
// written into the clone itself.
func guideRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, e := range entries {
		if err := os.Symlink(filepath.Join(root, e.Name()), filepath.Join(dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// Every complete config of the guides validates, as `tlsedge validate -c
// FILE` at the repository's root does; each guide (but the index,
// README.md) has at least one.
func TestGuideConfigsValidate(t *testing.T) {
	for _, k := range envKeys { // the environment must not change what the file says
		t.Setenv("TLSEDGE_"+strings.ToUpper(strings.ReplaceAll(k, ".", "_")), "")
	}
	root := guideRoot(t)
	whole := map[string]int{}
	for _, b := range guideBlocks(t) {
		if !b.whole() {
			continue
		}
		whole[b.file]++
		// The file name says where the block is: validate's lines start with it.
		path := filepath.Join(root, strings.TrimSuffix(filepath.Base(b.file), ".md")+"-line"+strconv.Itoa(b.line)+".yaml")
		if err := os.WriteFile(path, []byte(b.text), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadFile(path); err != nil {
			t.Errorf("%s:%d: the config in this ```yaml block does not validate:\n%v", b.file, b.line, err)
		}
	}
	files, _ := filepath.Glob(filepath.Join(guideDir, "*.md"))
	for _, f := range files {
		name := "docs/guides/" + filepath.Base(f)
		if filepath.Base(f) != "README.md" && whole[name] == 0 {
			t.Errorf("%s: no complete config (a ```yaml block with a top-level listeners: key)", name)
		}
	}
}

// The other ```yaml blocks of the guides, parts of a config, use only keys
// and values the JSON Schema allows (its top-level required keys aside).
func TestGuideSnippetsMatchSchema(t *testing.T) {
	s := schemaLoad(t)
	delete(s, "required")
	n := 0
	for _, b := range guideBlocks(t) {
		if b.whole() {
			continue
		}
		n++
		var v any
		if err := yaml.Unmarshal([]byte(b.text), &v); err != nil {
			t.Errorf("%s:%d: the ```yaml block is not YAML: %v", b.file, b.line, err)
			continue
		}
		var errs []string
		schemaCheck(s, v, "", &errs)
		if len(errs) > 0 {
			t.Errorf("%s:%d: the ```yaml block does not match the config's schema:\n%s", b.file, b.line, strings.Join(errs, "\n"))
		}
	}
	t.Logf("%d partial configs checked", n)
}
