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
	s.mu.Lock()
	var match []*conversation.Record
	for _, st := range s.contacts {
		if !f.Matches(st) {
			continue
		}
		c := store.CursorOf(st)
		if f.After != "" && !after.Before(c.Since, c.ID) {
			continue
		}
		match = append(match, st.Clone())
	}
	s.mu.Unlock()
	sort.Slice(match, func(i, j int) bool {
		a, b := store.CursorOf(match[i]), store.CursorOf(match[j])
		return a.Before(b.Since, b.ID)
	})
	var page store.ContactPage
	if f.Limit > 0 && len(match) > f.Limit {
		match = match[:f.Limit]
		page.Next = store.CursorOf(match[len(match)-1]).Encode()
	}
	page.States = match
	return page, nil
}
