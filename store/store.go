// Package store keeps contacts' conversation state. Contacts is the
// interface every store implements (store/memory now, store/mongo next);
// store/storetest is the conformance suite they all pass.
package store

import (
	"context"
	"errors"
	"fmt"
	"github.com/flowbot/flowbot/engine/conversation"
	"time"
)

var (
	// ErrNotFound: no state is stored for the contact.
	ErrNotFound = errors.New("store: contact not found")
	// ErrConflict: the stored version moved on since the state was
	// loaded; reload and run the event again.
	ErrConflict = errors.New("store: version conflict")
)

// Contacts stores each contact's state with compare-and-swap on its
// version, so that two workers can never both commit a step for one
// contact.
type Contacts interface {
	// Load returns a copy of the contact's state, or ErrNotFound.
	Load(ctx context.Context, id string) (*conversation.Record, error)
	// Save stores st when the stored version still equals st.Version (0
	// for a contact not stored yet), then increments st.Version. It
	// returns ErrConflict when another writer got there first; nothing is
	// written then. After a successful Save the store owns st: the caller
	// must not change it (Load again to go on).
	Save(ctx context.Context, st *conversation.Record) error
	// Claimed lists contacts whose unsent messages the instance claimed
	// (their latest state's first outbound message), at most limit: a
	// restarted instance takes back its own claims at once.
	Claimed(ctx context.Context, instance string, limit int) ([]string, error)
	// Due lists the contacts with work due at or before t
	// (State.NextWork: a timer, or messages waiting in the outbox whose
	// sender's claim expires), earliest first, at most limit of them.
	Due(ctx context.Context, t time.Time, limit int) ([]Due, error)
}

// Due is a contact's next work and when it is due.
type Due struct {
	Contact string
	At      time.Time
}

// FreshLoader is a store that may answer Load from a cache another
// instance can have moved on from (the next Save catches that); LoadFresh
// reads the stored state, for people looking at it.
type FreshLoader interface {
	LoadFresh(ctx context.Context, id string) (*conversation.Record, error)
}

// ErrInstanceHeld: another live process holds the instance id (its
// heartbeat has not lapsed).
var ErrInstanceHeld = errors.New("store: the instance id is held by a live instance")

// Instances keeps each instance's heartbeat, so that an instance id is
// held by one process at a time: the claims on contacts' unsent messages
// are made in its name, and a process that restarts under its id takes
// them back once the dead process's heartbeat has lapsed.
type Instances interface {
	// Beat records that the process nonce holds the id until until. It
	// returns ErrInstanceHeld (wrapped, with the holder's until) when
	// another process holds it past now.
	Beat(ctx context.Context, id, nonce string, now, until time.Time) error
	// Leave gives the id up, when nonce holds it.
	Leave(ctx context.Context, id, nonce string) error
}

// HeldError is ErrInstanceHeld with when the holder's heartbeat lapses.
type HeldError struct {
	ID    string
	Until time.Time
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("instance id %q is held by a live instance (its heartbeat runs until %s)", e.ID, e.Until.Format(time.RFC3339Nano))
}

func (e *HeldError) Unwrap() error { return ErrInstanceHeld }

// IdempotencyWindow is how long an Idempotency-Key is remembered.
const IdempotencyWindow = 24 * time.Hour

// AbandonedAfter is how long a reserved key waits for its request's
// answer before another request may take it over (the first one's
// instance died while handling it).
const AbandonedAfter = time.Minute

// ErrInProgress: a request with the same Idempotency-Key is being
// handled.
var ErrInProgress = errors.New("store: a request with this idempotency key is in progress")

// Answer is what an API request with an Idempotency-Key was answered.
type Answer struct {
	// Fingerprint names the request (method, path, body): the same key
	// on another request is a client's mistake.
	Fingerprint string
	Status      int
	Body        []byte
	At          time.Time
}

// Idempotency remembers the answers of API requests by their
// Idempotency-Key for IdempotencyWindow, on every instance: a repeat is
// answered as the first was and does nothing again.
type Idempotency interface {
	// Reserve takes key for a request. It returns nil when the key is
	// new (or its reservation was abandoned, or it expired): the caller
	// handles the request and then calls Answer or Forget. It returns the
	// first request's Answer when there is one, and ErrInProgress while
	// the first is still being handled.
	Reserve(ctx context.Context, key, fingerprint string, now time.Time) (*Answer, error)
	// Answer records the answer of the request that reserved key at
	// reservedAt (the now given to Reserve). It returns ErrConflict, and
	// writes nothing, when that reservation is no longer the key's (it
	// was abandoned and taken over, or answered).
	Answer(ctx context.Context, key string, reservedAt time.Time, a Answer) error
	// Forget gives key up: the request that reserved it at reservedAt
	// did nothing (a 5xx), so a retry must run it. ErrConflict when that
	// reservation is no longer the key's.
	Forget(ctx context.Context, key string, reservedAt time.Time) error
}

