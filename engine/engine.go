// Package engine runs one state machine per contact over a compiled bot.
// Handle is deterministic: given the same bot, state, event and clock it
// produces the same messages. The clock, HTTP calls and ids come in from
// outside, so dry runs and production run the very same code. The window
// rule (FLOW_SPEC.md section 4) lives here and only here.
package engine

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/flowbot/flowbot/actions"
	"github.com/flowbot/flowbot/flows"
)

// maxHops bounds the steps one event may run without waiting, so that a
// goto loop cannot spin forever.
const maxHops = 100

// Input is one input to the engine, what happened to the contact: one of
// MessageIn, TimerIn, ReleaseIn, StartIn, WindowClosedIn, PreferenceIn,
// AgentIn, each with what that kind carries and nothing else.
type Input interface{ input() }

// MessageIn is a message from the contact; ForceFlow starts that flow
// (with Vars over its defaults) instead of matching triggers when the
// contact is in no flow (tests, `run --flow`).
type MessageIn struct {
	Message   *Inbound
	ForceFlow string
	Vars      map[string]any
}

// TimerIn is a durable timer falling due.
type TimerIn struct{ ID string }

// ReleaseIn ends a handoff.
type ReleaseIn struct{}

// StartIn starts a flow from outside (business-initiated): the flow, the
// step to start in ("" for the flow's start) and variables over the
// defaults.
type StartIn struct {
	Flow, Step string
	Vars       map[string]any
}

// WindowClosedIn is WhatsApp refusing a free-form message because the
// window is closed after all (the host knows the channel's code for it):
// the step's fallback template goes out instead.
type WindowClosedIn struct{ Outbound *Outbound }

// PreferenceIn: the contact stopped or resumed marketing messages in
// WhatsApp (user_preferences): "stop" or "resume".
type PreferenceIn struct{ Value string }

// AgentIn is an agent's message to the contact, free-form or a template;
// Forced: written outside a handoff on purpose.
type AgentIn struct {
	Message *actions.Message
	Forced  bool
}

func (MessageIn) input()      {}
func (TimerIn) input()        {}
func (ReleaseIn) input()      {}
func (StartIn) input()        {}
func (WindowClosedIn) input() {}
func (PreferenceIn) input()   {}
func (AgentIn) input()        {}

// Inbound is a message from the contact, already parsed from the channel.
type Inbound struct {
	ID       string
	Type     string // text, interactive, button, image ...
	Text     string
	Choice   string
	Media    flows.MediaEnv
	Location flows.LocationEnv
	// Form is a WhatsApp Flow's answer (response_json without its
	// flow_token, which is FormToken); nil for other messages.
	Form      map[string]any
	FormToken string
	Referral  flows.ReferralEnv
	Order     flows.OrderEnv
	// ReactionTo is the message a reaction is on.
	ReactionTo string
	Name       string // the profile name, when the channel gives it
	// WaID, UserID (the business-scoped user id) and Username are who
	// sent it, as far as the webhook says.
	WaID, UserID, Username string
	// Context is what the message replies to; Contacts the cards a
	// contacts message shares.
	Context  flows.ContextEnv
	Contacts []any
	// PreviousID is the contact's id before a system message said it
	// changed (user_changed_number, user_changed_user_id): the
	// conversation under it continues under the new one.
	PreviousID string
	Timestamp  time.Time
}

// Choice is something the contact can tap: an id and its label.
type Choice struct {
	ID    string
	Title string
}

// Via is how a message went out.
type Via string

const (
	ViaSession  Via = "session"
	ViaTemplate Via = "template"
)

// Outbound is a message the engine decided to send.
type Outbound struct {
	ID      string          `json:"id"`
	To      string          `json:"to"`
	Via     Via             `json:"via"`
	Message actions.Message `json:"message"`
	Flow    string          `json:"flow,omitempty"`
	Step    string          `json:"step,omitempty"`
	Batch   int64           `json:"batch,omitempty"`
	At      time.Time       `json:"at"`
	// Fallback is true for a template sent in place of free-form messages.
	Fallback bool `json:"fallback,omitempty"`
	// Cost is what this message adds to the conversation's cost.
	Cost     float64        `json:"cost,omitempty"`
	Category flows.Category `json:"category,omitempty"`
	// Agent: an agent wrote it (POST /api/contacts/{id}/messages).
	Agent bool `json:"agent,omitempty"`
	// Refused says why WhatsApp would refuse the message as rendered (an
	// empty template parameter, a one-time code to a user id): it is
	// never handed to WhatsApp, and leaves the outbox as failed with
	// this code and reason.
	Refused *Refusal `json:"refused,omitempty"`
}

// Refusal is why a message is not sent: WhatsApp's code for it, and the
// reason in the designer's terms.
type Refusal struct {
	Code int    `json:"code"`
	Why  string `json:"why"`
}

// Record kinds: what the engine did, for the contact's event log and for
// traces. The trace kinds are kept only when tracing.
const (
	RecInbound       = "inbound"
	RecFlowStart     = "flow_start"
	RecFlowEnd       = "flow_end"
	RecStep          = "step"      // trace
	RecEdge          = "edge"      // coverage: an edge taken
	RecCondition     = "condition" // trace
	RecSet           = "set"       // trace
	RecCall          = "call"      // trace
	RecSent          = "sent"
	RecFallback      = "template_fallback"
	RecUndeliverable = "undeliverable"
	RecOptedOut      = "opted_out"
	RecOptOut        = "opt_out"
	RecOptIn         = "opt_in"
	RecHandoff       = "handoff"
	RecReleased      = "released"
	RecAgent         = "agent"
	RecTimer         = "timer"
	RecIgnored       = "ignored"
	RecUnmatched     = "unmatched"
	RecRetry         = "retry"
	RecError         = "error"
	RecWarning       = "warning"              // something was changed to make it deliverable (a text cut to WhatsApp's limit)
	RecStatus        = "status"               // a delivery status for a message not in the recent history
	RecFreeEntry     = "free_entry_point"     // an answer to an ad's message opened a 72-hour free entry point
	RecUnavailable   = "template_unavailable" // the template is paused, disabled or rejected: not sent, the flow stopped
	RecGoal          = "goal"                 // the flow reached a step marked goal: true (a conversion)
	RecModel         = "model"                // a classify or extract step asked the language model (or its keywords answered)
	RecSkipped       = "skipped_after_fallback"
)

