package conversation

import (
	"time"

	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/flows"
)

// Record is a contact's conversation record: the engine's session, and
// what a host keeps around it (Host). Both hosts, `flowbot serve` and
// the dry run, keep this record, and change it only through a Keeper.
type Record struct {
	engine.Session
	Host
}

// Host is what the host keeps around the engine's session: the bot
// version the flow is pinned to, the outbox of committed messages with
// their senders' claims, the deliveries and their statuses, the log, the
// ids of the updates applied, the commands' outcomes, the events out not
// yet queued, and the store's version. Its bson tags are how stores
// write it.
type Host struct {
	FlowVersion string `json:"flow_version,omitempty" bson:"flow_version,omitempty"`
	// MovedTo is the contact's key since their conversation moved there:
	// a contact first known by their business-scoped id alone continues
	// under their wa_id once a webhook gives both; updates that still
	// come under the old key are forwarded.
	MovedTo string `json:"moved_to,omitempty" bson:"moved_to,omitempty"`
	// MovingTo is the key the conversation is moving to: written first,
	// before the record under that key, so that a crash between the two
	// writes leaves the intent, and whoever finds the record (a sweep: it
	// is due at once) finishes the move.
	MovingTo string `json:"moving_to,omitempty" bson:"moving_to,omitempty"`
	// Outbox holds committed outbound messages not yet accepted by
	// WhatsApp, in order: they are committed with the record that produced
	// them, so that none is lost between a step and its send.
	Outbox []Pending `json:"outbox,omitempty" bson:"outbox,omitempty"`
	// Recent is the latest messages sent, with their delivery status,
	// oldest first; at most RecentLimit.
	Recent []Delivery `json:"recent,omitempty" bson:"recent,omitempty"`
	// Log is the latest records of what happened, oldest first; at most
	// LogLimit.
	Log []engine.Record `json:"log,omitempty" bson:"log,omitempty"`
	// Processed holds the keys of the latest inbox items applied to this
	// record, so that an item redelivered after a crash is not applied
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
	// Tallies are what versions of the record did to campaigns' counts:
	// committed with the record, then drained into the counts under an
	// idempotent key (again, harmlessly, after a crash) until the
	// record's next write.
	Tallies []TallyOut `json:"tallies,omitempty" bson:"tallies,omitempty"`
	// Charges is what the contact's messages cost as WhatsApp charges:
	// confirmed by a delivery status's pricing, and estimated (accepted,
	// not yet confirmed).
	Charges Charges `json:"charges,omitzero" bson:"charges,omitempty"`
	// DrainDue is when the events and tallies this record holds are work
	// for a sweep: set by a host that wrote them with nothing else to
	// guard their drain (a round without queued updates: a timer, a
	// retry); zero when the updates that caused them stay queued until
	// they are drained, so that a crash has the round done again.
	DrainDue time.Time `json:"drain_due,omitzero" bson:"drain_due,omitempty"`
	// Version is the store's compare-and-swap counter.
	Version int64 `json:"version" bson:"version"`
	// LoadedAt is when a store loaded this record (not stored).
	LoadedAt time.Time `json:"-" bson:"-"`
}

// NewRecord is the record of a contact never seen before.
func NewRecord(id string) *Record { return &Record{Session: *engine.NewSession(id)} }

