package actions

import (
	"context"

	"github.com/flowbot/flowbot/flows"
)

// Template sends an approved template whatever the window (`template`).
type Template struct{ send *flows.TemplateSend }

func newTemplate(s *flows.Step) Action {
	if s.Template == nil {
		return nil
	}
	return &Template{send: s.Template}
}

func (a *Template) Run(_ context.Context, c Conversation) string {
	c.Send(RenderTemplate(c, a.send))
	return ""
}

var _ Action = (*Template)(nil)
