package runtime

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/engine/conversation"
	"github.com/flowbot/flowbot/flows"
	"github.com/flowbot/flowbot/store"
	"github.com/flowbot/flowbot/whatsapp"
)

// Sender hands an outbound message to WhatsApp, trying once, and returns
// its WhatsApp message id. Errors are classified with whatsapp.ClassOf;
// the worker retries the retryable ones (Worker.Retry).
type Sender interface {
	Send(ctx context.Context, o engine.Outbound) (string, error)
}

// ReadMarker marks an inbound message read, with the typing indicator
// when typing is true; senders that can, do.
type ReadMarker interface {
	MarkRead(ctx context.Context, wamid string, typing bool) error
}

// Worker does each contact's work, for every host: `serve` runs it from
// its dispatcher, the dry run (`flowbot run`, `flowbot test`, the
// playground, a campaign's estimate) calls Work itself on a virtual clock.
// A round takes the contact's queued updates and due timers, applies them
// to the contact's record (conversation.Keeper) and commits them in one
// conditional write; then it sends the outbox under the instance's claim,
// drains what the writes caused (events out, tallies) and acknowledges the
// updates. Store, Keeper, Sender, Clock and Log are required; the hooks
// may be nil.
type Worker struct {
	Store  store.Store
	Keeper *conversation.Keeper
	Sender Sender
	Clock  Clock
	Log    *slog.Logger
	// Instance names this process among several on one database: its
	// claims on contacts' unsent messages are made in this name.
	Instance string
	// Lease proves that this process still holds Instance; nil always
	// holds (one process on its own store).
	Lease interface{ Holds() bool }
	// ClaimTimeout is how long a claim on a contact's outbound messages
	// holds; RetryLater how long a contact whose work failed waits before
	// it is tried again; Retry the backoff between tries of a send.
	ClaimTimeout, RetryLater time.Duration
	Retry                    whatsapp.RetryPolicy
	// MarkRead marks each handled inbound message read (when the Sender
	// is a ReadMarker).
	MarkRead bool
	// TimerInterval and SweepInterval pace the scheduler (Scheduler);
	// Timers holds the work due before the next sweep.
	TimerInterval, SweepInterval time.Duration
	Timers                       *TimerQueue

	// Kick has the contact's work done again (the dispatcher's Kick);
	// Notify says that updates were queued for the contact.
	Kick, Notify func(contact string)
	// Applied tells of an API command applied, with the record written.
	Applied func(key string, st *conversation.Record)
	// Dropped tells of an update the engine refused (it is let go).
	Dropped func(contact string, err error)
	// Drained tells of a written record's tallies counted in the store.
	Drained func(st *conversation.Record)
	// EventsQueued tells that events out were queued (the poster's Wake).
	EventsQueued func()
	// HeldUntil is when the account may start conversations again (the
	// zero time: now); Hold remembers a contact whose template waits for
	// it.
	HeldUntil func(now time.Time) time.Time
	Hold      func(contact string)
	// SendTurn waits for a campaign's turn to send (its pace); SlowDown
	// tells that WhatsApp throttled one of its sends.
	SendTurn func(ctx context.Context, campaign string) bool
	SlowDown func(campaign string, code int)
	// SendError counts a send that failed with a retryable error.
	SendError func(code int)
	// Refresh runs before each of the scheduler's sweeps (the host's
	// refreshes); Changed says that something another party can see
	// happened.
	Refresh func(ctx context.Context)
	Changed func()

	// drainedV is the versions of records whose events and tallies this
	// process drained.
	drainedV drained
	// pending counts the retries scheduled (Later).
	pending atomic.Int64
	// swept: the host did the first sweep (FirstSweep); sweptMore: it
	// found more due work than it took.
	swept, sweptMore atomic.Bool
}

func (w *Worker) now() time.Time { return w.Clock.Now() }

func (w *Worker) holds() bool { return w.Lease == nil || w.Lease.Holds() }

func (w *Worker) heldUntil(now time.Time) time.Time {
	if w.HeldUntil == nil {
		return time.Time{}
	}
	return w.HeldUntil(now)
}

func (w *Worker) changed() {
	if w.Changed != nil {
		w.Changed()
	}
}

// settings are the bot's settings for the contact (the version its flow
// is on).
func (w *Worker) settings(ctx context.Context, st *conversation.Record) flows.Config {
	e, _ := w.Keeper.Engine(ctx, st)
	return e.Bot().Settings
}

