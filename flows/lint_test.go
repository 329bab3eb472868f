package flows_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/rogpeppe/go-internal/txtar"

	"github.com/flowbot/flowbot/flows"
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
			wantIdx := -1
			for i, f := range ar.Files {
				if f.Name == "want" {
					wantIdx = i
					continue
				}
				fsys[f.Name] = &fstest.MapFile{Data: expand(f.Data)}
			}
			_, diags := flows.LoadFS(fsys, "bot")
			var got bytes.Buffer
			for _, d := range diags {
				got.WriteString(d.String() + "\n")
			}
			if *update {
				if wantIdx < 0 {
					ar.Files = append(ar.Files, txtar.File{Name: "want"})
					wantIdx = len(ar.Files) - 1
				}
				ar.Files[wantIdx].Data = got.Bytes()
				if err := os.WriteFile(path, txtar.Format(ar), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if wantIdx < 0 {
				t.Fatal("no want section (run with -update)")
			}
			if want := string(ar.Files[wantIdx].Data); got.String() != want {
				t.Errorf("diagnostics differ\n--- got\n%s--- want\n%s", got.String(), want)
			}
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