// Record is one entry of what the engine did.
type Record struct {
	At     time.Time `json:"at"`
	Kind   string    `json:"kind"`
	Flow   string    `json:"flow,omitempty"`
	Step   string    `json:"step,omitempty"`
	Detail string    `json:"detail,omitempty"`
}

func (r Record) String() string {
	where := r.Flow
	if r.Step != "" {
		where += "/" + r.Step
	}
	if where != "" {
		return fmt.Sprintf("%s %s: %s", r.Kind, where, r.Detail)
	}
	return fmt.Sprintf("%s: %s", r.Kind, r.Detail)
}

// Result is what handling one input produced: the messages to send, the
// events (typed), and the events as the log shows them.
type Result struct {
	Outbound []Outbound
	Events   []Event
	// Trace and Cover say which of Events the log shows (Records): the
	// steps entered and conditions (tracing), the edges taken (coverage).
	Trace, Cover bool
}

// Records are the events as the contact's log, transcripts and traces
// show them: each event's record, but steps entered only when tracing or
// covering and edges taken only when covering (they are the analytics'
// facts either way).
func (r *Result) Records() []Record {
	out := make([]Record, 0, len(r.Events))
	for _, e := range r.Events {
		if Shown(e, r.Trace, r.Cover) {
			out = append(out, e.Record())
		}
	}
	return out
}

// Shown reports whether an event has a place in the log: steps entered
// when tracing or covering, edges taken when covering, any other event
// always.
func Shown(e Event, trace, cover bool) bool {
	switch e.(type) {
	case StepEntered:
		return trace || cover
	case EdgeTaken:
		return cover
	}
	return true
}

// Options configure an engine.
type Options struct {
	// HTTP answers `call` steps; nil uses a client with the call's
	// timeout.
	HTTP actions.Doer
	// Secrets are the values of flowbot.yaml's secrets.
	Secrets map[string]string
	// Trace keeps step, condition and set records.
	Trace bool
	// Cover records each step entered and each edge taken (tests'
	// --cover); the events are made either way (the analytics).
	Cover bool
	// Model answers classify and extract steps (FLOW_SPEC.md 9.2): the
	// configured language model, or a test's mocks; nil fails each call
	// to the step's on_error.
	Model actions.Model
	// Live is the templates' live states (the account's events): a
	// paused template is not sent, and a new category prices it. nil
	// when nothing follows the account (dry runs, tests).
	Live *Live
}

// Engine runs a bot. It is safe for concurrent use on different states.
type Engine struct {
	bot     *flows.Bot
	opts    Options
	steps   map[*flows.Step][]actions.Action
	secrets map[string]any
	redact  *strings.Replacer
}

// New prepares an engine for a bot: every step's actions are built once.
func New(bot *flows.Bot, opts Options) *Engine {
	if opts.HTTP == nil {
		opts.HTTP = http.DefaultClient
	}
	e := &Engine{bot: bot, opts: opts, steps: map[*flows.Step][]actions.Action{}, secrets: map[string]any{}}
	for _, f := range bot.Flows {
		for _, s := range f.Steps {
			e.steps[s] = actions.Build(s)
		}
	}
	var pairs []string
	for _, name := range bot.Settings.Secrets {
		v := opts.Secrets[name]
		e.secrets[name] = v
		if len(v) >= 4 {
			pairs = append(pairs, v, "***")
		}
	}
	e.redact = strings.NewReplacer(pairs...)
	return e
}

// Bot is the engine's bot.
func (e *Engine) Bot() *flows.Bot { return e.bot }

// Options are the options the engine was made with, to make another
// engine alike (another version of the bot).
func (e *Engine) Options() Options { return e.opts }

// WithLive returns the engine following the templates' live states l.
func (e *Engine) WithLive(l *Live) *Engine {
	c := *e
	c.opts.Live = l
	return &c
}

// Handle runs one event for a contact. It changes st in place (the
// caller owns st) and returns what to send and what happened. Bad input
// never panics it: run-time expression errors are recorded as error
// events and the conversation goes on or stops cleanly.
func (e *Engine) Handle(ctx context.Context, st *Session, ev Input, now time.Time) (*Result, error) {
	c := &conv{e: e, st: st, now: now, ctx: ctx}
	c.res = &c.result
	c.res.Outbound = c.outBuf[:0]
	c.res.Trace, c.res.Cover = e.opts.Trace, e.opts.Cover
	c.res.Events = c.evBuf[:0]
	c.pending = c.pendBuf[:0]
	c.fillEnv()
	switch ev := ev.(type) {
	case MessageIn:
		if ev.Message == nil {
			return nil, errors.New("inbound event without a message")
		}
		c.inbound(ev.Message, ev.ForceFlow, ev.Vars)
	case TimerIn:
		c.timer(ev.ID)
	case ReleaseIn:
		if st.Handoff == nil {
			return nil, ErrNotInHandoff
		}
		c.release()
	case StartIn:
		f := e.bot.Flow(ev.Flow)
		if f == nil {
			return nil, fmt.Errorf("%w: %q", ErrUnknownFlow, ev.Flow)
		}
		if st.Handoff != nil {
			return nil, ErrInHandoff
		}
		if err := CheckVars(f, ev.Vars); err != nil {
			return nil, err
		}
		c.startFlow(f, ev.Step, ev.Vars, "started by the business")
	case WindowClosedIn:
		c.windowClosed(ev.Outbound)
	case AgentIn:
		if err := c.agent(ev.Message, ev.Forced); err != nil {
			return nil, err
		}
	case PreferenceIn:
		stop := ev.Value == "stop"
		if st.Contact.MarketingOptedOut != stop {
			st.Contact.MarketingOptedOut = stop
			c.env.Contact.MarketingOptedOut = stop
			c.event(MarketingPreference{c.header(), stop})
		}
	default:
		return nil, fmt.Errorf("unknown input %T", ev)
	}
	return c.res, nil
}

