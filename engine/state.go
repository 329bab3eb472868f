package engine

import (
	"time"

	"github.com/flowbot/flowbot/actions"
	"github.com/flowbot/flowbot/flows"
)

// WindowLength is WhatsApp's customer service window.
const WindowLength = 24 * time.Hour

// State is one contact's conversation: everything the engine needs to
// go on from where it left off. It is plain data, stored whole.
type State struct {
	Contact Contact `json:"contact" bson:"contact"`
	// Flow and Step are where the contact is; "" when in no flow.
	Flow        string         `json:"flow,omitempty" bson:"flow,omitempty"`
	Step        string         `json:"step,omitempty" bson:"step,omitempty"`
	FlowVersion string         `json:"flow_version,omitempty" bson:"flow_version,omitempty"`
	Vars        map[string]any `json:"vars,omitempty" bson:"vars,omitempty"`
	// Waiting is what the flow waits for: ask, wait or handoff; "" when
	// not waiting.
	Waiting actions.PauseKind `json:"waiting,omitempty" bson:"waiting,omitempty"`
	// Stack holds the flows that called the current one as a subflow,
	// outermost first: each resumes at its calling step when the one it
	// called ends.
	Stack   []Frame `json:"stack,omitempty" bson:"stack,omitempty"`
	Attempt int     `json:"attempt,omitempty" bson:"attempt,omitempty"`
	// Unasked: the waiting ask's question did not go out as written (the
	// window was closed): the contact's next message gets it asked.
	Unasked bool      `json:"unasked,omitempty" bson:"unasked,omitempty"`
	AskedAt time.Time `json:"asked_at,omitzero" bson:"asked_at,omitempty"`
	// LastInbound is the WhatsApp timestamp of the contact's latest
	// message: the window is open until LastInbound + 24h.
	LastInbound time.Time `json:"last_inbound,omitzero" bson:"last_inbound,omitempty"`
	// WindowClosed is set when WhatsApp answered 131047 (window closed)
	// before LastInbound + 24h; the next inbound message clears it.
	WindowClosed bool `json:"window_closed,omitempty" bson:"window_closed,omitempty"`
	// LastMessageID is the WhatsApp id of the contact's latest message
	// (what `react` reacts to).
	LastMessageID string `json:"last_message_id,omitempty" bson:"last_message_id,omitempty"`
	// ReferralAt is when the contact last wrote from an ad (a message
	// with a referral) that no answer has yet turned into a free entry
	// point; FreeUntil is when the open free entry point ends.
	ReferralAt time.Time `json:"referral_at,omitzero" bson:"referral_at,omitempty"`
	FreeUntil  time.Time `json:"free_until,omitzero" bson:"free_until,omitempty"`
	// MovedTo is the contact's key since their conversation moved there:
	// a contact first known by their business-scoped id alone continues
	// under their wa_id once a webhook gives both; updates that still
	// come under the old key are forwarded.
	MovedTo string `json:"moved_to,omitempty" bson:"moved_to,omitempty"`
	// FormToken is the flow_token of the form the waiting step sent.
	FormToken string        `json:"form_token,omitempty" bson:"form_token,omitempty"`
	Handoff   *HandoffState `json:"handoff,omitempty" bson:"handoff,omitempty"`
	Timers    []Timer       `json:"timers,omitempty" bson:"timers,omitempty"`
	Cost      Cost          `json:"cost" bson:"cost"`
	// Seq numbers the outbound messages and timers, so that ids are
	// deterministic.
	Seq int64 `json:"seq" bson:"seq"`
	// Batch numbers each step's sends; a 131047 failure replaces a batch
	// with its fallback once.
	Batch         int64 `json:"batch" bson:"batch"`
	FallbackBatch int64 `json:"fallback_batch,omitempty" bson:"fallback_batch,omitempty"`
	// Outbox holds committed outbound messages not yet accepted by
	// WhatsApp, in order: they are committed with the state that produced
	// them, so that none is lost between a step and its send.
	Outbox []Outbound `json:"outbox,omitempty" bson:"outbox,omitempty"`
	// Recent is the latest messages sent, with their delivery status,
	// oldest first; at most RecentLimit.
	Recent []Delivery `json:"recent,omitempty" bson:"recent,omitempty"`
	// Log is the latest records of what happened, oldest first; at most
	// LogLimit.
	Log []Record `json:"log,omitempty" bson:"log,omitempty"`
	// Processed holds the keys of the latest inbox items applied to this
	// state, so that an item redelivered after a crash is not applied
	// twice.
	Processed []string `json:"processed,omitempty" bson:"processed,omitempty"`
	// Outcomes are the latest commands' (API starts, releases) outcomes,
	// by their queue keys, so that whoever queued one can tell how it
	// went, from any instance.
	Outcomes []Outcome `json:"outcomes,omitempty" bson:"outcomes,omitempty"`
	// EventsOut are events for other systems (FLOWBOT_EVENTS_URL) made
	// with this version of the record: committed with it, then queued
	// for delivery (again, harmlessly, after a crash).
	EventsOut []EventOut `json:"events_out,omitempty" bson:"events_out,omitempty"`
	// Version is the store's compare-and-swap counter.
	Version int64 `json:"version" bson:"version"`
	// LoadedAt is when a store loaded this state (not stored).
	LoadedAt time.Time `json:"-" bson:"-"`
}

