package actions

import (
	"context"

	"github.com/flowbot/flowbot/flows"
)

// Say sends text messages (`say`).
type Say struct{ texts []*flows.Text }

func newSay(s *flows.Step) Action {
	if len(s.Say) == 0 {
		return nil
	}
	return &Say{texts: s.Say}
}

func (a *Say) Run(_ context.Context, c Conversation) string {
	for _, t := range a.texts {
		c.Send(Message{Kind: "text", Text: c.Render(t)})
	}
	return ""
}

var _ Action = (*Say)(nil)
