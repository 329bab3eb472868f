package store

import (
	"context"
	"time"
)

// OutEvent is an event for another system (FLOWBOT_EVENTS_URL), queued
// until the receiver took it. Events of one key (a contact, or a
// campaign's "campaign:<id>") are delivered in Order, one at a time.
type OutEvent struct {
	ID  string `json:"id" bson:"_id"`
	Key string `json:"key" bson:"key"`
	// Order sorts a key's events: the version of the contact's record
	// that made them, then their place in it.
	Order string    `json:"order" bson:"order"`
	Type  string    `json:"type" bson:"type"`
	At    time.Time `json:"at" bson:"at"`
	// Body is the JSON posted.
	Body []byte `json:"body" bson:"body"`
	// Attempts made so far, the next one not before NextAt, and why the
	// last one failed.
	Attempts  int       `json:"attempts,omitempty" bson:"attempts,omitempty"`
	NextAt    time.Time `json:"next_at" bson:"next_at"`
	LastError string    `json:"last_error,omitempty" bson:"last_error,omitempty"`
	// DoneAt is when it left the queue: its id is kept for
	// EventsRemembered, so that the same event queued again is dropped.
	DoneAt time.Time `json:"done_at,omitzero" bson:"done_at,omitempty"`
}

// EventsRemembered is how long a delivered (or dropped) event's id is
// kept: longer than any event is retried.
const EventsRemembered = 48 * time.Hour

// Events is the durable queue of events out.
type Events interface {
	// PutEvents queues events; one whose ID is queued already (or was,
	// within EventsRemembered) is dropped: a record's events are queued
	// again until the record's next write.
	PutEvents(ctx context.Context, events []OutEvent) error
	// NextEvents returns events to deliver now: of each key at most its
	// first (in Order), when that one's NextAt has come; at most limit.
	NextEvents(ctx context.Context, now time.Time, limit int) ([]OutEvent, error)
	// EventDone takes an event off the queue (delivered, or dropped).
	EventDone(ctx context.Context, id string) error
	// EventRetry sets an event's attempts, next try and last error (a
	// hold while it is posted, or a failed attempt) when its NextAt is
	// still was, the one read: else ErrConflict, and nothing is written
	// (another instance holds it, or it was delivered).
	EventRetry(ctx context.Context, id string, was time.Time, attempts int, next time.Time, lastErr string) error
}