// Errors of Handle that callers branch on.
var (
	ErrUnknownFlow  = errors.New("unknown flow")
	ErrInHandoff    = errors.New("the contact is handed off to an agent")
	ErrNotInHandoff = errors.New("the contact is not handed off")
	ErrBadVars      = errors.New("bad variables")
	// ErrWindowClosed: an agent's free-form message while the customer
	// service window is closed.
	ErrWindowClosed = errors.New("the customer service window is closed")
	// ErrOptedOut: an agent's template to a contact who opted out (of
	// marketing messages, for a marketing template).
	ErrOptedOut = errors.New("the contact opted out")
	// ErrTemplateUnavailable: the account cannot send the template now
	// (paused, disabled).
	ErrTemplateUnavailable = errors.New("the template cannot be sent now")
)

// CheckVars checks variables given from outside against the flow's
// declared types, and that they can be stored.
func CheckVars(f *flows.Flow, vars map[string]any) error {
	for k, v := range vars {
		if err := flows.Storable(v); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrBadVars, k, err)
		}
		if err := flows.CheckSent(v); err != nil {
			return fmt.Errorf("%w: %s %v", ErrBadVars, k, err)
		}
		found := false
		for _, d := range f.Vars {
			if d.Name == k {
				found = true
				if !flows.SameKind(d.Default, v) {
					return fmt.Errorf("%w: %s holds %s, got %s", ErrBadVars, k, flows.KindOf(d.Default), flows.KindOf(v))
				}
			}
		}
		if !found {
			return fmt.Errorf("%w: flow %q has no variable %q", ErrBadVars, f.ID, k)
		}
	}
	return nil
}

// conv is one Handle call: the Conversation the actions see.
type conv struct {
	e    *Engine
	st   *Session
	now  time.Time
	ctx  context.Context
	res  *Result
	env  flows.Env
	flow *flows.Flow
	step *flows.Step

	pending []actions.Message
	pause   *actions.Pause
	// fellBack: a fallback template went out in this run (at most one
	// does); asking: the messages flushed hold an ask's question asked
	// again; questionNotSent: that question did not go out as written.
	fellBack, asking, questionNotSent bool

	// Buffers that save allocations on the common path.
	result   Result
	outBuf   [4]Outbound
	evBuf    [8]Event
	pendBuf  [4]actions.Message
	pauseBuf actions.Pause
}

func (c *conv) fillEnv() {
	st := c.st
	lang, _ := st.Contact.LanguageIn(&c.e.bot.Settings)
	c.env.Contact = flows.ContactEnv{ID: st.Contact.ID, Name: st.Contact.Name, Language: lang, OptedOut: st.Contact.OptedOut,
		MarketingOptedOut: st.Contact.MarketingOptedOut, Fields: c.fields()}
	c.env.Vars = st.Vars
	c.env.Now = c.now
	c.env.Attempt = st.Attempt
	c.env.Secrets = c.e.secrets
	c.fillWindow()
	if st.Flow != "" {
		c.flow = c.e.bot.Flow(st.Flow)
		if c.flow != nil {
			c.step = c.flow.Steps[st.Step]
		}
		if c.flow == nil || c.step == nil {
			// The bot changed under a running conversation: stop cleanly.
			c.event(ErrorOccurred{c.header(), fmt.Sprintf("flow %q step %q no longer exists; the flow was stopped", st.Flow, st.Step)})
			c.endFlow("the step no longer exists")
		}
	}
}

func (c *conv) fillWindow() {
	open := c.st.WindowOpen(c.now)
	c.env.Window = flows.WindowEnv{Open: open, ExpiresAt: c.st.WindowExpires()}
	if c.st.FreeAt(c.now) {
		c.env.Window.FreeUntil = c.st.FreeUntil
	}
	if open {
		c.env.Window.Left = c.env.Window.ExpiresAt.Sub(c.now)
	}
}

// --- actions.Conversation ---

func (c *conv) Env() *flows.Env         { c.env.Attempt = c.st.Attempt; return &c.env }
func (c *conv) Step() *flows.Step       { return c.step }
func (c *conv) HTTP() actions.Doer      { return c.e.opts.HTTP }
func (c *conv) Tracing() bool           { return c.e.opts.Trace }
func (c *conv) DefaultLanguage() string { return c.e.bot.Settings.Language }
func (c *conv) Redact(s string) string  { return c.e.redact.Replace(s) }
func (c *conv) Send(m actions.Message) {
	if c.step != nil && c.step.Quote && m.Kind != actions.KindReaction {
		m.ReplyTo = c.st.LastMessageID
	}
	c.pending = append(c.pending, m)
}
func (c *conv) Pause(p actions.Pause) { c.pauseBuf = p; c.pause = &c.pauseBuf }
func (c *conv) Fail(err error)        { c.event(ErrorOccurred{c.header(), c.Redact(err.Error())}) }
func (c *conv) LastMessageID() string { return c.st.LastMessageID }

