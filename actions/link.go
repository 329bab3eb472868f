package actions

import (
	"context"
	"errors"

	"github.com/flowbot/flowbot/flows"
)

// Link sends a call-to-action URL button (`link`): its body is link.body,
// else the step's last say text, which then goes out with the button
// instead of on its own (flows.Link.SayIsBody).
type Link struct{ link *flows.Link }

func newLink(s *flows.Step) Action {
	if s.Link == nil {
		return nil
	}
	return &Link{link: s.Link}
}

func (a *Link) Run(_ context.Context, c Conversation) string {
	c.Send(Message{
		Kind: KindLink,
		Text: c.Render(a.link.Body),
		Link: &LinkButton{URL: c.Render(a.link.URL), Text: c.Render(a.link.Text), Header: c.Render(a.link.Header), Footer: c.Render(a.link.Footer)},
	})
	return ""
}

// React reacts to the contact's latest message with an emoji (`react`).
type React struct{ emoji *flows.Text }

func newReact(s *flows.Step) Action {
	if s.React == nil {
		return nil
	}
	return &React{emoji: s.React}
}

func (a *React) Run(_ context.Context, c Conversation) string {
	id := c.LastMessageID()
	if id == "" {
		c.Fail(errors.New("react: the contact has sent no message to react to; nothing was sent"))
		return ""
	}
	emoji := c.Render(a.emoji)
	c.Send(Message{Kind: KindReaction, Text: emoji, Reaction: &Reaction{MessageID: id, Emoji: emoji}})
	return ""
}

var (
	_ Action = (*Link)(nil)
	_ Action = (*React)(nil)
)
