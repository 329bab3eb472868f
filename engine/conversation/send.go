package conversation

import (
	"context"
	"fmt"
	"time"

	"github.com/flowbot/flowbot/engine"
)

// Class is what a send's outcome means for the record.
type Class int

const (
	// Sent: WhatsApp accepted the message.
	Sent Class = iota
	// Refused: WhatsApp will not take the message as it is.
	Refused
	// WindowClosed: WhatsApp refused a free-form message because the
	// customer service window is closed after all.
	WindowClosed
)

// SendResult is what came of one send. A retryable failure is no result:
// the message stays first in the outbox.
type SendResult struct {
	Outbound Pending
	WAMID    string // WhatsApp's id, when sent
	Class    Class
	Code     int   // the channel's error code, when not sent
	Err      error // the error, when not sent
}

// statusRank orders delivery statuses: a late "delivered" does not undo
// "read".
var statusRank = map[string]int{"queued": 0, "sent": 1, "delivered": 2, "read": 3, "played": 4, "failed": 5}

// ApplyStatus records a delivery status on the message it is about. A
// free-form message that failed because the window is closed takes the
// path a refused send takes.
func (k *Keeper) ApplyStatus(ctx context.Context, st *Record, su *StatusUpdate) error {
	idx := -1
	for i := range st.Recent {
		d := &st.Recent[i]
		if su.WAMID != "" && d.WAMID == su.WAMID || su.Outbound != "" && d.ID == su.Outbound {
			idx = i
		}
	}
	if idx < 0 {
		k.log(st, engine.StatusReceived{Header: k.header(nil), Status: su.Status, WAMID: su.WAMID})
		k.bill(st, "", "", k.unattributed(ctx, st, su))
		return nil
	}
	d := &st.Recent[idx]
	st.tally(d.Campaign, statusTally(d.Status, su.Status, su.ErrorCode), k.Now())
	k.bill(st, d.Campaign, d.Flow, k.settle(ctx, st, d, su))
	if statusRank[su.Status] >= statusRank[d.Status] {
		d.Status, d.StatusAt = su.Status, su.Timestamp
	}
	if su.ErrorCode != 0 {
		d.ErrorCode, d.Error = su.ErrorCode, su.Error
	}
	if su.Pricing != nil {
		p := *su.Pricing
		d.Pricing = &p
	}
	if su.Status != "failed" {
		return nil
	}
	if k.Observer != nil {
		k.Observer.SendFailed(su.ErrorCode)
	}
	o := engine.Outbound{ID: d.ID, Via: d.Via, Flow: d.Flow, Step: d.Step, Batch: d.Batch}
	k.event(st, engine.SendRefused{Header: k.header(&o), MessageID: d.ID, Code: su.ErrorCode, Err: su.Error, Status: true})
	if su.WindowClosed && d.Via == engine.ViaSession {
		return k.windowClosed(ctx, st, o, su.ErrorCode)
	}
	return nil
}

// ApplySendResult records what came of a send: the message leaves the
// outbox for the deliveries, sent or failed. A free-form message refused
// because the window is closed takes the queued free-form messages with
// it (they would be refused too, so they are not attempted) and sends the
// step's fallback template, once.
func (k *Keeper) ApplySendResult(ctx context.Context, st *Record, r SendResult) error {
	idx := -1
	for i, q := range st.Outbox {
		if q.ID == r.Outbound.ID {
			idx = i
			break
		}
	}
	if idx < 0 {
		return nil // recorded already
	}
	st.Outbox = append(st.Outbox[:idx:idx], st.Outbox[idx+1:]...)
	o := r.Outbound
	if r.Class == Sent {
		if k.Observer != nil {
			k.Observer.Sent(o.Outbound)
		}
		k.left(st, o, true, r.WAMID, 0, "")
		return nil
	}
	if k.Observer != nil {
		k.Observer.SendFailed(r.Code)
	}
	why := ""
	if r.Err != nil {
		why = r.Err.Error()
	}
	k.left(st, o, false, "", r.Code, why)
	refused := engine.SendRefused{Header: k.header(&o.Outbound), MessageID: o.ID, Code: r.Code}
	if r.Err != nil {
		refused.Err = r.Err.Error()
	}
	k.event(st, refused)
	if r.Class == WindowClosed {
		return k.windowClosed(ctx, st, o.Outbound, r.Code)
	}
	return nil
}

