package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/flowbot/flowbot/dryrun"
	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/flows"
)

var t0 = time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)

// loadBot compiles a bot from file contents; it fails the test on errors.
func loadBot(t testing.TB, files map[string]string) *flows.Bot {
	t.Helper()
	fsys := fstest.MapFS{}
	for name, src := range files {
		fsys[name] = &fstest.MapFile{Data: []byte(src)}
	}
	bot, diags := flows.LoadFS(fsys, "bot")
	if bot == nil {
		t.Fatalf("bot does not load:\n%s", diags.Error())
	}
	return bot
}

func newSession(t testing.TB, bot *flows.Bot, opts engine.Options) *dryrun.Session {
	t.Helper()
	s, err := dryrun.NewSession(context.Background(), engine.New(bot, opts), engine.Contact{ID: "c1", Name: "Ana"}, t0)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func say(t testing.TB, s *dryrun.Session, text string) *engine.Result {
	t.Helper()
	res, err := s.Say(context.Background(), engine.Inbound{Type: "text", Text: text})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func texts(res *engine.Result) []string {
	var out []string
	for _, o := range res.Outbound {
		out = append(out, dryrun.Describe(o))
	}
	return out
}

func records(res *engine.Result, kind string) []engine.Record {
	var out []engine.Record
	for _, r := range res.Records() {
		if r.Kind == kind {
			out = append(out, r)
		}
	}
	return out
}

const windowBot = `
flow: main
start: first
triggers:
  - keyword: hi
vars:
  n: 0
steps:
  first:
    ask: "Ready?"
    goto: later
  later:
    wait: 25h
    goto: two_says
  two_says:
    say: ["one {{ vars.n }}", "two"]
    image: { link: "https://x.example/a.png" }
    template: { name: notice }
    fallback: { template: nudge, params: ["{{ contact.name }}"] }
    goto: pause
  pause:
    wait: 1h
    goto: unsent
  unsent:
    say: "no fallback here"
    goto: never
  never:
    say: "never sent"
    end: true
`

const windowTemplates = `
templates:
  - { name: nudge, language: en_US, category: MARKETING, status: APPROVED, body: "Hi {{1}}, still there?" }
  - { name: notice, language: en_US, category: UTILITY, status: APPROVED, body: "A notice." }
`

// TestOneFallbackPerRun checks FLOW_SPEC.md 8.8: within one run at most
// one fallback template goes out; the run's later free-form sends are
// skipped, each recorded; templates go out as written; an ask whose
// question did not go out waits "unasked" and is asked when the contact
// writes, that message not being its answer.
func TestOneFallbackPerRun(t *testing.T) {
	bot := loadBot(t, map[string]string{"templates.yaml": windowTemplates, "flows/main.yaml": `
flow: main
start: welcome
vars: { size: "" }
fallback: { template: nudge, params: ["{{ contact.name }}"] }
steps:
  welcome:
    say: "Welcome!"
    goto: notice
  notice:
    template: { name: notice }
    goto: ask_size
  ask_size:
    ask: "How many people?"
    buttons: [{ id: two, title: "Two" }, { id: four, title: "Four" }]
    save: size
    timeout: 2h
    on_timeout: gone
    goto: done
  gone:
    say: "Another time!"
    end: true
  done:
    say: "Table for {{ vars.size }}."
    end: true
`})
	s := newSession(t, bot, engine.Options{})
	ctx := context.Background()
	res, err := s.Start(ctx, "main", "", nil) // business-initiated, the window closed
	if err != nil {
		t.Fatal(err)
	}
	if got := texts(res); strings.Join(got, " | ") != "[template nudge] Hi Ana, still there? | [template notice] A notice." {
		t.Fatalf("the start sent %q, want one fallback and the template", got)
	}
	if skipped := records(res, engine.RecSkipped); len(skipped) != 1 || skipped[0].Step != "ask_size" {
		t.Fatalf("skipped %v, want the question of ask_size", skipped)
	}
	st, _ := s.State(ctx)
	if !st.Unasked || st.Step != "ask_size" {
		t.Fatalf("the ask is not unasked: %+v", st)
	}
	if err := s.Advance(ctx, time.Hour); err != nil { // the timeout counts from the fallback
		t.Fatal(err)
	}
	res = say(t, s, "hello?")
	if got := texts(res); len(got) != 1 || got[0] != "How many people? [Two] [Four]" {
		t.Fatalf("the contact's message got %q, want the question asked", got)
	}
	if st, _ := s.State(ctx); st.Unasked || st.Vars["size"] != "" {
		t.Fatalf("after asking: unasked %v, size %q", st.Unasked, st.Vars["size"])
	}
	if err := s.Advance(ctx, 90*time.Minute); err != nil { // 2h30m from the fallback, 1h30m from the asking
		t.Fatal(err)
	}
	if got := texts(say(t, s, "four")); len(got) != 1 || got[0] != "Table for four." {
		t.Fatalf("the answer got %q", got)
	}
}

// A tap on a fallback template's quick reply whose payload is one of the
// unasked ask's ids answers it directly.
func TestQuickReplyAnswersAnUnaskedQuestion(t *testing.T) {
	bot := loadBot(t, map[string]string{"templates.yaml": `
templates:
  - name: confirm_visit
    language: en_US
    category: UTILITY
    status: APPROVED
    body: "Is your visit still on?"
    buttons: [{ type: QUICK_REPLY, text: "Yes" }, { type: QUICK_REPLY, text: "No" }]
`, "flows/main.yaml": `
flow: main
start: confirm
steps:
  confirm:
    ask: "Is your visit still on?"
    buttons: [{ id: "yes", title: "Yes" }, { id: "no", title: "No" }]
    fallback: { template: confirm_visit, buttons: ["yes", "no"] }
    on:
      - { if: 'message.choice == "yes"', goto: see_you }
    else: bye
  see_you:
    say: "See you!"
    end: true
  bye:
    say: "Cancelled."
    end: true
`})
	s := newSession(t, bot, engine.Options{})
	ctx := context.Background()
	if _, err := s.Start(ctx, "main", "", nil); err != nil {
		t.Fatal(err)
	}
	res, err := s.Say(ctx, s.Tap("yes"))
	if err != nil {
		t.Fatal(err)
	}
	if got := texts(res); len(got) != 1 || got[0] != "See you!" {
		t.Fatalf("the quick reply got %q, want it taken as the answer", got)
	}
}

// TestWindowRule checks section 4: outside the window a step's free-form
// messages become one fallback template, templates still go, and a step
// with no fallback records undeliverable and stops the flow.
func TestWindowRule(t *testing.T) {
	bot := loadBot(t, map[string]string{"flows/main.yaml": windowBot, "templates.yaml": windowTemplates})
	s := newSession(t, bot, engine.Options{})
	ctx := context.Background()
	say(t, s, "hi")
	say(t, s, "yes")
	if err := s.Advance(ctx, 27*time.Hour); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range s.Sent[1:] {
		got = append(got, string(o.Via)+" "+dryrun.Describe(o))
	}
	want := []string{
		"template [template nudge] Hi Ana, still there?",
		"template [template notice] A notice.",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("after the window closed, sent:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var undeliverable []engine.Record
	for _, r := range s.Records {
		if r.Kind == engine.RecUndeliverable {
			undeliverable = append(undeliverable, r)
		}
	}
	if len(undeliverable) != 1 || undeliverable[0].Step != "unsent" {
		t.Fatalf("undeliverable records = %v, want one naming step unsent", undeliverable)
	}
	st, _ := s.State(ctx)
	if st.Flow != "" || st.Step != "" {
		t.Fatalf("after undeliverable the flow is %q/%q, want stopped", st.Flow, st.Step)
	}
}

// TestWindowBoundary: the window is open while now < last inbound + 24h.
func TestWindowBoundary(t *testing.T) {
	st := engine.NewSession("c")
	st.LastInbound = t0
	if !st.WindowOpen(t0.Add(24*time.Hour - time.Second)) {
		t.Error("window closed one second before 24h")
	}
	if st.WindowOpen(t0.Add(24 * time.Hour)) {
		t.Error("window open at exactly 24h")
	}
	if engine.NewSession("x").WindowOpen(t0) {
		t.Error("window open for a contact who never wrote")
	}
}

const errorsBot = `
flow: main
start: fetch
triggers:
  - keyword: go
vars:
  data: {}
  n: 0
steps:
  fetch:
    call:
      url: "https://api.example/data"
      save: data
      on_error: failed
    goto: use
  use:
    set:
      n: vars.data.count + 1
    say: "ref {{ vars.data.ref }} count {{ vars.n }}"
    on:
      - if: vars.data.count > 3
        goto: big
    else: small
  big:
    say: big
    end: true
  small:
    say: small
    end: true
  failed:
    say: failed
    end: true
`

// TestRuntimeErrors: data from an HTTP call that does not fit the
// expressions records error events naming flow, step and expression, and
// the conversation goes on.
func TestRuntimeErrors(t *testing.T) {
	bot := loadBot(t, map[string]string{"flows/main.yaml": errorsBot})
	mocks := dryrun.NewMocks([]flows.MockSpec{{Method: "GET", URL: "https://api.example/data", Status: 200, JSON: map[string]any{"count": "many"}}})
	s := newSession(t, bot, engine.Options{HTTP: mocks})
	res := say(t, s, "go")
	if got := strings.Join(texts(res), " | "); got != "ref  count 0 | small" {
		t.Fatalf("sent %q, want the text with the failed parts empty, then the else branch", got)
	}
	errs := records(res, engine.RecError)
	if len(errs) != 3 {
		t.Fatalf("error records = %v, want 3 (set, missing key, condition)", errs)
	}
	for i, want := range []string{`"vars.data.count + 1"`, `"vars.data.ref"`, `"vars.data.count > 3"`} {
		if errs[i].Flow != "main" || errs[i].Step != "use" || !strings.Contains(errs[i].Detail, want) {
			t.Errorf("error %d = %+v, want flow main, step use, expression %s", i, errs[i], want)
		}
	}
	if !strings.Contains(errs[0].Detail, "bot/flows/main.yaml:18:10") {
		t.Errorf("error %q does not point at the expression's place", errs[0].Detail)
	}
}

// TestCallFailures: a response that is not JSON, or not the variable's
// type, or a non-2xx status goes to on_error.
func TestCallFailures(t *testing.T) {
	bot := loadBot(t, map[string]string{"flows/main.yaml": errorsBot})
	for name, mock := range map[string]flows.MockSpec{
		"not json":     {Status: 200, Body: "<html>oops</html>"},
		"a list":       {Status: 200, JSON: []any{1, 2}},
		"status 500":   {Status: 500},
		"network down": {Error: "connection refused"},
		"timeout":      {Timeout: true},
	} {
		t.Run(name, func(t *testing.T) {
			mock.Method, mock.URL = "GET", "https://api.example/data"
			s := newSession(t, bot, engine.Options{HTTP: dryrun.NewMocks([]flows.MockSpec{mock})})
			res := say(t, s, "go")
			if got := strings.Join(texts(res), " | "); got != "failed" {
				t.Fatalf("sent %q, want the on_error step", got)
			}
			if len(records(res, engine.RecError)) != 1 {
				t.Fatalf("records %v, want one error", res.Records())
			}
		})
	}
}

// TestGotoLoop: steps that route to each other without waiting stop
// cleanly instead of spinning.
func TestGotoLoop(t *testing.T) {
	bot := loadBot(t, map[string]string{"flows/main.yaml": `
flow: main
start: a
triggers: [{ keyword: go }]
steps:
  a: { goto: b }
  b: { goto: a }
`})
	s := newSession(t, bot, engine.Options{})
	res := say(t, s, "go")
	errs := records(res, engine.RecError)
	if len(errs) != 1 || !strings.Contains(errs[0].Detail, "goto loop") {
		t.Fatalf("errors %v, want one about a loop", errs)
	}
	st, _ := s.State(context.Background())
	if st.Flow != "" {
		t.Fatalf("flow %q still running after the loop", st.Flow)
	}
}

// TestDeterministic: the same bot, state, events and clock give the same
// messages, ids included.
func TestDeterministic(t *testing.T) {
	bot, diags := flows.Load("../examples/support")
	if bot == nil {
		t.Fatal(diags.Error())
	}
	run := func() string {
		s := newSession(t, bot, engine.Options{Trace: true})
		ctx := context.Background()
		say(t, s, "help")
		if _, err := s.Say(ctx, engine.Inbound{Type: "interactive", Choice: "billing", Text: "Billing"}); err != nil {
			t.Fatal(err)
		}
		say(t, s, "not an email")
		if err := s.Advance(ctx, 30*time.Hour); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal([]any{s.Sent, s.Records})
		return string(b)
	}
	a, b := run(), run()
	if a != b {
		t.Fatalf("two runs differ:\n%s\n%s", a, b)
	}
	if !strings.Contains(a, "This chat closes in an hour") || !strings.Contains(a, "We did not hear back") {
		t.Fatalf("the run did not reach the nudge and the timeout: %s", a)
	}
}

// TestSameInstantTimers: timers due at the same instant fire in the order
// they were set; here the ask's timeout (set first) wins over the
// window-closing nudge, which then no longer applies.
func TestSameInstantTimers(t *testing.T) {
	bot := loadBot(t, map[string]string{"flows/main.yaml": `
flow: main
start: q
triggers: [{ keyword: go }]
window_closing: { before: 1h, say: "closing soon" }
steps:
  q:
    ask: "Question?"
    timeout: 23h
    on_timeout: gone
    end: true
  gone:
    say: "timed out"
    end: true
`})
	s := newSession(t, bot, engine.Options{})
	say(t, s, "go")
	st, _ := s.State(context.Background())
	if len(st.Timers) != 2 || !st.Timers[0].Due.Equal(st.Timers[1].Due) {
		t.Fatalf("timers %+v, want two due at the same instant", st.Timers)
	}
	if err := s.Advance(context.Background(), 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range s.Sent {
		got = append(got, o.Message.Text)
	}
	if strings.Join(got, "|") != "Question?|timed out" {
		t.Fatalf("sent %q, want the question then the timeout only", got)
	}
}

// TestStartErrors: business-initiated starts check the flow and the
// variables' types.
func TestStartErrors(t *testing.T) {
	bot, diags := flows.Load("../examples/shop")
	if bot == nil {
		t.Fatal(diags.Error())
	}
	e := engine.New(bot, engine.Options{})
	ctx := context.Background()
	st := engine.NewSession("c")
	if _, err := e.Handle(ctx, st, engine.StartIn{Flow: "nope"}, t0); !errors.Is(err, engine.ErrUnknownFlow) {
		t.Errorf("unknown flow: %v", err)
	}
	if _, err := e.Handle(ctx, st, engine.StartIn{Flow: "shipping_update", Vars: map[string]any{"order_id": 5}}, t0); !errors.Is(err, engine.ErrBadVars) {
		t.Errorf("wrong type: %v", err)
	}
	if _, err := e.Handle(ctx, st, engine.StartIn{Flow: "shipping_update", Vars: map[string]any{"nope": "x"}}, t0); !errors.Is(err, engine.ErrBadVars) {
		t.Errorf("unknown var: %v", err)
	}
	if _, err := e.Handle(ctx, st, engine.ReleaseIn{}, t0); !errors.Is(err, engine.ErrNotInHandoff) {
		t.Errorf("release without handoff: %v", err)
	}
}

// TestSecretsRedacted: secrets reach the call but never the records.
func TestSecretsRedacted(t *testing.T) {
	bot := loadBot(t, map[string]string{
		"flowbot.yaml": "secrets: [API_KEY]\n",
		"flows/main.yaml": `
flow: main
start: a
triggers: [{ keyword: go }]
steps:
  a:
    call: { url: "https://api.example/x?key={{ secrets.API_KEY }}", on_error: a_failed }
    end: true
  a_failed: { end: true }
`})
	mocks := dryrun.NewMocks(nil)
	s := newSession(t, bot, engine.Options{HTTP: mocks, Secrets: map[string]string{"API_KEY": "s3cr3t-value"}, Trace: true})
	res := say(t, s, "go")
	if len(mocks.Unmocked) != 1 || !strings.Contains(mocks.Unmocked[0], "key=s3cr3t-value") {
		t.Fatalf("the call did not carry the secret: %v", mocks.Unmocked)
	}
	b, _ := json.Marshal(res.Records())
	if strings.Contains(string(b), "s3cr3t") {
		t.Fatalf("a record shows the secret: %s", b)
	}
	if !strings.Contains(string(b), "key=***") {
		t.Fatalf("records do not show the redacted call: %s", b)
	}
}

// TestStaleState: a state pointing at a step the bot no longer has stops
// cleanly.
func TestStaleState(t *testing.T) {
	bot := loadBot(t, map[string]string{"flows/main.yaml": windowBot, "templates.yaml": windowTemplates})
	e := engine.New(bot, engine.Options{})
	st := engine.NewSession("c")
	st.Flow, st.Step, st.Waiting = "main", "gone", "ask"
	res, err := e.Handle(context.Background(), st, engine.MessageIn{Message: &engine.Inbound{Type: "text", Text: "hi", Timestamp: t0}}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(records(res, engine.RecError)) != 1 || st.Flow != "main" || st.Step != "first" {
		t.Fatalf("records %v, state %s/%s: want an error and a fresh start by trigger", res.Records(), st.Flow, st.Step)
	}
}

// TestPricing checks both pricing models of section 6.
func TestPricing(t *testing.T) {
	flow := `
flow: main
start: a
triggers: [{ keyword: go }]
steps:
  a:
    say: ["one", "two"]
    template: { name: notice }
    end: true
`
	for _, tc := range []struct {
		name, settings string
		want           map[flows.Category]float64
	}{
		{"per message", "pricing: { model: per_message, rates: { utility: 0.01, service: 0.002 } }\n",
			map[flows.Category]float64{flows.Service: 0.004, flows.Utility: 0.01}},
		{"utility free in window", "pricing: { model: per_message, utility_free_in_window: true, rates: { utility: 0.01, service: 0.002 } }\n",
			map[flows.Category]float64{flows.Service: 0.004, flows.Utility: 0}},
		{"conversation", "pricing: { model: conversation, rates: { utility: 0.01, service: 0.002 } }\n",
			map[flows.Category]float64{flows.Service: 0.002, flows.Utility: 0.01}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bot := loadBot(t, map[string]string{"flowbot.yaml": tc.settings, "flows/main.yaml": flow, "templates.yaml": windowTemplates})
			s := newSession(t, bot, engine.Options{})
			say(t, s, "go")
			st, _ := s.State(context.Background())
			for cat, want := range tc.want {
				if got := st.Cost.Of(cat).Amount; abs(got-want) > 1e-12 {
					t.Errorf("%s = %g, want %g", cat, got, want)
				}
			}
		})
	}
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}

// A random split draws its branch from a hash of the contact, the flow
// and the step: by weight over many contacts, and always the same for
// one contact.
func TestRandomSplit(t *testing.T) {
	bot := loadBot(t, map[string]string{"flows/main.yaml": `
flow: main
start: offer
triggers: [{ keyword: hi }]
steps:
  offer:
    random: [ { weight: 70, goto: a }, { weight: 30, goto: b } ]
  a: { say: "offer A", end: true }
  b: { say: "offer B", end: true }
`})
	e := engine.New(bot, engine.Options{})
	count := map[string]int{}
	for i := 0; i < 2000; i++ {
		var got []string
		for round := 0; round < 2; round++ { // the same contact twice: the same branch
			st := engine.NewSession(fmt.Sprintf("1555%07d", i))
			st.LastInbound = t0
			res, err := e.Handle(context.Background(), st, engine.MessageIn{Message: &engine.Inbound{ID: "w", Type: "text", Text: "hi", Timestamp: t0}}, t0)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, res.Outbound[0].Message.Text)
		}
		if got[0] != got[1] {
			t.Fatalf("contact %d took %q, then %q", i, got[0], got[1])
		}
		count[got[0]]++
	}
	if a := count["offer A"]; a < 1300 || a > 1500 {
		t.Errorf("70/30 over 2,000 contacts gave %v", count)
	}
}

// Contact fields (FLOW_SPEC.md 8.1) are typed, written by set and save,
// outlive the flow that wrote them, and the contact's language can be set.
func TestContactFields(t *testing.T) {
	bot := loadBot(t, map[string]string{
		"flowbot.yaml": "contact_fields:\n  email: \"\"\n  vip: false\n  visits: 0\n",
		"flows/a.yaml": `
flow: a
start: ask
triggers: [{ keyword: signup }]
steps:
  ask:
    ask: "Your email?"
    save: contact.fields.email
    goto: count
  count:
    set:
      contact.fields.visits: contact.fields.visits + 1
      contact.fields.vip: 'contact.fields.visits > 0'
      contact.language: '"es"'
    say: "Saved {{ contact.fields.email }}"
    end: true
`,
		"flows/b.yaml": `
flow: b
start: hello
triggers: [{ keyword: again }]
steps:
  hello:
    say: "{{ contact.fields.vip ? 'Welcome back' : 'Hi' }} {{ contact.fields.email }} ({{ contact.fields.visits }}, {{ contact.language }})"
    end: true
`,
	})
	s := newSession(t, bot, engine.Options{})
	say(t, s, "signup")
	if got := texts(say(t, s, "ana@example.com")); len(got) != 1 || got[0] != "Saved ana@example.com" {
		t.Fatalf("after the answer: %q", got)
	}
	if got := texts(say(t, s, "again")); len(got) != 1 || got[0] != "Welcome back ana@example.com (1, es)" {
		t.Fatalf("a later flow reads %q", got)
	}
	st, _ := s.State(context.Background())
	if st.Contact.Fields["email"] != "ana@example.com" || st.Contact.Fields["visits"] != 1 || st.Contact.Fields["vip"] != true || st.Contact.Language != "es" {
		t.Fatalf("stored contact %+v", st.Contact)
	}
}

// Lint types contact fields: an unknown one is an error with "did you
// mean", a write of the wrong type too.
func TestContactFieldsLint(t *testing.T) {
	fsys := fstest.MapFS{
		"flowbot.yaml": {Data: []byte("contact_fields:\n  email: \"\"\n  visits: 0\n")},
		"flows/a.yaml": {Data: []byte("flow: a\nstart: s\ntriggers: [{ keyword: go }]\nsteps:\n  s:\n    say: \"{{ contact.fields.emial }}\"\n    set: { contact.fields.visits: '\"many\"', contact.fields.vist: '1' }\n    end: true\n")},
	}
	lintHas(t, fsys,
		`contact.fields has no field emial (did you mean "email"?)`,
		`set contact.fields.visits: contact field "visits" holds a whole number, but "\"many\"" gives text`,
		`set: undefined contact field "vist" (did you mean "visits"?)`,
	)
}

// Subflows (FLOW_SPEC.md 8.2): a step runs another flow with its own
// variables, and routes on when it ends, reading result; the caller's
// variables are untouched; a keyword that starts another flow leaves the
// whole stack.
func TestSubflows(t *testing.T) {
	bot := loadBot(t, map[string]string{
		"flowbot.yaml": "keywords:\n  - { match: [menu], goto: order }\n",
		"flows/order.yaml": `
flow: order
start: get_email
triggers: [{ keyword: buy }]
vars: { item: "tea", email: "" }
steps:
  get_email:
    subflow: collect_email
    with: { reason: '"your receipt for " + vars.item' }
    on:
      - if: result.email != ""
        goto: thanks
    else: no_email
  thanks:
    say: "Receipt for {{ vars.item }} goes to {{ vars.email }}."
    set: { email: vars.email }
    end: true
  no_email:
    say: "No receipt then."
    end: true
`,
		"flows/collect_email.yaml": `
flow: collect_email
start: ask
vars: { reason: "", email: "" }
steps:
  ask:
    ask: "Your email, for {{ vars.reason }}?"
    save: email
    on:
      - if: 'vars.email contains "@"'
        goto: done
    else: done_without
  done: { end: true }
  done_without:
    set: { email: '""' }
    end: true
`,
	})
	s := newSession(t, bot, engine.Options{})
	ctx := context.Background()
	if got := texts(say(t, s, "buy")); len(got) != 1 || got[0] != "Your email, for your receipt for tea?" {
		t.Fatalf("the subflow asked %q", got)
	}
	st, _ := s.State(ctx)
	if st.Flow != "collect_email" || len(st.Stack) != 1 || st.Stack[0].Flow != "order" || st.Stack[0].Vars["item"] != "tea" {
		t.Fatalf("during the subflow: flow %q, stack %+v", st.Flow, st.Stack)
	}
	// The caller's vars.email is untouched by the subflow's: result carries it.
	if got := texts(say(t, s, "ana@example.com")); len(got) != 1 || got[0] != "Receipt for tea goes to ." {
		t.Fatalf("back in the caller: %q", got)
	}
	if st, _ := s.State(ctx); st.Flow != "" || len(st.Stack) != 0 {
		t.Fatalf("after the caller ended: flow %q, stack %+v", st.Flow, st.Stack)
	}
	say(t, s, "buy")
	if got := texts(say(t, s, "no email")); len(got) != 1 || got[0] != "No receipt then." {
		t.Fatalf("result.email empty: %q", got)
	}
	say(t, s, "buy")
	say(t, s, "menu") // a keyword starting another flow leaves the whole stack
	if st, _ := s.State(ctx); st.Flow != "collect_email" || len(st.Stack) != 1 || st.Stack[0].Flow != "order" {
		t.Fatalf("after the keyword: flow %q, stack %+v", st.Flow, st.Stack)
	}
}

// Lint: flows that call each other in a loop, and a with naming a
// variable the subflow lacks.
func TestSubflowLint(t *testing.T) {
	fsys := fstest.MapFS{
		"flows/a.yaml": {Data: []byte("flow: a\nstart: s\ntriggers: [{ keyword: go }]\nsteps:\n  s: { subflow: b, with: { nme: '1' }, goto: t }\n  t: { say: '{{ result.x }}', end: true }\n")},
		"flows/b.yaml": {Data: []byte("flow: b\nstart: s\nvars: { name: \"\" }\nsteps:\n  s: { subflow: a, end: true }\n")},
	}
	lintHas(t, fsys,
		`with: flow "b" has no variable "nme" (did you mean "name"?)`,
		`subflow "a": flows call each other in a loop (a → b → a)`,
		`in expression "result.x": unknown name result`,
	)
}

// Texts in several languages (FLOW_SPEC.md 8.3): the contact's language
// picks the text (exact, else its base, else the first language), button
// titles too; the ids stay the same.
func TestLanguages(t *testing.T) {
	bot := loadBot(t, map[string]string{
		"flowbot.yaml": "languages: [en, es, pt_BR]\nopt_out: [STOP]\nopt_out_reply: { en: \"Bye\", es: \"Adiós\", pt_BR: \"Tchau\" }\n",
		"flows/a.yaml": `
flow: a
start: s
triggers: [{ keyword: hi }, { keyword: hola }, { keyword: oi }]
steps:
  s:
    ask: { en: "Hi {{ contact.name }}, table for?", es: "Hola {{ contact.name }}, ¿mesa para?", pt_BR: "Oi {{ contact.name }}, mesa para?" }
    buttons:
      - { id: "2", title: { en: "Two", es: "Dos", pt_BR: "Duas" } }
    end: true
`,
	})
	for _, tc := range []struct{ lang, want string }{
		{"es", "Hola Ana, ¿mesa para? [Dos]"},
		{"es_MX", "Hola Ana, ¿mesa para? [Dos]"},
		{"pt_BR", "Oi Ana, mesa para? [Duas]"},
		{"fr", "Hi Ana, table for? [Two]"},
		{"", "Hi Ana, table for? [Two]"},
	} {
		s, err := dryrun.NewSession(context.Background(), engine.New(bot, engine.Options{}), engine.Contact{ID: "c1", Name: "Ana", Language: tc.lang}, t0)
		if err != nil {
			t.Fatal(err)
		}
		res := say(t, s, "hi")
		if got := texts(res); len(got) != 1 || got[0] != tc.want {
			t.Errorf("language %q: %q, want %q", tc.lang, got, tc.want)
		}
		if id := res.Outbound[0].Message.Buttons[0].ID; id != "2" {
			t.Errorf("language %q: button id %q", tc.lang, id)
		}
		if got := texts(say(t, s, "STOP")); tc.lang == "es" && (len(got) != 1 || got[0] != "Adiós") {
			t.Errorf("the opt-out reply in es: %q", got)
		}
	}
}

// Lint: a text lacking a listed language is a warning, a language not
// listed an error, and WhatsApp's limits apply to every language.
func TestLanguagesLint(t *testing.T) {
	fsys := fstest.MapFS{
		"flowbot.yaml": {Data: []byte("languages: [en, es]\n")},
		"flows/a.yaml": {Data: []byte("flow: a\nstart: s\ntriggers: [{ keyword: go }]\nsteps:\n  s:\n    say: { en: \"Hi\" }\n    ask: { en: \"Pick\", es: \"Elige\", fr: \"Choisis\" }\n    buttons: [{ id: a, title: { en: \"A\", es: \"Una opción demasiado larga\" } }]\n    end: true\n")},
	}
	lintHas(t, fsys,
		`warning: the text has no es version: contacts who read es get the en one`,
		`error: language "fr" is not one of the bot's languages (en, es)`,
		`button title "A" is 26 characters, WhatsApp allows 20`,
	)
}

// A call whose answer does not fit the contact field it saves to is an
// error event naming the step, and the flow goes to on_error: no crash.
func TestCallIntoAContactFieldOfAnotherType(t *testing.T) {
	bot := loadBot(t, map[string]string{
		"flowbot.yaml": "contact_fields: { profile: {} }\n",
		"flows/a.yaml": "flow: a\nstart: fetch\ntriggers: [{ keyword: go }]\nsteps:\n  fetch:\n    call: { url: \"https://crm.example/profile\", save: contact.fields.profile, on_error: failed }\n    say: \"saved\"\n    end: true\n  failed:\n    say: \"no profile\"\n    end: true\n",
	})
	mocks := dryrun.NewMocks([]flows.MockSpec{{Method: "GET", URL: "https://crm.example/profile", Status: 200, JSON: []any{"not", "a", "mapping"}}})
	s := newSession(t, bot, engine.Options{HTTP: mocks})
	res := say(t, s, "go")
	if got := texts(res); len(got) != 1 || got[0] != "no profile" {
		t.Fatalf("sent %q, want the on_error step", got)
	}
	errs := records(res, engine.RecError)
	if len(errs) == 0 || errs[0].Step != "fetch" || !strings.Contains(errs[0].Detail, "cannot set contact.fields.profile (data (a mapping)) to a list") {
		t.Fatalf("error events %+v", errs)
	}
}

// lintHas loads a bot and checks that its diagnostics (warnings too)
// include each of wants.
func lintHas(t *testing.T, fsys fstest.MapFS, wants ...string) {
	t.Helper()
	_, diags := flows.LoadFS(fsys, "bot")
	var all []string
	for _, d := range diags {
		all = append(all, d.String())
	}
	got := strings.Join(all, "\n")
	for _, want := range wants {
		if !strings.Contains(got, want) {
			t.Errorf("lint lacks %q:\n%s", want, got)
		}
	}
}
