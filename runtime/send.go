package runtime

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/engine/conversation"
	"github.com/flowbot/flowbot/store"
	"github.com/flowbot/flowbot/whatsapp"
)

// sendOutbox sends the contact's committed outbound messages, in order,
// from st (just loaded or saved), then records the outcomes in one write.
// One instance at a time sends a contact's messages: the one that claimed
// them; another takes over only when the claim has expired. A crash
// between a send and that write sends the message again on restart (at
// least once). It returns the latest record it wrote (nil for none);
// guarded says that the round's queued updates stay queued until what
// the writes caused is drained (else each write is drained at once, and
// carries a drain_due).
func (w *Worker) sendOutbox(ctx context.Context, contact string, st *conversation.Record, guarded bool) (int, *conversation.Record, error) {
	var results []conversation.SendResult // sent, not yet written
	dirty := false                        // the record changed otherwise, not yet written
	sent, attempt := 0, 0
	var stopErr error
	var written *conversation.Record
	for len(st.Outbox) > 0 && ctx.Err() == nil {
		// Before every try, a retry included: the claim must hold, and a
		// free-form message's window must still be open.
		held, ok, err := w.holdClaim(ctx, contact, st, results, guarded)
		if err != nil || !ok {
			// The outcomes of the sends so far are written below all the
			// same: a message sent is never left in the outbox.
			stopErr = err
			break
		}
		if held != st {
			st, results, dirty, written = held, nil, false, held // the claim's write recorded everything so far
		}
		first := st.Outbox[0].ID
		o, ok, err := w.Keeper.Next(ctx, st)
		dirty = dirty || !ok || o.ID != first
		if err != nil || !ok {
			stopErr = err
			break
		}
		if o.ID != first {
			attempt = 0
		}
		// While the account may not start conversations, a template to a
		// contact whose window is closed waits for the restriction to end:
		// the contact is kicked when a sweep finds it ended (or an event
		// lifted it), and its claim's expiry makes it due after a restart.
		if now := w.now(); o.Via == engine.ViaTemplate && !st.WindowOpen(now) {
			if until := w.heldUntil(now); !until.IsZero() {
				w.Hold(contact)
				stopErr = fmt.Errorf("message %s held: WhatsApp restricted the account from business-initiated messages until %s", o.ID, until.Format(time.RFC3339))
				break
			}
		}
		// A campaign's message waits for its turn: however late the store
		// let its start through, this instance sends the campaign's
		// messages no faster than the campaign's rate.
		if o.Campaign != "" && attempt == 0 && w.SendTurn != nil && !w.SendTurn(ctx, o.Campaign) {
			stopErr = ctx.Err()
			break
		}
		// The send ends before the claim does: a message is never in two
		// senders' hands.
		budget := w.Keeper.ClaimUntil(o).Sub(w.now()) - w.ClaimTimeout/10
		sctx, cancel := context.WithTimeout(ctx, budget)
		wamid, err := w.Sender.Send(sctx, o.Outbound)
		cut := sctx.Err() != nil // the claim's time ran out, or shutting down
		cancel()
		class := whatsapp.ClassOf(err)
		if err != nil && (class == whatsapp.Retryable || cut) {
			if w.SendError != nil {
				w.SendError(errorCode(err))
			}
			if code := errorCode(err); o.Campaign != "" && (code == 130429 || code == 131056) {
				if w.SlowDown != nil {
					w.SlowDown(o.Campaign, code)
				}
			}
			attempt++
			if !cut && attempt < w.Retry.Attempts && Wait(ctx, w.Clock, whatsapp.Backoff(w.Retry, attempt-1, err)) {
				continue
			}
			// Retries used up (or the claim's time), or shutting down: it
			// stays first in the outbox, and the contact's later messages
			// wait behind it.
			if ctx.Err() == nil {
				w.Later(w.RetryLater, contact)
			}
			stopErr = fmt.Errorf("message %s stays queued: %w", o.ID, err)
			break
		}
		attempt = 0
		r := conversation.SendResult{Outbound: o, WAMID: wamid, Class: conversation.Sent}
		if err != nil {
			r.Class, r.Code, r.Err = conversation.Refused, errorCode(err), err
			if class == whatsapp.WindowClosed {
				r.Class = conversation.WindowClosed
			}
		}
		results = append(results, r)
		sent++
		if err := w.Keeper.ApplySendResult(ctx, st, r); err != nil {
			w.Log.Error("recording a send", "contact", contact, "err", err)
		}
	}
	if len(results) == 0 && !dirty {
		return sent, written, stopErr
	}
	rec, err := w.record(ctx, contact, st, results, nil, guarded)
	if err != nil {
		return sent, written, err
	}
	return sent, rec, stopErr
}

