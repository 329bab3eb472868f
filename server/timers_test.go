package server

import (
	"fmt"
	"testing"
	"time"
)

func TestTimerQueue(t *testing.T) {
	q := newTimerQueue()
	base := time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	q.add("b", base.Add(2*time.Minute))
	q.add("a", base.Add(3*time.Minute))
	q.add("a", base.Add(time.Minute))   // earlier: replaces
	q.add("b", base.Add(5*time.Minute)) // later: the earlier one stays
	q.add("c", base.Add(time.Minute))
	if got := q.due(base); len(got) != 0 {
		t.Fatalf("due before any: %v", got)
	}
	if got := fmt.Sprint(q.due(base.Add(2 * time.Minute))); got != "[a c b]" {
		t.Fatalf("due = %s, want [a c b]: due order, then by contact", got)
	}
	if got := q.due(base.Add(time.Hour)); len(got) != 0 || q.len() != 0 {
		t.Fatalf("left over: %v, %d registered (replaced entries must not fire)", got, q.len())
	}
}