// Later has the contact's work done again after d (a retry), counted so
// that the host knows it has work pending (Pending).
func (w *Worker) Later(d time.Duration, contact string) {
	w.pending.Add(1)
	w.Clock.AfterFunc(d, func() {
		w.Kick(contact)
		w.pending.Add(-1)
	})
}

// Pending is how many retries are scheduled.
func (w *Worker) Pending() int64 { return w.pending.Load() }

// Wait waits d on the clock; false when ctx ends first.
func Wait(ctx context.Context, c Clock, d time.Duration) bool {
	done, stop := After(c, d)
	defer stop()
	select {
	case <-ctx.Done():
		return false
	case <-done:
		return true
	}
}

// Work does everything pending for one contact (Run) for the
// dispatcher: what fails stays queued, and is tried again after
// RetryLater.
func (w *Worker) Work(ctx context.Context, contact string) {
	if err := w.Run(ctx, contact); err != nil {
		w.Log.Error("working; the updates stay queued, and are tried again shortly", "contact", contact, "err", err)
		if ctx.Err() == nil {
			w.Later(w.RetryLater, contact)
		}
	}
}

// Run does everything pending for one contact: queued updates in order
// and due timers, committed together, then the outbox; again while a
// full page of updates was taken. An error leaves the updates not done
// queued.
func (w *Worker) Run(ctx context.Context, contact string) error {
	for round := 0; round < 1000 && ctx.Err() == nil; round++ {
		items, err := w.Store.Pending(ctx, contact, pendingPage)
		if err != nil {
			return fmt.Errorf("reading the inbox: %w", err)
		}
		progressed, err := w.round(ctx, contact, items)
		if err != nil {
			return err
		}
		// More updates that came meanwhile were notified, and the
		// dispatcher runs work again; look here only when the page was
		// full.
		if !progressed || len(items) < pendingPage {
			return nil
		}
	}
	return nil
}

// pendingPage is how many queued updates a round takes.
const pendingPage = 50

// receipts marks the contact's latest message read with the typing
// indicator, as the bot is about to answer it. While a person has the
// conversation (a handoff) the bot answers nothing: no typing, and no
// blue ticks either unless handoff_read_receipts says so, until the
// agent's message, which shows typing as any reply does.
func (w *Worker) receipts(ctx context.Context, st *conversation.Record, items []conversation.Item) {
	if _, ok := w.Sender.(ReadMarker); !ok || !w.MarkRead {
		return
	}
	wamid := conversation.ToMarkRead(items)
	set := w.settings(ctx, st)
	switch {
	case st.Handoff == nil:
		w.markRead(ctx, wamid, set.Typing)
	case slices.ContainsFunc(items, func(it conversation.Item) bool {
		return it.Command != nil && it.Command.Kind == conversation.CommandAgent
	}):
		w.markRead(ctx, cmp.Or(wamid, st.LastMessageID), set.Typing)
	case set.HandoffReadReceipts:
		w.markRead(ctx, wamid, false)
	}
}

