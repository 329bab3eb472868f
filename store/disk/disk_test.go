package disk_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/engine/conversation"
	"github.com/flowbot/flowbot/store"
	"github.com/flowbot/flowbot/store/disk"
	"github.com/flowbot/flowbot/store/storetest"
)

func open(t *testing.T, dir string) *disk.Store {
	t.Helper()
	s, err := disk.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// The store's rules, as for every store.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t, t.TempDir()) })
}

// What one process wrote, the next finds: a record with its outbox and
// timers, queued updates and the keys seen, a campaign with its audience,
// batches and counts, an event out, an idempotency answer, a template's
// and the account's states, a bot version.
func TestStateSurvivesARestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	at := time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)
	s := open(t, dir)
	if s.Store.Volatile() {
		t.Fatal("a disk store says it is volatile")
	}
	st := conversation.NewRecord("15550001111")
	st.Flow, st.Step, st.Waiting = "appointments", "ask_date", "ask"
	st.Vars = map[string]any{"date": "2026-12-08", "people": 2.0, "booking": map[string]any{"id": "b1"}}
	st.Timers = []engine.Timer{{ID: "t1", Kind: engine.TimerTimeout, Due: at.Add(time.Hour), Flow: "appointments", Step: "ask_date"}}
	st.Outbox = []conversation.Pending{{Outbound: engine.Outbound{ID: "15550001111:m1", To: "15550001111", Via: engine.ViaSession, At: at}}}
	st.Handoff = &engine.HandoffState{Queue: "support", Since: at}
	if err := s.Save(ctx, st); err != nil {
		t.Fatal(err)
	}
	items := []conversation.Item{{Key: "wamid.1", Contact: "15550001111", Kind: conversation.ItemMessage, Timestamp: at, Received: at,
		Message: &engine.Inbound{ID: "wamid.1", Type: "text", Text: "tomorrow"}}}
	if _, err := s.Enqueue(ctx, items); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateCampaign(ctx, store.Campaign{ID: "c1", Name: "restock", Flow: "notice", State: store.CampaignRunning, Total: 2, Rate: 80, Batch: 20, CreatedAt: at}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutAudience(ctx, "c1", 0, []store.AudienceContact{{ID: "15550002222", Vars: map[string]any{"day": "Monday"}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.ClaimBatch(ctx, store.CampaignBatch{Campaign: "c1", N: 0, By: "web1", Until: at.Add(time.Minute), End: at.Add(time.Second)}); err != nil {
		t.Fatal(err)
	}
	tally := []conversation.TallyOut{{Version: 3, At: at, Campaigns: []conversation.CampaignTally{{Campaign: "c1", CampaignCounts: conversation.CampaignCounts{Started: 1, Sent: 1}}},
		Flows: []conversation.FlowFacts{{Flow: "notice", FlowCounts: conversation.FlowCounts{Started: 1, Steps: map[string]*conversation.StepCounts{"hello": {Entered: 1}}}}}}}
	if err := s.DrainTallies(ctx, "15550002222", tally); err != nil {
		t.Fatal(err)
	}
	if err := s.PutEvents(ctx, []store.OutEvent{{ID: "evt_1", Key: "15550001111", Order: "1", Type: "handoff.started", At: at, Body: []byte(`{"a":1}`), NextAt: at}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reserve(ctx, "idem-1", "POST /api/x", at); err != nil {
		t.Fatal(err)
	}
	if err := s.Answer(ctx, "idem-1", at, store.Answer{Status: 202, Body: []byte(`{"ok":true}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateTemplate(ctx, store.TemplateState{Name: "order_update", Language: "en_US", Status: "PAUSED", UpdatedAt: at}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateAccount(ctx, store.AccountState{Key: store.KeyRestriction, Event: "ACCOUNT_RESTRICTION", UpdatedAt: at,
		Restrictions: []store.Restriction{{Type: "RESTRICTED_BIZ_INITIATED_MESSAGING", Expires: at.Add(time.Hour)}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveBot(ctx, "v1", map[string][]byte{"flowbot.yaml": []byte("language: en_US\n")}); err != nil {
		t.Fatal(err)
	}

	// A second process on the same directory is refused.
	if _, err := disk.Open(dir); !errors.Is(err, disk.ErrLocked) {
		t.Fatalf("a second process on the directory: %v", err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}

	r := open(t, dir)
	got, err := r.Load(ctx, "15550001111")
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != 1 || got.Step != "ask_date" || got.Vars["people"] != 2.0 || got.Vars["booking"].(map[string]any)["id"] != "b1" ||
		len(got.Timers) != 1 || !got.Timers[0].Due.Equal(at.Add(time.Hour)) || len(got.Outbox) != 1 || got.Handoff == nil || got.Handoff.Queue != "support" {
		t.Fatalf("the record after a restart: %+v", got)
	}
	if due, err := r.Due(ctx, at.Add(2*time.Hour), 10); err != nil || len(due) != 1 {
		t.Fatalf("due after a restart: %+v %v", due, err)
	}
	if p, err := r.Pending(ctx, "15550001111", 10); err != nil || len(p) != 1 || p[0].Message.Text != "tomorrow" {
		t.Fatalf("queued after a restart: %+v %v", p, err)
	}
	if fresh, err := r.Enqueue(ctx, items); err != nil || len(fresh) != 0 {
		t.Fatalf("a key seen before the restart was queued again: %+v %v", fresh, err)
	}
	if f, err := r.FlowFacts(ctx, store.FactQuery{Flow: "notice", From: at, To: at.Add(time.Hour)}); err != nil || f.Started != 1 || f.Steps["hello"].Entered != 1 {
		t.Fatalf("facts after a restart: %+v %v", f, err)
	}
	if err := r.DrainTallies(ctx, "15550002222", tally); err != nil {
		t.Fatal(err)
	}
	if f, _ := r.FlowFacts(ctx, store.FactQuery{Flow: "notice", From: at, To: at.Add(time.Hour)}); f.Started != 1 {
		t.Fatalf("facts drained again after a restart counted twice: %+v", f)
	}
	if c, err := r.Campaign(ctx, "c1"); err != nil || c.State != store.CampaignRunning || c.Rate != 80 {
		t.Fatalf("campaign: %+v %v", c, err)
	}
	if a, err := r.Audience(ctx, "c1", 0); err != nil || len(a) != 1 || a[0].Vars["day"] != "Monday" {
		t.Fatalf("audience: %+v %v", a, err)
	}
	if b, err := r.Batch(ctx, "c1", 0); err != nil || b.By != "web1" {
		t.Fatalf("batch: %+v %v", b, err)
	}
	if n, err := r.Counts(ctx, "c1"); err != nil || n.Started != 1 || n.Sent != 1 {
		t.Fatalf("counts: %+v %v", n, err)
	}
	if err := r.DrainTallies(ctx, "15550002222", tally); err != nil {
		t.Fatal(err)
	}
	if n, _ := r.Counts(ctx, "c1"); n.Started != 1 {
		t.Fatalf("a tally drained before the restart counted again: %+v", n)
	}
	if evs, err := r.NextEvents(ctx, at, 10); err != nil || len(evs) != 1 || string(evs[0].Body) != `{"a":1}` {
		t.Fatalf("events: %+v %v", evs, err)
	}
	if a, err := r.Reserve(ctx, "idem-1", "POST /api/x", at.Add(time.Minute)); err != nil || a == nil || a.Status != 202 {
		t.Fatalf("idempotency answer: %+v %v", a, err)
	}
	if ts, err := r.TemplateStates(ctx); err != nil || len(ts) != 1 || ts[0].Status != "PAUSED" {
		t.Fatalf("templates: %+v %v", ts, err)
	}
	if as, err := r.AccountStates(ctx); err != nil || len(as) != 1 || len(as[0].Restrictions) != 1 {
		t.Fatalf("account: %+v %v", as, err)
	}
	if f, err := r.LoadBot(ctx, "v1"); err != nil || string(f["flowbot.yaml"]) != "language: en_US\n" {
		t.Fatalf("bot: %v %v", f, err)
	}
	// The version is the one written: a writer that read none conflicts.
	if err := r.Save(ctx, conversation.NewRecord("15550001111")); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a stale save after the restart: %v", err)
	}
}
