package flows_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/flowbot/flowbot/flows"
)

// compileSchemas compiles the committed schema files.
func compileSchemas(t *testing.T) map[string]*jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	out := map[string]*jsonschema.Schema{}
	for _, kind := range flows.SchemaKindNames() {
		path, _ := filepath.Abs(filepath.Join("..", "schema", kind+".json"))
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := jsonschema.UnmarshalJSON(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if err := c.AddResource(path, doc); err != nil {
			t.Fatal(err)
		}
		s, err := c.Compile(path)
		if err != nil {
			t.Fatalf("schema %s does not compile: %v", kind, err)
		}
		out[kind] = s
	}
	return out
}

// TestSchemaFilesUpToDate: the committed schema/*.json are what the spec
// types give (go test ./flows -update rewrites them).
func TestSchemaFilesUpToDate(t *testing.T) {
	for _, kind := range flows.SchemaKindNames() {
		got, _ := flows.Schema(kind)
		path := filepath.Join("..", "schema", kind+".json")
		if *update {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is out of date with the spec types: run go test ./flows -update", path)
		}
	}
}

func kindOf(rel string) string {
	switch {
	case strings.HasPrefix(rel, "flows/"):
		return "flow"
	case strings.HasPrefix(rel, "tests/"):
		return "test"
	case rel == "templates.yaml":
		return "templates"
	case rel == "flowbot.yaml":
		return "flowbot"
	}
	return ""
}

func validate(t *testing.T, s *jsonschema.Schema, src []byte) error {
	t.Helper()
	v, err := flows.YAMLToJSON(src)
	if err != nil {
		t.Fatal(err)
	}
	return s.Validate(v)
}

// TestExamplesValidate: every file of every example bot validates against
// its schema, and names it in a yaml-language-server header.
func TestExamplesValidate(t *testing.T) {
	schemas := compileSchemas(t)
	files, _ := filepath.Glob("../examples/*/*.yaml")
	more, _ := filepath.Glob("../examples/*/*/*.yaml")
	for _, path := range append(files, more...) {
		parts := strings.Split(filepath.ToSlash(path), "/")
		rel := strings.Join(parts[3:], "/")
		kind := kindOf(rel)
		src, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := validate(t, schemas[kind], src); err != nil {
			t.Errorf("%s does not validate against the %s schema: %v", path, kind, err)
		}
		header := "# yaml-language-server: $schema=" + strings.Repeat("../", strings.Count(rel, "/")+2) + "schema/" + kind + ".json"
		if !strings.HasPrefix(string(src), header+"\n") {
			t.Errorf("%s does not start with %q", path, header)
		}
	}
}

