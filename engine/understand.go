package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/flowbot/flowbot/actions"
	"github.com/flowbot/flowbot/flows"
)

// ModelCalled: a classify or extract step asked the language model (or
// its keywords answered without it).
type ModelCalled struct {
	Header
	// What is classify or extract.
	What       string  `json:"what,omitempty"`
	Intent     string  `json:"intent,omitempty"`
	Confidence float64 `json:"confidence,omitempty"`
	// Keyword: the reply was one of an intent's examples; no model was
	// asked, and nothing was spent.
	Keyword      bool  `json:"keyword,omitempty"`
	InputTokens  int64 `json:"input_tokens,omitempty"`
	OutputTokens int64 `json:"output_tokens,omitempty"`
	// Cost is the call's tokens at llm.price, in pricing.currency.
	Cost float64 `json:"cost,omitempty"`
	// Took is the call's wall time.
	Took time.Duration `json:"took,omitempty"`
	// Error names a failure: timeout, refusal, invalid, budget or error.
	Error  string `json:"error,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// Kind implements Event.
func (e ModelCalled) Kind() string { return RecModel }

// Record implements Event.
func (e ModelCalled) Record() Record {
	var d string
	switch {
	case e.Error != "":
		d = fmt.Sprintf("%s failed (%s): %s", e.What, e.Error, e.Detail)
	case e.Keyword:
		d = fmt.Sprintf("classify: intent %q from the step's keywords (no model call)", e.Intent)
	case e.What == "classify":
		d = fmt.Sprintf("classify: intent %q (confidence %.2f), %d+%d tokens in %s", e.Intent, e.Confidence, e.InputTokens, e.OutputTokens, e.Took.Round(time.Millisecond))
	default:
		d = fmt.Sprintf("extract: %d+%d tokens in %s", e.InputTokens, e.OutputTokens, e.Took.Round(time.Millisecond))
	}
	return e.record(RecModel, d)
}

// understand asks the model (or the step's keywords) what the reply means,
// within the budgets and the timeout, and checks the answer.
func (c *conv) understand(m *Inbound) (actions.Understanding, error) {
	step := c.step
	cfg := c.e.bot.Settings.LLM
	ask := actions.AskOf(step.Ask)
	ev := ModelCalled{Header: c.header(), What: "extract"}
	if step.Ask.Classify != nil {
		ev.What = "classify"
	}
	var ans actions.ModelAnswer
	var err error
	if cl := step.Ask.Classify; cl != nil {
		if name, ok := cl.Keyword(m.Text); ok {
			ans = actions.ModelAnswer{Intent: name, Confidence: 1, Keyword: true}
		}
	}
	if !ans.Keyword {
		var t timedAnswer
		t, err = c.askModel(cfg, step, m)
		ans, ev.Took = t.ModelAnswer, t.took
	}
	ev.Keyword, ev.InputTokens, ev.OutputTokens = ans.Keyword, ans.InputTokens, ans.OutputTokens
	if cfg != nil {
		ev.Cost = (float64(ans.InputTokens)*cfg.InputPerMillion + float64(ans.OutputTokens)*cfg.OutputPerMillion) / 1e6
	}
	var u actions.Understanding
	if err == nil {
		u, err = ask.Understand(ans)
	}
	if err != nil {
		ev.Error, ev.Detail = actions.ModelErrorKind(err), c.Redact(err.Error())
	} else if u.Intent != nil {
		ev.Intent, _ = u.Intent["name"].(string)
		ev.Confidence = ans.Confidence
	}
	if !ev.Keyword {
		mc := &c.st.Cost.LLM
		mc.Calls++
		mc.Tokens += ev.InputTokens + ev.OutputTokens
		mc.Amount += ev.Cost
	}
	c.event(ev)
	return u, err
}

// timedAnswer is a model's answer and how long it took.
type timedAnswer struct {
	actions.ModelAnswer
	took time.Duration
}

// askModel calls the model, once the contact's daily budget allows it.
func (c *conv) askModel(cfg *flows.LLMConfig, step *flows.Step, m *Inbound) (timedAnswer, error) {
	if c.e.opts.Model == nil || cfg == nil {
		return timedAnswer{}, actions.ErrNoModel
	}
	st := c.st
	day := c.now.UTC().Format("2006-01-02")
	if st.ModelDay != day {
		st.ModelDay, st.ModelCalls = day, 0
	}
	if cfg.PerContactPerDay > 0 && st.ModelCalls >= cfg.PerContactPerDay {
		return timedAnswer{}, fmt.Errorf("%w: %d calls for this contact today (llm.budget.per_contact_per_day)", actions.ErrModelBudget, st.ModelCalls)
	}
	st.ModelCalls++
	q := actions.ModelQuery{Config: cfg, Contact: st.Contact.ID, Flow: step.Flow, Step: step.Name,
		Text: actions.CapText(m.Text, cfg.MaxText), Classify: step.Ask.Classify, Extract: step.Ask.Extract}
	if cfg.APIKey != "" {
		q.APIKey = c.e.opts.Secrets[cfg.APIKey]
	}
	ctx, cancel := context.WithTimeout(c.ctx, cfg.Timeout)
	defer cancel()
	start := time.Now()
	ans, err := c.e.opts.Model.Understand(ctx, q)
	took := time.Since(start)
	if err != nil && ctx.Err() == context.DeadlineExceeded && !errors.Is(err, actions.ErrModelTimeout) {
		err = fmt.Errorf("%w (%s): %v", actions.ErrModelTimeout, cfg.Timeout, err)
	}
	return timedAnswer{ans, took}, err
}

// modelFailed takes the step's on_error: the model timed out, failed,
// answered off-schema, or the budget is spent.
func (c *conv) modelFailed(err error) {
	c.event(ErrorOccurred{c.header(), "classify/extract: " + c.Redact(err.Error()) + "; going to on_error"})
	c.leavePause()
	to := c.step.OnError
	c.took(c.step, c.step.EdgeOf(flows.EdgeOnError))
	c.run(to)
}
