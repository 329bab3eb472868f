package flows_test

import (
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"

	"github.com/flowbot/flowbot/flows"
)

// FuzzLoad feeds arbitrary bytes to the loader as a flow, templates.yaml
// and flowbot.yaml: it must answer with diagnostics, never a panic. Seeds
// are the example bots' files.
func FuzzLoad(f *testing.F) {
	seeds, _ := filepath.Glob("../examples/*/flows/*.yaml")
	more, _ := filepath.Glob("../examples/*/*.yaml")
	tests, _ := filepath.Glob("../examples/*/tests/*.yaml")
	for _, p := range append(append(seeds, more...), tests...) {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("flow: a\nstart: b\nsteps:\n  b: &x { say: \"{{ 1 + }}\", goto: *x }\n"))
	f.Add([]byte("{{{{"))
	example, _ := flows.Load("../examples/clinic")
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, name := range []string{"flows/x.yaml", "templates.yaml", "flowbot.yaml"} {
			fsys := fstest.MapFS{name: &fstest.MapFile{Data: data}}
			if name != "flows/x.yaml" {
				fsys["flows/x.yaml"] = &fstest.MapFile{Data: []byte("flow: x\nstart: a\nsteps:\n  a: { say: hi, end: true }\n")}
			}
			bot, diags := flows.LoadFS(fsys, "bot")
			if bot == nil && !diags.HasErrors() {
				t.Fatalf("%s: no bot and no error", name)
			}
			for _, d := range diags {
				_ = d.String()
			}
		}
		if example != nil {
			var diags flows.Diagnostics
			flows.ParseTest("t.yaml", data, example, &diags)
		}
	})
}
