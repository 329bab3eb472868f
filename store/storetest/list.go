package storetest

import (
	"context"
	"fmt"
	"github.com/flowbot/flowbot/engine/conversation"
	"sync"
	"testing"
	"time"

	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/store"
)

// ListContactsN is how many contacts the listing test stores; a store
// whose writes are slow (FerretDB) may lower it under -short.
var ListContactsN = 10000

func runList(t *testing.T, newStore func(t *testing.T) store.Store) {
	ctx := context.Background()
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	t.Run("contacts listed by filter, a page at a time", func(t *testing.T) {
		s := newStore(t)
		n := ListContactsN
		if testing.Short() {
			n = min(n, 1000)
		}
		// Every tenth contact is in a handoff (queues billing and tech,
		// since at+i seconds, in reverse of their ids); every third is in
		// the flow "menu" at step "pick"; even ones wrote within 24 hours.
		want := map[string]int{}
		var states []*conversation.Record
		for i := 0; i < n; i++ {
			st := conversation.NewRecord(fmt.Sprintf("c%05d", i))
			if i%3 == 0 {
				st.Flow, st.Step = "menu", "pick"
			}
			if i%2 == 0 {
				st.LastInbound = at.Add(-time.Hour)
			}
			if i%10 == 0 {
				q := "billing"
				if i%20 == 0 {
					q = "tech"
				}
				st.Handoff = &engine.HandoffState{Queue: q, Since: at.Add(time.Duration(n-i) * time.Second)}
				want[q]++
			}
			states = append(states, st)
		}
		// Saved from 32 writers at once (a store batches them).
		var wg sync.WaitGroup
		next := make(chan *conversation.Record)
		for w := 0; w < 32; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for st := range next {
					if err := s.Save(ctx, st); err != nil {
						t.Error(err)
					}
				}
			}()
		}
		for _, st := range states {
			next <- st
		}
		close(next)
		wg.Wait()
		// A contact left its handoff since: its older version says it was
		// in one.
		st, _ := s.Load(ctx, "c00000")
		st.Handoff = nil
		if err := s.Save(ctx, st); err != nil {
			t.Fatal(err)
		}
		want["tech"]--
		yes := true
		all := func(f store.ContactFilter) []*conversation.Record {
			var out []*conversation.Record
			for pages := 0; ; pages++ {
				p, err := s.ListContacts(ctx, f)
				if err != nil {
					t.Fatal(err)
				}
				if len(p.States) > f.Limit {
					t.Fatalf("a page of %d, limit %d", len(p.States), f.Limit)
				}
				out = append(out, p.States...)
				if p.Next == "" {
					return out
				}
				if pages > n {
					t.Fatal("the pages never end")
				}
				f.After = p.Next
			}
		}
		inHandoff := all(store.ContactFilter{Handoff: &yes, Limit: 37, Now: at})
		if len(inHandoff) != want["tech"]+want["billing"] {
			t.Fatalf("%d in a handoff, want %d", len(inHandoff), want["tech"]+want["billing"])
		}
		seen := map[string]bool{}
		for i, st := range inHandoff {
			if seen[st.Contact.ID] || st.Handoff == nil {
				t.Fatalf("contact %s listed twice, or not in a handoff", st.Contact.ID)
			}
			seen[st.Contact.ID] = true
			if i > 0 && st.Handoff.Since.Before(inHandoff[i-1].Handoff.Since) {
				t.Fatalf("not oldest handoff first at %d", i)
			}
		}
		if got := all(store.ContactFilter{Queue: "billing", Limit: 100, Now: at}); len(got) != want["billing"] {
			t.Fatalf("queue billing: %d, want %d", len(got), want["billing"])
		}
		menu := all(store.ContactFilter{Flow: "menu", Step: "pick", Window: "open", Limit: 250, Now: at})
		wantMenu := 0
		for i := 0; i < n; i += 6 {
			wantMenu++
		}
		if len(menu) != wantMenu {
			t.Fatalf("in menu/pick with the window open: %d, want %d", len(menu), wantMenu)
		}
		inOrder := func(what string, list []*conversation.Record) {
			t.Helper()
			for i := 1; i < len(list); i++ {
				a, b := store.CursorOf(list[i-1]), store.CursorOf(list[i])
				if !a.Before(b.Since, b.ID) {
					t.Fatalf("%s: not in order at %d: %s then %s", what, i, list[i-1].Contact.ID, list[i].Contact.ID)
				}
			}
		}
		inOrder("menu/pick", menu)
		// Without a filter: everyone once, the contacts in a handoff first
		// (oldest first), then the others by id.
		everyone := all(store.ContactFilter{Limit: 333, Now: at})
		if len(everyone) != n {
			t.Fatalf("everyone: %d, want %d", len(everyone), n)
		}
		inOrder("everyone", everyone)
		handedOff := want["tech"] + want["billing"]
		if everyone[handedOff-1].Handoff == nil || everyone[handedOff].Handoff != nil {
			t.Fatalf("the contacts in a handoff do not come first")
		}
		ids := map[string]bool{}
		for _, st := range everyone {
			if ids[st.Contact.ID] {
				t.Fatalf("%s listed twice", st.Contact.ID)
			}
			ids[st.Contact.ID] = true
		}
		closed := all(store.ContactFilter{Window: "closed", Limit: 500, Now: at})
		if len(closed) != n/2 {
			t.Fatalf("window closed: %d, want %d", len(closed), n/2)
		}
		if _, err := s.ListContacts(ctx, store.ContactFilter{After: "%%%", Limit: 10}); err != store.ErrBadCursor {
			t.Fatalf("a made-up cursor: %v", err)
		}
	})
}
