package actions

import (
	"context"

	"github.com/flowbot/flowbot/flows"
)

// SendMedia sends the step's image, document, video and audio messages.
type SendMedia struct{ media []*flows.Media }

func newMedia(s *flows.Step) Action {
	if len(s.Media) == 0 {
		return nil
	}
	return &SendMedia{media: s.Media}
}

func (a *SendMedia) Run(_ context.Context, c Conversation) string {
	for _, m := range a.media {
		c.Send(Message{
			Kind:  m.Kind,
			Text:  c.Render(m.Caption),
			Media: &Media{Link: c.Render(m.Link), ID: c.Render(m.ID), Filename: c.Render(m.Filename)},
		})
	}
	return ""
}

var _ Action = (*SendMedia)(nil)
