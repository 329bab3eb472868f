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
	files, _ := filepath.Glob("../examples/*/flowbot.yaml") // the bots (examples/inbox is not one)
	for _, f := range files {
		dir := filepath.Dir(f)
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
		`class f0_s9 endstep`, `-->|"else"|`,
		// The flow's fallback once, in a note, and a legend for the shapes.
		`f0_fallback>"window closed: free-form sends become template support_followup`, `legend["legend: slanted box = ask`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("the diagram lacks %q", want)
		}
	}
	if n := strings.Count(m, "support_followup"); n != 1 {
		t.Errorf("the flow's fallback is named %d times, want once", n)
	}
	if strings.Contains(m, "...") {
		t.Errorf("a label is cut mid-word:\n%s", m)
	}
	// A step's own fallback is named on it; a handoff that ends is drawn
	// as a handoff.
	b2 := loadMap(t, map[string]string{
		"templates.yaml": "templates:\n  - { name: own, language: en_US, category: UTILITY, status: APPROVED, body: x }\n  - { name: flowwide, language: en_US, category: UTILITY, status: APPROVED, body: y }\n",
		"flows/a.yaml":   "flow: a\nstart: x\ntriggers: [{keyword: go}]\nfallback: { template: flowwide }\nsteps:\n  x: { say: hi, fallback: { template: own }, goto: h }\n  h: { handoff: { queue: desk }, end: true }\n",
	})
	b3 := loadMap(t, map[string]string{"flows/a.yaml": "flow: a\nstart: x\ntriggers: [{keyword: go}]\nsteps:\n  x: { random: [{weight: 70, goto: y}, {weight: 30, goto: z}] }\n  y: { say: A, end: true }\n  z: { say: B, end: true }\n"})
	g3, _ := flows.Graphs(b3, "")
	if m3 := flows.Mermaid(g3); !strings.Contains(m3, `-->|"random 70%"| f0_s1`) || !strings.Contains(m3, `-->|"random 30%"| f0_s2`) {
		t.Errorf("a random split's edges lack their shares:\n%s", m3)
	}
	b4 := loadMap(t, map[string]string{
		"flows/a.yaml": "flow: a\nstart: x\ntriggers: [{keyword: go}]\nsteps:\n  x: { subflow: b, goto: y }\n  y: { say: A, end: true }\n",
		"flows/b.yaml": "flow: b\nstart: z\nsteps:\n  z: { say: B, end: true }\n",
	})
	g4, _ := flows.Graphs(b4, "")
	if m4 := flows.Mermaid(g4); !strings.Contains(m4, `f0_s0 -.->|"subflow"| f1_start`) || !strings.Contains(m4, "subflow: b") {
		t.Errorf("a subflow step does not point at its flow:\n%s", m4)
	}
	if d4 := flows.DOT(g4); !strings.Contains(d4, `f0_s0 -> f1_start [label="subflow", style=dotted]`) {
		t.Errorf("DOT: a subflow step does not point at its flow:\n%s", d4)
	}
	g2, _ := flows.Graphs(b2, "")
	m2 := flows.Mermaid(g2)
	for _, want := range []string{`f0_s0["x<br/>say: hi<br/>window closed: template own"]`, `f0_s1{{"h<br/>handoff to desk"}}`, `class f0_s1 handoff`} {
		if !strings.Contains(m2, want) {
			t.Errorf("the diagram lacks %q:\n%s", want, m2)
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
