package engine

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/flowbot/flowbot/actions"
	"github.com/flowbot/flowbot/flows"
)

// The window rule (FLOW_SPEC.md section 4). Inside the customer service
// window every send goes out as written. Outside it a free-form send is
// never attempted: the step's free-form messages are replaced by one
// template, the step's fallback or else the flow's; with neither, nothing
// is sent, an undeliverable event names the step and the flow stops.
// Templates go out whatever the window, except to an opted-out contact.

// flush sends the step's queued messages under the window rule. It
// returns false when the flow had to stop.
func (c *conv) flush() bool {
	if len(c.pending) == 0 {
		return true
	}
	for i := range c.pending {
		if status := c.unavailable(&c.pending[i]); status != "" {
			c.templateUnavailable(&c.pending[i], status)
			return false
		}
	}
	batch := c.st.Batch
	if c.st.WindowOpen(c.now) {
		for _, m := range c.pending {
			c.emit(m, false, batch)
		}
		c.pending = c.pending[:0]
		return true
	}
	free := 0
	for i := range c.pending {
		if c.pending[i].Free() {
			free++
		}
	}
	if free == 0 {
		for _, m := range c.pending {
			c.emit(m, false, batch)
		}
		c.pending = c.pending[:0]
		return true
	}
	if c.asks() {
		c.questionNotSent = true // the ask waits "unasked" (FLOW_SPEC.md 8.8)
	}
	if c.fellBack {
		// At most one fallback template per run (FLOW_SPEC.md 8.8): the
		// run's later free-form sends are skipped; templates go out.
		for _, m := range c.pending {
			if m.Free() {
				c.event(SkippedAfterFallback{c.header(), m.Kind, m.Text})
				continue
			}
			c.emit(m, false, batch)
		}
		c.pending = c.pending[:0]
		return true
	}
	fb := fallbackFor(c.flow, c.step)
	if fb == nil {
		c.event(Undeliverable{c.header(), fmt.Sprintf("the window is closed and step %q has no fallback template: %d message(s) not sent; the flow stopped", c.step.Name, free)})
		c.pending = c.pending[:0]
		c.endFlow("undeliverable")
		return false
	}
	replaced := false
	pending := c.pending
	c.pending = nil
	for _, m := range pending {
		if !m.Free() {
			c.emit(m, false, batch)
			continue
		}
		if replaced {
			continue
		}
		replaced = true
		c.fellBack = true
		fm := actions.RenderTemplate(c, fb)
		if status := c.unavailable(&fm); status != "" {
			c.templateUnavailable(&fm, status)
			return false
		}
		c.event(TemplateFallback{c.header(), fb.Name})
		c.emit(fm, true, batch)
	}
	c.pending = pending[:0]
	return true
}

// asks reports whether the step being flushed asks a question (its
// pending messages hold the question).
func (c *conv) asks() bool {
	return c.asking || c.pause != nil && c.pause.Kind == actions.PauseAsk
}

// sendNow sends one message outside a step's batch (opt-out confirmations,
// window-closing nudges), under the same rule.
func (c *conv) sendNow(m actions.Message) {
	if m.Free() && !c.st.WindowOpen(c.now) {
		c.event(Undeliverable{c.header(), "the window is closed: " + strconv.Quote(m.Text) + " not sent"})
		return
	}
	c.emit(m, false, c.st.Batch)
}

// emit records an outbound message and prices it.
func (c *conv) emit(m actions.Message, fallback bool, batch int64) {
	st := c.st
	o := Outbound{To: st.Contact.ID, Via: ViaSession, Message: m, Batch: batch, At: c.now, Fallback: fallback}
	if c.flow != nil {
		o.Flow = c.flow.ID
	}
	if c.step != nil {
		o.Step = c.step.Name
	}
	if !m.Free() {
		o.Via = ViaTemplate
		if t, ok := c.e.opts.Live.Get(m.Template.Name, m.Template.Language); ok && t.Category != "" && t.Category != m.Template.Category {
			// WhatsApp recategorised the template: it is priced, and
			// opted out of, as what it is now.
			tm := *m.Template
			tm.Category = t.Category
			m.Template = &tm
			o.Message = m
		}
		if st.Contact.OptedOut {
			c.event(TemplateNotSent{c.header(), m.Template.Name, false})
			return
		}
		if st.Contact.MarketingOptedOut && m.Template.Category == flows.Marketing {
			c.event(TemplateNotSent{c.header(), m.Template.Name, true})
			return
		}
	}
	for _, cut := range actions.Fit(&o.Message) {
		c.event(TextCut{c.header(), cut})
	}
	st.Seq++
	o.ID = seqID(st.Contact.ID, ":m", st.Seq)
	if code, why := actions.Refusal(&o.Message, o.To); code != 0 {
		// Never handed to WhatsApp, and never charged: it leaves the
		// outbox as failed, the one way a refused message does.
		o.Refused = &Refusal{Code: code, Why: why}
		o.Category = flows.Service
		if !m.Free() {
			o.Category = m.Template.Category
		}
	} else {
		o.Category, o.Cost = c.price(&m)
	}
	c.res.Outbound = append(c.res.Outbound, o)
	c.event(MsgCreated{c.header(), o.ID})
}

