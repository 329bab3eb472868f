package flows_test

import (
	"bytes"
	"flag"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/rogpeppe/go-internal/txtar"

	"github.com/flowbot/flowbot/flows"
	"github.com/flowbot/flowbot/internal/snapshot"
)

var update = flag.Bool("update", false, "rewrite the want sections of testdata/lint")

// TestLint loads each testdata/lint/*.txtar as a bot (every file but
// "want") and compares the rendered diagnostics with its want section.
func TestLint(t *testing.T) {
	files, _ := filepath.Glob("testdata/lint/*.txtar")
	if len(files) == 0 {
		t.Fatal("no testdata")
	}
	for _, path := range files {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".txtar"), func(t *testing.T) {
			ar, err := txtar.ParseFile(path)
			if err != nil {
				t.Fatal(err)
			}
			fsys := fstest.MapFS{}
			files := map[string][]byte{}
			for _, f := range ar.Files {
				if f.Name == "want" {
					continue
				}
				fsys[f.Name] = &fstest.MapFile{Data: expand(f.Data)}
				files[f.Name] = expand(f.Data)
			}
			_, diags := flows.LoadFS(fsys, "bot")
			var got bytes.Buffer
			for _, d := range diags {
				got.WriteString(d.String() + "\n")
			}
			// The playground's parse cache gives the same diagnostics,
			// cold and hot.
			cache := &flows.ParseCache{}
			for round := 0; round < 2; round++ {
				_, cached := flows.LoadFilesCached("bot", files, cache)
				if cached.Error() != diags.Error() || len(cached) != len(diags) {
					t.Errorf("round %d through the cache:\n%s\nwithout:\n%s", round, cached.Error(), diags.Error())
				}
			}
			snapshot.Section(t, path, ar, "want", got.Bytes(), *update)
		})
	}
}

// expand replaces ${REPEAT:n:c} with n copies of c, for texts over
// WhatsApp's limits.
func expand(b []byte) []byte {
	s := string(b)
	for {
		i := strings.Index(s, "${REPEAT:")
		if i < 0 {
			return []byte(s)
		}
		j := strings.Index(s[i:], "}")
		parts := strings.SplitN(s[i+2:i+j], ":", 3)
		n := 0
		for _, r := range parts[1] {
			n = n*10 + int(r-'0')
		}
		s = s[:i] + strings.Repeat(parts[2], n) + s[i+j+1:]
	}
}

// After one file changed, a compile through the parse cache parses only
// that file, and gives what a compile from scratch gives.
func TestParseCacheParsesOnlyWhatChanged(t *testing.T) {
	for _, dir := range []string{"../examples/clinic", "../examples/shop", "../examples/support"} {
		files, err := flows.ReadFiles(dir)
		if err != nil {
			t.Fatal(err)
		}
		cache := &flows.ParseCache{}
		if bot, diags := flows.LoadFilesCached(dir, files, cache); bot == nil {
			t.Fatalf("%s: %s", dir, diags.Error())
		}
		parsed := cache.Parsed()
		if parsed != len(files) {
			t.Errorf("%s: parsed %d files, want %d", dir, parsed, len(files))
		}
		var flowFile string
		for name := range files {
			if strings.HasPrefix(name, "flows/") {
				flowFile = name
				break
			}
		}
		files[flowFile] = append(append([]byte(nil), files[flowFile]...), []byte("\n# edited\n")...)
		bot, diags := flows.LoadFilesCached(dir, files, cache)
		if got := cache.Parsed() - parsed; got != 1 {
			t.Errorf("%s: an edit of %s parsed %d files, want 1", dir, flowFile, got)
		}
		fresh, freshDiags := flows.LoadFiles(dir, files)
		if bot == nil || fresh == nil || len(bot.Flows) != len(fresh.Flows) || diags.Error() != freshDiags.Error() {
			t.Errorf("%s: the cached compile differs from a fresh one:\n%s\n%s", dir, diags.Error(), freshDiags.Error())
		}
		// A broken edit is reported as from scratch, and mending it
		// gives the bot back.
		orig := files[flowFile]
		files[flowFile] = []byte("flow: [\n")
		if bot, _ := flows.LoadFilesCached(dir, files, cache); bot != nil {
			t.Errorf("%s: a broken file compiled", dir)
		}
		files[flowFile] = orig
		if bot, diags := flows.LoadFilesCached(dir, files, cache); bot == nil {
			t.Errorf("%s: mended: %s", dir, diags.Error())
		}
	}
}