// markRead marks the contact's latest message read and, with typing,
// shows the typing indicator (the bot's typing setting) while
// the bot works on it, before anything is sent: WhatsApp drops the
// indicator at the reply, or after 25 seconds. One try, within 2
// seconds: a missed receipt must not hold the reply up.
func (w *Worker) markRead(ctx context.Context, wamid string, typing bool) {
	rm, ok := w.Sender.(ReadMarker)
	if wamid == "" || !w.MarkRead || !ok {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := rm.MarkRead(rctx, wamid, typing); err != nil {
		w.Log.Debug("marking read", "err", err)
	}
}

// round applies the items and the due timers to the contact's record
// (conversation.Keeper) in memory and commits them in one write,
// acknowledges the items, then sends the outbox. A conflict with another
// writer starts it over on the fresh state.
func (w *Worker) round(ctx context.Context, contact string, items []conversation.Item) (progressed bool, err error) {
	var st *conversation.Record
	var applied conversation.Result
	forwarded, adoptedFrom := false, ""
	for attempt := 0; ; attempt++ {
		st, err = w.Store.Load(ctx, contact)
		isNew := errors.Is(err, store.ErrNotFound)
		if isNew {
			st, err = conversation.NewRecord(contact), nil
			if old := w.adopt(ctx, contact, items); old != nil {
				st, isNew, adoptedFrom = old, false, old.MovedTo
				old.MovedTo = ""
			}
		}
		if err != nil {
			return false, fmt.Errorf("loading contact %s: %w", contact, err)
		}
		if attempt == 0 {
			w.receipts(ctx, st, items)
		}
		if st.MovingTo != "" {
			// A move a crash left half done: finished first, then the
			// record is read again (its updates go to the new key).
			if err := w.finishMove(ctx, st); err != nil {
				return false, err
			}
			continue
		}
		// Events and tallies a written record still holds are drained
		// (again, unless this process did: the store takes each once), and
		// leave the record with this write.
		carried, err := w.carry(ctx, st)
		if err != nil {
			return false, err
		}
		if st.MovedTo != "" && len(items) > 0 {
			if err := w.forward(ctx, contact, st.MovedTo, items); err != nil {
				return false, err
			}
			items, forwarded = nil, true
		}
		var errs []error
		applied, errs = w.Keeper.Apply(ctx, st, items, isNew)
		for _, err := range errs {
			// An update the engine refuses would fail again: record it
			// and let it go rather than retry it forever.
			w.Log.Error("update dropped", "contact", contact, "err", err)
			if w.Dropped != nil {
				w.Dropped(contact, err)
			}
		}
		if !applied.Changed && !carried {
			break
		}
		applied.Changed = true
		err = w.save(ctx, st, len(items) > 0)
		if err == nil {
			if adoptedFrom != "" {
				if err := w.moved(ctx, adoptedFrom, contact); err != nil {
					w.Log.Error("a contact's move", "err", err)
				}
			}
			// A store may keep what it was given (the memory store
			// does), which nobody changes from then on: the sends go on
			// with a copy.
			saved := st
			if len(st.Outbox) > 0 {
				st = st.Clone()
			}
			for _, key := range applied.Commands {
				if w.Applied != nil {
					w.Applied(key, saved)
				}
			}
			break
		}
		if !errors.Is(err, store.ErrConflict) || attempt >= 20 {
			return false, fmt.Errorf("saving contact %s: %w", contact, err)
		}
	}
	// The replies go out; then what the round's writes caused (events,
	// tallies) is drained, once, from the latest; then the updates leave
	// the queue. A crash before that leaves them queued: the round is done
	// again (each update is skipped as applied) and drains what this one
	// did not.
	guarded := len(items) > 0
	latest := st
	progressed = applied.Changed
	if len(st.Outbox) > 0 && st.Version > 0 {
		sent, written, err := w.sendOutbox(ctx, contact, st, guarded)
		if err != nil {
			w.Log.Warn("sending", "contact", contact, "err", err)
		}
		if written != nil {
			latest = written
		}
		progressed = progressed || sent > 0
	}
	if latest.ToDrain() && latest.Version > 0 && !w.drainedV.since(contact, latest.Version) {
		if err := w.drain(ctx, latest); err != nil {
			if guarded {
				return false, err // the updates stay queued: tried again shortly
			}
			w.drainFailed(ctx, contact, err) // its drain_due brings a sweep
		}
	}
	if guarded {
		keys := make([]string, len(items))
		for i, it := range items {
			keys[i] = it.Key
		}
		if err := w.Store.Ack(ctx, contact, keys...); err != nil {
			return false, err
		}
	}
	w.schedule(latest)
	return progressed || forwarded || len(items) > 0, nil
}

// update loads the contact's state (a new one for a contact never seen),
// lets f change it, and saves it with compare-and-swap, retrying on
// conflicts with a fresh load.
func (w *Worker) update(ctx context.Context, contact string, f func(*conversation.Record) error, guarded bool) (*conversation.Record, error) {
	for attempt := 0; ; attempt++ {
		st, err := w.Store.Load(ctx, contact)
		if errors.Is(err, store.ErrNotFound) {
			st, err = conversation.NewRecord(contact), nil
		}
		if err != nil {
			return nil, fmt.Errorf("loading contact %s: %w", contact, err)
		}
		if _, err := w.carry(ctx, st); err != nil {
			return nil, err
		}
		if err := f(st); err != nil {
			return nil, err
		}
		err = w.save(ctx, st, guarded)
		if err == nil {
			view := st.Clone()
			if !guarded {
				w.drainWritten(ctx, view)
			}
			return view, nil
		}
		if !errors.Is(err, store.ErrConflict) || attempt >= 20 {
			return nil, fmt.Errorf("saving contact %s: %w", contact, err)
		}
	}
}
