package runtime

import (
	"container/heap"
	"sync"
	"time"
)

// TimerQueue holds the contacts with work due soon (timers, and messages
// whose sender's claim runs out), earliest first, so that the scheduler
// fires them on time without asking the database each tick. The
// database is asked every sweep interval for what falls due before the
// next sweep: work another instance committed, or left by a crash. One
// entry per contact, the earliest: once it fires, the worker registers
// the contact's next work.
type TimerQueue struct {
	mu sync.Mutex
	h  timerHeap
	at map[string]time.Time // the live entry of each contact
}

type timerEntry struct {
	contact string
	at      time.Time
}

type timerHeap []timerEntry

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].contact < h[j].contact
}
func (h timerHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)   { *h = append(*h, x.(timerEntry)) }
func (h *timerHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// NewTimerQueue is an empty queue.
func NewTimerQueue() *TimerQueue { return &TimerQueue{at: map[string]time.Time{}} }

// Add registers the contact's work due at at, unless earlier work of the
// contact is registered already.
func (q *TimerQueue) Add(contact string, at time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if cur, ok := q.at[contact]; ok && !at.Before(cur) {
		return
	}
	q.at[contact] = at
	heap.Push(&q.h, timerEntry{contact, at})
}

// Due takes out the contacts whose work is due at now, in due order.
func (q *TimerQueue) Due(now time.Time) []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []string
	for len(q.h) > 0 && !q.h[0].at.After(now) {
		e := heap.Pop(&q.h).(timerEntry)
		if cur, ok := q.at[e.contact]; !ok || !cur.Equal(e.at) {
			continue // replaced by an earlier entry, which fired
		}
		delete(q.at, e.contact)
		out = append(out, e.contact)
	}
	return out
}

// Next is when the earliest registered work is due; false when none is.
func (q *TimerQueue) Next() (time.Time, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.h) > 0 {
		e := q.h[0]
		if cur, ok := q.at[e.contact]; ok && cur.Equal(e.at) {
			return e.at, true
		}
		heap.Pop(&q.h) // replaced by an earlier entry, which fired
	}
	return time.Time{}, false
}

// Len is how many contacts are registered.
func (q *TimerQueue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.at)
}
