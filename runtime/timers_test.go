package runtime

import (
	"fmt"
	"testing"
	"time"
)

func TestTimerQueue(t *testing.T) {
	q := NewTimerQueue()
	base := time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	q.Add("b", base.Add(2*time.Minute))
	q.Add("a", base.Add(3*time.Minute))
	q.Add("a", base.Add(time.Minute))   // earlier: replaces
	q.Add("b", base.Add(5*time.Minute)) // later: the earlier one stays
	q.Add("c", base.Add(time.Minute))
	if at, ok := q.Next(); !ok || !at.Equal(base.Add(time.Minute)) {
		t.Fatalf("next = %v %v, want the earliest, a's replacement", at, ok)
	}
	if got := q.Due(base); len(got) != 0 {
		t.Fatalf("due before any: %v", got)
	}
	if got := fmt.Sprint(q.Due(base.Add(2 * time.Minute))); got != "[a c b]" {
		t.Fatalf("due = %s, want [a c b]: due order, then by contact", got)
	}
	if at, ok := q.Next(); ok {
		t.Fatalf("next = %v after everything fired (a replaced entry is no work)", at)
	}
	if got := q.Due(base.Add(time.Hour)); len(got) != 0 || q.Len() != 0 {
		t.Fatalf("left over: %v, %d registered (replaced entries must not fire)", got, q.Len())
	}
}