// windowClosed is the one path of a window WhatsApp found closed: the
// queued free-form messages are not attempted, and the engine sends the
// fallback template.
func (k *Keeper) windowClosed(ctx context.Context, st *Record, o engine.Outbound, code int) error {
	kept := st.Outbox[:0:0]
	for _, q := range st.Outbox {
		if q.Via == engine.ViaSession {
			k.left(st, q, false, "", code, "not sent: the window is closed")
			continue
		}
		kept = append(kept, q)
	}
	st.Outbox = kept
	if _, err := k.handle(ctx, st, engine.WindowClosedIn{Outbound: &o}); err != nil {
		return fmt.Errorf("falling back to a template: %w", err)
	}
	return nil
}

// Next is the message to hand to the sender next, the first of the
// outbox. A free-form message whose window has closed since it was
// committed (its send waited behind retries, or the host was down) is
// never handed over: it takes the path of a window found closed, which
// sends the step's fallback template instead, and the next one is
// looked at. ok is false when the outbox is empty.
func (k *Keeper) Next(ctx context.Context, st *Record) (o Pending, ok bool, err error) {
	for i := 0; len(st.Outbox) > 0 && i < 100; i++ {
		o = st.Outbox[0]
		if r := o.Refused; r != nil {
			// WhatsApp would refuse it as rendered: it fails here, as a
			// refused send does, and is never attempted.
			st.Outbox = st.Outbox[1:]
			if k.Observer != nil {
				k.Observer.SendFailed(r.Code)
			}
			k.left(st, o, false, "", r.Code, "not sent: "+r.Why)
			k.event(st, engine.SendRefused{Header: k.header(&o.Outbound), MessageID: o.ID, Code: r.Code, Err: r.Why})
			continue
		}
		if o.Via != engine.ViaSession || st.WindowOpen(k.Now()) {
			return o, true, nil
		}
		st.Outbox = st.Outbox[1:]
		k.left(st, o, false, "", 0, "not sent: the window closed before it could go out")
		k.event(st, engine.Undeliverable{Header: k.header(&o.Outbound), Reason: fmt.Sprintf("message %s was not sent: the window closed before it could go out", o.ID)})
		if err := k.windowClosed(ctx, st, o.Outbound, 0); err != nil {
			return Pending{}, false, err
		}
	}
	return Pending{}, false, nil
}

// left records a message that left the outbox (taken off it already):
// sent, with WhatsApp's id, or failed with a code and why (a refusal, or
// never attempted). It is the one construction of a delivery, and what it
// adds to its campaign's counts.
func (k *Keeper) left(st *Record, o Pending, sent bool, wamid string, code int, why string) {
	d := Delivery{ID: o.ID, WAMID: wamid, Via: o.Via, Summary: Summary(o.Outbound), Flow: o.Flow, Step: o.Step, Batch: o.Batch,
		At: k.Now(), Status: "sent", Campaign: o.Campaign, From: From(o.Outbound), Category: o.Category, Cost: o.Cost}
	if !sent {
		d.Status, d.ErrorCode, d.Error, d.Charge = "failed", code, why, ChargeNone
	}
	st.AddRecent(d)
	st.tally(o.Campaign, sendTally(sent, code), k.Now())
	if sent {
		k.bill(st, o.Campaign, o.Flow, estimate(o.Category, o.Cost))
	}
}

// Claimed reports whether a sender's claim on o still holds at now.
func (k *Keeper) Claimed(o Pending, now time.Time) bool {
	return o.ClaimedBy != "" && now.Before(k.ClaimUntil(o))
}

// ClaimUntil is when the claim on o expires (claims written before
// ClaimUntil existed last ClaimTimeout).
func (k *Keeper) ClaimUntil(o Pending) time.Time {
	if o.ClaimUntil.IsZero() {
		return o.ClaimedAt.Add(k.ClaimTimeout)
	}
	return o.ClaimUntil
}

// Claim puts the record's unsent messages under this sender's claim,
// from now for a ClaimTimeout.
func (k *Keeper) Claim(st *Record) {
	now := k.Now()
	for i := range st.Outbox {
		st.Outbox[i].ClaimedBy, st.Outbox[i].ClaimedAt, st.Outbox[i].ClaimUntil = k.Instance, now, now.Add(k.ClaimTimeout)
	}
}

// From is who wrote a message: "agent" or "bot".
func From(o engine.Outbound) string {
	if o.Agent {
		return "agent"
	}
	return "bot"
}

// Summary is a message on one line, for the deliveries.
func Summary(o engine.Outbound) string {
	m := o.Message
	if m.Template != nil {
		return "template " + m.Template.Name
	}
	if len(m.Text) > 80 {
		return m.Text[:80] + "..."
	}
	if m.Text == "" {
		return m.Kind
	}
	return m.Text
}
