// Package storetest is the conformance suite every store.Contacts passes.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"github.com/flowbot/flowbot/engine/conversation"
	"sync"
	"testing"
	"time"

	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/store"
)

// Run runs the suite; newStore returns an empty store for each subtest.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	runContacts(t, func(t *testing.T) store.Contacts { return newStore(t) })
	runInbox(t, newStore)
	runCampaigns(t, newStore)
	runEvents(t, newStore)
	runFacts(t, newStore)
	runList(t, newStore)
	t.Run("bot versions", func(t *testing.T) {
		s, ok := newStore(t).(store.Bots)
		if !ok {
			t.Skip("the store keeps no bot versions")
		}
		ctx := context.Background()
		files := map[string][]byte{"flows/a.yaml": []byte("flow: a\n"), "templates.yaml": []byte("templates: []\n")}
		if err := s.SaveBot(ctx, "v1", files); err != nil {
			t.Fatal(err)
		}
		if err := s.SaveBot(ctx, "v1", files); err != nil {
			t.Fatalf("saving a version twice: %v", err)
		}
		got, err := s.LoadBot(ctx, "v1")
		if err != nil || string(got["flows/a.yaml"]) != "flow: a\n" || len(got) != 2 {
			t.Fatalf("LoadBot = %v, %v", got, err)
		}
		if _, err := s.LoadBot(ctx, "v2"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("unknown version: %v", err)
		}
	})
	t.Run("instance ids", func(t *testing.T) {
		s := newStore(t)
		ctx := context.Background()
		now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
		if err := s.Beat(ctx, "node-1", "a", now, now.Add(6*time.Second)); err != nil {
			t.Fatalf("a free id: %v", err)
		}
		if err := s.Beat(ctx, "node-1", "a", now.Add(2*time.Second), now.Add(8*time.Second)); err != nil {
			t.Fatalf("the holder beating again: %v", err)
		}
		var held *store.HeldError
		err := s.Beat(ctx, "node-1", "b", now.Add(3*time.Second), now.Add(9*time.Second))
		if !errors.Is(err, store.ErrInstanceHeld) || !errors.As(err, &held) || !held.Until.Equal(now.Add(8*time.Second)) {
			t.Fatalf("another process while the heartbeat is fresh: %v", err)
		}
		if err := s.Beat(ctx, "node-2", "b", now, now.Add(6*time.Second)); err != nil {
			t.Fatalf("another id: %v", err)
		}
		if err := s.Beat(ctx, "node-1", "b", now.Add(8*time.Second), now.Add(14*time.Second)); err != nil {
			t.Fatalf("after the heartbeat lapsed: %v", err)
		}
		if err := s.Beat(ctx, "node-1", "a", now.Add(9*time.Second), now.Add(15*time.Second)); !errors.Is(err, store.ErrInstanceHeld) {
			t.Fatalf("the old holder, its id taken over: %v", err)
		}
		if err := s.Leave(ctx, "node-1", "a"); err != nil {
			t.Fatal(err)
		}
		if err := s.Beat(ctx, "node-1", "c", now.Add(9*time.Second), now.Add(15*time.Second)); !errors.Is(err, store.ErrInstanceHeld) {
			t.Fatalf("a Leave by a process that does not hold the id freed it: %v", err)
		}
		if err := s.Leave(ctx, "node-1", "b"); err != nil {
			t.Fatal(err)
		}
		if err := s.Beat(ctx, "node-1", "c", now.Add(9*time.Second), now.Add(15*time.Second)); err != nil {
			t.Fatalf("after the holder left: %v", err)
		}
	})
	t.Run("idempotency keys", func(t *testing.T) {
		s := newStore(t)
		ctx := context.Background()
		now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
		if a, err := s.Reserve(ctx, "k1", "POST /a", now); a != nil || err != nil {
			t.Fatalf("a new key: %v, %v", a, err)
		}
		if _, err := s.Reserve(ctx, "k1", "POST /a", now.Add(time.Second)); !errors.Is(err, store.ErrInProgress) {
			t.Fatalf("while the first is handled: %v", err)
		}
		if err := s.Answer(ctx, "k1", now.Add(time.Second), store.Answer{Status: 202}); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("an answer for a reservation the key does not hold: %v, want ErrConflict", err)
		}
		if err := s.Answer(ctx, "k1", now, store.Answer{Status: 202, Body: []byte(`{"ok":true}`)}); err != nil {
			t.Fatal(err)
		}
		a, err := s.Reserve(ctx, "k1", "POST /b", now.Add(time.Hour))
		if err != nil || a == nil || a.Status != 202 || string(a.Body) != `{"ok":true}` || a.Fingerprint != "POST /a" {
			t.Fatalf("a repeat: %+v, %v", a, err)
		}
		if a, err := s.Reserve(ctx, "k1", "POST /a", now.Add(25*time.Hour)); a != nil || err != nil {
			t.Fatalf("after 24 hours the key is new: %+v, %v", a, err)
		}
		// A reservation whose request never answered (its instance died)
		// is taken over after a minute; a forgotten one at once.
		s.Reserve(ctx, "k2", "POST /a", now)
		if a, err := s.Reserve(ctx, "k2", "POST /a", now.Add(2*time.Minute)); a != nil || err != nil {
			t.Fatalf("an abandoned reservation: %+v, %v", a, err)
		}
		// The request that abandoned it answers late: the key keeps the
		// one that took it over.
		if err := s.Answer(ctx, "k2", now, store.Answer{Status: 201}); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("a late answer of an abandoned reservation: %v, want ErrConflict", err)
		}
		if err := s.Answer(ctx, "k2", now.Add(2*time.Minute), store.Answer{Status: 202}); err != nil {
			t.Fatal(err)
		}
		s.Reserve(ctx, "k3", "POST /a", now)
		if err := s.Forget(ctx, "k3", now.Add(time.Second)); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("forgetting a reservation the key does not hold: %v, want ErrConflict", err)
		}
		if err := s.Forget(ctx, "k3", now); err != nil {
			t.Fatal(err)
		}
		if a, err := s.Reserve(ctx, "k3", "POST /a", now); a != nil || err != nil {
			t.Fatalf("a forgotten key: %+v, %v", a, err)
		}
	})
	t.Run("the account's states: a newer event only", func(t *testing.T) {
		s := newStore(t)
		ctx := context.Background()
		at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
		restricted := store.AccountState{Key: store.KeyRestriction, Event: "ACCOUNT_RESTRICTION", UpdatedAt: at,
			Restrictions: []store.Restriction{{Type: "RESTRICTED_BIZ_INITIATED_MESSAGING", Expires: at.Add(48 * time.Hour)}}}
		if ok, err := s.UpdateAccount(ctx, restricted); err != nil || !ok {
			t.Fatalf("first: %v %v", ok, err)
		}
		older := store.AccountState{Key: store.KeyRestriction, Event: "ACCOUNT_RESTRICTION", UpdatedAt: at.Add(-time.Hour)}
		if ok, err := s.UpdateAccount(ctx, older); err != nil || ok {
			t.Fatalf("an older event applied: %v %v", ok, err)
		}
		if ok, err := s.UpdateAccount(ctx, restricted); err != nil || ok {
			t.Fatalf("the same event again applied: %v %v", ok, err)
		}
		number := store.AccountState{Key: store.NumberKey("15550783881"), Event: "UPGRADE", Limit: "10000", OldLimit: "1000", UpdatedAt: at}
		if ok, err := s.UpdateAccount(ctx, number); err != nil || !ok {
			t.Fatalf("a number: %v %v", ok, err)
		}
		got, err := s.AccountStates(ctx)
		if err != nil || len(got) != 2 || got[0].Key != store.NumberKey("15550783881") || got[0].Limit != "10000" ||
			got[1].Key != store.KeyRestriction || len(got[1].Restrictions) != 1 || !got[1].Restrictions[0].Expires.Equal(at.Add(48*time.Hour)) {
			t.Fatalf("states: %+v, %v", got, err)
		}
	})
	t.Run("templates' live states", func(t *testing.T) {
		s := newStore(t)
		ctx := context.Background()
		at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
		for _, u := range []store.TemplateState{
			{Name: "order_update", Language: "en_US", Status: "PAUSED", Reason: "low quality", UpdatedAt: at},
			{Name: "order_update", Language: "en_US", Category: "MARKETING", UpdatedAt: at.Add(time.Minute)},
			{Name: "order_update", Language: "pt_BR", Quality: "YELLOW", UpdatedAt: at},
		} {
			if applied, err := s.UpdateTemplate(ctx, u); err != nil || !applied {
				t.Fatalf("%+v: applied %t, %v", u, applied, err)
			}
		}
		// Events in event order: APPROVED at 9:05, then PAUSED of 9:00
		// redelivered, then a category change of 8:59: the older ones are
		// dropped, field by field.
		for _, c := range []struct {
			u    store.TemplateState
			want bool
		}{
			{store.TemplateState{Name: "order_update", Language: "en_US", Status: "APPROVED", UpdatedAt: at.Add(5 * time.Minute)}, true},
			{store.TemplateState{Name: "order_update", Language: "en_US", Status: "PAUSED", Reason: "low quality", UpdatedAt: at}, false},
			{store.TemplateState{Name: "order_update", Language: "en_US", Category: "UTILITY", UpdatedAt: at.Add(-time.Minute)}, false},
		} {
			if applied, err := s.UpdateTemplate(ctx, c.u); err != nil || applied != c.want {
				t.Fatalf("%+v: applied %t, %v; want %t", c.u, applied, err, c.want)
			}
		}
		got, err := s.TemplateStates(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 {
			t.Fatalf("states %+v", got)
		}
		en := got[0]
		if en.Language != "en_US" {
			en = got[1]
		}
		if en.Status != "APPROVED" || en.Category != "MARKETING" || !en.UpdatedAt.Equal(at.Add(5*time.Minute)) {
			t.Fatalf("after the events: %+v; want APPROVED (the later status), MARKETING (the later category)", en)
		}
	})
	t.Run("ping", func(t *testing.T) {
		if err := newStore(t).Ping(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

func runContacts(t *testing.T, newStore func(t *testing.T) store.Contacts) {
	ctx := context.Background()
	t.Run("drains due when nothing else guards them", func(t *testing.T) {
		s := newStore(t)
		at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
		withTally := func(c string, due time.Time) {
			st := conversation.NewRecord(c)
			st.Tallies = []conversation.TallyOut{{Version: 1, At: at, Campaigns: []conversation.CampaignTally{{Campaign: "k", CampaignCounts: conversation.CampaignCounts{Started: 1}}}}}
			st.DrainDue = due
			if err := s.Save(ctx, st); err != nil {
				t.Fatal(err)
			}
		}
		// d1's tallies were written by a round without queued updates; d2's
		// by one whose updates stay queued until they are drained.
		withTally("d1", at.Add(conversation.DrainAfter))
		withTally("d2", time.Time{})
		got, err := s.Due(ctx, at.Add(time.Hour), 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].Contact != "d1" || !got[0].At.Equal(at.Add(conversation.DrainAfter)) {
			t.Fatalf("due %+v, want d1 alone, at its drain_due", got)
		}
		if got, _ := s.Due(ctx, at, 10); len(got) != 0 {
			t.Fatalf("due before its drain_due: %+v", got)
		}
	})
	t.Run("claimed", func(t *testing.T) {
		s := newStore(t)
		claimed := func(c, by string) {
			st := conversation.NewRecord(c)
			if by != "" {
				st.Outbox = []conversation.Pending{{Outbound: engine.Outbound{ID: c + ":m1", To: c}, ClaimedBy: by}}
			}
			if err := s.Save(ctx, st); err != nil {
				t.Fatal(err)
			}
		}
		claimed("c1", "node-1")
		claimed("c2", "node-2")
		claimed("c3", "node-1")
		claimed("c4", "")
		// c3's messages went out since: its latest version claims nothing.
		st, err := s.Load(ctx, "c3")
		if err != nil {
			t.Fatal(err)
		}
		st.Outbox = nil
		if err := s.Save(ctx, st); err != nil {
			t.Fatal(err)
		}
		got, err := s.Claimed(ctx, "node-1", 10)
		if err != nil || len(got) != 1 || got[0] != "c1" {
			t.Fatalf("Claimed(node-1) = %v, %v; want [c1]", got, err)
		}
		if got, _ := s.Claimed(ctx, "node-3", 10); len(got) != 0 {
			t.Fatalf("Claimed(node-3) = %v", got)
		}
	})
	t.Run("load missing", func(t *testing.T) {
		s := newStore(t)
		if _, err := s.Load(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Load of an unknown contact: got %v, want ErrNotFound", err)
		}
	})
	t.Run("round trip", func(t *testing.T) {
		s := newStore(t)
		st := conversation.NewRecord("15550001111")
		st.Contact.Name = "Ana"
		st.Flow, st.Step = "appointments", "confirm"
		st.Vars = map[string]any{"date": "2026-12-01", "booking": map[string]any{"id": "A-17"}, "n": 3}
		st.LastInbound = time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
		st.Timers = []engine.Timer{{ID: "t1", Kind: engine.TimerTimeout, Due: st.LastInbound.Add(47 * time.Hour), Flow: "appointments", Step: "confirm", Seq: 1}}
		if err := s.Save(ctx, st); err != nil {
			t.Fatal(err)
		}
		if st.Version != 1 {
			t.Fatalf("version after first save = %d, want 1", st.Version)
		}
		got, err := s.Load(ctx, st.Contact.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Contact.Name != "Ana" || got.Step != "confirm" || got.Version != 1 || fmt.Sprint(got.Vars) != fmt.Sprint(st.Vars) {
			t.Fatalf("loaded %+v, want %+v", got, st)
		}
		if !got.LastInbound.Equal(st.LastInbound) || len(got.Timers) != 1 || !got.Timers[0].Due.Equal(st.Timers[0].Due) {
			t.Fatalf("loaded times %v %v, want %v %v", got.LastInbound, got.Timers, st.LastInbound, st.Timers)
		}
		// The loaded copy does not alias the stored one.
		got.Vars["booking"].(map[string]any)["id"] = "changed"
		again, _ := s.Load(ctx, st.Contact.ID)
		if again.Vars["booking"].(map[string]any)["id"] != "A-17" {
			t.Fatal("changing a loaded state changed the stored one")
		}
	})
	t.Run("compare and swap", func(t *testing.T) {
		s := newStore(t)
		st := conversation.NewRecord("c1")
		if err := s.Save(ctx, st); err != nil {
			t.Fatal(err)
		}
		a, _ := s.Load(ctx, "c1")
		b, _ := s.Load(ctx, "c1")
		a.Step = "a"
		if err := s.Save(ctx, a); err != nil {
			t.Fatal(err)
		}
		b.Step = "b"
		if err := s.Save(ctx, b); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("second writer: got %v, want ErrConflict", err)
		}
		got, _ := s.Load(ctx, "c1")
		if got.Step != "a" {
			t.Fatalf("step = %q, want the first writer's", got.Step)
		}
		fresh := conversation.NewRecord("c1")
		if err := s.Save(ctx, fresh); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("creating an existing contact: got %v, want ErrConflict", err)
		}
	})
	t.Run("concurrent writers lose no update", func(t *testing.T) {
		s := newStore(t)
		if err := s.Save(ctx, conversation.NewRecord("c")); err != nil {
			t.Fatal(err)
		}
		const workers, each = 4, 10
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					for {
						st, err := s.Load(ctx, "c")
						if err != nil {
							t.Error(err)
							return
						}
						st.Seq++
						err = s.Save(ctx, st)
						if err == nil {
							break
						}
						if !errors.Is(err, store.ErrConflict) {
							t.Error(err)
							return
						}
					}
				}
			}()
		}
		wg.Wait()
		st, _ := s.Load(ctx, "c")
		if st.Seq != workers*each {
			t.Fatalf("seq = %d, want %d: an update was lost", st.Seq, workers*each)
		}
	})
	t.Run("due timers", func(t *testing.T) {
		s := newStore(t)
		base := time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
		for i, d := range []time.Duration{3 * time.Hour, time.Hour, 2 * time.Hour} {
			st := conversation.NewRecord(fmt.Sprintf("c%d", i))
			st.Timers = []engine.Timer{{ID: "t", Kind: engine.TimerWait, Due: base.Add(d), Seq: 1}}
			if err := s.Save(ctx, st); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Save(ctx, conversation.NewRecord("no-timer")); err != nil {
			t.Fatal(err)
		}
		// Messages waiting in the outbox make a contact due at once, or
		// when their sender's claim on them expires.
		unsent := conversation.NewRecord("unsent")
		unsent.Outbox = []conversation.Pending{{Outbound: engine.Outbound{ID: "unsent:m1", To: "unsent", Via: engine.ViaSession}}}
		if err := s.Save(ctx, unsent); err != nil {
			t.Fatal(err)
		}
		claimed := conversation.NewRecord("claimed")
		claimed.Outbox = []conversation.Pending{{Outbound: engine.Outbound{ID: "claimed:m1", To: "claimed", Via: engine.ViaSession}, ClaimedBy: "i1", ClaimedAt: base, ClaimUntil: base.Add(90 * time.Minute)}}
		if err := s.Save(ctx, claimed); err != nil {
			t.Fatal(err)
		}
		dueList := func(ds []store.Due) string {
			var out []string
			for _, d := range ds {
				at := "now"
				if !d.At.IsZero() {
					at = d.At.Sub(base).String()
				}
				out = append(out, d.Contact+"@"+at)
			}
			return fmt.Sprint(out)
		}
		ds, err := s.Due(ctx, base.Add(2*time.Hour), 10)
		if err != nil {
			t.Fatal(err)
		}
		if got := dueList(ds); got != "[unsent@now c1@1h0m0s claimed@1h30m0s c2@2h0m0s]" {
			t.Fatalf("due = %v, want unsent messages first, then by due time, not yet due left out", got)
		}
		ds, _ = s.Due(ctx, base.Add(5*time.Hour), 2)
		if got := dueList(ds); got != "[unsent@now c1@1h0m0s]" {
			t.Fatalf("due with limit 2 = %v", got)
		}
		if ds, _ := s.Due(ctx, base.Add(time.Hour-time.Second), 10); dueList(ds) != "[unsent@now]" {
			t.Fatalf("due before the first timer = %v", dueList(ds))
		}
		// A timer moved on in a later version is due then, not before.
		st, _ := s.Load(ctx, "c1")
		st.Timers[0].Due = base.Add(10 * time.Hour)
		if err := s.Save(ctx, st); err != nil {
			t.Fatal(err)
		}
		if ds, _ := s.Due(ctx, base.Add(5*time.Hour), 10); dueList(ds) != "[unsent@now claimed@1h30m0s c2@2h0m0s c0@3h0m0s]" {
			t.Fatalf("after moving c1's timer: due = %v", dueList(ds))
		}
		// Once the messages are sent, the contact is no longer due.
		st, _ = s.Load(ctx, "claimed")
		st.Outbox = nil
		if err := s.Save(ctx, st); err != nil {
			t.Fatal(err)
		}
		if ds, _ := s.Due(ctx, base.Add(5*time.Hour), 10); dueList(ds) != "[unsent@now c2@2h0m0s c0@3h0m0s]" {
			t.Fatalf("after sending: due = %v", dueList(ds))
		}
	})
}

func runInbox(t *testing.T, newStore func(t *testing.T) store.Store) {
	ctx := context.Background()
	base := time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	msg := func(key, contact string, at time.Duration) conversation.Item {
		return conversation.Item{Key: key, Contact: contact, Kind: conversation.ItemMessage, Timestamp: base.Add(at), Received: base,
			Message: &engine.Inbound{ID: key, Type: "text", Text: key, Timestamp: base.Add(at)}}
	}
	keys := func(items []conversation.Item) string {
		var out []string
		for _, it := range items {
			out = append(out, it.Key)
		}
		return fmt.Sprint(out)
	}
	t.Run("inbox dedupes and orders by timestamp", func(t *testing.T) {
		s := newStore(t)
		fresh, err := s.Enqueue(ctx, []conversation.Item{msg("m2", "a", 2*time.Second), msg("m1", "a", time.Second), msg("x1", "b", 0)})
		if err != nil {
			t.Fatal(err)
		}
		if len(fresh) != 3 {
			t.Fatalf("fresh = %v, want all 3", keys(fresh))
		}
		again, err := s.Enqueue(ctx, []conversation.Item{msg("m1", "a", time.Second), msg("m3", "a", 2*time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		if keys(again) != "[m3]" {
			t.Fatalf("second delivery: fresh = %v, want only m3", keys(again))
		}
		got, _ := s.Pending(ctx, "a", 10)
		if keys(got) != "[m1 m2 m3]" {
			t.Fatalf("pending = %v, want timestamp order, then arrival order", keys(got))
		}
		if got[0].Message == nil || got[0].Message.Text != "m1" || !got[0].Timestamp.Equal(base.Add(time.Second)) {
			t.Fatalf("item lost its content: %+v", got[0])
		}
		if err := s.Ack(ctx, "a", "m1", "m2"); err != nil {
			t.Fatal(err)
		}
		got, _ = s.Pending(ctx, "a", 10)
		if keys(got) != "[m3]" {
			t.Fatalf("after ack: %v", keys(got))
		}
		// A processed key is still a duplicate.
		if again, _ := s.Enqueue(ctx, []conversation.Item{msg("m1", "a", 0)}); len(again) != 0 {
			t.Fatal("a processed message was queued again")
		}
		if n, err := s.Depth(ctx); err != nil || n != 2 {
			t.Fatalf("depth = %d, %v; want 2 (m3 and x1)", n, err)
		}
		backlog, _ := s.Backlog(ctx, 10)
		if fmt.Sprint(backlog) != "[a b]" {
			t.Fatalf("backlog = %v, want [a b]", backlog)
		}
		s.Ack(ctx, "a", "m3")
		s.Ack(ctx, "b", "x1")
		if backlog, _ := s.Backlog(ctx, 10); len(backlog) != 0 {
			t.Fatalf("backlog after acks = %v", backlog)
		}
	})
	t.Run("inbox keeps statuses", func(t *testing.T) {
		s := newStore(t)
		st := conversation.Item{Key: "status:wamid.1:failed", Contact: "a", Kind: conversation.ItemStatus, Timestamp: base, Received: base,
			Status: &conversation.StatusUpdate{WAMID: "wamid.1", Outbound: "a:m1", Status: "failed", ErrorCode: 131047, Error: "Re-engagement message"}}
		if _, err := s.Enqueue(ctx, []conversation.Item{st}); err != nil {
			t.Fatal(err)
		}
		got, _ := s.Pending(ctx, "a", 1)
		if len(got) != 1 || got[0].Status == nil || got[0].Status.ErrorCode != 131047 || got[0].Kind != conversation.ItemStatus {
			t.Fatalf("status came back as %+v", got)
		}
	})
	t.Run("inbox under concurrent deliveries", func(t *testing.T) {
		s := newStore(t)
		var wg sync.WaitGroup
		var mu sync.Mutex
		total := 0
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 25; i++ {
					fresh, err := s.Enqueue(ctx, []conversation.Item{msg(fmt.Sprintf("k%d", i), "c", time.Duration(i)*time.Second)})
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					total += len(fresh)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if total != 25 {
			t.Fatalf("%d items were new, want 25: duplicates slipped through or items were lost", total)
		}
		got, _ := s.Pending(ctx, "c", 100)
		if len(got) != 25 || got[0].Key != "k0" || got[24].Key != "k24" {
			t.Fatalf("pending = %v", keys(got))
		}
	})
}
