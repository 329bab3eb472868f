package flows_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/flowbot/flowbot/flows"
)

// TestGraphGolden compares the diagrams of the example bots with
// testdata/graph (go test ./flows -update rewrites them), and renders the
// DOT output with Graphviz's dot when it is installed (.ci/run installs it).
func TestGraphGolden(t *testing.T) {
	bots, _ := filepath.Glob("../examples/*")
	for _, dir := range bots {
		name := filepath.Base(dir)
		t.Run(name, func(t *testing.T) {
			bot, diags := flows.Load(dir)
			if bot == nil {
				t.Fatal(diags.Error())
			}
			graphs, err := flows.Graphs(bot, "")
			if err != nil {
				t.Fatal(err)
			}
			for ext, got := range map[string]string{".mmd": flows.Mermaid(graphs), ".dot": flows.DOT(graphs)} {
				path := filepath.Join("testdata", "graph", name+ext)
				if *update {
					if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("%v (run go test ./flows -update)", err)
				}
				if got != string(want) {
					t.Errorf("%s differs from %s:\n%s", ext, path, got)
				}
			}
			dot, err := exec.LookPath("dot")
			if err != nil {
				t.Log("graphviz dot is not installed: the DOT output is not rendered")
				return
			}
			cmd := exec.Command(dot, "-Tsvg")
			cmd.Stdin = strings.NewReader(flows.DOT(graphs))
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			if err := cmd.Run(); err != nil || errb.Len() > 0 {
				t.Fatalf("dot refused the output: %v %s", err, errb.String())
			}
			for _, f := range bot.Flows {
				for _, s := range f.StepOrder {
					if !strings.Contains(out.String(), ">"+s+"</text>") {
						t.Errorf("step %s is not in the rendered SVG", s)
					}
				}
			}
		})
	}
}

func TestGraphMarksWhatMatters(t *testing.T) {
	bot, diags := flows.Load("../examples/support")
	if bot == nil {
		t.Fatal(diags.Error())
	}
	g, _ := flows.Graphs(bot, "triage")
	m := flows.Mermaid(g)
	for _, want := range []string{
		`-.->|"retry x2"|`, `-.->|"timeout 23h30m"|`, `-->|"after 2h"|`, `{{"agent<br/>handoff to support`,
		`class f0_s9 endstep`, `-->|"else"|`, "window closed: template support_followup",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("the diagram lacks %q", want)
		}
	}
	if _, err := flows.Graphs(bot, "nope"); err == nil {
		t.Error("an unknown flow was drawn")
	}
	// Unreachable steps are greyed.
	fsys := map[string]string{"flows/a.yaml": "flow: a\nstart: x\ntriggers: [{keyword: go}]\nsteps:\n  x: { end: true }\n  lost: { say: hi, end: true }\n"}
	b := loadMap(t, fsys)
	g, _ = flows.Graphs(b, "")
	if m := flows.Mermaid(g); !strings.Contains(m, "class f0_s1 unreachable") || !strings.Contains(flows.DOT(g), `style="rounded,filled,dashed"`) {
		t.Errorf("unreachable step not greyed:\n%s", m)
	}
}

func loadMap(t *testing.T, files map[string]string) *flows.Bot {
	t.Helper()
	fsys := fstest.MapFS{}
	for k, v := range files {
		fsys[k] = &fstest.MapFile{Data: []byte(v)}
	}
	b, diags := flows.LoadFS(fsys, "bot")
	if b == nil {
		t.Fatal(diags.Error())
	}
	return b
}
