package engine

import (
	"sync/atomic"

	"github.com/flowbot/flowbot/actions"
	"github.com/flowbot/flowbot/flows"
)

// LiveTemplate is what the account's events say of a template in one
// language now: its status and category ("" when no event said).
type LiveTemplate struct {
	Status   string
	Category flows.Category
}

// Live holds the templates' live states, by "name/language", for every
// engine of a server (a reload keeps them). It is safe for concurrent
// use; the server replaces the whole map when an event arrives or another
// instance recorded one.
type Live struct {
	m atomic.Pointer[map[string]LiveTemplate]
}

// Set replaces the live states.
func (l *Live) Set(m map[string]LiveTemplate) { l.m.Store(&m) }

// Get returns a template's live state.
func (l *Live) Get(name, lang string) (LiveTemplate, bool) {
	if l == nil {
		return LiveTemplate{}, false
	}
	m := l.m.Load()
	if m == nil {
		return LiveTemplate{}, false
	}
	t, ok := (*m)[name+"/"+lang]
	return t, ok
}

// Unavailable reports whether a template's status keeps it from being
// sent: WhatsApp paused, disabled or rejected it, or it is being deleted.
func Unavailable(status string) bool {
	switch status {
	case "PAUSED", "DISABLED", "REJECTED", "PENDING_DELETION", "DELETED", "ARCHIVED":
		return true
	}
	return false
}

// unavailable is the live status that keeps a template message from being
// sent ("" when it may go out).
func (c *conv) unavailable(m *actions.Message) string {
	if m.Free() || m.Template == nil {
		return ""
	}
	if t, ok := c.e.opts.Live.Get(m.Template.Name, m.Template.Language); ok && Unavailable(t.Status) {
		return t.Status
	}
	return ""
}

// templateUnavailable records a template the account cannot send and
// stops the flow there, like an undeliverable step (FLOW_SPEC.md 8.9).
func (c *conv) templateUnavailable(m *actions.Message, status string) {
	c.event(TemplateUnavailable{c.header(), m.Template.Name, m.Template.Language, status})
	c.pending = c.pending[:0]
	c.endFlow("template unavailable")
}
