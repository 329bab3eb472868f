package store_test

import (
	"testing"
	"time"

	"github.com/flowbot/flowbot/engine/conversation"
	"github.com/flowbot/flowbot/store"
)

// A tally older than FactsFinal keeps its campaign counts and loses its
// facts (drained long ago), without changing the record's tallies.
func TestFreshFacts(t *testing.T) {
	now := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
	facts := []conversation.FlowFacts{{Flow: "f", FlowCounts: conversation.FlowCounts{Started: 1}}}
	camp := []conversation.CampaignTally{{Campaign: "c", CampaignCounts: conversation.CampaignCounts{Started: 1}}}
	tallies := []conversation.TallyOut{
		{Version: 1, At: now.Add(-8 * 24 * time.Hour), Campaigns: camp, Flows: facts},
		{Version: 2, At: now.Add(-time.Hour), Flows: facts},
	}
	got := store.FreshFacts(tallies, now)
	if len(got) != 2 || got[0].Flows != nil || len(got[0].Campaigns) != 1 || len(got[1].Flows) != 1 {
		t.Fatalf("fresh facts %+v", got)
	}
	if tallies[0].Flows == nil {
		t.Fatal("the record's tallies were changed")
	}
}
