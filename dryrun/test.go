package dryrun

import (
	"context"
	"fmt"
	"github.com/flowbot/flowbot/engine/conversation"
	"math"
	"reflect"
	"strings"

	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/flows"
)

// DefaultContact is the contact of a test or dry run that names none.
var DefaultContact = engine.Contact{ID: "15550001111", Name: "Tester"}

// Failure is a test step that did not hold.
type Failure struct {
	File    string
	Line    int
	Message string
}

func (f Failure) String() string { return fmt.Sprintf("%s:%d: %s", f.File, f.Line, f.Message) }

// TestResult is the outcome of one conversation test.
type TestResult struct {
	Name    string
	File    string
	Failure *Failure // nil when the test passed; a test stops at its first failure
	Session *Session
}

// Passed reports whether the test held.
func (r *TestResult) Passed() bool { return r.Failure == nil }

// RunTest runs one conversation test. Its `call` requests are answered
// only from its mocks.
func RunTest(ctx context.Context, bot *flows.Bot, t *flows.Test, secrets map[string]string, observe func(*Session)) *TestResult {
	spec := t.Spec
	res := &TestResult{Name: spec.Name, File: t.File}
	mocks := NewMocks(spec.Mocks.HTTP)
	models := NewModelMocks(spec.Mocks.LLM)
	e := engine.New(bot, engine.Options{HTTP: mocks, Model: models, Secrets: secrets, Trace: true, Cover: true})
	contact := DefaultContact
	if c := spec.Contact; c != nil {
		contact = engine.Contact{ID: orDefault(c.ID, contact.ID), Name: c.Name, Language: c.Language, OptedOut: c.OptedOut,
			Fields: engine.CloneVars(c.Fields)}
	}
	fail := func(line int, format string, args ...any) *TestResult {
		res.Failure = &Failure{File: t.File, Line: line, Message: fmt.Sprintf(format, args...)}
		return res
	}
	s, err := NewSession(ctx, e, contact, t.StartAt)
	if err != nil {
		return fail(spec.At.Line, "%v", err)
	}
	res.Session = s
	if observe != nil {
		observe(s)
	}
	if spec.Window == "open" {
		if err := s.Update(ctx, func(st *conversation.Record) { st.LastInbound = t.StartAt }); err != nil {
			return fail(spec.At.Line, "%v", err)
		}
	}
	if spec.Flow != nil {
		firstIsUser := len(spec.Steps) > 0 && spec.Steps[0].User != nil
		if spec.At_ != nil || !firstIsUser {
			step := ""
			if spec.At_ != nil {
				step = spec.At_.Name
			}
			if _, err := s.Start(ctx, spec.Flow.Name, step, spec.Vars); err != nil {
				return fail(spec.At.Line, "starting flow %q: %v", spec.Flow.Name, err)
			}
		} else {
			s.ForceFlow = spec.Flow.Name
			s.ForceVars = spec.Vars
		}
	}
	cursor := 0
	for i := range spec.Steps {
		ts := &spec.Steps[i]
		line := ts.At.Line
		if len(mocks.Unmocked) > 0 {
			return fail(line, "a call had no mock: %s (add it under mocks:)", strings.Join(mocks.Unmocked, ", "))
		}
		if len(models.Unmocked) > 0 {
			return fail(line, "a model call had no mock: %s (add it under mocks: llm:)", strings.Join(models.Unmocked, ", "))
		}
		switch {
		case ts.User != nil:
			in := UserMessage(s, ts.User)
			if _, err := s.Say(ctx, in); err != nil {
				return fail(line, "user: %v", err)
			}
		case ts.Bot != nil:
			if cursor >= len(s.Sent) {
				return fail(line, "bot: expected %s\n    got: nothing (the bot sent no more messages)%s", describeExpect(ts.Bot), s.lastErrors())
			}
			o := s.Sent[cursor]
			cursor++
			if msg := matchBot(ts.Bot, o); msg != "" {
				return fail(line, "bot: %s\n    expected: %s\n    actual:   %s (%s, from %s/%s)", msg, describeExpect(ts.Bot), Describe(o), o.Via, o.Flow, o.Step)
			}
		case ts.Wait != nil:
			if err := s.Advance(ctx, ts.Wait.D); err != nil {
				return fail(line, "wait: %v", err)
			}
		case ts.NoBot != nil:
			if *ts.NoBot && cursor < len(s.Sent) {
				o := s.Sent[cursor]
				return fail(line, "no_bot: expected no more bot messages\n    actual: %s (%s, from %s/%s)", Describe(o), o.Via, o.Flow, o.Step)
			}
		case ts.Expect != nil:
			st, err := s.State(ctx)
			if err != nil {
				return fail(line, "expect: %v", err)
			}
			if msg := matchState(ts.Expect, st, s); msg != "" {
				return fail(line, "expect: %s", msg)
			}
		case ts.Start != nil:
			step := ""
			if ts.Start.Step != nil {
				step = ts.Start.Step.Name
			}
			if _, err := s.Start(ctx, ts.Start.Flow.Name, step, ts.Start.Vars); err != nil {
				return fail(line, "start: %v", err)
			}
		case ts.Release != nil:
			if _, err := s.Release(ctx); err != nil {
				return fail(line, "release: %v", err)
			}
		case ts.Preference != "":
			if _, err := s.Preference(ctx, ts.Preference); err != nil {
				return fail(line, "preference: %v", err)
			}
		case ts.Fail != nil:
			if cursor == 0 {
				return fail(line, "fail: no bot message has been checked yet; fail refers to the last one")
			}
			if err := s.Fail(ctx, s.Sent[cursor-1], *ts.Fail); err != nil {
				return fail(line, "fail: %v", err)
			}
		}
	}
	if len(mocks.Unmocked) > 0 {
		return fail(spec.Steps[len(spec.Steps)-1].At.Line, "a call had no mock: %s (add it under mocks:)", strings.Join(mocks.Unmocked, ", "))
	}
	if len(models.Unmocked) > 0 {
		return fail(spec.Steps[len(spec.Steps)-1].At.Line, "a model call had no mock: %s (add it under mocks: llm:)", strings.Join(models.Unmocked, ", "))
	}
	return res
}

