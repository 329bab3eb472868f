package flows

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Conversation tests (FLOW_SPEC.md section 7): the spec types, and their
// loading and checking against the bot.

// TestSpec is one file of tests/.
type TestSpec struct {
	At      Pos
	Name    string         `yaml:"name" flowbot:"required"`
	Flow    *Ref           `yaml:"flow"`
	Contact *ContactSpec   `yaml:"contact"`
	StartAt string         `yaml:"start_at"`
	Mocks   MocksSpec      `yaml:"mocks"`
	At_     *Ref           `yaml:"at"`
	Vars    map[string]any `yaml:"vars"`
	Window  string         `yaml:"window"`
	Steps   []TestStep     `yaml:"steps" flowbot:"required"`
}

// ContactSpec is the test's contact.
type ContactSpec struct {
	At       Pos
	ID       string `yaml:"id"`
	Name     string `yaml:"name"`
	Language string `yaml:"language"`
	OptedOut bool   `yaml:"opted_out"`
	// Fields are contact fields set before the test.
	Fields map[string]any `yaml:"fields"`
}

// MockSpec answers a `call` in tests and `run --mocks`.
type MockSpec struct {
	At      Pos
	Method  string            `yaml:"method"`
	URL     string            `yaml:"url" flowbot:"required"`
	Status  int               `yaml:"status"`
	JSON    any               `yaml:"json"`
	Body    string            `yaml:"body"`
	Headers map[string]string `yaml:"headers"`
	Error   string            `yaml:"error"`
	Timeout bool              `yaml:"timeout"`
}

// MocksSpec is a test's mocks: a list of HTTP mocks, or a mapping
// {http: [...], llm: [...]} that also answers the language model's calls.
type MocksSpec struct {
	At   Pos
	HTTP []MockSpec    `yaml:"http" doc:"answers to call steps' requests"`
	LLM  []LLMMockSpec `yaml:"llm" doc:"answers to classify and extract steps' model calls: [{step, text, intent, confidence, extract, error}]"`
}

func (m *MocksSpec) decodeNode(d *decoder, n *yaml.Node) {
	m.At = posOf(n)
	if n.Kind == yaml.SequenceNode {
		d.decode(n, reflectValue(&m.HTTP))
		return
	}
	type plain MocksSpec
	var p plain
	d.decodeStruct(n, reflectValue(&p))
	*m = MocksSpec(p)
	m.At = posOf(n)
}

// MocksFile is the file `flowbot run --mocks` reads.
type MocksFile struct {
	At    Pos
	Mocks MocksSpec `yaml:"mocks" flowbot:"required"`
}

// TestStep is one step of a conversation test: exactly one key.
type TestStep struct {
	At     Pos
	User   *UserSpec   `yaml:"user"`
	Bot    *BotSpec    `yaml:"bot"`
	Wait   *Duration   `yaml:"wait"`
	Expect *ExpectSpec `yaml:"expect"`
	NoBot  *bool       `yaml:"no_bot"`
	// Added forms: a business-initiated start, an agent's release of a
	// handoff, and WhatsApp refusing the last message with an error code.
	Start   *StartSpec `yaml:"start"`
	Release *bool      `yaml:"release"`
	Fail    *int       `yaml:"fail"`
	// Preference: the contact stops or resumes marketing messages in
	// WhatsApp (user_preferences).
	Preference string `yaml:"preference" enum:"preference"`
}

// UserSpec is what the contact sends: text, or a tapped choice.
type UserSpec struct {
	At       Pos
	Text     string       `yaml:"text"`
	Choice   string       `yaml:"choice"`
	Payload  string       `yaml:"payload"`
	Type     string       `yaml:"type"`
	Caption  string       `yaml:"caption"`
	Location *LocationSet `yaml:"location"`
	// Form answers the latest form sent (its response_json);
	// FlowToken overrides the token the answer carries.
	Form      map[string]any `yaml:"form"`
	FlowToken string         `yaml:"flow_token"`
	Referral  *ReferralSpec  `yaml:"referral"`
	// ID is the message's WhatsApp id (wamid): the same id twice is one
	// message, applied once, as serve does with a redelivered webhook.
	ID     string `yaml:"id"`
	isText bool
}

