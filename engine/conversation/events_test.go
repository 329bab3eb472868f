package conversation_test

import (
	"flag"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/engine/conversation"
	"github.com/flowbot/flowbot/internal/snapshot"
)

var updateOut = flag.Bool("update", false, "write the events out's snapshots in testdata/events_out")

// Every event out has one body, pinned by a snapshot
// (testdata/events_out/<type>.json; go test ./engine/conversation -run
// EventsOut -update writes them): the envelope's fields, then its own.
func TestEventsOutSnapshots(t *testing.T) {
	at := time.Date(2026, 12, 5, 9, 30, 0, 0, time.FixedZone("CET", 3600))
	since := at.Add(-time.Hour).UTC()
	note := "topic billing"
	contact := &conversation.ContactView{ID: "15550001111", Name: "Ana", Language: "en_US", WaID: "15550001111"}
	in := &engine.Inbound{ID: "wamid.in.1", Type: "location", Text: "Office", Timestamp: at.UTC()}
	in.Location.Latitude, in.Location.Longitude, in.Location.Name = 38.71, -9.14, "Office"
	for _, b := range []conversation.OutBody{
		conversation.MessageReceivedOut{Message: in.View(), Handoff: conversation.HandoffView{Queue: "support", Since: since}},
		conversation.HandoffStartedOut{Queue: "support", Flow: "triage", Step: "agent", Note: &note, Since: &since, Keyword: "agent"},
		conversation.HandoffReleasedOut{Queue: "support", By: "agent", Flow: "triage", Step: "agent"},
		conversation.FlowEndedOut{Flow: "triage", Step: "done", Reason: "end: true"},
		conversation.CampaignFinishedOut{Campaign: conversation.CampaignSummary{ID: "cmp_1", Name: "spring", Flow: "offer", Total: 3, Rejected: 1,
			Started: 2, Skipped: map[string]int{"opted_out": 1, "busy": 0, "limit": 0}, Sent: 2, Delivered: 2, Read: 1,
			Cost: map[string]any{"amount": 0.05, "currency": "USD"}, CostEstimated: map[string]any{"amount": 0, "currency": "USD"}, CreatedAt: since, FinishedAt: at.UTC()}},
	} {
		var c *conversation.ContactView
		if b.OutType() != conversation.EventCampaignFinished {
			c = contact
		}
		e := conversation.NewEventOut("evt_1", at, c, "100000000000001", b)
		if e.Type != b.OutType() || e.ID != "evt_1" {
			t.Fatalf("%+v", e)
		}
		snapshot.JSON(t, filepath.Join("testdata", "events_out", e.Type+".json"), e.Body, *updateOut)
	}
	// A handoff the record does not hold has no note or since; an empty
	// note of one it holds is there, empty.
	bare := conversation.NewEventOut("evt_2", at, contact, "", conversation.HandoffStartedOut{Queue: "q", Flow: "f", Step: "s"})
	if strings.Contains(string(bare.Body), "note") || strings.Contains(string(bare.Body), "since") || strings.Contains(string(bare.Body), "number") {
		t.Errorf("handoff.started without a handoff: %s", bare.Body)
	}
	empty := ""
	withNote := conversation.NewEventOut("evt_3", at, contact, "", conversation.HandoffStartedOut{Queue: "q", Flow: "f", Step: "s", Note: &empty, Since: &since})
	if !strings.Contains(string(withNote.Body), `"note":""`) {
		t.Errorf("handoff.started with an empty note: %s", withNote.Body)
	}
}
