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

// PutEvents implements store.Events.
func (s *Store) PutEvents(_ context.Context, evs []store.OutEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.events.pending == nil {
		s.events.pending, s.events.done = map[string]*store.OutEvent{}, map[string]time.Time{}
	}
	for _, e := range evs {
		if _, ok := s.events.pending[e.ID]; ok {
			continue
		}
		if _, ok := s.events.done[e.ID]; ok {
			continue
		}
		e.Body = append([]byte(nil), e.Body...)
		s.events.pending[e.ID] = &e
	}
	return nil
}

// NextEvents implements store.Events.
func (s *Store) NextEvents(_ context.Context, now time.Time, limit int) ([]store.OutEvent, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.events.pruned) > time.Hour {
		for id, at := range s.events.done {
			if now.Sub(at) > store.EventsRemembered {
				delete(s.events.done, id)
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
func (s *Store) EventDone(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.events.pending[id]; ok {
		delete(s.events.pending, id)
		s.events.done[id] = time.Now()
	}
	return nil
}

// EventRetry implements store.Events.
func (s *Store) EventRetry(_ context.Context, id string, was time.Time, attempts int, next time.Time, lastErr string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.events.pending[id]
	if !ok || !e.NextAt.Truncate(time.Millisecond).Equal(was.Truncate(time.Millisecond)) {
		return store.ErrConflict
	}
	e.Attempts, e.NextAt, e.LastError = attempts, next, lastErr
	return nil
}