// FormToken is the waiting step's flow_token: "flowbot:" + the flow, the
// step and the message sequence number, made once per asking.
func (c *conv) FormToken() string {
	st := c.st
	if st.FormToken == "" {
		st.FormToken = FormTokenPrefix + st.Flow + ":" + st.Step + ":" + strconv.FormatInt(st.Seq+1, 36)
	}
	return st.FormToken
}

// FormTokenPrefix starts every flow_token flowbot makes: a form answer
// with such a token that is not the waiting step's is stale.
const FormTokenPrefix = "flowbot:"

func (c *conv) TraceCondition(expr string, value bool) {
	if c.e.opts.Trace {
		c.event(ConditionEvaluated{Header: c.header(), Expr: expr, Value: value, Validate: true})
	}
}

func (c *conv) TraceSet(name, value string) {
	if c.e.opts.Trace {
		c.event(VarSet{c.header(), name, value})
	}
}

func (c *conv) TraceCall(method, url string, status int) {
	if c.e.opts.Trace {
		c.event(CallMade{c.header(), method, url, status})
	}
}

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

// fields are the contact's fields as expressions read them: the bot's
// defaults, under what was stored for the contact (a field a new version
// of the bot added reads its default).
func (c *conv) fields() map[string]any {
	decl := c.e.bot.Settings.ContactFields
	if len(decl) == 0 {
		return c.st.Contact.Fields
	}
	m := make(map[string]any, len(decl))
	for _, f := range decl {
		m[f.Name] = cloneValue(f.Default)
	}
	for k, v := range c.st.Contact.Fields {
		m[k] = v
	}
	return m
}

// settingText renders a settings reply (opt-out, opt-in) in the contact's
// language, or its default text.
func (c *conv) settingText(t *flows.Text, def string) string {
	if t == nil {
		return def
	}
	return c.Render(t)
}

// setField writes a contact field (set or save contact.fields.NAME).
func (c *conv) setField(name string, v any) bool {
	d := c.e.bot.Settings.ContactField(name)
	switch {
	case d == nil:
		c.Fail(fmt.Errorf("cannot set contact.fields.%s: the bot declares no such contact field", name))
		return false
	case !flows.SameKind(d.Default, v):
		c.Fail(fmt.Errorf("cannot set contact.fields.%s (%s) to %s", name, flows.KindOf(d.Default), flows.KindOf(v)))
		return false
	}
	if err := flows.Storable(v); err != nil {
		c.Fail(fmt.Errorf("cannot set contact.fields.%s: %v", name, err))
		return false
	}
	if i, ok := v.(int); ok {
		if _, isFloat := d.Default.(float64); isFloat {
			v = float64(i)
		}
	}
	if c.st.Contact.Fields == nil {
		c.st.Contact.Fields = map[string]any{}
	}
	c.st.Contact.Fields[name] = v
	if c.env.Contact.Fields == nil {
		c.env.Contact.Fields = map[string]any{}
	}
	c.env.Contact.Fields[name] = v
	return true
}

// SetVar assigns a flow variable, or (with its prefix) a contact field or
// the contact's language.
func (c *conv) SetVar(name string, v any) bool {
	if field, ok := strings.CutPrefix(name, "contact.fields."); ok {
		return c.setField(field, v)
	}
	if name == "contact.language" {
		lang, ok := v.(string)
		if !ok {
			c.Fail(fmt.Errorf("cannot set contact.language to %s: a language is text, like \"es\"", flows.KindOf(v)))
			return false
		}
		c.st.Contact.Language, c.st.Contact.LanguageFrom, c.env.Contact.Language = lang, flows.LanguageFromFlow, lang
		return true
	}
	if c.st.Vars == nil {
		c.st.Vars = map[string]any{}
		c.env.Vars = c.st.Vars
	}
	if err := flows.Storable(v); err != nil {
		c.Fail(fmt.Errorf("cannot set vars.%s: %v", name, err))
		return false
	}
	if c.flow != nil {
		for _, d := range c.flow.Vars {
			if d.Name == name && !flows.SameKind(d.Default, v) {
				c.Fail(fmt.Errorf("cannot set vars.%s (%s) to %s", name, flows.KindOf(d.Default), flows.KindOf(v)))
				return false
			}
		}
	}
	if i, ok := v.(int); ok && c.flow != nil {
		for _, d := range c.flow.Vars {
			if _, isFloat := d.Default.(float64); isFloat && d.Name == name {
				v = float64(i)
			}
		}
	}
	c.st.Vars[name] = v
	return true
}

// header is when and where the conversation is, for an event.
func (c *conv) header() Header {
	h := Header{At: c.now}
	if c.flow != nil {
		h.Flow = c.flow.ID
	}
	if c.step != nil {
		h.Step = c.step.Name
	}
	return h
}

// event adds an event to the result.
func (c *conv) event(e Event) {
	c.res.Events = append(c.res.Events, e)
}

// --- inbound messages ---

// PassiveTypes are inbound message types that never move a flow: they
// are recorded, and all but system messages (which WhatsApp writes, not
// the contact) extend the window.
var PassiveTypes = map[string]bool{
	"reaction": true, "system": true, "revoke": true, "edit": true,
	"unsupported": true, "unknown": true, "request_welcome": true,
	"call_permission_reply": true,
}

// noContacts is message.contacts for a message that shares none: [],
// never nil, and never allocated.
var noContacts = []any{}

