package conversation_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowbot/flowbot/dryrun"
	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/engine/conversation"
	"github.com/flowbot/flowbot/flows"
	"github.com/flowbot/flowbot/store/memory"
)

// TestInvariants drives conversation records through random sequences of
// what happens to a contact (messages, taps, the clock moving on, API
// starts and releases, delivery statuses, sends accepted or refused with
// 131047 or another error or left for later, restarts), on the memory
// store, and checks after every step:
//   - no free-form message is ever handed to the sender while the window
//     is closed;
//   - every message is handed to the sender at most once (one sender);
//   - message ids are unique;
//   - a contact's messages are handed over in the order committed;
//   - a stored record loads back equal.
func TestInvariants(t *testing.T) {
	runs := *invariantRuns
	if testing.Short() {
		runs = min(runs, 5)
	}
	for _, dir := range []string{"../../examples/support", "../../examples/clinic", "../../examples/shop"} {
		bot, diags := flows.Load(dir)
		if bot == nil {
			t.Fatal(diags.Error())
		}
		e := engine.New(bot, engine.Options{HTTP: dryrun.NewMocks(nil)})
		for seed := 0; seed < runs; seed++ {
			t.Run(fmt.Sprintf("%s/%d", dir[len("../../examples/"):], seed), func(t *testing.T) {
				p := &prop{t: t, bot: bot, rnd: rand.New(rand.NewPCG(uint64(seed), 7)), store: memory.New(),
					now: time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC), handed: map[string]bool{}}
				p.keeper = &conversation.Keeper{
					Engine:   func(context.Context, *conversation.Record) (*engine.Engine, string) { return e, "v1" },
					Now:      func() time.Time { return p.now },
					Instance: "node-1", ClaimTimeout: time.Hour,
				}
				for step := 0; step < 60 && !t.Failed(); step++ {
					p.step(step)
				}
			})
		}
	}
}

// invariantRuns is how many random sequences each example bot gets: go
// test ./engine/conversation -run Invariants -runs 2000 for a deeper look.
var invariantRuns = flag.Int("runs", 30, "random sequences per example bot in TestInvariants")

type prop struct {
	t      *testing.T
	bot    *flows.Bot
	rnd    *rand.Rand
	store  *memory.Store
	keeper *conversation.Keeper
	now    time.Time
	handed map[string]bool // message ids handed to the sender
	last   int64           // the seq of the latest message handed over
	steps  []string        // what happened, for the failure message
}

const contact = "15550001111"

var texts = []string{"hi", "help", "menu", "agent", "STOP", "START", "ana@example.com", "not an email", "2026-12-01", "yes", "no", "1", "order 123456", "restart"}

func (p *prop) step(i int) {
	ctx := context.Background()
	st, err := p.store.Load(ctx, contact)
	isNew := err != nil
	if isNew {
		st = conversation.NewRecord(contact)
		st.Contact.Name = "Ana"
	}
	var items []conversation.Item
	key := fmt.Sprintf("u%d", i)
	switch n := p.rnd.IntN(100); {
	case n < 30:
		text := texts[p.rnd.IntN(len(texts))]
		p.log("message %q", text)
		items = append(items, conversation.Item{Key: key, Kind: conversation.ItemMessage, Message: &engine.Inbound{ID: key, Type: "text", Text: text, Timestamp: p.now}})
	case n < 45:
		choice := p.choice(st)
		p.log("tap %q", choice)
		items = append(items, conversation.Item{Key: key, Kind: conversation.ItemMessage, Message: &engine.Inbound{ID: key, Type: "interactive", Choice: choice, Text: choice, Timestamp: p.now}})
	case n < 60:
		d := []time.Duration{time.Minute, time.Hour, 2 * time.Hour, 23 * time.Hour, 25 * time.Hour, 31 * time.Hour, 48 * time.Hour}[p.rnd.IntN(7)]
		p.now = p.now.Add(d)
		p.log("wait %s", d)
	case n < 68:
		f := p.bot.Flows[p.rnd.IntN(len(p.bot.Flows))]
		p.log("API start %s", f.ID)
		items = append(items, conversation.Item{Key: key, Kind: conversation.ItemCommand, Command: &conversation.Command{Kind: conversation.CommandStart, Flow: f.ID}})
	case n < 73:
		p.log("API release")
		items = append(items, conversation.Item{Key: key, Kind: conversation.ItemCommand, Command: &conversation.Command{Kind: conversation.CommandRelease}})
	case n < 85 && len(st.Recent) > 0:
		d := st.Recent[p.rnd.IntN(len(st.Recent))]
		su := &conversation.StatusUpdate{WAMID: d.WAMID, Outbound: d.ID, Status: []string{"delivered", "read", "failed"}[p.rnd.IntN(3)], Timestamp: p.now}
		if su.Status == "failed" {
			su.ErrorCode = []int{131047, 131026}[p.rnd.IntN(2)]
			su.WindowClosed = su.ErrorCode == 131047
		}
		p.log("status %s %d for %s", su.Status, su.ErrorCode, d.ID)
		items = append(items, conversation.Item{Key: key, Kind: conversation.ItemStatus, Status: su})
	default:
		p.log("restart")
	}
	if _, errs := p.keeper.Apply(ctx, st, items, isNew); len(errs) > 0 {
		p.log("errors %v", errs)
	}
	p.send(ctx, st)
	p.check(st)
	if err := p.store.Save(ctx, st); err != nil {
		p.fail("saving: %v", err)
		return
	}
	loaded, err := p.store.Load(ctx, contact)
	if err != nil {
		p.fail("loading: %v", err)
		return
	}
	// Equal as stored: the same JSON, and a JSON round trip changes
	// nothing either.
	saved, _ := json.Marshal(st)
	again, _ := json.Marshal(loaded)
	var decoded conversation.Record
	if err := json.Unmarshal(saved, &decoded); err != nil {
		p.fail("the record does not decode: %v", err)
	}
	decoded.Vars, _ = flows.NormalizeJSON(decoded.Vars).(map[string]any)
	third, _ := json.Marshal(&decoded)
	if string(saved) != string(again) || string(saved) != string(third) {
		p.fail("the record did not load back equal:\nsaved   %s\nloaded  %s\ndecoded %s", saved, again, third)
	}
}

