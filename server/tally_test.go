package server_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowbot/flowbot/engine/conversation"
	"github.com/flowbot/flowbot/store"
	"github.com/flowbot/flowbot/store/memory"
	"github.com/flowbot/flowbot/whatsapp/fakegraph"
)

// timingOutTallies is a store whose drains of campaign tallies time out
// now and then: every third is refused before it is written, and every
// third after it was written (the client never heard the answer).
type timingOutTallies struct {
	store.Store
	calls, refused, lost atomic.Int64
}

var errStoreTimeout = errors.New("store: i/o timeout")

func (s *timingOutTallies) DrainTallies(ctx context.Context, contact string, tallies []conversation.TallyOut) error {
	switch s.calls.Add(1) % 3 {
	case 1:
		s.refused.Add(1)
		return errStoreTimeout
	case 2:
		if err := s.Store.DrainTallies(ctx, contact, tallies); err != nil {
			return err
		}
		s.lost.Add(1)
		return errStoreTimeout
	}
	return s.Store.DrainTallies(ctx, contact, tallies)
}

// A campaign's counts are exact when the store times out while they are
// drained: a drain refused is tried again from the record, and one that
// landed before its answer was lost is not counted twice.
func TestCampaignCountsExactThroughStoreTimeouts(t *testing.T) {
	mem := memory.New()
	st := &timingOutTallies{Store: mem}
	fake := fakegraph.New("tok")
	t.Cleanup(fake.Close)
	clk := &clock{now: time.Now()}
	r := newRigOn(t, "../examples/shop", st, fake, clk, wallTime)
	r.store = mem
	const n = 60
	code, created := r.API("POST", "/api/campaigns", apiToken, map[string]any{"flow": "back_in_stock", "rate": 300, "contacts": restock("1555090", n)})
	if code != 201 {
		t.Fatalf("create: %d %v", code, created)
	}
	id := created["id"].(string)
	view := r.campaignDone(id)
	sent := r.Settled(n)
	if num(view["started"]) != n || num(view["sent"]) != n {
		t.Fatalf("done with started %v, sent %v; want %d each: %v", view["started"], view["sent"], n, view)
	}
	now := time.Now()
	for _, s := range sent {
		r.Post(priced(statusWebhook(s.To, r.wamidOf(s.To), "", "delivered", 0, now), "marketing", "regular"))
	}
	r.WaitFor("every delivery to be counted", func() bool { return num(r.campaignView(id)["delivered"]) >= n })
	r.WaitFor("the server to be quiet", r.Srv.Quiet)
	view = r.campaignView(id)
	if num(view["started"]) != n || num(view["sent"]) != n || num(view["delivered"]) != n || num(view["failed"]) != 0 {
		t.Fatalf("counts after the statuses: %v", view)
	}
	// Each delivery's cost is confirmed once, and its estimate settled
	// once: exact through the timeouts.
	if cost, est := view["cost"].(map[string]any), view["cost_estimated"].(map[string]any); !near(cost["marketing"], n*0.025) || !near(est["total"], 0) {
		t.Fatalf("cost %v, estimated %v; want %d deliveries at 0.025 confirmed, nothing estimated", cost, est, n)
	}
	if st.refused.Load() == 0 || st.lost.Load() == 0 {
		t.Fatalf("the store never timed out (%d refused, %d lost): the test tests nothing", st.refused.Load(), st.lost.Load())
	}
}

func init() { debugView = func(r *rig, id string) { r.T.Logf("view: %v", r.campaignView(id)) } }

// failingMove is a store whose first write marking a moved contact's old
// record fails, as a crash between the move's two writes would leave it.
type failingMove struct {
	store.Store
	failed atomic.Bool
}

func (s *failingMove) Save(ctx context.Context, st *conversation.Record) error {
	if st.MovedTo != "" && st.Contact.ID == bsuid1 && !s.failed.Swap(true) {
		return errStoreTimeout
	}
	return s.Store.Save(ctx, st)
}

// A crash between writing the conversation under the wa_id and marking
// the business-scoped id's record moved leaves the intent in the old
// record: the move is finished (by a sweep, or the next update under the
// old key), and one person stays one conversation.
func TestHalfDoneMoveIsFinished(t *testing.T) {
	mem := memory.New()
	st := &failingMove{Store: mem}
	fake := fakegraph.New("tok")
	t.Cleanup(fake.Close)
	r := newRigOn(t, "../examples/cafe", st, fake, &clock{now: time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)})
	r.store = mem
	bsuidScenario(t, r)
	if !st.failed.Load() {
		t.Fatal("the move's second write never failed: the test tests nothing")
	}
	old := r.waitState(bsuid1, func(st *conversation.Record) bool { return st.MovedTo == waID1 })
	if old.Flow != "" || len(old.Timers) != 0 || old.MovingTo != "" {
		t.Fatalf("the old key after the move: %+v", old)
	}
}

// failingEvents is a store whose first queueing of events fails (the
// store timed out).
type failingEvents struct {
	store.Store
	failed atomic.Int64
}

func (s *failingEvents) PutEvents(ctx context.Context, evs []store.OutEvent) error {
	if len(evs) > 0 && s.failed.Add(1) == 1 {
		return errStoreTimeout
	}
	return s.Store.PutEvents(ctx, evs)
}

// An event the record keeps because queueing it failed is not stranded
// until the contact writes again: it is queued shortly, and delivered.
func TestEventsNotStrandedWhenQueueingFails(t *testing.T) {
	rc := newReceiver(t)
	mem := memory.New()
	st := &failingEvents{Store: mem}
	fake := fakegraph.New("tok")
	t.Cleanup(fake.Close)
	r := newRigOn(t, "../examples/support", st, fake, &clock{now: time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)}, withEvents(rc.url))
	r.store = mem
	toHandoff(r, "15550003333")
	r.WaitFor("handoff.started, with no other update from the contact", func() bool { return len(rc.types()) >= 1 })
	if st.failed.Load() < 2 {
		t.Fatalf("queueing failed %d times: the test tests nothing", st.failed.Load())
	}
	if got := rc.types(); got[0] != "handoff.started" {
		t.Fatalf("events %v", got)
	}
}
