package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/flowbot/flowbot/store"
)

func runEvents(t *testing.T, newStore func(t *testing.T) store.Store) {
	ctx := context.Background()
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	t.Run("events out: each key's first, in order, once", func(t *testing.T) {
		s := newStore(t)
		ev := func(id, key, order string, next time.Time) store.OutEvent {
			return store.OutEvent{ID: id, Key: key, Order: order, Type: "flow.ended", At: at, Body: []byte(`{"id":"` + id + `"}`), NextAt: next}
		}
		if err := s.PutEvents(ctx, []store.OutEvent{ev("a2", "A", "0002", at), ev("a1", "A", "0001", at), ev("b1", "B", "0001", at.Add(time.Minute))}); err != nil {
			t.Fatal(err)
		}
		// Queued again after a crash: dropped, the first kept.
		if err := s.PutEvents(ctx, []store.OutEvent{ev("a1", "A", "0001", at.Add(time.Hour)), ev("c1", "C", "0001", at)}); err != nil {
			t.Fatal(err)
		}
		ids := func(now time.Time) []string {
			got, err := s.NextEvents(ctx, now, 10)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, e := range got {
				out = append(out, e.ID)
			}
			return out
		}
		if got := ids(at); !same(got, "a1", "c1") {
			t.Fatalf("due now: %v, want a1 and c1 (b1 is not due, a2 waits for a1)", got)
		}
		// Two instances read a1 and hold it: one gets it, the other is
		// told so and leaves it alone.
		if err := s.EventRetry(ctx, "a1", at, 0, at.Add(15*time.Second), ""); err != nil {
			t.Fatal(err)
		}
		if err := s.EventRetry(ctx, "a1", at, 0, at.Add(15*time.Second), ""); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("holding an event another holds: %v, want ErrConflict", err)
		}
		// a1 fails: A waits, a2 with it.
		if err := s.EventRetry(ctx, "a1", at.Add(15*time.Second), 1, at.Add(30*time.Second), "503"); err != nil {
			t.Fatal(err)
		}
		if got := ids(at.Add(time.Second)); !same(got, "c1") {
			t.Fatalf("while a1 waits for its retry: %v, want c1 alone", got)
		}
		s.EventDone(ctx, "c1")
		if got := ids(at.Add(2 * time.Minute)); !same(got, "a1", "b1") {
			t.Fatalf("later: %v", got)
		}
		got, _ := s.NextEvents(ctx, at.Add(2*time.Minute), 10)
		for _, e := range got {
			if e.ID == "a1" && (e.Attempts != 1 || e.LastError != "503" || string(e.Body) != `{"id":"a1"}`) {
				t.Fatalf("a1 after its attempt: %+v", e)
			}
		}
		s.EventDone(ctx, "a1")
		if got := ids(at.Add(2 * time.Minute)); !same(got, "a2", "b1") {
			t.Fatalf("after a1: %v", got)
		}
		// Delivered, then queued again (the record's next write had not
		// cleared it): not delivered again.
		if err := s.PutEvents(ctx, []store.OutEvent{ev("a1", "A", "0001", at)}); err != nil {
			t.Fatal(err)
		}
		if got := ids(at.Add(2 * time.Minute)); !same(got, "a2", "b1") {
			t.Fatalf("a delivered event queued again: %v", got)
		}
		if err := s.EventRetry(ctx, "a1", at.Add(30*time.Second), 2, at.Add(time.Hour), "late"); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("a retry recorded on a delivered event: %v, want ErrConflict", err)
		}
	})
}

// same reports whether got holds exactly want, in any order.
func same(got []string, want ...string) bool {
	if len(got) != len(want) {
		return false
	}
	m := map[string]bool{}
	for _, g := range got {
		m[g] = true
	}
	for _, w := range want {
		if !m[w] {
			return false
		}
	}
	return true
}