// choice is a button or row the latest messages offered, or any id.
func (p *prop) choice(st *conversation.Record) string {
	var ids []string
	for _, o := range st.Outbox {
		for _, b := range o.Message.Buttons {
			ids = append(ids, b.ID)
		}
	}
	ids = append(ids, "billing", "technical", "other", "fixed", "not_fixed", "yes", "no", "track", "nope")
	return ids[p.rnd.IntN(len(ids))]
}

// send hands the outbox to a sender whose WhatsApp accepts a message,
// refuses it (131047 or another error), or fails so that it stays for
// later, at random.
func (p *prop) send(ctx context.Context, st *conversation.Record) {
	for i := 0; i < 50; i++ {
		o, ok, err := p.keeper.Next(ctx, st)
		if err != nil {
			p.fail("next: %v", err)
		}
		if !ok {
			return
		}
		if o.Via == engine.ViaSession && !st.WindowOpen(p.now) {
			p.fail("free-form message %s handed to the sender with the window closed (last inbound %v, now %v, closed flag %v)", o.ID, st.LastInbound, p.now, st.WindowClosed)
		}
		outcome := p.rnd.IntN(100)
		if outcome < 8 {
			p.log("send %s: retry later", o.ID)
			return // a retryable failure: it stays first
		}
		if p.handed[o.ID] {
			p.fail("message %s handed to the sender twice", o.ID)
		}
		p.handed[o.ID] = true
		seq, _ := strconv.ParseInt(o.ID[strings.LastIndex(o.ID, ":m")+2:], 10, 64)
		if seq <= p.last {
			p.fail("message %s handed over after m%d: out of order", o.ID, p.last)
		}
		p.last = seq
		r := conversation.SendResult{Outbound: o, WAMID: "wamid." + o.ID, Class: conversation.Sent}
		switch {
		case outcome < 15 && o.Via == engine.ViaSession:
			r.Class, r.Code = conversation.WindowClosed, 131047
		case outcome < 20:
			r.Class, r.Code = conversation.Refused, 131026
		}
		p.log("send %s (%s): class %d", o.ID, o.Via, r.Class)
		if err := p.keeper.ApplySendResult(ctx, st, r); err != nil {
			p.fail("send result: %v", err)
		}
	}
}

// check: message ids are unique across the outbox and the deliveries.
func (p *prop) check(st *conversation.Record) {
	seen := map[string]bool{}
	for _, o := range st.Outbox {
		if seen[o.ID] {
			p.fail("message id %s twice in the outbox", o.ID)
		}
		seen[o.ID] = true
	}
	delivered := map[string]bool{}
	for _, d := range st.Recent {
		if delivered[d.ID] || seen[d.ID] {
			p.fail("message id %s twice in the record", d.ID)
		}
		delivered[d.ID] = true
	}
}

func (p *prop) log(format string, args ...any) {
	p.steps = append(p.steps, p.now.Format("01-02 15:04")+" "+fmt.Sprintf(format, args...))
}

func (p *prop) fail(format string, args ...any) {
	p.t.Helper()
	p.t.Fatalf("%s\nafter:\n  %s", fmt.Sprintf(format, args...), strings.Join(p.steps, "\n  "))
}