// ReferralSpec is the ad or Page button a test message came from.
type ReferralSpec struct {
	At         Pos
	SourceType string `yaml:"source_type"`
	SourceID   string `yaml:"source_id"`
	SourceURL  string `yaml:"source_url"`
	Headline   string `yaml:"headline"`
	Body       string `yaml:"body"`
	CtwaClid   string `yaml:"ctwa_clid"`
}

// Check says what is wrong with a location's coordinates, nil when
// nothing is.
func (l *LocationSet) Check() error {
	if l.Latitude < -90 || l.Latitude > 90 || l.Longitude < -180 || l.Longitude > 180 {
		return errors.New("a location's latitude is -90..90 and its longitude -180..180")
	}
	return nil
}

// LocationSet is a shared location in a test.
type LocationSet struct {
	At        Pos
	Latitude  float64 `yaml:"latitude"`
	Longitude float64 `yaml:"longitude"`
	Name      string  `yaml:"name"`
	Address   string  `yaml:"address"`
}

func (u *UserSpec) decodeNode(d *decoder, n *yaml.Node) {
	u.At = posOf(n)
	if n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
		u.Text, u.isText = n.Value, true
		return
	}
	type plain UserSpec
	var p plain
	d.decodeStruct(n, reflectValue(&p))
	*u = UserSpec(p)
}

// BotSpec is what the next outbound message must be.
type BotSpec struct {
	At       Pos
	Text     *string     `yaml:"text"`
	Contains string      `yaml:"contains"`
	Buttons  []string    `yaml:"buttons"`
	List     []string    `yaml:"list"`
	Template string      `yaml:"template"`
	Params   *ParamsSpec `yaml:"params"`
	Language string      `yaml:"language"`
	Media    string      `yaml:"media"`
	// Type is the message's kind: text, buttons, list, template, image
	// ..., link, form, location_request, reaction.
	Type string `yaml:"type" enum:"message_kind"`
	// Link is a link message's URL.
	Link string `yaml:"link"`
}

func (b *BotSpec) decodeNode(d *decoder, n *yaml.Node) {
	b.At = posOf(n)
	if n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
		s := n.Value
		b.Text = &s
		return
	}
	type plain BotSpec
	var p plain
	d.decodeStruct(n, reflectValue(&p))
	*b = BotSpec(p)
}

// ExpectSpec checks the contact's state.
type ExpectSpec struct {
	At       Pos
	Step     *NullableRef       `yaml:"step"`
	Flow     *NullableRef       `yaml:"flow"`
	Vars     map[string]any     `yaml:"vars"`
	Window   string             `yaml:"window"`
	Cost     map[string]float64 `yaml:"cost"`
	OptedOut *bool              `yaml:"opted_out"`
	// MarketingOptedOut: the contact stopped marketing messages in
	// WhatsApp.
	MarketingOptedOut *bool          `yaml:"marketing_opted_out"`
	Handoff           *NullableRef   `yaml:"handoff"`
	Events            []string       `yaml:"events"`
	Fields            map[string]any `yaml:"fields"`
}

// NullableRef is a name, or null for "none".
type NullableRef struct {
	At   Pos
	Name string
	Null bool
}

// takesNull says that a null is a value of its own here ("none"), not
// the key left out.
func (*NullableRef) takesNull() {}

func (r *NullableRef) decodeNode(d *decoder, n *yaml.Node) {
	r.At = posOf(n)
	if n.Kind != yaml.ScalarNode {
		d.errorf(posOf(n), "expected a name or null, got %s", kindName(n))
		return
	}
	if n.Tag == "!!null" {
		r.Null = true
		return
	}
	r.Name = n.Value
}

// StartSpec starts a flow from outside in a test.
type StartSpec struct {
	At   Pos
	Flow Ref            `yaml:"flow" flowbot:"required"`
	Step *Ref           `yaml:"step"`
	Vars map[string]any `yaml:"vars"`
}

// Test is a loaded conversation test.
type Test struct {
	File    string
	Spec    *TestSpec
	StartAt time.Time
}

// DefaultTestStart is the virtual clock's start when a test gives none.
var DefaultTestStart = time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)

