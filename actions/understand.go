package actions

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/flowbot/flowbot/flows"
)

// Model understands a contact's reply for an ask's classify or extract
// (FLOW_SPEC.md 9.2): a language model behind an OpenAI-compatible API
// (package llm), or the mocks of a test or a dry run.
type Model interface {
	Understand(ctx context.Context, q ModelQuery) (ModelAnswer, error)
}

// ModelQuery is one model call.
type ModelQuery struct {
	// Config is the bot's llm: settings; APIKey the value of its secret.
	Config *flows.LLMConfig
	APIKey string
	// Contact, Flow and Step say who asks, for budgets, mocks and logs.
	Contact, Flow, Step string
	// Text is the contact's reply, cut to Config.MaxText characters.
	Text string
	// Classify or Extract is what the step asks of the reply.
	Classify *flows.Classify
	Extract  []flows.ExtractField
}

// ModelAnswer is what the model found: an intent and its confidence
// (classify), or fields (extract; a field it did not find is absent or
// nil), and the tokens the call used.
type ModelAnswer struct {
	Intent       string
	Confidence   float64
	Fields       map[string]any
	InputTokens  int64
	OutputTokens int64
	// Keyword: the reply was one of an intent's examples, and no model
	// was asked.
	Keyword bool
}

// Why a model call failed: each goes to the step's on_error.
var (
	ErrModelTimeout = errors.New("the model did not answer in time")
	ErrModelRefused = errors.New("the model refused to answer")
	ErrModelInvalid = errors.New("the model's answer does not match the step's schema")
	ErrModelBudget  = errors.New("the model budget is spent")
	ErrNoModel      = errors.New("no language model is configured (llm: in flowbot.yaml)")
)

// ModelErrorKind names a model failure for events and metrics: timeout,
// refusal, invalid, budget or error.
func ModelErrorKind(err error) string {
	switch {
	case errors.Is(err, ErrModelTimeout), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, ErrModelRefused):
		return "refusal"
	case errors.Is(err, ErrModelInvalid):
		return "invalid"
	case errors.Is(err, ErrModelBudget):
		return "budget"
	}
	return "error"
}

// CapText cuts a reply to max characters (runes), at a character.
func CapText(s string, max int) string {
	if max <= 0 || utf8.RuneCountInString(s) <= max {
		return s
	}
	n := 0
	for i := range s {
		if n == max {
			return s[:i]
		}
		n++
	}
	return s
}

// Understanding is what an ask makes of the model's answer: the intent its
// routes read, or the fields it saves, and whether the reply is valid
// (every required field found).
type Understanding struct {
	Intent map[string]any
	Fields map[string]any
	Valid  bool
}

// Understand checks a model's answer against the ask: an intent not among
// the step's, or a field of the wrong type, is ErrModelInvalid; an intent
// below min_confidence reads as "".
func (a *Ask) Understand(ans ModelAnswer) (Understanding, error) {
	if cl := a.ask.Classify; cl != nil {
		name := ans.Intent
		if name != "" && !containsString(cl.Names(), name) {
			return Understanding{}, fmt.Errorf("%w: intent %q is not one of %s", ErrModelInvalid, truncate(name, 40), strings.Join(cl.Names(), ", "))
		}
		if ans.Confidence < 0 || ans.Confidence > 1 {
			return Understanding{}, fmt.Errorf("%w: confidence %g is not between 0 and 1", ErrModelInvalid, ans.Confidence)
		}
		if ans.Confidence < cl.MinConfidence {
			name = ""
		}
		return Understanding{Intent: map[string]any{"name": name, "confidence": ans.Confidence}, Valid: true}, nil
	}
	u := Understanding{Fields: map[string]any{}, Valid: true}
	for _, f := range a.ask.Extract {
		v, ok := ans.Fields[f.Name]
		if !ok || v == nil {
			if !f.Optional {
				u.Valid = false
			}
			u.Fields[f.Name] = f.Zero()
			continue
		}
		got, ok := f.Check(v)
		if !ok {
			return Understanding{}, fmt.Errorf("%w: field %s is not a %s: %v", ErrModelInvalid, f.Name, f.Type, truncate(fmt.Sprint(v), 40))
		}
		u.Fields[f.Name] = got
	}
	return u, nil
}

// Understands reports whether the ask reads its reply through the model.
func (a *Ask) Understands() bool { return a.ask.Classify != nil || len(a.ask.Extract) > 0 }

func containsString(l []string, s string) bool {
	for _, e := range l {
		if e == s {
			return true
		}
	}
	return false
}
