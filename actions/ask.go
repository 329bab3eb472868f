package actions

import (
	"context"
	"fmt"
	"maps"
	"unicode/utf8"

	"github.com/flowbot/flowbot/flows"
)

// Ask sends a question, with its buttons or list, and waits for the reply;
// when the reply comes, it says what the reply means: valid or not
// (validate), retries used up or ask again (retry), what to save (save).
// The engine applies that to the conversation; an ask's meaning lives
// here.
type Ask struct{ ask *flows.Ask }

// AskOf is the ask of a step that has one.
func AskOf(ask *flows.Ask) *Ask { return &Ask{ask: ask} }

func newAsk(s *flows.Step) Action {
	if s.Ask == nil {
		return nil
	}
	return &Ask{ask: s.Ask}
}

func (a *Ask) Run(_ context.Context, c Conversation) string {
	m := Question(c, a.ask, a.ask.Text)
	c.Send(m)
	c.Pause(Pause{Kind: PauseAsk})
	return ""
}

// Verdict is what an ask makes of a reply.
type Verdict int

const (
	// Accepted: the reply is valid; save it and route on.
	Accepted Verdict = iota
	// AskAgain: not valid; ask again (Again renders the retry's message).
	AskAgain
	// GiveUp: not valid, and the retries are used up: go to the retry's
	// then step.
	GiveUp
)

// Judge says what the reply (already in the environment as message) means
// after attempt retries so far. A form accepts only its answer and a
// location request only a location, before any validate.
func (a *Ask) Judge(c Conversation, attempt int) Verdict { return a.JudgeReply(c, attempt, true) }

// JudgeReply is Judge for a reply already found valid or not by the
// model (an extract missing a required field is not).
func (a *Ask) JudgeReply(c Conversation, attempt int, valid bool) Verdict {
	msg := &c.Env().Message
	ok := valid
	switch a.ask.Kind {
	case flows.AskForm:
		ok = msg.Form != nil
	case flows.AskLocation:
		ok = msg.Type == "location"
	}
	if v := a.ask.Validate; ok && v != nil {
		var err error
		ok, err = v.EvalBool(c.Env())
		if err != nil {
			c.Fail(err)
		}
		c.TraceCondition(v.Src, ok)
	}
	switch {
	case ok:
		return Accepted
	case a.ask.Retry != nil && attempt >= a.ask.Retry.Times:
		return GiveUp
	}
	return AskAgain
}

// Again renders the message that asks again: the retry's text if it has
// one, else the question, with the buttons or list still tappable.
func (a *Ask) Again(c Conversation) Message {
	body := a.ask.Text
	if r := a.ask.Retry; r != nil && r.Say != nil {
		body = r.Say
	}
	return Question(c, a.ask, body)
}

// Then is where the ask goes when its retries are used up.
func (a *Ask) Then() string {
	if a.ask.Retry == nil {
		return ""
	}
	return a.ask.Retry.Then
}

// Saved is the variable a reply is saved in and the value: a form's
// answer (message.form), a location (message.location as data), else the
// choice id, else the text; ok is false when the ask saves nothing.
func (a *Ask) Saved(m *flows.MessageEnv) (name string, value any, ok bool) {
	if a.ask.Save == "" {
		return "", nil, false
	}
	switch {
	case a.ask.Kind == flows.AskForm:
		return a.ask.Save, maps.Clone(m.Form), true
	case a.ask.Kind == flows.AskLocation:
		return a.ask.Save, m.Location.Data(), true
	case m.Choice != "":
		return a.ask.Save, m.Choice, true
	}
	return a.ask.Save, m.Text, true
}

// Question renders an ask's message with body as its text: the question
// itself, or a retry's text, keeping the buttons or list tappable.
func Question(c Conversation, ask *flows.Ask, body *flows.Text) Message {
	m := Message{Kind: "text", Text: c.Render(body)}
	switch {
	case ask.Kind == flows.AskForm:
		f := ask.Form
		m.Kind = KindForm
		fm := &FormMessage{FlowID: c.Render(f.FlowID), CTA: clip(c, f.CTA, flows.MaxButtonTitle), Screen: f.Screen, Token: c.FormToken(), Mode: f.Mode,
			Header: c.Render(f.Header), Footer: c.Render(f.Footer)}
		if f.Data != nil {
			data, err := f.Data.Render(c.Env())
			if err != nil {
				c.Fail(fmt.Errorf("form.data: %w", err))
			}
			fm.Data, _ = data.(map[string]any)
		}
		m.Form = fm
	case ask.Kind == flows.AskLocation:
		m.Kind = KindLocationRequest
	case len(ask.Buttons) > 0:
		m.Kind = "buttons"
		for _, b := range ask.Buttons {
			m.Buttons = append(m.Buttons, Choice{ID: b.ID, Title: clip(c, b.Title, flows.MaxButtonTitle)})
		}
	case ask.List != nil:
		m.Kind = "list"
		l := &List{Button: clip(c, ask.List.Button, flows.MaxListButton)}
		for _, s := range ask.List.Sections {
			sec := ListSection{}
			if s.Title != nil {
				sec.Title = c.Render(s.Title)
			}
			for _, r := range s.Rows {
				sec.Rows = append(sec.Rows, Choice{ID: r.ID, Title: clip(c, r.Title, flows.MaxRowTitle), Description: clip(c, r.Description, flows.MaxRowDescription)})
			}
			l.Sections = append(l.Sections, sec)
		}
		m.List = l
	}
	return m
}

// clip renders a label and cuts it to WhatsApp's limit, recording the cut:
// a label over the limit would make WhatsApp refuse the whole message.
func clip(c Conversation, t *flows.Text, limit int) string {
	s := c.Render(t)
	if utf8.RuneCountInString(s) <= limit {
		return s
	}
	c.Fail(fmt.Errorf("label %q (from %q) is longer than WhatsApp's %d characters and was cut", s, t.Src, limit))
	return string([]rune(s)[:limit])
}

var _ Action = (*Ask)(nil)