// LoadTests reads every tests/*.yaml of a bot and checks it against the
// bot.
func LoadTests(fsys fs.FS, name string, bot *Bot) ([]*Test, Diagnostics) {
	var diags Diagnostics
	files, _ := fs.Glob(fsys, "tests/*.yaml")
	more, _ := fs.Glob(fsys, "tests/*.yml")
	files = append(files, more...)
	sort.Strings(files)
	var out []*Test
	for _, rel := range files {
		src, err := fs.ReadFile(fsys, rel)
		if err != nil {
			diags = append(diags, Diagnostic{File: filepath.Join(name, rel), Severity: SevError, Message: fmt.Sprintf("cannot read: %v", err)})
			continue
		}
		if t := ParseTest(filepath.Join(name, rel), src, bot, &diags); t != nil {
			out = append(out, t)
		}
	}
	diags = append(diags, unmockedModelSteps(bot, out)...)
	diags.Sort()
	return out, diags
}

// unmockedModelSteps warns of each classify or extract step that no test
// mocks: the tests never walk what the model would answer there.
func unmockedModelSteps(bot *Bot, tests []*Test) Diagnostics {
	if bot == nil {
		return nil
	}
	mocked := map[string]bool{}
	for _, t := range tests {
		for _, m := range t.Spec.Mocks.LLM {
			mocked[m.Step] = true
		}
	}
	var out Diagnostics
	for _, f := range bot.Flows {
		for _, name := range f.StepOrder {
			s := f.Steps[name]
			if s.Ask == nil || mocked[name] {
				continue
			}
			at := s.At
			switch {
			case s.Ask.Classify != nil:
				at = s.Ask.Classify.At
			case len(s.Ask.Extract) > 0:
				at = s.Ask.Extract[0].At
			default:
				continue
			}
			out = append(out, Diagnostic{File: f.File, Pos: at, Severity: SevWarning,
				Message: fmt.Sprintf("step %q asks the model, and no test mocks it: add a test with mocks: { llm: [ { step: %s, ... } ] }", name, name)})
		}
	}
	return out
}

// ParseTest reads one test file; nil when it has errors.
func ParseTest(file string, src []byte, bot *Bot, diags *Diagnostics) *Test {
	before := diags.Errors()
	root := parseYAML(file, src, diags)
	if root == nil {
		return nil
	}
	d := newDecoder(file, src, diags)
	spec := new(TestSpec)
	d.decode(root, reflectValue(spec))
	r := d.reporter
	t := &Test{File: file, Spec: spec, StartAt: DefaultTestStart}
	if spec.StartAt != "" {
		at, err := time.Parse(time.RFC3339, spec.StartAt)
		if err != nil {
			r.errorf(spec.At, "start_at: expected a time like 2026-11-21T09:00:00Z, got %q", spec.StartAt)
		}
		t.StartAt = at
	}
	var flow *Flow
	if spec.Flow != nil {
		if flow = bot.Flow(spec.Flow.Name); flow == nil {
			r.errorf(spec.Flow.At, "undefined flow %q%s", spec.Flow.Name, suggest(spec.Flow.Name, flowIDs(bot)))
		}
	}
	if spec.At_ != nil {
		switch {
		case spec.Flow == nil:
			r.errorf(spec.At_.At, "at needs flow: the flow to start in")
		case flow != nil && flow.Steps[spec.At_.Name] == nil:
			r.errorf(spec.At_.At, "undefined step %q in flow %q%s", spec.At_.Name, flow.ID, suggest(spec.At_.Name, flow.StepOrder))
		}
	}
	if len(spec.Vars) > 0 && flow != nil {
		checkTestVars(r, spec.At, flow, spec.Vars)
	}
	if c := spec.Contact; c != nil {
		checkTestFields(r, c.At, bot, c.Fields)
	}
	switch spec.Window {
	case "", "open", "closed":
	default:
		r.errorf(spec.At, "window: expected open or closed, got %q", spec.Window)
	}
	for i := range spec.Mocks.HTTP {
		checkMock(r, &spec.Mocks.HTTP[i])
	}
	for i := range spec.Mocks.LLM {
		checkLLMMock(r, bot, flow, &spec.Mocks.LLM[i])
	}
	for i := range spec.Steps {
		checkTestStep(r, bot, &spec.Steps[i])
	}
	if diags.Errors() > before {
		return nil
	}
	return t
}

