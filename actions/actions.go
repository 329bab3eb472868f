// Package actions implements what a step does, one file per step key: set,
// call, say, media, template, ask, wait and handoff. The engine builds each
// step's actions once, when it is given a bot (Build), and runs them in the
// order of FLOW_SPEC.md section 2; routing and the window rule stay in the
// engine.
package actions

import (
	"context"
	"net/http"

	"github.com/flowbot/flowbot/flows"
)

// Action is one step key's work.
type Action interface {
	// Run does the work. A non-empty Goto leaves the step at once for
	// that step (a failed call's on_error).
	Run(ctx context.Context, c Conversation) (goTo string)
}

// Doer sends HTTP requests; *http.Client is one, and dry runs answer from
// mocks.
type Doer interface {
	Do(*http.Request) (*http.Response, error)
}

// Conversation is what an action sees of the contact's running
// conversation. The engine implements it.
type Conversation interface {
	// Env is the expression environment, filled for this step.
	Env() *flows.Env
	// Step is the step being run.
	Step() *flows.Step
	// Render fills a text in; a failing expression is recorded as an
	// error event and renders as "".
	Render(t *flows.Text) string
	// SetVar assigns a flow variable; a value of the wrong type is
	// recorded as an error event and not assigned.
	SetVar(name string, v any) bool
	// Send queues a message of the step; the engine applies the window
	// rule when the step's sends are complete.
	Send(m Message)
	// Pause makes the flow wait after the step's sends.
	Pause(p Pause)
	// HTTP is the client for calls.
	HTTP() Doer
	// Fail records an error event naming the flow and the step.
	Fail(err error)
	// TraceCondition, TraceSet and TraceCall record what a step did (shown
	// by --trace), when tracing: a validate's value, a variable set (the
	// value as shown, redacted), a call going out (status 0) and its
	// answer.
	TraceCondition(expr string, value bool)
	TraceSet(name, value string)
	TraceCall(method, url string, status int)
	// Tracing reports whether Trace lines are kept.
	Tracing() bool
	// DefaultLanguage is the bot's default template language.
	DefaultLanguage() string
	// Redact hides secret values in a string meant for traces or logs.
	Redact(s string) string
	// FormToken is the flow_token of the waiting step's form: the same
	// while the step waits, so that any of its sends can be answered.
	FormToken() string
	// LastMessageID is the id of the contact's latest message; "" when
	// there is none.
	LastMessageID() string
}

// PauseKind is why a flow waits.
type PauseKind string

const (
	PauseAsk     PauseKind = "ask"
	PauseWait    PauseKind = "wait"
	PauseHandoff PauseKind = "handoff"
)

// Pause is a step's wait.
type Pause struct {
	Kind    PauseKind
	Queue   string // handoff
	Note    string // handoff
	Message *Message
}

// Build returns the actions of a step, in the order they run. This
// explicit registry is the one place that maps step keys to actions.
func Build(s *flows.Step) []Action {
	var out []Action
	for _, b := range registry {
		if a := b(s); a != nil {
			out = append(out, a)
		}
	}
	return out
}

var registry = []func(*flows.Step) Action{
	newSet,
	newCall,
	newSay,
	newMedia,
	newTemplate,
	newLink,
	newReact,
	newAsk,
	newWait,
	newHandoff,
}
