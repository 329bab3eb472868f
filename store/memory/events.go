package memory

import (
	"context"
	"sort"
	"time"

	"github.com/flowbot/flowbot/store"
)

// events is the memory store's queue of events out: the pending ones,
// and the ids of those delivered (or dropped) within
// store.EventsRemembered.
type events struct {
	pending map[string]*store.OutEvent
	done    map[string]time.Time
	pruned  time.Time
}

func (e *events) init() {
	if e.pending == nil {
		e.pending, e.done = map[string]*store.OutEvent{}, map[string]time.Time{}
	}
}

// PutEvents implements store.Events.
func (s *Store) PutEvents(_ context.Context, evs []store.OutEvent) (err error) {
	s.mu.Lock()
	defer s.end(&err)
	s.events.init()
	for _, e := range evs {
		if _, ok := s.events.pending[e.ID]; ok {
			continue
		}
		if _, ok := s.events.done[e.ID]; ok {
			continue
		}
		e.Body = append([]byte(nil), e.Body...)
		s.events.pending[e.ID] = &e
		s.mark(BucketEvents, e.ID)
	}
	return nil
}

// NextEvents implements store.Events.
func (s *Store) NextEvents(_ context.Context, now time.Time, limit int) (_ []store.OutEvent, err error) {
	s.mu.Lock()
	defer s.end(&err)
	if now.Sub(s.events.pruned) > time.Hour {
		for id, at := range s.events.done {
			if now.Sub(at) > store.EventsRemembered {
				delete(s.events.done, id)
				s.mark(BucketEventDone, id)
			}
		}
		s.events.pruned = now
	}
	heads := map[string]*store.OutEvent{}
	for _, e := range s.events.pending {
		if h := heads[e.Key]; h == nil || e.Order < h.Order {
			heads[e.Key] = e
		}
	}
	var out []store.OutEvent
	for _, h := range heads {
		if !h.NextAt.After(now) {
			out = append(out, *h)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].NextAt.Equal(out[j].NextAt) {
			return out[i].NextAt.Before(out[j].NextAt)
		}
		return out[i].ID < out[j].ID
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// EventDone implements store.Events.
func (s *Store) EventDone(_ context.Context, id string) (err error) {
	s.mu.Lock()
	defer s.end(&err)
	if _, ok := s.events.pending[id]; ok {
		delete(s.events.pending, id)
		s.events.done[id] = time.Now()
		s.mark(BucketEvents, id)
		s.mark(BucketEventDone, id)
	}
	return nil
}

// EventRetry implements store.Events.
func (s *Store) EventRetry(_ context.Context, id string, was time.Time, attempts int, next time.Time, lastErr string) (err error) {
	s.mu.Lock()
	defer s.end(&err)
	e, ok := s.events.pending[id]
	if !ok || !e.NextAt.Truncate(time.Millisecond).Equal(was.Truncate(time.Millisecond)) {
		return store.ErrConflict
	}
	e.Attempts, e.NextAt, e.LastError = attempts, next, lastErr
	s.mark(BucketEvents, id)
	return nil
}
