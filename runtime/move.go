package runtime

import (
	"context"
	"errors"
	"fmt"

	"github.com/flowbot/flowbot/engine/conversation"
	"github.com/flowbot/flowbot/flows"
	"github.com/flowbot/flowbot/store"
)

// adopt continues, under the contact's wa_id, the conversation of a
// contact first known by their business-scoped user id alone (a username
// user whose number WhatsApp did not give): when the contact's first
// message under the wa_id also carries that id and a state is stored
// under it, the state is taken over (its unsent messages stay with the
// old key, which sends them), so that one person has one conversation.
// The intent is written on the old record first (MovingTo): a crash
// before the move is done leaves it to be finished (finishMove). It
// returns nil when there is nothing to adopt; else the state to save
// under contact, with MovedTo holding the old key.
func (w *Worker) adopt(ctx context.Context, contact string, items []conversation.Item) *conversation.Record {
	for _, it := range items {
		m := it.Message
		if it.Kind != conversation.ItemMessage || m == nil {
			continue
		}
		from := m.PreviousID // the contact changed number or user id
		if from == "" && m.WaID == contact {
			from = m.UserID // first seen by their user id alone
		}
		if from == "" || from == contact {
			continue
		}
		old, err := w.update(ctx, from, func(st *conversation.Record) error {
			if st.Version == 0 || st.MovedTo != "" || st.MovingTo != "" && st.MovingTo != contact {
				return errNothingToMove
			}
			st.MovingTo = contact
			return nil
		}, false)
		if err != nil {
			if !errors.Is(err, errNothingToMove) {
				w.Log.Error("recording a contact's move; it stays under its old id for now", "from", from, "to", contact, "err", err)
			}
			return nil
		}
		why := "first known by their business-scoped user id alone"
		if m.PreviousID != "" {
			why = "WhatsApp says they changed their number or user id"
		}
		w.Log.Info("a contact continues under a new id, their conversation kept", "from", from, "to", contact, "why", why)
		return movedCopy(old, contact)
	}
	return nil
}

var errNothingToMove = errors.New("nothing to move")

// movedCopy is the record of old continued under key: its unsent
// messages, events and tallies stay with the old key, which sends and
// drains them.
func movedCopy(old *conversation.Record, key string) *conversation.Record {
	st := old.Clone()
	st.Contact.ID = key
	if flows.IsDigits(key) {
		st.Contact.WaID = key
	} else {
		st.Contact.UserID = key
	}
	st.Outbox, st.EventsOut, st.Tallies, st.Version = nil, nil, nil, 0
	st.MovedTo, st.MovingTo = old.Contact.ID, ""
	return st
}

// finishMove finishes a move a crash left half done: the record under
// the new key is written if it is not there, then the old one is marked
// moved.
func (w *Worker) finishMove(ctx context.Context, old *conversation.Record) error {
	to := old.MovingTo
	if _, err := w.Store.Load(ctx, to); errors.Is(err, store.ErrNotFound) {
		st := movedCopy(old, to)
		st.MovedTo = ""
		if err := w.save(ctx, st, false); err != nil && !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("finishing the move of %s to %s: %w", old.Contact.ID, to, err)
		}
	} else if err != nil {
		return fmt.Errorf("finishing the move of %s to %s: %w", old.Contact.ID, to, err)
	}
	w.Log.Info("finishing a contact's move a crash left half done", "from", old.Contact.ID, "to", to)
	return w.moved(ctx, old.Contact.ID, to)
}

// moved marks the state under an old key as moved to key: its flow, its
// timers and its handoff are gone from it (they continue under key); its
// unsent messages still go out from it.
func (w *Worker) moved(ctx context.Context, old, key string) error {
	_, err := w.update(ctx, old, func(st *conversation.Record) error {
		st.MovedTo, st.MovingTo = key, ""
		st.Flow, st.Step, st.Waiting, st.Stack, st.Handoff = "", "", "", nil, nil
		st.Timers = nil
		return nil
	}, false)
	if err != nil {
		return fmt.Errorf("marking %s moved to %s; the move is finished later: %w", old, key, err)
	}
	return nil
}

// forward queues updates that came under a moved contact's old key under
// its new one (with keys of their own, so that they are not taken for
// duplicates), and takes them off the old key's queue.
func (w *Worker) forward(ctx context.Context, from, to string, items []conversation.Item) error {
	fwd := make([]conversation.Item, len(items))
	keys := make([]string, len(items))
	for i, it := range items {
		fwd[i] = it
		fwd[i].Key, fwd[i].Contact = "fwd:"+it.Key, to
		keys[i] = it.Key
	}
	if _, err := w.Store.Enqueue(ctx, fwd); err != nil {
		return fmt.Errorf("forwarding the updates of %s to %s: %w", from, to, err)
	}
	if err := w.Store.Ack(ctx, from, keys...); err != nil {
		return fmt.Errorf("forwarding the updates of %s to %s: %w", from, to, err)
	}
	w.Notify(to)
	return nil
}