// errClaimLost: another instance holds the claim on a contact's outbox.
var errClaimLost = errors.New("another instance holds the claim")

// holdClaim makes sure that this instance's claim on the contact's
// outbox holds for at least half a claim's time before a send: it takes
// an expired claim over, or renews its own, writing the claim together
// with the outcomes of the sends so far. It returns the state to go on
// from (st itself when nothing was written), and false when another
// instance holds the claim.
func (w *Worker) holdClaim(ctx context.Context, contact string, st *conversation.Record, results []conversation.SendResult, guarded bool) (*conversation.Record, bool, error) {
	if !w.holds() {
		// The heartbeat lapsed: another process may hold the id. Try
		// again once it beats.
		w.Later(w.RetryLater, contact)
		return st, false, nil
	}
	now := w.now()
	o := st.Outbox[0]
	if o.ClaimedBy == w.Instance && w.Keeper.ClaimUntil(o).Sub(now) >= w.ClaimTimeout/2 {
		return st, true, nil
	}
	if o.ClaimedBy != w.Instance && w.Keeper.Claimed(o, now) {
		return st, false, nil // another instance is sending them
	}
	if o.ClaimedBy != "" && o.ClaimedBy != w.Instance {
		w.Log.Warn("taking over messages another instance claimed and did not send: a duplicate is possible", "contact", contact, "message", o.ID, "claimed_by", o.ClaimedBy)
	}
	held, err := w.record(ctx, contact, st, results, func(fresh *conversation.Record) error {
		if len(fresh.Outbox) == 0 {
			return errClaimLost // sent meanwhile
		}
		if f := fresh.Outbox[0]; f.ClaimedBy != w.Instance && w.Keeper.Claimed(f, w.now()) {
			return errClaimLost
		}
		w.Keeper.Claim(fresh)
		return nil
	}, guarded)
	if errors.Is(err, errClaimLost) {
		return st, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return held.Clone(), true, nil // the store keeps what was written
}

// record writes the outcomes of sends (already applied to st) and then
// change, if any: on st when the store still holds st's version, else on
// the fresh state, where the outcomes are applied again (uncounted). It
// returns the state written: the store may keep it, and nobody changes it.
func (w *Worker) record(ctx context.Context, contact string, st *conversation.Record, results []conversation.SendResult, change func(*conversation.Record) error, guarded bool) (*conversation.Record, error) {
	if change != nil {
		if err := change(st); err != nil {
			return nil, err
		}
	}
	err := w.save(ctx, st, guarded)
	if err == nil {
		if !guarded {
			w.drainWritten(ctx, st)
		}
		return st, nil
	}
	if !errors.Is(err, store.ErrConflict) {
		return nil, err
	}
	// The state moved on meanwhile: record the outcomes on the fresh one.
	quiet := *w.Keeper
	quiet.Observer = nil
	written, err := w.update(ctx, contact, func(fresh *conversation.Record) error {
		for _, r := range results {
			if err := quiet.ApplySendResult(ctx, fresh, r); err != nil {
				return err
			}
		}
		if change != nil {
			return change(fresh)
		}
		return nil
	}, guarded)
	return written, err
}

func errorCode(err error) int {
	var ae *whatsapp.APIError
	if errors.As(err, &ae) {
		return ae.Code
	}
	return 0
}
