package actions

import (
	"context"

	"github.com/flowbot/flowbot/flows"
)

// Say sends text messages (`say`).
type Say struct{ texts []*flows.Text }

func newSay(s *flows.Step) Action {
	texts := s.Say
	if s.Link != nil && s.Link.SayIsBody {
		texts = texts[:len(texts)-1] // the last is the link's body
	}
	if len(texts) == 0 {
		return nil
	}
	return &Say{texts: texts}
}

func (a *Say) Run(_ context.Context, c Conversation) string {
	for _, t := range a.texts {
		c.Send(Message{Kind: "text", Text: c.Render(t)})
	}
	return ""
}

var _ Action = (*Say)(nil)
