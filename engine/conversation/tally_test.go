package conversation_test

import (
	"context"
	"testing"
	"time"

	"github.com/flowbot/flowbot/dryrun"
	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/engine/conversation"
	"github.com/flowbot/flowbot/flows"
)

// sum adds up what a record's tallies did to one campaign.
func sum(st *conversation.Record, campaign string) conversation.CampaignCounts {
	var n conversation.CampaignCounts
	for _, t := range st.Tallies {
		for _, c := range t.Campaigns {
			if c.Campaign == campaign {
				n.Add(c.CampaignCounts)
			}
		}
	}
	return n
}

// A campaign's start is tallied in the record, under the version its
// write makes; its free-form message, dropped because the window closed
// before it went out, is counted failed and leaves the campaign's unsent
// messages, in the same record.
func TestCampaignTallyInTheRecord(t *testing.T) {
	bot, diags := flows.Load("../../examples/shop")
	if bot == nil {
		t.Fatal(diags.Error())
	}
	e := engine.New(bot, engine.Options{HTTP: dryrun.NewMocks(nil)})
	now := time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	k := &conversation.Keeper{Engine: func(context.Context, *conversation.Record) (*engine.Engine, string) { return e, "v1" },
		Now: func() time.Time { return now }, Instance: "node-1", ClaimTimeout: time.Hour}
	st := conversation.NewRecord("15550001111")
	st.Version = 6
	st.LastInbound = now.Add(-23 * time.Hour) // the window is open, for another hour
	start := conversation.Item{Key: "camp:c1:15550001111", Contact: "15550001111", Kind: conversation.ItemCommand, Timestamp: now,
		Command: &conversation.Command{Kind: conversation.CommandStart, Flow: "shipping_update", Campaign: "c1", Name: "Sam", Vars: map[string]any{"order_id": "123456", "eta": "on Friday"}}}
	if _, errs := k.Apply(context.Background(), st, []conversation.Item{start}, false); len(errs) > 0 {
		t.Fatal(errs)
	}
	if len(st.Tallies) != 1 || st.Tallies[0].Version != 7 {
		t.Fatalf("tallies after the start: %+v; want one, of version 7 (the write this makes)", st.Tallies)
	}
	n := sum(st, "c1")
	if n.Started != 1 || n.Outbox < 1 || n.Outbox != len(st.Outbox) {
		t.Fatalf("after the start: %+v with %d in the outbox", n, len(st.Outbox))
	}
	if st.Outbox[0].Via != engine.ViaSession || st.Outbox[0].Campaign != "c1" {
		t.Fatalf("the campaign's first message: %+v", st.Outbox[0])
	}
	// Not sent before the window closed.
	now = now.Add(2 * time.Hour)
	for {
		o, ok, err := k.Next(context.Background(), st)
		if err != nil {
			t.Fatal(err)
		}
		if !ok || o.Via == engine.ViaTemplate {
			break
		}
	}
	n = sum(st, "c1")
	campaignLeft := 0
	for _, o := range st.Outbox {
		if o.Campaign == "c1" {
			campaignLeft++
		}
	}
	if n.Failed < 1 || n.Outbox != campaignLeft || n.Sent != 0 {
		t.Fatalf("after the window closed: %+v, %d of the campaign's messages left in the outbox", n, campaignLeft)
	}
	var failed *conversation.Delivery
	for i := range st.Recent {
		if st.Recent[i].Status == "failed" {
			failed = &st.Recent[i]
		}
	}
	if failed == nil || failed.Campaign != "c1" {
		t.Fatalf("the dropped message's delivery: %+v", st.Recent)
	}
}
