package storetest

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/flowbot/flowbot/engine/conversation"
	"github.com/flowbot/flowbot/store"
)

// runFacts checks the analytics' facts: each version's counted once
// however often it is drained, summed by the hours a query spans, by
// number and bot version, before and after a roll-up.
func runFacts(t *testing.T, newStore func(t *testing.T) store.Store) {
	ctx := context.Background()
	h0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	fact := func(flow, version, number string, started int64, answer time.Duration) conversation.FlowFacts {
		c := conversation.FlowCounts{Started: started, Converted: 1,
			Steps: map[string]*conversation.StepCounts{"ask": {Entered: 1, Exits: map[string]int64{"done": 1}, Answers: answers(answer)}},
			Cost:  conversation.CostCounts{Marketing: 0.25}}
		return conversation.FlowFacts{Flow: flow, BotVersion: version, Number: number, FlowCounts: c}
	}
	t.Run("facts drained again count once, by hour, number and version", func(t *testing.T) {
		s := newStore(t)
		var wg sync.WaitGroup
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := 0; j < 10; j++ {
					tallies := []conversation.TallyOut{
						{Version: 2, At: h0.Add(5 * time.Minute), Flows: []conversation.FlowFacts{fact("f", "v1", "n1", 1, 30*time.Second), fact("sub", "v1", "n1", 1, 0)}},
						{Version: 3, At: h0.Add(70 * time.Minute), Flows: []conversation.FlowFacts{fact("f", "v2", "n2", 0, 3*time.Minute)}},
					}
					if err := s.DrainTallies(ctx, fmt.Sprint("c", j), tallies); err != nil {
						t.Error(err)
					}
				}
			}()
		}
		wg.Wait()
		check := func(when string) {
			t.Helper()
			all, err := s.FlowFacts(ctx, store.FactQuery{Flow: "f", From: h0.Add(30 * time.Minute), To: h0.Add(3 * time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			ask := all.Steps["ask"]
			if all.Started != 10 || all.Converted != 20 || ask == nil || ask.Entered != 20 || ask.Exits["done"] != 20 || all.Cost.Marketing != 5 {
				t.Fatalf("%s: facts of f = %+v %+v", when, all, ask)
			}
			if p := ask.AnswerP50(); p < 30 || p > 180 {
				t.Fatalf("%s: median answer %v s", when, p)
			}
			first, _ := s.FlowFacts(ctx, store.FactQuery{Flow: "f", From: h0, To: h0.Add(time.Hour)})
			second, _ := s.FlowFacts(ctx, store.FactQuery{Flow: "f", From: h0.Add(time.Hour), To: h0.Add(2 * time.Hour)})
			if first.Started != 10 || first.Converted != 10 || second.Started != 0 || second.Converted != 10 {
				t.Fatalf("%s: by hour: %+v / %+v", when, first, second)
			}
			byNumber, _ := s.FlowFacts(ctx, store.FactQuery{Flow: "f", From: h0, To: h0.Add(3 * time.Hour), Number: "n2"})
			byVersion, _ := s.FlowFacts(ctx, store.FactQuery{Flow: "f", From: h0, To: h0.Add(3 * time.Hour), BotVersion: "v1"})
			if byNumber.Converted != 10 || byNumber.Started != 0 || byVersion.Started != 10 || byVersion.Converted != 10 {
				t.Fatalf("%s: by number %+v, by version %+v", when, byNumber, byVersion)
			}
			sub, _ := s.FlowFacts(ctx, store.FactQuery{Flow: "sub", From: h0, To: h0.Add(3 * time.Hour)})
			none, _ := s.FlowFacts(ctx, store.FactQuery{Flow: "f", From: h0.Add(-5 * time.Hour), To: h0})
			if sub.Started != 10 || !reflect.DeepEqual(none, conversation.FlowCounts{}) {
				t.Fatalf("%s: sub %+v, before %+v", when, sub, none)
			}
		}
		check("drained")
		r, ok := s.(store.FactRoller)
		if !ok {
			return
		}
		if n, err := r.RollFacts(ctx, h0.Add(90*time.Minute), 1000); err != nil || n != 2 {
			t.Fatalf("rolling up: %d hours, %v", n, err)
		}
		check("first hour rolled up")
		// A fact drained late into a rolled hour counts once it is rolled
		// again; rolling again changes nothing.
		late := []conversation.TallyOut{{Version: 9, At: h0.Add(time.Minute), Flows: []conversation.FlowFacts{fact("f", "v1", "n1", 1, time.Second)}}}
		if err := s.DrainTallies(ctx, "late", late); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if _, err := r.RollFacts(ctx, h0.Add(5*time.Hour), 1000); err != nil {
				t.Fatal(err)
			}
		}
		got, _ := s.FlowFacts(ctx, store.FactQuery{Flow: "f", From: h0, To: h0.Add(3 * time.Hour)})
		if got.Started != 11 || got.Converted != 21 {
			t.Fatalf("after a late fact, rolled twice: %+v", got)
		}
		// Much later, the hour's facts are deleted behind their roll-up: a
		// fact drained then is added to it, once.
		if _, err := r.RollFacts(ctx, h0.Add(48*time.Hour), 1000); err != nil {
			t.Fatal(err)
		}
		later := []conversation.TallyOut{{Version: 10, At: h0.Add(2 * time.Minute), Flows: []conversation.FlowFacts{fact("f", "v1", "n1", 1, time.Second)}}}
		for range 2 {
			if err := s.DrainTallies(ctx, "late", later); err != nil {
				t.Fatal(err)
			}
			if _, err := r.RollFacts(ctx, h0.Add(49*time.Hour), 1000); err != nil {
				t.Fatal(err)
			}
		}
		got, _ = s.FlowFacts(ctx, store.FactQuery{Flow: "f", From: h0, To: h0.Add(3 * time.Hour)})
		if got.Started != 12 || got.Converted != 22 || got.Steps["ask"].Entered != 22 {
			t.Fatalf("a fact drained after its hour's facts became stubs: %+v", got)
		}
	})
}

func answers(d time.Duration) []int64 {
	if d == 0 {
		return nil
	}
	a := make([]int64, len(conversation.AnswerBounds)+1)
	for i, b := range conversation.AnswerBounds {
		if d.Seconds() <= b {
			a[i] = 1
			return a
		}
	}
	a[len(a)-1] = 1
	return a
}
