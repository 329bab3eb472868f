package actions

import (
	"context"

	"github.com/flowbot/flowbot/flows"
)

// Handoff hands the contact to a human agent (`handoff`): the bot stays
// silent for the contact until the handoff is released.
type Handoff struct{ h *flows.Handoff }

func newHandoff(s *flows.Step) Action {
	if s.Handoff == nil {
		return nil
	}
	return &Handoff{h: s.Handoff}
}

func (a *Handoff) Run(_ context.Context, c Conversation) string {
	c.Pause(Pause{Kind: PauseHandoff, Queue: a.h.Queue, Note: c.Render(a.h.Note)})
	return ""
}

var _ Action = (*Handoff)(nil)
