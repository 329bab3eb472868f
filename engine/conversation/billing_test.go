package conversation_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/flowbot/flowbot/actions"
	"github.com/flowbot/flowbot/dryrun"
	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/engine/conversation"
	"github.com/flowbot/flowbot/flows"
)

// Cost is estimated when WhatsApp accepts a message and confirmed by the
// pricing of its delivered (or read) status: a failure is never charged,
// a free status charges nothing, a later pricing reconciles, and a
// billable status for a message the record does not know is confirmed
// all the same, unattributed.
func TestCostIsBookedOnDelivery(t *testing.T) {
	bot, diags := flows.Load("../../examples/shop")
	if bot == nil {
		t.Fatal(diags.Error())
	}
	rate := bot.Settings.Pricing.Rates
	e := engine.New(bot, engine.Options{HTTP: dryrun.NewMocks(nil)})
	now := time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	var billed conversation.Charges
	k := &conversation.Keeper{Engine: func(context.Context, *conversation.Record) (*engine.Engine, string) { return e, "v1" },
		Now: func() time.Time { return now }, Instance: "node-1", ClaimTimeout: time.Hour, Observer: billings{&billed}}
	ctx := context.Background()
	st := conversation.NewRecord("15550001111")
	// Four marketing templates leave the outbox: three accepted, one
	// refused at once.
	for i, sent := range []bool{true, true, true, false} {
		o := conversation.Pending{Outbound: engine.Outbound{ID: string(rune('a' + i)), Via: engine.ViaTemplate, Category: flows.Marketing, Cost: rate[flows.Marketing],
			Message: actions.Message{Kind: "template"}}, Campaign: "c1"}
		st.Outbox = append(st.Outbox, o)
		r := conversation.SendResult{Outbound: o, WAMID: "wamid." + o.ID, Class: conversation.Sent}
		if !sent {
			r = conversation.SendResult{Outbound: o, Class: conversation.Refused, Code: 132000}
		}
		if err := k.ApplySendResult(ctx, st, r); err != nil {
			t.Fatal(err)
		}
	}
	mk := rate[flows.Marketing]
	check := func(when string, confirmed, estimated float64) {
		t.Helper()
		if c, e := st.Charges.Confirmed.Marketing, st.Charges.Estimated.Marketing; math.Abs(c-confirmed) > 1e-9 || math.Abs(e-estimated) > 1e-9 {
			t.Fatalf("%s: confirmed %v, estimated %v; want %v, %v", when, c, e, confirmed, estimated)
		}
		if n := sum(st, "c1"); math.Abs(n.Cost.Marketing-confirmed) > 1e-9 || math.Abs(n.CostEstimated.Marketing-estimated) > 1e-9 {
			t.Fatalf("%s: the campaign's tally %+v", when, n)
		}
		if billed.Confirmed != st.Charges.Confirmed || billed.Estimated != st.Charges.Estimated {
			t.Fatalf("%s: the observer heard %+v, the record holds %+v", when, billed, st.Charges)
		}
	}
	check("accepted", 0, 3*mk)
	status := func(wamid, status string, p *conversation.Pricing) {
		t.Helper()
		if err := k.ApplyStatus(ctx, st, &conversation.StatusUpdate{WAMID: wamid, Status: status, Timestamp: now, Pricing: p}); err != nil {
			t.Fatal(err)
		}
	}
	regular := &conversation.Pricing{Billable: true, Model: "PMP", Type: "regular", Category: "marketing"}
	status("wamid.a", "sent", nil)
	check("a sent status", 0, 3*mk)
	status("wamid.a", "delivered", regular)
	check("one delivered", mk, 2*mk)
	status("wamid.a", "read", regular) // pricing again: reconciled, not added
	check("read after delivered", mk, 2*mk)
	status("wamid.b", "failed", nil)
	check("one failed", mk, mk)
	status("wamid.b", "delivered", regular) // nothing undoes a failure's settlement
	check("delivered after failed", mk, mk)
	status("wamid.c", "delivered", &conversation.Pricing{Billable: false, Model: "PMP", Type: "free_entry_point", Category: "referral_conversion"})
	check("one free", mk, 0)
	if d := st.Recent[2]; d.Charge != conversation.ChargeFree || d.Charged != 0 {
		t.Fatalf("the free delivery: %+v", d)
	}
	// A billable status for a message the record does not know: WhatsApp
	// bills it, so it is confirmed, unattributed, at the category's rate.
	status("wamid.unknown", "delivered", &conversation.Pricing{Billable: true, Model: "PMP", Type: "regular", Category: "utility"})
	if st.Charges.Confirmed.Utility != rate[flows.Utility] || st.Charges.Unattributed != 1 {
		t.Fatalf("an unknown message's billable status: %+v", st.Charges)
	}
	status("wamid.unknown2", "delivered", &conversation.Pricing{Model: "PMP", Type: "free_customer_service", Category: "service"})
	if st.Charges.Unattributed != 1 || st.Charges.Confirmed.Service != 0 {
		t.Fatalf("an unknown message's free status: %+v", st.Charges)
	}
}

// billings is an Observer that adds up what it hears billed.
type billings struct{ c *conversation.Charges }

func (billings) Handled(time.Duration)         {}
func (billings) Happened(string, engine.Event) {}
func (billings) Sent(engine.Outbound)          {}
func (billings) SendFailed(int)                {}
func (b billings) Billed(x conversation.Billing) {
	b.c.Confirmed.Add(x.Confirmed)
	b.c.Estimated.Add(x.Estimated)
}