// ParseMocks reads a `flowbot run --mocks` file: a list of mocks, a
// mapping with mocks:, or a conversation test (its mocks).
func ParseMocks(file string, src []byte) (MocksSpec, Diagnostics) {
	var diags Diagnostics
	root := parseYAML(file, src, &diags)
	if root == nil {
		return MocksSpec{}, diags
	}
	d := newDecoder(file, src, &diags)
	var mocks MocksSpec
	if root.Kind == yaml.SequenceNode {
		d.decode(root, reflectValue(&mocks.HTTP))
	} else if hasKey(root, "steps") {
		// A conversation test: its mocks, so that they are not written
		// twice.
		var t TestSpec
		d.decode(root, reflectValue(&t))
		mocks = t.Mocks
	} else {
		var mf MocksFile
		d.decode(root, reflectValue(&mf))
		mocks = mf.Mocks
	}
	for i := range mocks.HTTP {
		checkMock(d.reporter, &mocks.HTTP[i])
	}
	for i := range mocks.LLM {
		checkLLMMock(d.reporter, nil, nil, &mocks.LLM[i])
	}
	return mocks, diags
}

func checkMock(r reporter, m *MockSpec) {
	if m.Method == "" {
		m.Method = "GET"
	}
	m.Method = strings.ToUpper(m.Method)
	if m.Status == 0 {
		m.Status = 200
	}
	if m.Status < 100 || m.Status > 599 {
		r.errorf(m.At, "mock status %d is not an HTTP status", m.Status)
	}
	if m.JSON != nil && m.Body != "" {
		r.errorf(m.At, "a mock has json or body, not both")
	}
}

func flowIDs(bot *Bot) []string {
	var ids []string
	for _, f := range bot.Flows {
		ids = append(ids, f.ID)
	}
	return ids
}

func checkTestVars(r reporter, at Pos, f *Flow, vars map[string]any) {
	names := make([]string, 0, len(f.Vars))
	for _, v := range f.Vars {
		names = append(names, v.Name)
	}
	for _, k := range SortedKeys(vars) {
		if !contains(names, k) {
			r.errorf(at, "vars: flow %q has no variable %q%s", f.ID, k, suggest(k, names))
		}
	}
}

// checkTestFields checks that contact fields a test names are declared,
// with values of their types.
func checkTestFields(r reporter, at Pos, bot *Bot, fields map[string]any) {
	var names []string
	for _, f := range bot.Settings.ContactFields {
		names = append(names, f.Name)
	}
	for _, k := range SortedKeys(fields) {
		d := bot.Settings.ContactField(k)
		switch {
		case d == nil:
			r.errorf(at, "fields: the bot has no contact field %q%s", k, suggest(k, names))
		case !SameKind(d.Default, fields[k]):
			r.errorf(at, "fields: contact field %q holds %s, got %s", k, KindOf(d.Default), KindOf(fields[k]))
		}
	}
}