// Clone returns a deep copy, so that a store's copy and a worker's
// cannot alias.
func (r *Record) Clone() *Record {
	c := &Record{Host: r.Host}
	r.Session.CopyTo(&c.Session)
	c.Outbox = engine.CloneSlice(r.Outbox)
	c.Recent = engine.CloneSlice(r.Recent)
	c.Log = engine.CloneSlice(r.Log)
	c.Processed = engine.CloneSlice(r.Processed)
	c.Outcomes = engine.CloneSlice(r.Outcomes)
	c.EventsOut = engine.CloneSlice(r.EventsOut)
	c.Tallies = engine.CloneSlice(r.Tallies)
	for i := range c.Tallies {
		c.Tallies[i].Campaigns = engine.CloneSlice(c.Tallies[i].Campaigns)
		c.Tallies[i].Flows = engine.CloneSlice(c.Tallies[i].Flows)
		for j := range c.Tallies[i].Flows {
			c.Tallies[i].Flows[j].FlowCounts = c.Tallies[i].Flows[j].FlowCounts.Clone()
		}
	}
	return c
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
	ID      string     `json:"id" bson:"id"`
	WAMID   string     `json:"wamid,omitempty" bson:"wamid,omitempty"`
	Via     engine.Via `json:"via" bson:"via"`
	Summary string     `json:"summary" bson:"summary"`
	Flow    string     `json:"flow,omitempty" bson:"flow,omitempty"`
	Step    string     `json:"step,omitempty" bson:"step,omitempty"`
	Batch   int64      `json:"batch,omitempty" bson:"batch,omitempty"`
	At      time.Time  `json:"at" bson:"at"`
	// Status is queued, sent, delivered, read, played or failed.
	Status    string    `json:"status" bson:"status"`
	StatusAt  time.Time `json:"status_at,omitzero" bson:"status_at,omitempty"`
	ErrorCode int       `json:"error_code,omitempty" bson:"error_code,omitempty"`
	Error     string    `json:"error,omitempty" bson:"error,omitempty"`
	// Pricing is what WhatsApp reported charging for the message.
	Pricing *Pricing `json:"pricing,omitempty" bson:"pricing,omitempty"`
	// Category and Cost are what the bot's pricing estimated the message
	// at when WhatsApp accepted it; Charge is what became of the
	// estimate: "" still estimated, "confirmed" (by the pricing of a
	// delivered or read status: Charged), "free" (the pricing says not
	// billable), "none" (never sent, or failed: WhatsApp charges nothing).
	Category flows.Category `json:"category,omitempty" bson:"category,omitempty"`
	Cost     float64        `json:"cost,omitempty" bson:"cost,omitempty"`
	Charge   string         `json:"charge,omitempty" bson:"charge,omitempty"`
	Charged  float64        `json:"charged,omitempty" bson:"charged,omitempty"`
	// Campaign names the campaign whose start sent the message.
	Campaign string `json:"campaign,omitempty" bson:"campaign,omitempty"`
	// From is who wrote it: "bot", or "agent" (POST
	// /api/contacts/{id}/messages).
	From string `json:"from,omitempty" bson:"from,omitempty"`
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
func (s *Record) AddLog(recs ...engine.Record) {
	s.Log = appendBounded(s.Log, recs, LogLimit)
}

// AddRecent appends deliveries, keeping the last RecentLimit.
func (s *Record) AddRecent(d ...Delivery) {
	s.Recent = appendBounded(s.Recent, d, RecentLimit)
}

// Outcome is how a command went: Refused names why it did nothing
// (in_handoff, not_in_handoff, bad_vars, unknown_flow), "" when it ran.
type Outcome struct {
	Key     string `json:"key" bson:"key"`
	Refused string `json:"refused,omitempty" bson:"refused,omitempty"`
	Error   string `json:"error,omitempty" bson:"error,omitempty"`
	// Messages are the ids of the messages the command committed (an
	// agent's message, a flow's first messages), whose delivery statuses
	// the caller can follow.
	Messages []string `json:"messages,omitempty" bson:"messages,omitempty"`
}

// Err is the command's refusal as the engine's error (errors.Is finds
// the engine's sentinel: ErrWindowClosed, ErrNotInHandoff ...); nil when
// it was applied.
func (o Outcome) Err() error {
	if o.Refused == "" {
		return nil
	}
	is := map[string]error{RefusedInHandoff: engine.ErrInHandoff, RefusedNotInHandoff: engine.ErrNotInHandoff, RefusedBadVars: engine.ErrBadVars,
		RefusedUnknownFlow: engine.ErrUnknownFlow, RefusedWindowClosed: engine.ErrWindowClosed, RefusedOptedOut: engine.ErrOptedOut,
		RefusedTemplateUnavailable: engine.ErrTemplateUnavailable}[o.Refused]
	msg := o.Error
	if msg == "" {
		msg = o.Refused
	}
	return &refusal{is: is, msg: msg}
}

type refusal struct {
	is  error
	msg string
}

func (r *refusal) Error() string { return r.msg }
func (r *refusal) Unwrap() error { return r.is }

// AddOutcome remembers a command's outcome, keeping the last
// ProcessedLimit.
func (s *Record) AddOutcome(o Outcome) {
	s.Outcomes = appendBounded(s.Outcomes, []Outcome{o}, ProcessedLimit)
}

// OutcomeOf returns a command's outcome, if it was applied.
func (s *Record) OutcomeOf(key string) (Outcome, bool) {
	for _, o := range s.Outcomes {
		if o.Key == key {
			return o, true
		}
	}
	return Outcome{}, false
}

// MarkProcessed remembers an inbox item's key.
func (s *Record) MarkProcessed(key string) {
	s.Processed = appendBounded(s.Processed, []string{key}, ProcessedLimit)
}

// WasProcessed reports whether an inbox item was already applied.
func (s *Record) WasProcessed(key string) bool {
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

// ToDrain reports whether the record holds what a write caused and a host
// drains after it: events out, or campaign tallies.
func (s *Record) ToDrain() bool { return len(s.EventsOut) > 0 || len(s.Tallies) > 0 }

// DrainAfter is how long after a write without queued updates to guard
// it (DrainDue) the events and tallies it committed are work for a
// sweep: the writer drains them at once, the next write takes them out
// of the record, and a crash in between leaves them to be drained again,
// which the stores take once.
const DrainAfter = 2 * time.Minute

// NextWork is when the contact next needs a worker: its next timer's due
// time; while committed messages wait in the outbox, when their sender's
// claim expires (now, the zero time, for unclaimed ones: the sender that
// claimed them sends them itself); DrainDue, while events or tallies
// wait in the record; a move half done, now. Stores index it, so that work
// left by a crash is found again.
func (s *Record) NextWork() (time.Time, bool) {
	if s.MovingTo != "" {
		return time.Time{}, true // a move to finish: now
	}
	at, ok := s.NextTimer()
	next, has := at.Due, ok
	earlier := func(t time.Time) {
		if !has || t.Before(next) {
			next, has = t, true
		}
	}
	if len(s.Outbox) > 0 {
		earlier(s.Outbox[0].ClaimUntil)
	}
	if !s.DrainDue.IsZero() && s.ToDrain() {
		earlier(s.DrainDue)
	}
	return next, has
}
