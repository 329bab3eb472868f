package engine

import (
	"fmt"
	"strconv"
	"time"
)

// Event is something that happened in a contact's conversation, one type
// per kind with its own fields (goflow's events are the model): the engine
// returns them with each Result, and the conversation record adds its own
// (a delivery status, a refused send). Record renders an event for the
// contact's log, transcripts and traces; the kinds are the Rec* constants.
type Event interface {
	Kind() string
	// Record is the event as the log shows it.
	Record() Record
}

// Header is when and where an event happened.
type Header struct {
	At   time.Time `json:"at"`
	Flow string    `json:"flow,omitempty"`
	Step string    `json:"step,omitempty"`
}

func (h Header) record(kind, detail string) Record {
	return Record{At: h.At, Kind: kind, Flow: h.Flow, Step: h.Step, Detail: detail}
}

// MsgReceived: a message from the contact. Verbose records show it,
// others its id only (a log keeps no message text unless tracing).
type MsgReceived struct {
	Header
	Message *Inbound
	Verbose bool
}

// MsgIgnored: something came that moves no flow (a reaction, a message
// during a handoff, a timer no longer pending ...).
type MsgIgnored struct {
	Header
	Reason string `json:"reason,omitempty"`
}

// MsgCreated: the engine committed a message to send (the Result's
// Outbound with this id).
type MsgCreated struct {
	Header
	ID string `json:"id,omitempty"`
}

// FlowStarted and FlowEnded: a flow began or ended, and why.
type FlowStarted struct {
	Header
	Reason string `json:"reason,omitempty"`
}

type FlowEnded struct {
	Header
	Reason string `json:"reason,omitempty"`
}

// StepEntered: the flow entered a step (trace).
type StepEntered struct{ Header }

// GoalReached: the flow entered a step marked goal: true.
type GoalReached struct{ Header }

// EdgeTaken: the flow left a step by one of its edges (flows.Step.Edges,
// Index), for coverage.
type EdgeTaken struct {
	Header
	Index    int    `json:"index,omitempty"`
	EdgeKind string `json:"edge_kind,omitempty"`
	To       string `json:"to,omitempty"`
}

// ConditionEvaluated: an `if` or a `validate` was evaluated (trace).
type ConditionEvaluated struct {
	Header
	Expr     string `json:"expr,omitempty"`
	Value    bool   `json:"value,omitempty"`
	Validate bool   `json:"validate,omitempty"`
}

// VarSet: a variable was set (trace); Value is shown redacted.
type VarSet struct {
	Header
	Name  string `json:"name,omitempty"`
	Value string `json:"value,omitempty"`
}

// CallMade: a call went out (Status 0) or came back (trace).
type CallMade struct {
	Header
	Method string `json:"method,omitempty"`
	URL    string `json:"url,omitempty"`
	Status int    `json:"status,omitempty"`
}

// TemplateFallback: free-form messages were replaced by a template
// because the window was closed.
type TemplateFallback struct {
	Header
	Template string `json:"template,omitempty"`
}

// SkippedAfterFallback: a free-form message of a run that already sent
// its one fallback template was not sent (FLOW_SPEC.md 8.8).
type SkippedAfterFallback struct {
	Header
	MessageKind string `json:"message_kind,omitempty"`
	Text        string `json:"text,omitempty"`
}

// Undeliverable: messages were not sent, and why.
type Undeliverable struct {
	Header
	Reason string `json:"reason,omitempty"`
}

// TemplateNotSent: a template was not sent to an opted-out contact.
type TemplateNotSent struct {
	Header
	Template string `json:"template,omitempty"`
	// Marketing: a MARKETING template to a contact who stopped marketing
	// messages.
	Marketing bool `json:"marketing,omitempty"`
}

// ContactOptedOut and ContactOptedIn: the contact's keyword.
type ContactOptedOut struct{ Header }

type ContactOptedIn struct{ Header }

// MarketingPreference: the contact stopped (or resumed) marketing
// messages in WhatsApp.
type MarketingPreference struct {
	Header
	Stopped bool `json:"stopped,omitempty"`
}

// HandedOff: the contact was handed to an agent; Keyword names the
// global keyword that did it, if one did.
type HandedOff struct {
	Header
	Queue   string `json:"queue,omitempty"`
	Keyword string `json:"keyword,omitempty"`
}

// HandoffReleased: the handoff ended, by an agent or by a keyword.
type HandoffReleased struct {
	Header
	Queue   string `json:"queue,omitempty"`
	Keyword string `json:"keyword,omitempty"`
}

// AgentMessage: an agent's message was committed to send.
type AgentMessage struct {
	Header
	ID      string `json:"id,omitempty"`
	Summary string `json:"summary,omitempty"`
	// Forced: the contact was in no handoff; the agent wrote anyway.
	Forced bool `json:"forced,omitempty"`
}