// lastErrors shows the error and undeliverable records, to explain a
// missing message.
func (s *Session) lastErrors() string {
	var b strings.Builder
	for _, r := range s.Records {
		if r.Kind == engine.RecError || r.Kind == engine.RecUndeliverable || r.Kind == engine.RecOptedOut {
			b.WriteString("\n    " + r.String())
		}
	}
	return b.String()
}

// UserMessage builds the contact's message that a test's (or the chat's)
// user spec describes.
func UserMessage(s *Session, u *flows.UserSpec) engine.Inbound {
	in := engine.Inbound{Type: "text", Text: u.Text}
	switch {
	case u.Choice != "":
		in = s.Tap(u.Choice)
		in.Type = "interactive"
	case u.Payload != "":
		in = s.Tap(u.Payload)
		in.Type = "button"
	}
	if u.Text != "" {
		in.Text = u.Text
	}
	in.ID = u.ID
	if u.Type != "" {
		in.Type = u.Type
	}
	if u.Caption != "" {
		in.Media.Caption = u.Caption
		if in.Text == "" {
			in.Text = u.Caption
		}
	}
	if l := u.Location; l != nil {
		in.Type = "location"
		in.Location = flows.LocationEnv{Latitude: l.Latitude, Longitude: l.Longitude, Name: l.Name, Address: l.Address}
	}
	if u.Form != nil || u.FlowToken != "" {
		// The answer to the latest form sent, as WhatsApp delivers it.
		in.Type, in.Choice = "interactive", "flow"
		if u.Text == "" {
			in.Text = "Sent"
		}
		in.Form = map[string]any{}
		for k, v := range u.Form {
			in.Form[k] = flows.NormalizeJSON(v)
		}
		in.FormToken = u.FlowToken
		if in.FormToken == "" {
			in.FormToken = s.FormToken()
		}
	}
	if r := u.Referral; r != nil {
		in.Referral = flows.ReferralEnv{SourceType: r.SourceType, SourceID: r.SourceID, SourceURL: r.SourceURL, Headline: r.Headline, Body: r.Body, CtwaClid: r.CtwaClid}
		if in.Referral.SourceType == "" {
			in.Referral.SourceType = "ad"
		}
	}
	return in
}

func describeExpect(b *flows.BotSpec) string {
	var parts []string
	if b.Text != nil {
		parts = append(parts, fmt.Sprintf("%q", *b.Text))
	}
	if b.Contains != "" {
		parts = append(parts, fmt.Sprintf("a message containing %q", b.Contains))
	}
	if b.Template != "" {
		t := "template " + b.Template
		if p := b.Params; p != nil {
			t += "(" + strings.Join(paramsList(p), ", ") + ")"
		}
		parts = append(parts, t)
	}
	if b.Buttons != nil {
		parts = append(parts, fmt.Sprintf("buttons %q", b.Buttons))
	}
	if b.List != nil {
		parts = append(parts, fmt.Sprintf("list rows %q", b.List))
	}
	if b.Media != "" {
		parts = append(parts, "a "+b.Media+" message")
	}
	return strings.Join(parts, " with ")
}

