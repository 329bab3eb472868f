package dryrun_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/flowbot/flowbot/dryrun"
	"github.com/flowbot/flowbot/flows"
)

// TestExamples runs every example bot's conversation tests, as `flowbot
// test` does: `go test ./...` checks them, not only CI's script.
func TestExamples(t *testing.T) {
	// Every directory with a flowbot.yaml (examples/inbox is an
	// integration, not a bot).
	files, _ := filepath.Glob("../examples/*/flowbot.yaml")
	var dirs []string
	for _, f := range files {
		dirs = append(dirs, filepath.Dir(f))
	}
	if len(dirs) == 0 {
		t.Fatal("no example bots")
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			bot, diags := flows.Load(dir)
			if bot == nil {
				t.Fatal(diags.Error())
			}
			tests, diags := flows.LoadTests(os.DirFS(dir), dir, bot)
			if diags.HasErrors() {
				t.Fatal(diags.Error())
			}
			if len(tests) == 0 {
				t.Fatalf("%s has no conversation tests", dir)
			}
			for _, ct := range tests {
				t.Run(ct.Spec.Name, func(t *testing.T) {
					secrets := map[string]string{}
					for _, name := range bot.Settings.Secrets {
						secrets[name] = "test-" + name
					}
					if res := dryrun.RunTest(context.Background(), bot, ct, secrets, nil); !res.Passed() {
						t.Errorf("%s", res.Failure)
					}
				})
			}
		})
	}
}