// TimerFired: a durable timer fell due.
type TimerFired struct {
	Header
	Timer Timer `json:"timer"`
}

// NoFlowMatched: no trigger matched and the bot has no default flow.
type NoFlowMatched struct{ Header }

// ReplyInvalid: an ask's reply failed its validation; Attempt is the
// retry that follows, 0 when the retries were used up and the flow goes
// to Then.
type ReplyInvalid struct {
	Header
	Attempt int    `json:"attempt,omitempty"`
	Times   int    `json:"times,omitempty"`
	Then    string `json:"then,omitempty"`
}

// ErrorOccurred: something failed (an expression, a call, a send), and
// the conversation went on or stopped cleanly.
type ErrorOccurred struct {
	Header
	Err string `json:"error,omitempty"`
}

// TextCut: a rendered text was cut to WhatsApp's limit.
type TextCut struct {
	Header
	What string `json:"what,omitempty"`
}

// TemplateUnavailable: the account cannot send the template now
// (WhatsApp paused, disabled or rejected it); it was not sent, and the
// flow stopped there.
type TemplateUnavailable struct {
	Header
	Template string `json:"template,omitempty"`
	Language string `json:"language,omitempty"`
	Status   string `json:"status,omitempty"`
}

// FreeEntryOpened: the business answered a message from an ad within 24
// hours, which opened a free entry point until Until.
type FreeEntryOpened struct {
	Header
	Until time.Time `json:"until,omitzero"`
}

// StatusReceived: a delivery status for a message not in the recent
// history (statuses of known messages update their deliveries).
type StatusReceived struct {
	Header
	Status string `json:"status,omitempty"`
	WAMID  string `json:"wamid,omitempty"`
}

// SendRefused: WhatsApp refused a message (when it was sent, or later in
// a failed status).
type SendRefused struct {
	Header
	MessageID string `json:"message_id,omitempty"`
	Code      int    `json:"code,omitempty"`
	Err       string `json:"error,omitempty"`
	// Status: the refusal came as a failed delivery status.
	Status bool `json:"status,omitempty"`
}