// EventOut is an event for another system, as the record keeps it until
// it is queued: Body is the JSON posted.
type EventOut struct {
	ID    string    `json:"id" bson:"id"`
	Type  string    `json:"type" bson:"type"`
	At    time.Time `json:"at" bson:"at"`
	Order string    `json:"order" bson:"order"`
	Body  []byte    `json:"body" bson:"body"`
}

// Bounds of the state's histories.
const (
	RecentLimit    = 20
	LogLimit       = 50
	ProcessedLimit = 64
)

// Delivery is a sent message and what WhatsApp said of it.
type Delivery struct {
	ID      string    `json:"id" bson:"id"`
	WAMID   string    `json:"wamid,omitempty" bson:"wamid,omitempty"`
	Via     Via       `json:"via" bson:"via"`
	Summary string    `json:"summary" bson:"summary"`
	Flow    string    `json:"flow,omitempty" bson:"flow,omitempty"`
	Step    string    `json:"step,omitempty" bson:"step,omitempty"`
	Batch   int64     `json:"batch,omitempty" bson:"batch,omitempty"`
	At      time.Time `json:"at" bson:"at"`
	// Status is queued, sent, delivered, read, played or failed.
	Status    string    `json:"status" bson:"status"`
	StatusAt  time.Time `json:"status_at,omitzero" bson:"status_at,omitempty"`
	ErrorCode int       `json:"error_code,omitempty" bson:"error_code,omitempty"`
	Error     string    `json:"error,omitempty" bson:"error,omitempty"`
	// Pricing is what WhatsApp reported charging for the message.
	Pricing *Pricing `json:"pricing,omitempty" bson:"pricing,omitempty"`
	// Campaign names the campaign whose start sent the message.
	Campaign string `json:"campaign,omitempty" bson:"campaign,omitempty"`
	// Agent: an agent wrote it.
	Agent bool `json:"agent,omitempty" bson:"agent,omitempty"`
}

// Pricing is a delivery's pricing and conversation, as WhatsApp's
// statuses report them: the category (marketing, utility, service,
// referral_conversion ...), the type (regular, free_customer_service,
// free_entry_point), the model (PMP, CBP), and the conversation's id,
// origin and expiry when given.
type Pricing struct {
	Category       string    `json:"category,omitempty" bson:"category,omitempty"`
	Type           string    `json:"type,omitempty" bson:"type,omitempty"`
	Model          string    `json:"model,omitempty" bson:"model,omitempty"`
	Billable       bool      `json:"billable,omitempty" bson:"billable,omitempty"`
	Conversation   string    `json:"conversation,omitempty" bson:"conversation,omitempty"`
	Origin         string    `json:"origin,omitempty" bson:"origin,omitempty"`
	ConversationTo time.Time `json:"conversation_expires,omitzero" bson:"conversation_expires,omitempty"`
}

