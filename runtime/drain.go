package runtime

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/flowbot/flowbot/engine/conversation"
	"github.com/flowbot/flowbot/store"
)

// What a commit causes (events out, campaign tallies) is written in the
// record with it, then drained: the events to the store's queue, the
// tallies to the campaigns' counts, each under an id or key the store
// takes once. The record keeps them until its next write, so that a crash
// between the commit and the drain leaves them to be drained again
// (harmlessly) by whoever works on the contact next: the updates that
// caused them stay queued until they are drained, which brings the
// contact's work back after a crash; a write no queued update caused (a
// timer, a retry) carries a drain_due instead, when a sweep comes for it
// (conversation.DrainAfter).

// drained remembers, per contact, the latest version of the record this
// process wrote and drained: the contact's next write leaves what that
// version (or an earlier one) holds out without draining it again.
type drained struct {
	mu sync.Mutex
	m  map[string]int64
}

// drainedLimit bounds what drained remembers; forgetting costs a drain
// again, never a count.
const drainedLimit = 100_000

func (d *drained) set(contact string, version int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil || len(d.m) >= drainedLimit {
		d.m = map[string]int64{}
	}
	d.m[contact] = version
}

// since reports whether a version of the contact's record at least as
// recent as version was drained here: a later write carries the earlier
// one's events and tallies, and drains them with its own.
func (d *drained) since(contact string, version int64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	v, ok := d.m[contact]
	return ok && v >= version
}

// save writes st (compare-and-swap). guarded says that the queued
// updates that caused what st holds to drain (events, tallies) stay
// queued until it is drained; else st carries a drain_due, when a sweep
// comes for it should the writer not drain it (a crash).
func (w *Worker) save(ctx context.Context, st *conversation.Record, guarded bool) error {
	st.DrainDue = time.Time{}
	if !guarded && st.ToDrain() {
		st.DrainDue = w.now().Add(conversation.DrainAfter)
	}
	return w.Store.Save(ctx, st)
}

// drainWritten drains what a written record caused; what fails stays in
// the record and is tried again soon (and by a sweep, after a crash).
func (w *Worker) drainWritten(ctx context.Context, st *conversation.Record) {
	if err := w.drain(ctx, st); err != nil {
		w.drainFailed(ctx, st.Contact.ID, err)
	}
}

// drainFailed logs a drain that failed, and has the contact's work done
// again shortly.
func (w *Worker) drainFailed(ctx context.Context, contact string, err error) {
	w.Log.Error("draining what a write caused; tried again shortly", "contact", contact, "err", err)
	if ctx.Err() == nil {
		w.Later(w.RetryLater, contact)
	}
}

// drain queues the events and drains the tallies of a written record.
func (w *Worker) drain(ctx context.Context, st *conversation.Record) error {
	contact := st.Contact.ID
	if !st.ToDrain() {
		return nil
	}
	if err := w.queueEvents(ctx, contact, st.EventsOut); err != nil {
		return fmt.Errorf("queueing the events of contact %s: %w", contact, err)
	}
	if len(st.Tallies) > 0 {
		if err := w.Store.DrainTallies(ctx, contact, store.FreshFacts(st.Tallies, w.now())); err != nil {
			return fmt.Errorf("counting the campaigns of contact %s: %w", contact, err)
		}
		if w.Drained != nil {
			w.Drained(st)
		}
		w.changed()
	}
	w.drainedV.set(contact, st.Version)
	return nil
}

// carry prepares a loaded record for its next write: the events and
// tallies of a version this process drained leave it; those of another
// writer (or of this one before a crash) are drained first. It reports
// whether the record changed, and must be written.
func (w *Worker) carry(ctx context.Context, st *conversation.Record) (bool, error) {
	if !st.ToDrain() {
		return false, nil
	}
	if !w.drainedV.since(st.Contact.ID, st.Version) {
		if err := w.drain(ctx, st); err != nil {
			return false, err
		}
	}
	st.EventsOut, st.Tallies, st.DrainDue = nil, nil, time.Time{}
	return true, nil
}

// eventKey is the key a contact's events are ordered under.
func eventKey(contact string) string { return "contact:" + contact }

// queueEvents puts the record's events in the store's queue, which the
// poster (Poster) delivers.
func (w *Worker) queueEvents(ctx context.Context, contact string, evs []conversation.EventOut) error {
	if len(evs) == 0 {
		return nil
	}
	out := make([]store.OutEvent, len(evs))
	for i, e := range evs {
		out[i] = store.OutEvent{ID: e.ID, Key: eventKey(contact), Order: e.Order, Type: e.Type, At: e.At, Body: e.Body, NextAt: e.At}
	}
	if err := w.Store.PutEvents(ctx, out); err != nil {
		return err
	}
	if w.EventsQueued != nil {
		w.EventsQueued()
	}
	return nil
}