func (e MsgReceived) Kind() string { return RecInbound }
func (e MsgReceived) Record() Record {
	if e.Verbose {
		return e.record(RecInbound, describeInbound(e.Message))
	}
	return e.record(RecInbound, e.Message.ID)
}
func (e MsgIgnored) Kind() string    { return RecIgnored }
func (e MsgIgnored) Record() Record  { return e.record(RecIgnored, e.Reason) }
func (e MsgCreated) Kind() string    { return RecSent }
func (e MsgCreated) Record() Record  { return e.record(RecSent, e.ID) }
func (e FlowStarted) Kind() string   { return RecFlowStart }
func (e FlowStarted) Record() Record { return e.record(RecFlowStart, e.Reason) }
func (e FlowEnded) Kind() string     { return RecFlowEnd }
func (e FlowEnded) Record() Record   { return e.record(RecFlowEnd, e.Reason) }
func (e GoalReached) Kind() string   { return RecGoal }
func (e GoalReached) Record() Record { return e.record(RecGoal, "goal reached: "+e.Step) }
func (e EdgeTaken) Kind() string     { return RecEdge }
func (e EdgeTaken) Record() Record {
	return e.record(RecEdge, fmt.Sprintf("%s -> %s (%s)", e.Step, e.To, e.EdgeKind))
}
func (e StepEntered) Kind() string        { return RecStep }
func (e StepEntered) Record() Record      { return e.record(RecStep, "entered") }
func (e ConditionEvaluated) Kind() string { return RecCondition }
func (e ConditionEvaluated) Record() Record {
	word := "if"
	if e.Validate {
		word = "validate"
	}
	return e.record(RecCondition, fmt.Sprintf("%s %s → %t", word, e.Expr, e.Value))
}
func (e VarSet) Kind() string   { return RecSet }
func (e VarSet) Record() Record { return e.record(RecSet, "vars."+e.Name+" = "+e.Value) }
func (e CallMade) Kind() string { return RecCall }
func (e CallMade) Record() Record {
	if e.Status == 0 {
		return e.record(RecCall, e.Method+" "+e.URL)
	}
	return e.record(RecCall, fmt.Sprintf("%s %s → %d", e.Method, e.URL, e.Status))
}
func (e TemplateFallback) Kind() string   { return RecFallback }
func (e TemplateFallback) Record() Record { return e.record(RecFallback, e.Template) }
func (e Undeliverable) Kind() string      { return RecUndeliverable }
func (e Undeliverable) Record() Record    { return e.record(RecUndeliverable, e.Reason) }
func (e AgentMessage) Kind() string       { return RecAgent }
func (e AgentMessage) Record() Record {
	if e.Forced {
		return e.record(RecAgent, "message "+e.ID+" from an agent, outside a handoff (forced): "+e.Summary)
	}
	return e.record(RecAgent, "message "+e.ID+" from an agent: "+e.Summary)
}
func (e TemplateNotSent) Kind() string { return RecOptedOut }
func (e TemplateNotSent) Record() Record {
	if e.Marketing {
		return e.record(RecOptedOut, "template "+e.Template+" not sent: the contact stopped marketing messages")
	}
	return e.record(RecOptedOut, "template "+e.Template+" not sent: the contact opted out")
}
func (e ContactOptedOut) Kind() string   { return RecOptOut }
func (e ContactOptedOut) Record() Record { return e.record(RecOptOut, "the contact opted out") }
func (e MarketingPreference) Kind() string {
	if e.Stopped {
		return RecOptOut
	}
	return RecOptIn
}
func (e MarketingPreference) Record() Record {
	if e.Stopped {
		return e.record(RecOptOut, "the contact stopped marketing messages in WhatsApp: MARKETING templates are not sent")
	}
	return e.record(RecOptIn, "the contact resumed marketing messages in WhatsApp")
}
func (e ContactOptedIn) Kind() string   { return RecOptIn }
func (e ContactOptedIn) Record() Record { return e.record(RecOptIn, "the contact opted in") }
func (e HandedOff) Kind() string        { return RecHandoff }
func (e HandedOff) Record() Record {
	if e.Keyword != "" {
		return e.record(RecHandoff, "keyword "+strconv.Quote(e.Keyword)+": handed off to "+e.Queue)
	}
	return e.record(RecHandoff, "handed off to "+e.Queue)
}
func (e HandoffReleased) Kind() string { return RecReleased }
func (e HandoffReleased) Record() Record {
	if e.Keyword != "" {
		return e.record(RecReleased, "keyword "+strconv.Quote(e.Keyword)+" ended the handoff to "+e.Queue)
	}
	return e.record(RecReleased, "released from "+e.Queue)
}
func (e TimerFired) Kind() string    { return RecTimer }
func (e TimerFired) Record() Record  { return e.record(RecTimer, string(e.Timer.Kind)+" fired") }
func (e NoFlowMatched) Kind() string { return RecUnmatched }
func (e NoFlowMatched) Record() Record {
	return e.record(RecUnmatched, "no trigger matched and the bot has no default_flow")
}
func (e ReplyInvalid) Kind() string { return RecRetry }
func (e ReplyInvalid) Record() Record {
	if e.Attempt == 0 {
		return e.record(RecRetry, fmt.Sprintf("retries used up (%d); going to %s", e.Times, e.Then))
	}
	return e.record(RecRetry, fmt.Sprintf("reply not valid; asking again (retry %d)", e.Attempt))
}
func (e ErrorOccurred) Kind() string       { return RecError }
func (e ErrorOccurred) Record() Record     { return e.record(RecError, e.Err) }
func (e TextCut) Kind() string             { return RecWarning }
func (e TextCut) Record() Record           { return e.record(RecWarning, e.What) }
func (e TemplateUnavailable) Kind() string { return RecUnavailable }
func (e TemplateUnavailable) Record() Record {
	return e.record(RecUnavailable, fmt.Sprintf("template %s (%s) not sent: WhatsApp reports it %s; the flow stopped", e.Template, e.Language, e.Status))
}
func (e FreeEntryOpened) Kind() string { return RecFreeEntry }
func (e FreeEntryOpened) Record() Record {
	return e.record(RecFreeEntry, "the answer to the ad's message opened a free entry point: every message is free until "+e.Until.UTC().Format(time.RFC3339))
}
func (e StatusReceived) Kind() string { return RecStatus }
func (e StatusReceived) Record() Record {
	return e.record(RecStatus, fmt.Sprintf("%s for a message not in the recent history (%s)", e.Status, e.WAMID))
}
func (e SendRefused) Kind() string { return RecError }
func (e SendRefused) Record() Record {
	if e.Status {
		return e.record(RecError, fmt.Sprintf("message %s failed: %s", e.MessageID, e.Err))
	}
	return e.record(RecError, fmt.Sprintf("WhatsApp refused message %s with error %d", e.MessageID, e.Code))
}
func (e SkippedAfterFallback) Kind() string { return RecSkipped }
func (e SkippedAfterFallback) Record() Record {
	what := e.MessageKind
	if e.Text != "" {
		what += " " + strconv.Quote(e.Text)
	}
	return e.record(RecSkipped, what+" not sent: this run already sent its fallback template")
}
