package storetest

import (
	"context"
	"errors"
	"fmt"
	"github.com/flowbot/flowbot/engine/conversation"
	"sync"
	"testing"
	"time"

	"github.com/flowbot/flowbot/store"
)

func runCampaigns(t *testing.T, newStore func(t *testing.T) store.Store) {
	ctx := context.Background()
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	t.Run("campaigns and their audience pages", func(t *testing.T) {
		s := newStore(t)
		page := []store.AudienceContact{{ID: "1", Name: "Ana", Language: "es", Vars: map[string]any{"n": 3, "tags": []any{"a"}}}, {ID: "2"}}
		if err := s.PutAudience(ctx, "c1", 0, page); err != nil {
			t.Fatal(err)
		}
		c := store.Campaign{ID: "c1", Name: "reminders", Flow: "remind", Rate: 80, Batch: 20, Total: 2, Fingerprint: "fp1", State: store.CampaignRunning, Factor: 1, CreatedAt: at}
		if err := s.CreateCampaign(ctx, c); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateCampaign(ctx, c); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("a second campaign under one id: %v, want ErrConflict", err)
		}
		c2 := c
		c2.ID, c2.Fingerprint, c2.CreatedAt = "c2", "fp2", at.Add(time.Minute)
		if err := s.CreateCampaign(ctx, c2); err != nil {
			t.Fatal(err)
		}
		got, err := s.Audience(ctx, "c1", 0)
		if err != nil || len(got) != 2 || got[0].Name != "Ana" || fmt.Sprint(got[0].Vars["n"]) != "3" || got[1].ID != "2" {
			t.Fatalf("audience page: %+v, %v", got, err)
		}
		if _, err := s.Audience(ctx, "c1", 1); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("a page never stored: %v", err)
		}
		list, err := s.ListCampaigns(ctx)
		if err != nil || len(list) != 2 || list[0].ID != "c2" {
			t.Fatalf("newest first: %+v, %v", list, err)
		}
		if err := s.UpdateCampaign(ctx, "c1", []store.CampaignState{store.CampaignRunning}, store.CampaignUpdate{State: store.CampaignPaused}); err != nil {
			t.Fatal(err)
		}
		var ws *store.ErrWrongState
		if err := s.UpdateCampaign(ctx, "c1", []store.CampaignState{store.CampaignRunning}, store.CampaignUpdate{State: store.CampaignDone}); !errors.As(err, &ws) || ws.State != store.CampaignPaused {
			t.Fatalf("a change from the wrong state: %v", err)
		}
		if err := s.UpdateCampaign(ctx, "nope", nil, store.CampaignUpdate{State: store.CampaignDone}); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("an unknown campaign: %v", err)
		}
		// Two instances slow it down from the pace they read: one wins,
		// the other is told.
		read := store.Pace{Factor: 1}
		if err := s.SetPace(ctx, "c1", read, store.Pace{Factor: 0.5, SlowedAt: at}); err != nil {
			t.Fatal(err)
		}
		if err := s.SetPace(ctx, "c1", read, store.Pace{Factor: 0.5, SlowedAt: at.Add(time.Second)}); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("a pace set from a stale read: %v, want ErrConflict", err)
		}
		if err := s.SetPace(ctx, "nope", read, store.Pace{Factor: 0.5}); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("an unknown campaign's pace: %v", err)
		}
		if g, _ := s.Campaign(ctx, "c1"); g.State != store.CampaignPaused || g.Factor != 0.5 || !g.SlowedAt.Equal(at) || g.Total != 2 {
			t.Fatalf("after the updates: %+v", g)
		}
	})
	t.Run("campaign batches are claimed once", func(t *testing.T) {
		s := newStore(t)
		if _, err := s.LastBatch(ctx, "c"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("no batch yet: %v", err)
		}
		var wg sync.WaitGroup
		wins := make(chan string, 8)
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				by := fmt.Sprint("i", i)
				if err := s.ClaimBatch(ctx, store.CampaignBatch{Campaign: "c", N: 0, Start: at, End: at.Add(time.Second), By: by, Until: at.Add(time.Minute)}); err == nil {
					wins <- by
				} else if !errors.Is(err, store.ErrConflict) {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		close(wins)
		if n := len(wins); n != 1 {
			t.Fatalf("%d instances claimed one batch", n)
		}
		for n := 1; n <= 11; n++ {
			if err := s.ClaimBatch(ctx, store.CampaignBatch{Campaign: "c", N: n, Start: at, End: at, By: "x"}); err != nil {
				t.Fatal(err)
			}
		}
		if b, err := s.LastBatch(ctx, "c"); err != nil || b.N != 11 {
			t.Fatalf("last batch: %+v, %v (batch numbers sort as numbers)", b, err)
		}
		// Two instances take over batch 0 from what they read: one gets it.
		b0, err := s.Batch(ctx, "c", 0)
		if err != nil {
			t.Fatal(err)
		}
		for i, want := range []error{nil, store.ErrConflict} {
			next := *b0
			next.By, next.Until = fmt.Sprint("taker", i), at.Add(2*time.Minute)
			if err := s.UpdateBatch(ctx, *b0, next); !errors.Is(err, want) {
				t.Fatalf("taker %d: %v, want %v", i, err, want)
			}
		}
		// The holder it was taken from finds out when it marks it done.
		if err := s.UpdateBatch(ctx, *b0, store.CampaignBatch{Campaign: "c", N: 0, By: b0.By, Done: true}); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("the old holder marking it done: %v, want ErrConflict", err)
		}
		if b, _ := s.Batch(ctx, "c", 0); b.By != "taker0" || b.Done {
			t.Fatalf("batch 0 after the takeover: %+v", b)
		}
		if err := s.UpdateBatch(ctx, store.CampaignBatch{By: "x"}, store.CampaignBatch{Campaign: "c", N: 99, By: "x"}); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("a batch never claimed: %v", err)
		}
		if err := s.UpdateBatch(ctx, store.CampaignBatch{Campaign: "c", N: 3, By: "x"}, store.CampaignBatch{Campaign: "c", N: 3, By: "x", Done: true}); err != nil {
			t.Fatal(err)
		}
		open, err := s.OpenBatches(ctx, "c")
		if err != nil || len(open) != 11 || open[0].N != 0 || open[3].N != 4 {
			t.Fatalf("open batches: %d %v", len(open), err)
		}
		if b, err := s.Batch(ctx, "c", 0); err != nil || !b.End.Equal(at.Add(time.Second)) {
			t.Fatalf("batch 0: %+v, %v", b, err)
		}
	})
	t.Run("tallies drained again count once", func(t *testing.T) {
		s := newStore(t)
		one := conversation.CampaignCounts{Started: 1, Sent: 1, Outbox: 0, Cost: conversation.CostCounts{Marketing: 0.25}, CostEstimated: conversation.CostCounts{Utility: 0.5}}
		var wg sync.WaitGroup
		// Four writers drain the same 25 contacts' tallies at once (a
		// retry, a crash, another instance): each key counts once.
		for i := 0; i < 4; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := 0; j < 25; j++ {
					tallies := []conversation.TallyOut{{Version: 3, At: at, Campaigns: []conversation.CampaignTally{{Campaign: "c", CampaignCounts: one}}}}
					if err := s.DrainTallies(ctx, fmt.Sprint("contact", j), tallies); err != nil {
						t.Error(err)
					}
				}
			}()
		}
		wg.Wait()
		// A later version of one contact counts; the same version of
		// another campaign in one tally counts for that campaign.
		later := []conversation.TallyOut{
			{Version: 3, At: at, Campaigns: []conversation.CampaignTally{{Campaign: "c", CampaignCounts: one}}},
			{Version: 4, At: at, Campaigns: []conversation.CampaignTally{
				{Campaign: "c", CampaignCounts: conversation.CampaignCounts{Busy: 2, Read: 1, Outbox: -1}},
				{Campaign: "other", CampaignCounts: conversation.CampaignCounts{Started: 7}}}},
		}
		for range 2 {
			if err := s.DrainTallies(ctx, "contact0", later); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.Counts(ctx, "c")
		want := conversation.CampaignCounts{Started: 25, Sent: 25, Busy: 2, Read: 1, Outbox: -1, Cost: conversation.CostCounts{Marketing: 6.25}, CostEstimated: conversation.CostCounts{Utility: 12.5}}
		if err != nil || got != want {
			t.Fatalf("counts: %+v, %v; want %+v", got, err, want)
		}
		if got, err := s.Counts(ctx, "other"); err != nil || got.Started != 7 {
			t.Fatalf("other campaign's counts: %+v, %v", got, err)
		}
		if got, err := s.Counts(ctx, "none"); err != nil || got != (conversation.CampaignCounts{}) {
			t.Fatalf("an unknown campaign's counts: %+v, %v", got, err)
		}
	})
}
