package engine

import (
	"time"

	"github.com/flowbot/flowbot/actions"
	"github.com/flowbot/flowbot/flows"
)

// WindowLength is WhatsApp's customer service window.
const WindowLength = 24 * time.Hour

// Session is one contact's conversation as the engine sees it: where
// the contact is in which flow, the flow's variables, what the flow waits
// for, its timers, the customer service window, the handoff and the cost.
// It is plain data with no storage in it: the host keeps it inside its
// record of the contact (engine/conversation.Record) and decides how that
// is stored. Its JSON form (the field tags) is how the API shows it.
type Session struct {
	Contact Contact `json:"contact"`
	// Flow and Step are where the contact is; "" when in no flow.
	Flow string         `json:"flow,omitempty"`
	Step string         `json:"step,omitempty"`
	Vars map[string]any `json:"vars,omitempty"`
	// Waiting is what the flow waits for: ask, wait or handoff; "" when
	// not waiting.
	Waiting actions.PauseKind `json:"waiting,omitempty"`
	// Stack holds the flows that called the current one as a subflow,
	// outermost first: each resumes at its calling step when the one it
	// called ends.
	Stack   []Frame `json:"stack,omitempty"`
	Attempt int     `json:"attempt,omitempty"`
	// Unasked: the waiting ask's question did not go out as written (the
	// window was closed): the contact's next message gets it asked.
	Unasked bool      `json:"unasked,omitempty"`
	AskedAt time.Time `json:"asked_at,omitempty,omitzero"`
	// LastInbound is the WhatsApp timestamp of the contact's latest
	// message: the window is open until LastInbound + 24h.
	LastInbound time.Time `json:"last_inbound,omitempty,omitzero"`
	// WindowClosed is set when WhatsApp answered 131047 (window closed)
	// before LastInbound + 24h; the next inbound message clears it.
	WindowClosed bool `json:"window_closed,omitempty"`
	// LastMessageID is the WhatsApp id of the contact's latest message
	// (what `react` reacts to).
	LastMessageID string `json:"last_message_id,omitempty"`
	// ReferralAt is when the contact last wrote from an ad (a message
	// with a referral) that no answer has yet turned into a free entry
	// point; FreeUntil is when the open free entry point ends.
	ReferralAt time.Time `json:"referral_at,omitempty,omitzero"`
	FreeUntil  time.Time `json:"free_until,omitempty,omitzero"`
	// FormToken is the flow_token of the form the waiting step sent.
	FormToken string        `json:"form_token,omitempty"`
	Handoff   *HandoffState `json:"handoff,omitempty"`
	Timers    []Timer       `json:"timers,omitempty"`
	Cost      Cost          `json:"cost"`
	// ModelDay and ModelCalls count the model calls (classify, extract)
	// the contact caused on that UTC day, for llm.budget.per_contact_per_day.
	ModelDay   string `json:"model_day,omitempty"`
	ModelCalls int    `json:"model_calls,omitempty"`
	// Seq numbers the outbound messages and timers, so that ids are
	// deterministic.
	Seq int64 `json:"seq"`
	// Batch numbers each step's sends; a 131047 failure replaces a batch
	// with its fallback once.
	Batch         int64 `json:"batch"`
	FallbackBatch int64 `json:"fallback_batch,omitempty"`
}

// Frame is a flow waiting for the subflow it called: its calling step
// and its variables.
type Frame struct {
	Flow string         `json:"flow"`
	Step string         `json:"step"`
	Vars map[string]any `json:"vars,omitempty"`
}

// Contact is who the conversation is with.
type Contact struct {
	ID       string `json:"id"`
	Name     string `json:"name,omitempty"`
	Language string `json:"language,omitempty"`
	// LanguageFrom says who set Language: a flow (flows.LanguageFromFlow)
	// or the start that gave it (flows.LanguageFromStart).
	LanguageFrom string `json:"language_from,omitempty"`
	OptedOut     bool   `json:"opted_out,omitempty"`
	// MarketingOptedOut: the contact stopped marketing messages in
	// WhatsApp (a user_preferences event); MARKETING templates are not
	// sent.
	MarketingOptedOut bool `json:"marketing_opted_out,omitempty"`
	// WaID, UserID (the business-scoped user id, BSUID) and Username
	// are what webhooks said of the contact, next to the id it is keyed
	// by.
	WaID     string `json:"wa_id,omitempty"`
	UserID   string `json:"user_id,omitempty"`
	Username string `json:"username,omitempty"`
	// Fields are what the bot remembers about the contact, outside any
	// flow (flowbot.yaml's contact_fields): they outlive flows, restarts
	// and new versions of the bot.
	Fields map[string]any `json:"fields,omitempty"`
}

// LanguageIn is the contact's language under the bot's settings, and
// where it came from (flows.Config.ContactLanguage).
func (c *Contact) LanguageIn(s *flows.Config) (lang, from string) {
	wa := c.WaID
	if wa == "" {
		wa = c.ID
	}
	return s.ContactLanguage(c.Language, c.LanguageFrom, wa)
}

// Learn keeps what a webhook said of who the contact is.
func (c *Contact) Learn(waID, userID, username string) {
	if waID != "" {
		c.WaID = waID
	}
	if userID != "" {
		c.UserID = userID
	}
	if username != "" {
		c.Username = username
	}
}