func (c *conv) inbound(m *Inbound, force string, forceVars map[string]any) {
	st := c.st
	if PassiveTypes[m.Type] {
		if m.Type != "system" && m.Timestamp.After(st.LastInbound) {
			st.LastInbound = m.Timestamp
			st.WindowClosed = false
		}
		c.event(MsgIgnored{c.header(), describeInbound(m) + ": this kind of message does not move a flow"})
		return
	}
	if m.Timestamp.After(st.LastInbound) {
		st.LastInbound = m.Timestamp
	}
	if m.ID != "" {
		st.LastMessageID = m.ID
	}
	if r := m.Referral; (r.SourceID != "" || r.CtwaClid != "" || r.SourceType != "") && !st.FreeAt(m.Timestamp) {
		st.ReferralAt = m.Timestamp // the next answer within 24h opens a free entry point
	}
	st.WindowClosed = false
	if m.Name != "" {
		st.Contact.Name = m.Name
		c.env.Contact.Name = m.Name
	}
	st.Contact.Learn(m.WaID, m.UserID, m.Username)
	c.fillWindow()
	if m.Form != nil {
		// Whole numbers are whole again after a store's JSON round trip.
		m.Form, _ = flows.NormalizeJSON(m.Form).(map[string]any)
	}
	c.env.Message = flows.MessageEnv{ID: m.ID, Type: m.Type, Text: m.Text, Choice: m.Choice, Media: m.Media, Location: m.Location, Form: m.Form, Referral: m.Referral, Order: m.Order,
		Context: m.Context, Contacts: noContacts}
	if m.Choice != "" && m.Form == nil {
		c.env.Message.Title = m.Text
	}
	if len(m.Contacts) > 0 {
		c.env.Message.Contacts = flows.NormalizeJSON(m.Contacts).([]any)
	}
	c.event(MsgReceived{c.header(), m, c.e.opts.Trace})

	word := strings.ToLower(strings.TrimSpace(m.Text))
	set := c.e.bot.Settings
	if m.Type == "text" || m.Type == "button" || m.Type == "interactive" {
		if contains(set.OptOut, word) {
			st.Contact.OptedOut = true
			c.env.Contact.OptedOut = true
			c.event(ContactOptedOut{c.header()})
			st.Handoff = nil
			c.endFlow("the contact opted out")
			c.sendNow(actions.Message{Kind: "text", Text: c.settingText(set.OptOutText, set.OptOutReply)})
			return
		}
		if contains(set.OptIn, word) {
			st.Contact.OptedOut = false
			c.env.Contact.OptedOut = false
			c.event(ContactOptedIn{c.header()})
			c.sendNow(actions.Message{Kind: "text", Text: c.settingText(set.OptInText, set.OptInReply)})
			return
		}
	}
	// Global keywords work in any step of any flow, during a wait or a
	// handoff too (FLOW_SPEC.md section 2).
	if m.Type == "text" || m.Type == "button" || m.Type == "interactive" {
		for _, k := range set.Keywords {
			if !contains(k.Match, word) {
				continue
			}
			if k.Handoff != nil && st.Handoff != nil {
				c.event(MsgIgnored{c.header(), "keyword " + strconv.Quote(word) + ": already handed off to " + st.Handoff.Queue})
				return
			}
			if st.Handoff != nil {
				c.event(HandoffReleased{c.header(), st.Handoff.Queue, word})
				st.Handoff = nil
			}
			if k.Handoff != nil {
				// The flow is suspended, not ended (FLOW_SPEC.md 8.7): its
				// step, variables and timers are kept for the release.
				if k.Say != nil {
					st.Batch++
					c.sendNow(actions.Message{Kind: "text", Text: c.Render(k.Say)})
				}
				st.Handoff = &HandoffState{Queue: k.Handoff.Queue, Note: c.Render(k.Handoff.Note), Since: c.now, Keyword: true}
				c.event(HandedOff{c.header(), k.Handoff.Queue, word})
				return
			}
			f := c.e.bot.Flow(k.Flow)
			c.startFlow(f, k.Step, nil, "keyword "+strconv.Quote(word))
			return
		}
	}
	if st.Handoff != nil {
		c.event(MsgIgnored{c.header(), "handed off to " + st.Handoff.Queue + ": the bot stays silent"})
		return
	}
	if m.Form != nil && strings.HasPrefix(m.FormToken, FormTokenPrefix) && (m.FormToken != st.FormToken || st.Waiting != actions.PauseAsk) {
		// An answer to a form this contact was sent for another step (or
		// an earlier asking): recorded, not routed (FLOW_SPEC.md 8.5).
		c.event(MsgIgnored{c.header(), "a form answer for another step (flow_token " + strconv.Quote(m.FormToken) + "): recorded, not routed"})
		return
	}
	if c.flow != nil {
		switch {
		case st.Waiting == actions.PauseAsk && st.Unasked && !c.answersUnasked(m):
			// The question had not gone out as written: ask it now that
			// the contact's message reopened the window; this message is
			// not the answer (FLOW_SPEC.md 8.8).
			c.event(MsgIgnored{c.header(), "the question had not been asked yet (the window was closed): asking it now"})
			c.askAgain()
		case st.Waiting == actions.PauseAsk:
			st.Unasked = false
			c.reply(m)
		default:
			c.event(MsgIgnored{c.header(), fmt.Sprintf("the flow is in a %s, not waiting for a reply", orDefault(string(st.Waiting), "step"))})
		}
		return
	}
	if force != "" {
		if f := c.e.bot.Flow(force); f != nil {
			c.startFlow(f, "", forceVars, "started by the first message")
			return
		}
	}
	for _, f := range c.e.bot.Flows {
		for _, t := range f.Triggers {
			if contains(t.Keywords, word) {
				c.startFlow(f, "", nil, "keyword trigger "+strconv.Quote(word))
				return
			}
			if t.When != nil {
				ok, err := t.When.EvalBool(&c.env)
				if err != nil {
					c.Fail(err)
					continue
				}
				if ok {
					c.startFlow(f, "", nil, "trigger "+t.When.Src)
					return
				}
			}
		}
	}
	if d := set.DefaultFlow; d != "" {
		c.startFlow(c.e.bot.Flow(d), "", nil, "default flow")
		return
	}
	c.event(NoFlowMatched{c.header()})
}