// AddLog appends records, keeping the last LogLimit.
func (s *State) AddLog(recs ...Record) {
	s.Log = appendBounded(s.Log, recs, LogLimit)
}

// AddRecent appends deliveries, keeping the last RecentLimit.
func (s *State) AddRecent(d ...Delivery) {
	s.Recent = appendBounded(s.Recent, d, RecentLimit)
}

// Frame is a flow waiting for the subflow it called: its calling step
// and its variables.
type Frame struct {
	Flow string         `json:"flow" bson:"flow"`
	Step string         `json:"step" bson:"step"`
	Vars map[string]any `json:"vars,omitempty" bson:"vars,omitempty"`
}

// Outcome is how a command went: Refused names why it did nothing
// (in_handoff, not_in_handoff, bad_vars, unknown_flow), "" when it ran.
type Outcome struct {
	Key     string `json:"key" bson:"key"`
	Refused string `json:"refused,omitempty" bson:"refused,omitempty"`
	Error   string `json:"error,omitempty" bson:"error,omitempty"`
}

// AddOutcome remembers a command's outcome, keeping the last
// ProcessedLimit.
func (s *State) AddOutcome(o Outcome) {
	s.Outcomes = appendBounded(s.Outcomes, []Outcome{o}, ProcessedLimit)
}

// OutcomeOf returns a command's outcome, if it was applied.
func (s *State) OutcomeOf(key string) (Outcome, bool) {
	for _, o := range s.Outcomes {
		if o.Key == key {
			return o, true
		}
	}
	return Outcome{}, false
}

// MarkProcessed remembers an inbox item's key.
func (s *State) MarkProcessed(key string) {
	s.Processed = appendBounded(s.Processed, []string{key}, ProcessedLimit)
}

// WasProcessed reports whether an inbox item was already applied.
func (s *State) WasProcessed(key string) bool {
	for _, k := range s.Processed {
		if k == key {
			return true
		}
	}
	return false
}

func appendBounded[T any](list, add []T, limit int) []T {
	list = append(list, add...)
	if over := len(list) - limit; over > 0 {
		list = append(list[:0:0], list[over:]...)
	}
	return list
}

// Contact is who the conversation is with.
type Contact struct {
	ID       string `json:"id" bson:"id"`
	Name     string `json:"name,omitempty" bson:"name,omitempty"`
	Language string `json:"language,omitempty" bson:"language,omitempty"`
	OptedOut bool   `json:"opted_out,omitempty" bson:"opted_out,omitempty"`
	// MarketingOptedOut: the contact stopped marketing messages in
	// WhatsApp (a user_preferences event); MARKETING templates are not
	// sent.
	MarketingOptedOut bool `json:"marketing_opted_out,omitempty" bson:"marketing_opted_out,omitempty"`
	// WaID, UserID (the business-scoped user id, BSUID) and Username
	// are what webhooks said of the contact, next to the id it is keyed
	// by.
	WaID     string `json:"wa_id,omitempty" bson:"wa_id,omitempty"`
	UserID   string `json:"user_id,omitempty" bson:"user_id,omitempty"`
	Username string `json:"username,omitempty" bson:"username,omitempty"`
	// Fields are what the bot remembers about the contact, outside any
	// flow (flowbot.yaml's contact_fields): they outlive flows, restarts
	// and new versions of the bot.
	Fields map[string]any `json:"fields,omitempty" bson:"fields,omitempty"`
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
	Queue string    `json:"queue" bson:"queue"`
	Note  string    `json:"note,omitempty" bson:"note,omitempty"`
	Since time.Time `json:"since" bson:"since"`
	// Keyword is true for a handoff started by a global keyword, which has
	// no step to route on from: its release ends the flow.
	Keyword bool `json:"keyword,omitempty" bson:"keyword,omitempty"`
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
	ID   string    `json:"id" bson:"id"`
	Kind TimerKind `json:"kind" bson:"kind"`
	Due  time.Time `json:"due" bson:"due"`
	Flow string    `json:"flow" bson:"flow"`
	Step string    `json:"step" bson:"step"`
	Seq  int64     `json:"seq" bson:"seq"`
}