// HandoffState is a contact handed to a human agent.
type HandoffState struct {
	Queue string    `json:"queue"`
	Note  string    `json:"note,omitempty"`
	Since time.Time `json:"since"`
	// Keyword is true for a handoff started by a global keyword, which has
	// no step to route on from: its release ends the flow.
	Keyword bool `json:"keyword,omitempty"`
}

// TimerKind is what a timer is for.
type TimerKind string

const (
	TimerWait          TimerKind = "wait"
	TimerTimeout       TimerKind = "timeout"
	TimerWindowClosing TimerKind = "window_closing"
)

// Timer is a durable timer, stored with the contact.
type Timer struct {
	ID   string    `json:"id"`
	Kind TimerKind `json:"kind"`
	Due  time.Time `json:"due"`
	Flow string    `json:"flow"`
	Step string    `json:"step"`
	Seq  int64     `json:"seq"`
}

// Cost is what the conversation has cost so far, by category. A struct
// rather than a map: it is copied with every state, for free.
type Cost struct {
	Marketing      CategoryCost `json:"marketing"`
	Utility        CategoryCost `json:"utility"`
	Authentication CategoryCost `json:"authentication"`
	Service        CategoryCost `json:"service"`
	// LLM is what the contact's model calls (classify, extract) cost,
	// beside WhatsApp's (not in Total).
	LLM ModelCost `json:"llm,omitzero"`
}

// ModelCost is what model calls cost: the calls, their tokens, and the
// amount at llm.price.
type ModelCost struct {
	Calls  int     `json:"calls"`
	Tokens int64   `json:"tokens"`
	Amount float64 `json:"amount"`
}

// CategoryCost is one category's share of the cost.
type CategoryCost struct {
	Amount   float64 `json:"amount"`
	Messages int     `json:"messages"`
	// OpenUntil is, under the conversation model, when the category's
	// current 24-hour conversation closes.
	OpenUntil time.Time `json:"open_until,omitempty,omitzero"`
}

// Of returns a category's cost.
func (c *Cost) Of(cat flows.Category) *CategoryCost {
	switch cat {
	case flows.Marketing:
		return &c.Marketing
	case flows.Utility:
		return &c.Utility
	case flows.Authentication:
		return &c.Authentication
	}
	return &c.Service
}

// Total sums the cost over categories.
func (c Cost) Total() float64 {
	return c.Marketing.Amount + c.Utility.Amount + c.Authentication.Amount + c.Service.Amount
}

// NewSession is the session of a contact never seen before.
func NewSession(id string) *Session { return &Session{Contact: Contact{ID: id}} }

// WindowOpen reports whether the customer service window is open at now.
func (s *Session) WindowOpen(now time.Time) bool {
	return !s.WindowClosed && !s.LastInbound.IsZero() && now.Before(s.LastInbound.Add(WindowLength))
}

// FreeEntryPoint is how long a free entry point lasts: opened by the
// business's answer, within 24 hours, to a message from a
// Click-to-WhatsApp ad or a Page button; every message sent in it is free.
const FreeEntryPoint = 72 * time.Hour

// FreeAt reports whether a free entry point makes a message sent at now
// free.
func (s *Session) FreeAt(now time.Time) bool { return now.Before(s.FreeUntil) }

// WindowExpires is when the window closes (or closed).
func (s *Session) WindowExpires() time.Time {
	if s.LastInbound.IsZero() {
		return time.Time{}
	}
	return s.LastInbound.Add(WindowLength)
}

// NextTimer returns the timer due first (in the order they were set for
// timers due at the same instant), or false when none is pending or the
// contact is handed off (its timers are held until the release).
func (s *Session) NextTimer() (Timer, bool) {
	if s.Handoff != nil {
		return Timer{}, false // timers are held during a handoff (FLOW_SPEC.md 8.7)
	}
	var best Timer
	found := false
	for _, t := range s.Timers {
		if !found || t.Due.Before(best.Due) || t.Due.Equal(best.Due) && t.Seq < best.Seq {
			best, found = t, true
		}
	}
	return best, found
}

// Clone returns a deep copy, so that a store's copy and the engine's
// cannot alias.
func (s *Session) Clone() *Session {
	c := new(Session)
	s.CopyTo(c)
	return c
}

// CopyTo makes dst a deep copy of s (a host's record copies its session
// in place, without another allocation).
func (s *Session) CopyTo(dst *Session) {
	*dst = *s
	c := dst
	c.Vars = cloneMap(s.Vars)
	c.Contact.Fields = cloneMap(s.Contact.Fields)
	if s.Stack != nil {
		c.Stack = make([]Frame, len(s.Stack))
		for i, f := range s.Stack {
			c.Stack[i] = Frame{Flow: f.Flow, Step: f.Step, Vars: cloneMap(f.Vars)}
		}
	}
	if s.Handoff != nil {
		h := *s.Handoff
		c.Handoff = &h
	}
	c.Timers = cloneSlice(s.Timers)
}

// CloneVars deep-copies variables.
func CloneVars(m map[string]any) map[string]any { return cloneMap(m) }

func cloneMap(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = cloneValue(v)
	}
	return out
}

func cloneValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		return cloneMap(v)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = cloneValue(e)
		}
		return out
	}
	return v
}

// CloneSlice copies a slice (nil stays nil).
func CloneSlice[T any](s []T) []T { return cloneSlice(s) }

func cloneSlice[T any](s []T) []T {
	if s == nil {
		return nil
	}
	return append([]T(nil), s...)
}
