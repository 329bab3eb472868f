package actions_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/rogpeppe/go-internal/txtar"
	"gopkg.in/yaml.v3"

	"github.com/flowbot/flowbot/actions"
	"github.com/flowbot/flowbot/dryrun"
	"github.com/flowbot/flowbot/flows"
	"github.com/flowbot/flowbot/internal/snapshot"
)

var update = flag.Bool("update", false, "rewrite the want sections of testdata/cases")

// A golden case: a step of the case file's bot, the conversation it runs
// in (variables, the contact, the message), the HTTP mocks of its calls;
// for an ask, reply: true judges message as the reply instead of running
// the step. What the step's actions did is compared with want.
type goldenCase struct {
	Name    string            `yaml:"name"`
	Step    string            `yaml:"step"`
	Vars    map[string]any    `yaml:"vars"`
	Contact flows.ContactEnv  `yaml:"contact"`
	Message map[string]string `yaml:"message"`
	HTTP    []flows.MockSpec  `yaml:"http"`
	Reply   bool              `yaml:"reply"`
	Attempt int               `yaml:"attempt"`
}

// outcome is what a step's actions did, as the golden files keep it.
type outcome struct {
	Messages []actions.Message `json:"messages,omitempty"`
	Pause    *actions.Pause    `json:"pause,omitempty"`
	Set      map[string]any    `json:"set,omitempty"`
	Errors   []string          `json:"errors,omitempty"`
	Trace    []string          `json:"trace,omitempty"`
	Jump     string            `json:"jump,omitempty"`
	Verdict  string            `json:"verdict,omitempty"`
	Saved    any               `json:"saved,omitempty"`
}

// conv is the conversation a golden case runs in: it records what the
// actions do.
type conv struct {
	env  flows.Env
	step *flows.Step
	http actions.Doer
	out  outcome
}

func (c *conv) Env() *flows.Env   { return &c.env }
func (c *conv) Step() *flows.Step { return c.step }
func (c *conv) Render(t *flows.Text) string {
	if t == nil {
		return ""
	}
	s, err := t.Render(&c.env)
	if err != nil {
		c.Fail(err)
	}
	return s
}
func (c *conv) SetVar(name string, v any) bool {
	if c.out.Set == nil {
		c.out.Set = map[string]any{}
	}
	c.out.Set[name] = v
	c.env.Vars[name] = v
	return true
}
func (c *conv) Send(m actions.Message) { c.out.Messages = append(c.out.Messages, m) }
func (c *conv) Pause(p actions.Pause)  { c.out.Pause = &p }
func (c *conv) HTTP() actions.Doer     { return c.http }
func (c *conv) Fail(err error)         { c.out.Errors = append(c.out.Errors, err.Error()) }
func (c *conv) TraceCondition(e string, v bool) {
	c.out.Trace = append(c.out.Trace, fmt.Sprintf("condition %s = %v", e, v))
}
func (c *conv) TraceSet(name, v string) { c.out.Trace = append(c.out.Trace, "set "+name+" = "+v) }
func (c *conv) TraceCall(method, url string, status int) {
	c.out.Trace = append(c.out.Trace, fmt.Sprintf("call %s %s %d", method, url, status))
}
func (c *conv) Tracing() bool           { return true }
func (c *conv) DefaultLanguage() string { return "en_US" }
func (c *conv) Redact(s string) string  { return s }
func (c *conv) FormToken() string       { return "flowbot:f:s:1" }
func (c *conv) LastMessageID() string   { return "wamid.LAST" }

// TestGolden runs every testdata/cases/*.txtar: a bot (every file but
// cases.yaml and want) and its cases, whose outcomes must equal want
// (go test ./actions -update rewrites it).
func TestGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/cases/*.txtar")
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
			var casesSrc []byte
			for _, f := range ar.Files {
				switch f.Name {
				case "want":
				case "cases.yaml":
					casesSrc = f.Data
				default:
					fsys[f.Name] = &fstest.MapFile{Data: f.Data}
				}
			}
			bot, diags := flows.LoadFS(fsys, "bot")
			if bot == nil || diags.HasErrors() {
				t.Fatalf("the case file's bot: %s", diags.Error())
			}
			var cases []goldenCase
			if err := yaml.Unmarshal(casesSrc, &cases); err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			for _, tc := range cases {
				out := runCase(t, bot, tc)
				b, _ := json.MarshalIndent(out, "", "  ")
				fmt.Fprintf(&got, "# %s\n%s\n", tc.Name, b)
			}
			snapshot.Section(t, path, ar, "want", got.Bytes(), *update)
		})
	}
}

func runCase(t *testing.T, bot *flows.Bot, tc goldenCase) outcome {
	t.Helper()
	var step *flows.Step
	var flow *flows.Flow
	for _, f := range bot.Flows {
		if s := f.Steps[tc.Step]; s != nil {
			step, flow = s, f
		}
	}
	if step == nil {
		t.Fatalf("case %q: no step %q", tc.Name, tc.Step)
	}
	c := &conv{step: step, http: dryrun.NewMocks(tc.HTTP)}
	c.env.Vars = map[string]any{}
	for _, v := range flow.Vars {
		c.env.Vars[v.Name] = v.Default
	}
	for k, v := range tc.Vars {
		c.env.Vars[k] = flows.NormalizeJSON(v)
	}
	c.env.Secrets = map[string]any{}
	for _, name := range bot.Settings.Secrets {
		c.env.Secrets[name] = "secret-" + strings.ToLower(name)
	}
	c.env.Contact = tc.Contact
	if c.env.Contact.ID == "" {
		c.env.Contact.ID = "15550001111"
	}
	c.env.Message = flows.MessageEnv{ID: "wamid.IN", Type: orDefault(tc.Message["type"], "text"), Text: tc.Message["text"], Choice: tc.Message["choice"]}
	c.env.Now = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	c.env.Attempt = tc.Attempt
	if tc.Reply {
		ask := actions.AskOf(step.Ask)
		c.out.Verdict = []string{"accepted", "ask again", "give up"}[ask.Judge(c, tc.Attempt)]
		if c.out.Verdict == "ask again" {
			c.Send(ask.Again(c))
		}
		if _, v, ok := ask.Saved(&c.env.Message); ok && c.out.Verdict == "accepted" {
			c.out.Saved = v
		}
		return c.out
	}
	for _, a := range actions.Build(step) {
		if jump := a.Run(context.Background(), c); jump != "" {
			c.out.Jump = jump
			break
		}
	}
	return c.out
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
