package actions

import (
	"context"
	"fmt"
	"unicode/utf8"

	"github.com/flowbot/flowbot/flows"
)

// Ask sends a question, with its buttons or list, and waits for the reply.
// The reply's validation, saving and retries are the engine's: they happen
// when the reply comes.
type Ask struct{ ask *flows.Ask }

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

// Question renders an ask's message with body as its text: the question
// itself, or a retry's text, keeping the buttons or list tappable.
func Question(c Conversation, ask *flows.Ask, body *flows.Text) Message {
	m := Message{Kind: "text", Text: c.Render(body)}
	switch {
	case len(ask.Buttons) > 0:
		m.Kind = "buttons"
		for _, b := range ask.Buttons {
			m.Buttons = append(m.Buttons, Choice{ID: b.ID, Title: clip(c, b.Title, 20)})
		}
	case ask.List != nil:
		m.Kind = "list"
		l := &List{Button: clip(c, ask.List.Button, 20)}
		for _, s := range ask.List.Sections {
			sec := ListSection{Title: s.Title}
			for _, r := range s.Rows {
				sec.Rows = append(sec.Rows, Choice{ID: r.ID, Title: clip(c, r.Title, 24), Description: clip(c, r.Description, 72)})
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
