package actions

import (
	"context"

	"github.com/flowbot/flowbot/flows"
)

// Wait pauses the flow on a durable timer (`wait`); the engine sets the
// timer and routes on when it fires.
type Wait struct{}

func newWait(s *flows.Step) Action {
	if !s.HasWait {
		return nil
	}
	return &Wait{}
}

func (a *Wait) Run(_ context.Context, c Conversation) string {
	c.Pause(Pause{Kind: PauseWait})
	return ""
}

var _ Action = (*Wait)(nil)