func paramsList(p *flows.ParamsSpec) []string {
	var out []string
	if p.IsNamed {
		for _, e := range p.Named {
			out = append(out, e.Key+"="+e.Value.Text)
		}
		return out
	}
	for _, s := range p.Positional {
		out = append(out, s.Text)
	}
	return out
}

// matchBot compares an outbound message with a `bot:` expectation; "" when
// it matches, else what differs.
func matchBot(b *flows.BotSpec, o engine.Outbound) string {
	m := o.Message
	if b.Template != "" {
		if m.Kind != "template" {
			return "expected a template, got a session message"
		}
		t := m.Template
		if t.Name != b.Template {
			return fmt.Sprintf("expected template %s, got template %s", b.Template, t.Name)
		}
		if b.Language != "" && t.Language != b.Language {
			return fmt.Sprintf("expected language %s, got %s", b.Language, t.Language)
		}
		if p := b.Params; p != nil {
			if p.IsNamed {
				got := map[string]string{}
				for _, n := range t.Named {
					got[n.Name] = n.Value
				}
				want := map[string]string{}
				for _, e := range p.Named {
					want[e.Key] = e.Value.Text
				}
				if !reflect.DeepEqual(got, want) {
					return fmt.Sprintf("expected params %v, got %v", want, got)
				}
			} else {
				want := paramsList(p)
				if !reflect.DeepEqual(append([]string{}, t.Params...), append([]string{}, want...)) {
					return fmt.Sprintf("expected params %q, got %q", want, t.Params)
				}
			}
		}
	} else if m.Kind == "template" && (b.Text != nil || b.Contains != "" || b.Buttons != nil || b.List != nil) {
		return fmt.Sprintf("expected a session message, got template %s (the window was closed?)", m.Template.Name)
	}
	if b.Text != nil && m.Text != *b.Text {
		return "the text differs"
	}
	if b.Contains != "" && !strings.Contains(m.Text, b.Contains) {
		return fmt.Sprintf("the text does not contain %q", b.Contains)
	}
	if b.Buttons != nil {
		var got []string
		for _, c := range m.Buttons {
			got = append(got, c.Title)
		}
		if !reflect.DeepEqual(got, b.Buttons) {
			return fmt.Sprintf("expected buttons %q, got %q", b.Buttons, got)
		}
	}
	if b.List != nil {
		var got []string
		if m.List != nil {
			for _, s := range m.List.Sections {
				for _, r := range s.Rows {
					got = append(got, r.Title)
				}
			}
		}
		if !reflect.DeepEqual(got, b.List) {
			return fmt.Sprintf("expected list rows %q, got %q", b.List, got)
		}
	}
	if b.Media != "" && m.Kind != b.Media {
		return fmt.Sprintf("expected a %s message, got %s", b.Media, m.Kind)
	}
	if b.Type != "" && m.Kind != b.Type {
		return fmt.Sprintf("expected a %s message, got %s", b.Type, m.Kind)
	}
	if b.Link != "" && (m.Link == nil || m.Link.URL != b.Link) {
		got := "no link"
		if m.Link != nil {
			got = m.Link.URL
		}
		return fmt.Sprintf("expected a link to %s, got %s", b.Link, got)
	}
	return ""
}