func checkTestStep(r reporter, bot *Bot, s *TestStep) {
	n := 0
	for _, set := range []bool{s.User != nil, s.Bot != nil, s.Wait != nil, s.Expect != nil, s.NoBot != nil, s.Start != nil, s.Release != nil, s.Fail != nil, s.Preference != ""} {
		if set {
			n++
		}
	}
	if n != 1 {
		if n == 0 && r.erredAt(s.At) {
			return // its unknown key was reported: one mistake, one diagnostic
		}
		r.errorf(s.At, "a test step has exactly one of user, bot, wait, expect, no_bot, start, release, fail, preference")
		return
	}
	if s.Preference != "" && !contains(Enums["preference"], s.Preference) {
		r.errorf(s.At, "preference is stop or resume (marketing messages), got %q", s.Preference)
	}
	switch {
	case s.User != nil:
		u := s.User
		if !u.isText && u.Text == "" && u.Choice == "" && u.Payload == "" && u.Type == "" && u.Location == nil && u.Form == nil && u.FlowToken == "" {
			r.errorf(u.At, "user: give text, choice, payload, location, form, or a type")
		}
	case s.Bot != nil:
		b := s.Bot
		if b.Type != "" && !contains(Enums["message_kind"], b.Type) {
			r.errorf(b.At, "bot: type is one of %s, got %q", strings.Join(Enums["message_kind"], ", "), b.Type)
		}
		if b.Template != "" {
			if bot.Templates[b.Template] == nil {
				r.errorf(b.At, "bot: undefined template %q", b.Template)
			}
		} else if b.Params != nil {
			r.errorf(b.At, "bot: params belongs to template")
		}
	case s.Expect != nil:
		e := s.Expect
		switch e.Window {
		case "", "open", "closed":
		default:
			r.errorf(e.At, "expect.window: expected open or closed, got %q", e.Window)
		}
		for k := range e.Cost {
			if !contains([]string{"marketing", "utility", "authentication", "service", "total", "llm"}, k) {
				r.errorf(e.At, "expect.cost: unknown category %q (expected marketing, utility, authentication, service, total or llm: the model calls)", k)
			}
		}
		checkTestFields(r, e.At, bot, e.Fields)
		for _, k := range e.Events {
			if !contains(EventKinds, k) {
				r.errorf(e.At, "expect.events: unknown event kind %q%s", k, suggest(k, EventKinds))
			}
		}
	case s.Start != nil:
		f := bot.Flow(s.Start.Flow.Name)
		if f == nil {
			r.errorf(s.Start.Flow.At, "start: undefined flow %q%s", s.Start.Flow.Name, suggest(s.Start.Flow.Name, flowIDs(bot)))
			return
		}
		if s.Start.Step != nil && f.Steps[s.Start.Step.Name] == nil {
			r.errorf(s.Start.Step.At, "start: undefined step %q in flow %q", s.Start.Step.Name, f.ID)
		}
		checkTestVars(r, s.Start.At, f, s.Start.Vars)
	}
}

// hasKey reports whether a mapping node has the key.
func hasKey(n *yaml.Node, key string) bool {
	for i := 0; n.Kind == yaml.MappingNode && i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return true
		}
	}
	return false
}

// SortedKeys lists a map's keys in order.
func SortedKeys[K ~string, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// checkLLMMock checks a model mock against the bot: its step classifies or
// extracts (in the test's flow, or any), its intent is one of the step's,
// its fields the step's.
func checkLLMMock(r reporter, bot *Bot, flow *Flow, m *LLMMockSpec) {
	answers := 0
	for _, set := range []bool{m.Intent != "", m.Extract != nil, m.Error != ""} {
		if set {
			answers++
		}
	}
	if answers != 1 {
		r.errorf(m.At, "an llm mock answers with one of intent, extract or error (%s)", m)
	}
	if m.Confidence != nil && (*m.Confidence < 0 || *m.Confidence > 1) {
		r.errorf(m.At, "an llm mock's confidence is between 0 and 1, got %g", *m.Confidence)
	}
	if bot == nil {
		return
	}
	var step *Step
	var names []string
	for _, f := range bot.Flows {
		if flow != nil && f != flow {
			continue
		}
		for _, name := range f.StepOrder {
			s := f.Steps[name]
			if s.Ask == nil || s.Ask.Classify == nil && s.Ask.Extract == nil {
				continue
			}
			names = append(names, name)
			if name == m.Step {
				step = s
			}
		}
	}
	if step == nil {
		r.errorf(m.At, "llm mock: no classify or extract step %q%s", m.Step, suggest(m.Step, names))
		return
	}
	if cl := step.Ask.Classify; cl != nil {
		if m.Extract != nil {
			r.errorf(m.At, "llm mock: step %q classifies: answer with intent, not extract", m.Step)
		}
		if m.Intent != "" && !contains(cl.Names(), m.Intent) {
			r.errorf(m.At, "llm mock: step %q has no intent %q (its intents: %s)", m.Step, m.Intent, strings.Join(cl.Names(), ", "))
		}
		return
	}
	if m.Intent != "" {
		r.errorf(m.At, "llm mock: step %q extracts: answer with extract, not intent", m.Step)
	}
	for k := range m.Extract {
		found := false
		for _, f := range step.Ask.Extract {
			found = found || f.Name == k
		}
		if !found {
			r.errorf(m.At, "llm mock: step %q extracts no field %q", m.Step, k)
		}
	}
}
