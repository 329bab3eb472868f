package actions

import (
	"context"
	"fmt"
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
// after attempt retries so far.
func (a *Ask) Judge(c Conversation, attempt int) Verdict {
	v := a.ask.Validate
	if v == nil {
		return Accepted
	}
	ok, err := v.EvalBool(c.Env())
	if err != nil {
		c.Fail(err)
	}
	c.TraceCondition(v.Src, ok)
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

// Saved is the variable a reply is saved in and the value (its choice
// id, else its text); ok is false when the ask saves nothing.
func (a *Ask) Saved(choice, text string) (name, value string, ok bool) {
	if a.ask.Save == "" {
		return "", "", false
	}
	if choice != "" {
		return a.ask.Save, choice, true
	}
	return a.ask.Save, text, true
}

// Question renders an ask's message with body as its text: the question
// itself, or a retry's text, keeping the buttons or list tappable.
func Question(c Conversation, ask *flows.Ask, body *flows.Text) Message {
	m := Message{Kind: "text", Text: c.Render(body)}
	switch {
	case len(ask.Buttons) > 0:
		m.Kind = "buttons"
		for _, b := range ask.Buttons {
			m.Buttons = append(m.Buttons, Choice{ID: b.ID, Title: clip(c, b.Title, flows.MaxButtonTitle)})
		}
	case ask.List != nil:
		m.Kind = "list"
		l := &List{Button: clip(c, ask.List.Button, flows.MaxListButton)}
		for _, s := range ask.List.Sections {
			sec := ListSection{Title: s.Title}
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
