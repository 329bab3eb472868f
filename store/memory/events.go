package memory

import (
	"context"
	"sort"
	"time"

	"github.com/flowbot/flowbot/store"
)

// PutEvents implements store.Events.
func (s *Store) PutEvents(_ context.Context, events []store.OutEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.events == nil {
		s.events = map[string]*store.OutEvent{}
	}
	for _, e := range events {
		if _, ok := s.events[e.ID]; ok {
			continue
		}
		e.Body = append([]byte(nil), e.Body...)
		s.events[e.ID] = &e
	}
	return nil
}

// NextEvents implements store.Events.
func (s *Store) NextEvents(_ context.Context, now time.Time, limit int) ([]store.OutEvent, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	heads := map[string]*store.OutEvent{}
	for id, e := range s.events {
		if !e.DoneAt.IsZero() {
			if now.Sub(e.DoneAt) > store.EventsRemembered {
				delete(s.events, id)
			}
			continue
		}
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
	if e, ok := s.events[id]; ok {
		e.DoneAt, e.Body = time.Now(), nil
	}
	return nil
}

// EventRetry implements store.Events.
func (s *Store) EventRetry(_ context.Context, id string, attempts int, next time.Time, lastErr string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.events[id]; ok {
		e.Attempts, e.NextAt, e.LastError = attempts, next, lastErr
	}
	return nil
}