// TestSchemaRejectsWhatTheLoaderRejects: the shape mistakes the loader
// reports fail the schema too, and what the loader accepts passes it.
func TestSchemaRejectsWhatTheLoaderRejects(t *testing.T) {
	schemas := compileSchemas(t)
	cases := []struct {
		name, file, src string
		bad             bool
	}{
		{"unknown step key", "flows/a.yaml", "flow: a\nstart: s\nsteps:\n  s: { say: hi, sat: x, end: true }\n", true},
		{"unknown flow key", "flows/a.yaml", "flow: a\nstart: s\ntrigers: []\nsteps:\n  s: { end: true }\n", true},
		{"missing start", "flows/a.yaml", "flow: a\nsteps:\n  s: { end: true }\n", true},
		{"wrong kind", "flows/a.yaml", "flow: a\nstart: s\nsteps:\n  s: { say: hi, end: yes please }\n", true},
		{"unknown retry key", "flows/a.yaml", "flow: a\nstart: s\nsteps:\n  s: { ask: q, validate: 'true', retry: { times: 1, then: s, sey: x }, end: true }\n", true},
		{"good flow", "flows/a.yaml", "flow: a\nstart: s\nsteps:\n  s: { say: [hi, there], wait: 1h30m, goto: t }\n  t: { ask: q, buttons: [{id: a, title: A}], end: true }\n", false},
		{"unknown template key", "templates.yaml", "templates:\n  - { name: t, language: en_US, category: UTILITY, stauts: APPROVED, body: x }\n", true},
		{"unknown setting", "flowbot.yaml", "default_flw: a\n", true},
		{"good settings", "flowbot.yaml", "opt_out: STOP\nkeywords: [{ match: [menu], goto: a }]\n", false},
		{"unknown test step", "tests/t.yaml", "name: t\nsteps:\n  - usr: hi\n", true},
		{"unknown method", "flows/a.yaml", "flow: a\nstart: s\nsteps:\n  s: { call: { method: FETCH, url: 'https://x.example', on_error: s }, end: true }\n", true},
		{"lowercase method", "flows/a.yaml", "flow: a\nstart: s\nsteps:\n  s: { call: { method: post, url: 'https://x.example', on_error: s }, end: true }\n", false},
		{"button title too long", "flows/a.yaml", "flow: a\nstart: s\nsteps:\n  s: { ask: q, buttons: [{id: a, title: 'a title far over twenty'}], end: true }\n", true},
		{"button title from an expression", "flows/a.yaml", "flow: a\nstart: s\nsteps:\n  s: { ask: q, buttons: [{id: a, title: '{{ contact.name + contact.id }}'}], end: true }\n", false},
		{"unknown pricing model", "flowbot.yaml", "pricing: { model: per_minute }\n", true},
		{"unknown category", "templates.yaml", "templates:\n  - { name: t, language: en_US, category: PROMO, status: APPROVED, body: x }\n", true},
		{"legacy category", "templates.yaml", "templates:\n  - { name: t, language: en_US, category: ALERT_UPDATE, status: APPROVED, body: x }\n", false},
		{"good test", "tests/t.yaml", "name: t\nsteps:\n  - user: hi\n  - bot: { contains: x }\n  - expect: { step: null }\n", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			schemaErr := validate(t, schemas[kindOf(tc.file)], []byte(tc.src))
			if (schemaErr != nil) != tc.bad {
				t.Errorf("schema: err %v, want bad=%t", schemaErr, tc.bad)
			}
			// The loader, on the same file in a minimal bot.
			fsys := fstest.MapFS{tc.file: &fstest.MapFile{Data: []byte(tc.src)}}
			if tc.file != "flows/a.yaml" {
				fsys["flows/a.yaml"] = &fstest.MapFile{Data: []byte("flow: a\nstart: s\nsteps:\n  s: { say: hi, end: true }\n")}
			}
			var diags flows.Diagnostics
			if kindOf(tc.file) == "test" {
				bot, d := flows.LoadFS(fsys, "bot")
				if bot == nil {
					t.Fatal(d.Error())
				}
				flows.ParseTest(tc.file, []byte(tc.src), bot, &diags)
			} else {
				_, diags = flows.LoadFS(fsys, "bot")
			}
			if diags.HasErrors() != tc.bad {
				t.Errorf("loader: %v, want bad=%t", diags.Error(), tc.bad)
			}
		})
	}
}

// TestGuideListsTheLimits: the guide's table of text limits says what
// flows.Limits says.
func TestGuideListsTheLimits(t *testing.T) {
	guide, err := os.ReadFile("../docs/bot-format.md")
	if err != nil {
		t.Fatal(err)
	}
	for name, l := range flows.Limits {
		if strings.HasPrefix(name, "template_") && name != "template_header" || strings.HasSuffix(name, "_id") {
			continue // checked at load time only, not cut at run time: not in that table
		}
		row := fmt.Sprintf("| %s | %s |", l.What, thousands(l.Max))
		if !strings.Contains(string(guide), row) {
			t.Errorf("docs/bot-format.md lacks the row %q (limit %s)", row, name)
		}
	}
}

func thousands(n int) string {
	s := fmt.Sprint(n)
	if len(s) > 3 {
		s = s[:len(s)-3] + "," + s[len(s)-3:]
	}
	return s
}

var _ = json.Number("")
