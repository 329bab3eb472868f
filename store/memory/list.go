package memory

import (
	"context"
	"github.com/flowbot/flowbot/engine/conversation"
	"sort"

	"github.com/flowbot/flowbot/store"
)

// ListContacts implements store.Lister.
func (s *Store) ListContacts(_ context.Context, f store.ContactFilter) (store.ContactPage, error) {
	after, err := store.DecodeCursor(f.After)
	if err != nil {
		return store.ContactPage{}, err
	}
	by := f.ByHandoff()
	s.mu.Lock()
	var match []*conversation.Record
	for _, st := range s.contacts {
		if !f.Matches(st) {
			continue
		}
		c := store.CursorOf(st, by)
		if f.After != "" && !after.Before(c.Since, c.ID, by) {
			continue
		}
		match = append(match, st.Clone())
	}
	s.mu.Unlock()
	sort.Slice(match, func(i, j int) bool {
		a, b := store.CursorOf(match[i], by), store.CursorOf(match[j], by)
		return a.Before(b.Since, b.ID, by)
	})
	var page store.ContactPage
	if f.Limit > 0 && len(match) > f.Limit {
		match = match[:f.Limit]
		page.Next = store.CursorOf(match[len(match)-1], by).Encode()
	}
	page.States = match
	return page, nil
}