func describeInbound(m *Inbound) string {
	switch {
	case m.ReactionTo != "":
		return fmt.Sprintf("%s %q on %s", m.Type, m.Text, m.ReactionTo)
	case m.Choice != "":
		return fmt.Sprintf("%s %q (choice %q)", m.Type, m.Text, m.Choice)
	case m.Text != "":
		return fmt.Sprintf("%s %q", m.Type, m.Text)
	}
	return m.Type
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// reply applies what the step's ask makes of the contact's answer
// (actions.Ask: validate, retry, save) to the conversation.
func (c *conv) reply(m *Inbound) {
	st := c.st
	ask := actions.AskOf(c.step.Ask)
	valid, fields := true, map[string]any(nil)
	if ask.Understands() {
		u, err := c.understand(m)
		if err != nil {
			c.modelFailed(err)
			return
		}
		c.env.Intent, fields, valid = u.Intent, u.Fields, u.Valid
		defer func() { c.env.Intent = nil }() // for this step's routes only
	}
	switch ask.JudgeReply(c, st.Attempt, valid) {
	case actions.GiveUp:
		c.event(ReplyInvalid{Header: c.header(), Times: st.Attempt, Then: ask.Then()})
		c.leavePause()
		c.took(c.step, c.step.EdgeOf(flows.EdgeRetry))
		c.run(ask.Then())
		return
	case actions.AskAgain:
		st.Attempt++
		c.env.Attempt = st.Attempt
		c.event(ReplyInvalid{Header: c.header(), Attempt: st.Attempt})
		c.pending = c.pending[:0]
		c.Send(ask.Again(c))
		st.Batch++
		if c.flush() {
			c.armWindowClosing()
		}
		return
	}
	if name, v, ok := ask.Saved(&c.env.Message); ok {
		if fields != nil {
			v = fields
		}
		if c.SetVar(name, v) {
			c.TraceSet(name, c.Redact(flows.FormatValue(v)))
		}
	}
	c.leavePause()
	c.routeOn()
}

// leavePause ends the current wait and its timers.
func (c *conv) leavePause() {
	c.st.Waiting = ""
	c.st.FormToken = ""
	c.st.Attempt = 0
	c.env.Attempt = 0
	c.st.Timers = c.st.Timers[:0]
}

// routeOn leaves the current step by its routes.
func (c *conv) routeOn() {
	if next, ok := c.leave(c.step); ok {
		c.run(next)
	}
}

// leave ends the flow at an end step, else picks the next step; false
// when the flow ended.
func (c *conv) leave(step *flows.Step) (string, bool) {
	if step.End {
		if len(c.st.Stack) > 0 {
			return c.returnFromSubflow()
		}
		c.endFlow("end")
		return "", false
	}
	next := c.route(step)
	if next == "" {
		c.event(ErrorOccurred{c.header(), "no route matched and the step has no else; the flow was stopped"})
		c.endFlow("no route")
		return "", false
	}
	return next, true
}

// route picks the step's next step (flows.Step.Route: the first `on`
// that holds, else `else`, else `goto`), tracing each condition.
func (c *conv) route(step *flows.Step) string {
	i := step.RouteIndex(func(cond *flows.Program) bool {
		ok, err := cond.EvalBool(&c.env)
		if err != nil {
			c.Fail(err)
		}
		if c.e.opts.Trace {
			c.event(ConditionEvaluated{Header: c.header(), Expr: cond.Src, Value: ok})
		}
		return ok
	}, c.st.Contact.ID)
	if i < 0 {
		return ""
	}
	c.took(step, i)
	return step.Edges()[i].To
}

// took records an edge taken out of a step (the analytics, coverage).
func (c *conv) took(step *flows.Step, i int) {
	if i >= 0 {
		e := step.Edges()[i]
		c.event(EdgeTaken{Header: Header{At: c.now, Flow: step.Flow, Step: step.Name}, Index: i, EdgeKind: string(e.Kind), To: e.To})
	}
}

// --- running steps ---

// startFlow starts a flow for the contact, leaving any flow it was in.
func (c *conv) startFlow(f *flows.Flow, stepName string, vars map[string]any, why string) {
	st := c.st
	if st.Flow != "" {
		c.endFlow("interrupted by " + why)
	}
	c.flow = f
	st.Flow = f.ID
	st.Vars = make(map[string]any, len(f.Vars))
	for _, v := range f.Vars {
		st.Vars[v.Name] = cloneValue(v.Default)
	}
	for k, v := range vars {
		st.Vars[k] = cloneValue(v)
	}
	c.env.Vars = st.Vars
	c.event(FlowStarted{c.header(), why})
	if stepName == "" {
		stepName = f.Start
	}
	c.run(stepName)
}

// callSubflow runs the step's subflow (FLOW_SPEC.md 8.2): the calling
// flow waits on the stack, and the subflow starts with its defaults and
// the step's with.
func (c *conv) callSubflow(step *flows.Step) {
	st := c.st
	sub := c.e.bot.Flow(step.Subflow)
	if sub == nil || len(st.Stack) >= flows.MaxSubflowDepth {
		c.event(ErrorOccurred{c.header(), fmt.Sprintf("subflow %q cannot start (unknown, or %d deep already); the flow was stopped", step.Subflow, len(st.Stack))})
		c.endFlow("subflow")
		return
	}
	vars := make(map[string]any, len(sub.Vars))
	for _, v := range sub.Vars {
		vars[v.Name] = cloneValue(v.Default)
	}
	for _, a := range step.With {
		v, err := a.Expr.Eval(&c.env)
		if err != nil {
			c.Fail(err)
			continue
		}
		vars[a.Var] = v
	}
	st.Stack = append(st.Stack, Frame{Flow: st.Flow, Step: step.Name, Vars: st.Vars})
	c.event(FlowStarted{c.header(), "subflow " + sub.ID + " of " + st.Flow + "/" + step.Name})
	c.flow = sub
	st.Flow, st.Vars = sub.ID, vars
	c.env.Vars, c.env.Result = vars, nil
	c.run(sub.Start)
}

// returnFromSubflow ends the subflow that reached end: true and goes on
// with the calling step's routing, where result holds the subflow's
// variables.
func (c *conv) returnFromSubflow() (string, bool) {
	st := c.st
	fr := st.Stack[len(st.Stack)-1]
	st.Stack = st.Stack[:len(st.Stack)-1]
	c.event(FlowEnded{c.header(), "returned to " + fr.Flow + "/" + fr.Step})
	result := st.Vars
	f := c.e.bot.Flow(fr.Flow)
	var step *flows.Step
	if f != nil {
		step = f.Steps[fr.Step]
	}
	if step == nil {
		c.event(ErrorOccurred{c.header(), fmt.Sprintf("the calling step %s/%s no longer exists; the flow was stopped", fr.Flow, fr.Step)})
		c.endFlow("the calling step no longer exists")
		return "", false
	}
	c.flow, c.step = f, step
	st.Flow, st.Step, st.Vars = fr.Flow, fr.Step, fr.Vars
	c.env.Vars, c.env.Result = st.Vars, result
	return c.leave(step)
}

// endFlow leaves the contact in no flow (a subflow's callers too).
func (c *conv) endFlow(why string) {
	st := c.st
	st.Stack = nil
	if st.Flow == "" {
		return
	}
	c.event(FlowEnded{c.header(), why})
	st.Flow, st.Step, st.Waiting, st.Attempt, st.FormToken = "", "", "", 0, ""
	st.Timers = st.Timers[:0]
	c.flow, c.step = nil, nil
}

// run enters a step and goes on until the flow waits or ends.
func (c *conv) run(name string) {
	st := c.st
	for hops := 0; ; hops++ {
		step := c.flow.Steps[name]
		if step == nil {
			c.event(ErrorOccurred{c.header(), fmt.Sprintf("undefined step %q; the flow was stopped", name)})
			c.endFlow("undefined step")
			return
		}
		if hops >= maxHops {
			c.event(ErrorOccurred{c.header(), fmt.Sprintf("more than %d steps ran without waiting for the contact (a goto loop?); the flow was stopped", maxHops)})
			c.endFlow("loop")
			return
		}
		c.step = step
		st.Step = name
		st.Attempt = 0
		st.FormToken = ""
		c.env.Attempt = 0
		c.event(StepEntered{c.header()})
		if step.Goal {
			c.event(GoalReached{c.header()})
		}
		c.pending, c.pause = c.pending[:0], nil
		st.Batch++
		jump := ""
		for _, a := range c.e.steps[step] {
			if jump = a.Run(c.ctx, c); jump != "" {
				break
			}
		}
		if jump != "" {
			if step.Call != nil && jump == step.Call.OnError {
				c.took(step, step.EdgeOf(flows.EdgeOnError))
			}
			c.pending = c.pending[:0]
			name = jump
			continue
		}
		if !c.flush() {
			return
		}
		if p := c.pause; p != nil {
			c.enterPause(*p)
			return
		}
		if step.Subflow != "" {
			c.callSubflow(step)
			return
		}
		next, ok := c.leave(step)
		if !ok {
			return
		}
		name = next
	}
}

func (c *conv) enterPause(p actions.Pause) {
	st, step := c.st, c.step
	st.Waiting = p.Kind
	st.Timers = st.Timers[:0]
	switch p.Kind {
	case actions.PauseAsk:
		st.AskedAt = c.now
		st.Unasked = c.questionNotSent
		if step.Ask.Timeout > 0 {
			c.addTimer(TimerTimeout, c.now.Add(step.Ask.Timeout))
		}
		c.armWindowClosing()
	case actions.PauseWait:
		c.addTimer(TimerWait, c.now.Add(step.Wait))
	case actions.PauseHandoff:
		st.Handoff = &HandoffState{Queue: p.Queue, Note: p.Note, Since: c.now}
		c.event(HandedOff{Header: c.header(), Queue: p.Queue})
	}
}

// armWindowClosing sets the window_closing timer of an ask, unless its
// moment has already passed.
func (c *conv) armWindowClosing() {
	st := c.st
	wc := c.flow.WindowClosing
	kept := st.Timers[:0]
	for _, t := range st.Timers {
		if t.Kind != TimerWindowClosing {
			kept = append(kept, t)
		}
	}
	st.Timers = kept
	if wc == nil || !st.WindowOpen(c.now) {
		return
	}
	at := st.WindowExpires().Add(-wc.Before)
	if at.After(c.now) {
		c.addTimer(TimerWindowClosing, at)
	}
}

func (c *conv) addTimer(kind TimerKind, due time.Time) {
	st := c.st
	st.Seq++
	st.Timers = append(st.Timers, Timer{
		ID:   seqID(st.Contact.ID, ":t", st.Seq),
		Kind: kind, Due: due, Flow: st.Flow, Step: st.Step, Seq: st.Seq,
	})
}

// --- timers, releases, failures ---

func (c *conv) timer(id string) {
	st := c.st
	idx := -1
	for i, t := range st.Timers {
		if t.ID == id {
			idx = i
		}
	}
	if idx < 0 {
		c.event(MsgIgnored{c.header(), "timer " + id + " is no longer pending"})
		return
	}
	if st.Handoff != nil {
		// Held until the release (FLOW_SPEC.md 8.7).
		c.event(MsgIgnored{c.header(), "timer " + id + " is held during the handoff"})
		return
	}
	t := st.Timers[idx]
	st.Timers = append(st.Timers[:idx], st.Timers[idx+1:]...)
	if c.step == nil || t.Flow != st.Flow || t.Step != st.Step {
		c.event(MsgIgnored{c.header(), "timer " + id + " belongs to a step the contact has left"})
		return
	}
	c.event(TimerFired{c.header(), t})
	switch t.Kind {
	case TimerWait:
		if st.Waiting != actions.PauseWait {
			return
		}
		c.leavePause()
		c.routeOn()
	case TimerTimeout:
		if st.Waiting != actions.PauseAsk {
			return
		}
		c.leavePause()
		c.took(c.step, c.step.EdgeOf(flows.EdgeTimeout))
		c.run(c.step.Ask.OnTimeout)
	case TimerWindowClosing:
		wc := c.flow.WindowClosing
		if st.Waiting != actions.PauseAsk || wc == nil || !st.WindowOpen(c.now) {
			return
		}
		st.Batch++
		c.sendNow(actions.Message{Kind: "text", Text: c.Render(wc.Say)})
	}
}

func (c *conv) release() {
	st := c.st
	h := st.Handoff
	st.Handoff = nil
	c.event(HandoffReleased{Header: c.header(), Queue: h.Queue})
	switch {
	case h.Keyword:
		c.resume()
	case c.step == nil || st.Waiting != actions.PauseHandoff:
		c.endFlow("released")
	default:
		// A handoff step: the flow routes on from it.
		c.leavePause()
		c.routeOn()
	}
}

// resume goes on with a flow that a keyword's handoff suspended
// (FLOW_SPEC.md 8.7): a wait whose time has passed routes on at once; an
// ask asks its question again and waits, its timeout counting from now; a
// window_closing nudge whose moment has passed is dropped.
func (c *conv) resume() {
	st := c.st
	if c.flow == nil || c.step == nil {
		return // no flow was suspended
	}
	switch st.Waiting {
	case actions.PauseWait:
		for _, t := range st.Timers {
			if t.Kind == TimerWait && t.Due.After(c.now) {
				return // still waiting: the timer fires when due
			}
		}
		c.leavePause()
		c.routeOn()
	case actions.PauseAsk:
		c.askAgain()
	}
}

// answersUnasked reports whether a message answers an unasked question
// directly: a tap on a fallback template's quick-reply button whose
// payload is one of the ask's button or row ids.
func (c *conv) answersUnasked(m *Inbound) bool {
	if m.Type != "button" || m.Choice == "" || c.step == nil || c.step.Ask == nil {
		return false
	}
	return c.step.Ask.Offers(m.Choice)
}

// askAgain asks the waiting ask's question again and waits, its timeout
// counting from now (a release, or an unasked question asked at last).
func (c *conv) askAgain() {
	st := c.st
	st.Batch++
	c.pending = c.pending[:0]
	c.asking, c.questionNotSent = true, false
	c.Send(actions.Question(c, c.step.Ask, c.step.Ask.Text))
	ok := c.flush()
	c.asking = false
	if !ok {
		return
	}
	st.AskedAt = c.now
	st.Unasked = c.questionNotSent
	kept := st.Timers[:0]
	for _, t := range st.Timers {
		if t.Kind != TimerTimeout {
			kept = append(kept, t)
		}
	}
	st.Timers = kept
	if c.step.Ask.Timeout > 0 {
		c.addTimer(TimerTimeout, c.now.Add(c.step.Ask.Timeout))
	}
	c.armWindowClosing()
}

// windowClosed handles WhatsApp refusing a free-form message because the
// window is closed after all: the step's fallback template goes out
// instead, once per batch.
func (c *conv) windowClosed(o *Outbound) {
	if o == nil || o.Via != ViaSession {
		return
	}
	st := c.st
	if st.WindowClosed || st.FallbackBatch == o.Batch && o.Batch != 0 {
		// The window was already known closed (or this step already fell
		// back): its fallback went out once; a second refusal sends no
		// second template.
		return
	}
	st.WindowClosed = true
	c.fillWindow()
	st.FallbackBatch = o.Batch
	if st.Waiting == actions.PauseAsk && o.Flow == st.Flow && o.Step == st.Step {
		st.Unasked = true // the question was refused with the rest of its step
	}
	f := c.e.bot.Flow(o.Flow)
	var step *flows.Step
	if f != nil {
		step = f.Steps[o.Step]
	}
	fb := fallbackFor(f, step)
	if fb == nil {
		c.event(Undeliverable{c.header(), fmt.Sprintf("step %s/%s: the window is closed and there is no fallback template", o.Flow, o.Step)})
		return
	}
	prevFlow, prevStep := c.flow, c.step
	c.flow, c.step = f, step
	m := actions.RenderTemplate(c, fb)
	c.event(TemplateFallback{c.header(), fb.Name})
	c.emit(m, true, o.Batch)
	c.flow, c.step = prevFlow, prevStep
}

func fallbackFor(f *flows.Flow, s *flows.Step) *flows.TemplateSend {
	if s != nil && s.Fallback != nil {
		return s.Fallback
	}
	if f != nil {
		return f.Fallback
	}
	return nil
}

// seqID builds a deterministic id, contact:t7 or contact:m8, in one
// allocation.
func seqID(contact, kind string, seq int64) string {
	var buf [64]byte
	b := append(buf[:0], contact...)
	b = append(b, kind...)
	b = strconv.AppendInt(b, seq, 10)
	return string(b)
}