// price charges a message under the bot's pricing model (FLOW_SPEC.md
// section 6) and returns its category and what it added.
func (c *conv) price(m *actions.Message) (flows.Category, float64) {
	p := &c.e.bot.Settings.Pricing
	cat := flows.Service
	if !m.Free() && m.Template.Category != "" {
		cat = m.Template.Category
	}
	cc := c.st.Cost.Of(cat)
	st := c.st
	if !st.ReferralAt.IsZero() && c.now.Before(st.ReferralAt.Add(WindowLength)) && !st.FreeAt(c.now) {
		// The first answer to an ad's message opens the free entry
		// point (FLOW_SPEC.md 8.6).
		st.FreeUntil, st.ReferralAt = c.now.Add(FreeEntryPoint), time.Time{}
		c.event(FreeEntryOpened{c.header(), st.FreeUntil})
	}
	if st.FreeAt(c.now) {
		cc.Messages++
		return cat, 0
	}
	var charge float64
	switch p.Model {
	case flows.Conversation:
		if !c.now.Before(cc.OpenUntil) {
			cc.OpenUntil = c.now.Add(WindowLength)
			charge = p.Rates[cat]
		}
	default:
		charge = p.Rates[cat]
		if cat == flows.Utility && !m.Free() && p.UtilityFreeInWindow && c.st.WindowOpen(c.now) {
			charge = 0
		}
	}
	cc.Amount += charge
	cc.Messages++
	return cat, charge
}

// agent commits an agent's message, under the window rule with no
// fallback: a free-form message while the window is closed, or a
// template the contact opted out of or the account cannot send, is
// refused (nothing is committed) so that the agent can choose otherwise.
func (c *conv) agent(m *actions.Message, forced bool) error {
	if m == nil {
		return errors.New("an agent's message without its message")
	}
	st := c.st
	if m.Free() {
		if !st.WindowOpen(c.now) {
			return ErrWindowClosed
		}
	} else {
		switch {
		case st.Contact.OptedOut:
			return ErrOptedOut
		case st.Contact.MarketingOptedOut && m.Template.Category == flows.Marketing:
			return fmt.Errorf("%w of marketing messages, and %s is a MARKETING template", ErrOptedOut, m.Template.Name)
		}
		if status := c.unavailable(m); status != "" {
			return fmt.Errorf("%w: %s is %s", ErrTemplateUnavailable, m.Template.Name, status)
		}
	}
	st.Batch++
	before := len(c.res.Outbound)
	c.emit(*m, false, st.Batch)
	for i := before; i < len(c.res.Outbound); i++ {
		o := &c.res.Outbound[i]
		o.Agent = true
		c.event(AgentMessage{c.header(), o.ID, summary(o.Message), forced})
	}
	return nil
}

// summary is a message on one line, for the log.
func summary(m actions.Message) string {
	if m.Template != nil {
		return "template " + m.Template.Name
	}
	if len(m.Text) > 80 {
		return m.Text[:80] + "..."
	}
	return m.Text
}

// SuggestTemplate names the template the bot itself would send the
// contact now that the window is closed: the fallback of the step the
// contact is at, else of its flow (of the default flow for a contact in
// none); "" when there is none.
func (e *Engine) SuggestTemplate(st *Session) string {
	f := e.bot.Flow(st.Flow)
	if f == nil {
		f = e.bot.Flow(e.bot.Settings.DefaultFlow)
	}
	if f == nil {
		return ""
	}
	var step *flows.Step
	if st.Step != "" {
		step = f.Steps[st.Step]
	}
	if fb := fallbackFor(f, step); fb != nil {
		return fb.Name
	}
	return ""
}