// matchState compares the contact's state with an `expect:`.
func matchState(e *flows.ExpectSpec, st *conversation.Record, s *Session) string {
	if r := e.Step; r != nil {
		want := r.Name
		if st.Step != want {
			return fmt.Sprintf("expected step %s, got %s", nullName(want), nullName(st.Step))
		}
	}
	if r := e.Flow; r != nil && st.Flow != r.Name {
		return fmt.Sprintf("expected flow %s, got %s", nullName(r.Name), nullName(st.Flow))
	}
	var wrong []string // every mismatch, not only the first
	for _, k := range flows.SortedKeys(e.Vars) {
		got, ok := st.Vars[k]
		switch {
		case !ok:
			wrong = append(wrong, fmt.Sprintf("expected vars.%s = %s, but it is not set (the contact is in flow %s)", k, flows.FormatValue(e.Vars[k]), nullName(st.Flow)))
		case !equalValue(e.Vars[k], got):
			wrong = append(wrong, fmt.Sprintf("expected vars.%s = %s, got %s", k, quoteIfString(e.Vars[k]), quoteIfString(got)))
		}
	}
	for _, k := range flows.SortedKeys(e.Fields) {
		got, ok := st.Contact.Fields[k]
		if !ok { // never set: the bot's default
			if d := s.Engine.Bot().Settings.ContactField(k); d != nil {
				got = d.Default
			}
		}
		if !equalValue(e.Fields[k], got) {
			wrong = append(wrong, fmt.Sprintf("expected contact.fields.%s = %s, got %s", k, quoteIfString(e.Fields[k]), quoteIfString(got)))
		}
	}
	if len(wrong) > 0 {
		return strings.Join(wrong, "\n    ")
	}
	if e.Window != "" {
		open := st.WindowOpen(s.Now)
		got := "closed"
		if open {
			got = "open, closes in " + flows.FormatDuration(st.WindowExpires().Sub(s.Now))
		}
		if (e.Window == "open") != open {
			return fmt.Sprintf("expected the window %s, got %s", e.Window, got)
		}
	}
	for k, want := range e.Cost {
		var got float64
		switch k {
		case "total":
			got = st.Cost.Total()
		case "llm":
			got = st.Cost.LLM.Amount
		default:
			got = st.Cost.Of(flows.Category(k)).Amount
		}
		if math.Abs(got-want) > 1e-9 {
			return fmt.Sprintf("expected cost %s = %g, got %g (%s)", k, want, got, CostSummary(s.Engine.Bot().Settings.Pricing, st.Cost))
		}
	}
	if e.MarketingOptedOut != nil && st.Contact.MarketingOptedOut != *e.MarketingOptedOut {
		return fmt.Sprintf("expected marketing_opted_out %t, got %t", *e.MarketingOptedOut, st.Contact.MarketingOptedOut)
	}
	if e.OptedOut != nil && st.Contact.OptedOut != *e.OptedOut {
		return fmt.Sprintf("expected opted_out %t, got %t", *e.OptedOut, st.Contact.OptedOut)
	}
	if r := e.Handoff; r != nil {
		got := ""
		if st.Handoff != nil {
			got = st.Handoff.Queue
		}
		if got != r.Name {
			return fmt.Sprintf("expected handoff %s, got %s", nullName(r.Name), nullName(got))
		}
	}
	for _, kind := range e.Events {
		found := false
		for _, r := range s.Records {
			found = found || r.Kind == kind
		}
		if !found {
			var kinds []string
			for _, r := range s.Records {
				if r.Kind != engine.RecStep && r.Kind != engine.RecCondition && !contains(kinds, r.Kind) {
					kinds = append(kinds, r.Kind)
				}
			}
			return fmt.Sprintf("expected a %s event, got only %s", kind, strings.Join(kinds, ", "))
		}
	}
	return ""
}

func contains(l []string, s string) bool {
	for _, e := range l {
		if e == s {
			return true
		}
	}
	return false
}

func nullName(s string) string {
	if s == "" {
		return "null"
	}
	return s
}

func quoteIfString(v any) string {
	if s, ok := v.(string); ok {
		return fmt.Sprintf("%q", s)
	}
	return flows.FormatValue(v)
}

// equalValue compares a test's YAML value with a state value: numbers by
// value, whatever their Go type.
func equalValue(want, got any) bool {
	switch w := want.(type) {
	case int:
		return numEqual(float64(w), got)
	case float64:
		return numEqual(w, got)
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for k, v := range w {
			if !equalValue(v, g[k]) {
				return false
			}
		}
		return true
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for i := range w {
			if !equalValue(w[i], g[i]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(want, got)
}

func numEqual(w float64, got any) bool {
	switch g := got.(type) {
	case int:
		return float64(g) == w
	case int64:
		return float64(g) == w
	case float64:
		return g == w
	}
	return false
}

// CostSummary renders a conversation's cost by category.
func CostSummary(p flows.Pricing, c engine.Cost) string {
	var parts []string
	for _, cat := range flows.Categories {
		if cc := c.Of(cat); cc.Messages > 0 {
			parts = append(parts, fmt.Sprintf("%s %.4f", cat, cc.Amount))
		}
	}
	if len(parts) == 0 {
		parts = append(parts, "nothing charged")
	}
	out := fmt.Sprintf("%s, %s: %s; total %.4f %s", strings.ReplaceAll(p.Model, "_", "-"), p.Currency, strings.Join(parts, ", "), c.Total(), p.Currency)
	if m := c.LLM; m.Calls > 0 {
		out += fmt.Sprintf("; model calls %d (%d tokens) %.6f %s", m.Calls, m.Tokens, m.Amount, p.Currency)
	}
	return out
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