// TemplateState is a template's live state in one language, as the
// account's events report it: its status (APPROVED, PAUSED, DISABLED,
// REJECTED ...), its category and its quality score; "" for what no event
// said yet.
type TemplateState struct {
	Name      string    `json:"name" bson:"name"`
	Language  string    `json:"language" bson:"language"`
	Status    string    `json:"status,omitempty" bson:"status,omitempty"`
	Reason    string    `json:"reason,omitempty" bson:"reason,omitempty"`
	Category  string    `json:"category,omitempty" bson:"category,omitempty"`
	Quality   string    `json:"quality,omitempty" bson:"quality,omitempty"`
	UpdatedAt time.Time `json:"updated_at" bson:"updated_at"`
	// When the events that set the status, the category and the quality
	// happened: an event older than the one a field holds is dropped (a
	// redelivered PAUSED after a later APPROVED does not pause).
	StatusAt   time.Time `json:"status_at,omitzero" bson:"status_at,omitempty"`
	CategoryAt time.Time `json:"category_at,omitzero" bson:"category_at,omitempty"`
	QualityAt  time.Time `json:"quality_at,omitzero" bson:"quality_at,omitempty"`
}

// Templates keeps the templates' live states, shared by the instances and
// kept across restarts.
type Templates interface {
	// UpdateTemplate records what an event that happened at t.UpdatedAt
	// says of a template: each non-empty field of t (Reason with Status)
	// replaces the stored one unless the stored one was set by an event
	// as recent or more (it reports false then, and writes nothing).
	UpdateTemplate(ctx context.Context, t TemplateState) (bool, error)
	// TemplateStates lists every template's live state.
	TemplateStates(ctx context.Context) ([]TemplateState, error)
}

// Merge applies an event's fields (the non-empty ones of u, which
// happened at u.UpdatedAt) to t, each unless t's was set by an event as
// recent or more; it reports whether any applied.
func (t *TemplateState) Merge(u TemplateState) bool {
	at := u.UpdatedAt
	newer := func(was time.Time) bool { return was.IsZero() || at.After(was) }
	applied := false
	if u.Status != "" && newer(t.StatusAt) {
		t.Status, t.Reason, t.StatusAt, applied = u.Status, u.Reason, at, true
	}
	if u.Category != "" && newer(t.CategoryAt) {
		t.Category, t.CategoryAt, applied = u.Category, at, true
	}
	if u.Quality != "" && newer(t.QualityAt) {
		t.Quality, t.QualityAt, applied = u.Quality, at, true
	}
	if applied {
		t.Name, t.Language = u.Name, u.Language
		if at.After(t.UpdatedAt) {
			t.UpdatedAt = at
		}
	}
	return applied
}

// Bots keeps the versions of the bot that contacts' flows are pinned to,
// so that a contact in the middle of a flow finishes it on the version it
// started with, after a reload, a restart, or on another instance.
type Bots interface {
	// SaveBot stores a version's files (idempotent).
	SaveBot(ctx context.Context, version string, files map[string][]byte) error
	// LoadBot returns a version's files, or ErrNotFound.
	LoadBot(ctx context.Context, version string) (map[string][]byte, error)
}

// Facts keeps the analytics' facts (conversation.FlowFacts): drained
// from the contacts' records with their tallies (Campaigns.DrainTallies),
// each version's once, into hourly buckets.
type Facts interface {
	// FlowFacts sums a flow's facts in the hours that begin in
	// [q.From truncated to the hour, q.To).
	FlowFacts(ctx context.Context, q FactQuery) (conversation.FlowCounts, error)
}

// FactQuery selects facts: a flow, hours, and optionally a business
// number and a bot version.
type FactQuery struct {
	Flow       string
	From, To   time.Time
	Number     string
	BotVersion string
}

// Matches reports whether facts of this number and bot version count.
func (q FactQuery) Matches(number, botVersion string) bool {
	return (q.Number == "" || q.Number == number) && (q.BotVersion == "" || q.BotVersion == botVersion)
}

// FirstHour is the first hour the query spans.
func (q FactQuery) FirstHour() time.Time { return q.From.UTC().Truncate(time.Hour) }

// FactsFinal is how long after its version a tally's facts are drained:
// a record's tallies are drained within minutes of its write (a sweep
// comes for one a crash left undrained), so an older one that a record
// still carries until its next write was drained long ago, and a store
// may have let its key go (MongoDB keeps the keys a day longer).
const FactsFinal = 7 * 24 * time.Hour

// FreshFacts is tallies without the facts older than FactsFinal at now
// (their campaign counts stay).
func FreshFacts(tallies []conversation.TallyOut, now time.Time) []conversation.TallyOut {
	out := tallies
	for i, t := range tallies {
		if len(t.Flows) > 0 && t.At.Before(now.Add(-FactsFinal)) {
			if &out[0] == &tallies[0] {
				out = append([]conversation.TallyOut(nil), tallies...)
			}
			out[i].Flows = nil
		}
	}
	return out
}

// FactKey is the key a version's facts are drained under.
func FactKey(contact string, version int64) string {
	return fmt.Sprintf("%s#%d", contact, version)
}

// FactRoller is a Facts that sums past hours ahead of the queries
// (MongoDB); RollFacts reports how many hours it rolled up.
type FactRoller interface {
	RollFacts(ctx context.Context, now time.Time, limit int) (int, error)
}