// Cost is what the conversation has cost so far, by category. A struct
// rather than a map: it is copied with every state, for free.
type Cost struct {
	Marketing      CategoryCost `json:"marketing" bson:"marketing"`
	Utility        CategoryCost `json:"utility" bson:"utility"`
	Authentication CategoryCost `json:"authentication" bson:"authentication"`
	Service        CategoryCost `json:"service" bson:"service"`
}

// CategoryCost is one category's share of the cost.
type CategoryCost struct {
	Amount   float64 `json:"amount" bson:"amount"`
	Messages int     `json:"messages" bson:"messages"`
	// OpenUntil is, under the conversation model, when the category's
	// current 24-hour conversation closes.
	OpenUntil time.Time `json:"open_until,omitzero" bson:"open_until,omitempty"`
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

// NewState is the state of a contact never seen before.
func NewState(id string) *State { return &State{Contact: Contact{ID: id}} }

// WindowOpen reports whether the customer service window is open at now.
func (s *State) WindowOpen(now time.Time) bool {
	return !s.WindowClosed && !s.LastInbound.IsZero() && now.Before(s.LastInbound.Add(WindowLength))
}

// FreeEntryPoint is how long a free entry point lasts: opened by the
// business's answer, within 24 hours, to a message from a
// Click-to-WhatsApp ad or a Page button; every message sent in it is free.
const FreeEntryPoint = 72 * time.Hour

// FreeAt reports whether a free entry point makes a message sent at now
// free.
func (s *State) FreeAt(now time.Time) bool { return now.Before(s.FreeUntil) }

// WindowExpires is when the window closes (or closed).
func (s *State) WindowExpires() time.Time {
	if s.LastInbound.IsZero() {
		return time.Time{}
	}
	return s.LastInbound.Add(WindowLength)
}

// NextTimer returns the timer due first (in the order they were set for
// timers due at the same instant), or false when none is pending or the
// contact is handed off (its timers are held until the release).
func (s *State) NextTimer() (Timer, bool) {
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

// NextWork is when the contact next needs a worker: its next timer's due
// time, or while committed messages wait in the outbox, when their
// sender's claim expires (now, the zero time, for unclaimed ones: the
// sender that claimed them sends them itself). Stores index it, so that
// work left by a crash is found again.
func (s *State) NextWork() (time.Time, bool) {
	t, ok := s.NextTimer()
	if len(s.Outbox) == 0 {
		return t.Due, ok
	}
	claim := s.Outbox[0].ClaimUntil
	if ok && t.Due.Before(claim) {
		return t.Due, true
	}
	return claim, true
}

// Clone returns a deep copy, so that a store's copy and the engine's
// cannot alias.
func (s *State) Clone() *State {
	c := *s
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
	c.Outbox = cloneSlice(s.Outbox)
	c.Recent = cloneSlice(s.Recent)
	c.Log = cloneSlice(s.Log)
	c.Processed = cloneSlice(s.Processed)
	c.Outcomes = cloneSlice(s.Outcomes)
	c.EventsOut = cloneSlice(s.EventsOut)
	return &c
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

func cloneSlice[T any](s []T) []T {
	if s == nil {
		return nil
	}
	return append([]T(nil), s...)
}
