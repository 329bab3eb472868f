package mongo

import (
	"context"
	"fmt"
	"github.com/flowbot/flowbot/engine/conversation"
	"sort"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/flowbot/flowbot/store"
)

// ListContacts implements store.Lister. The versions matching the filter
// are found through the "handoff" index (listed by handoff, oldest
// first) or the "latest" and "flow_step" ones (by id), a page's worth at
// a time; those that are not their contact's latest version are left out,
// and the latest ones are read whole and checked against the filter once
// more.
func (s *Store) ListContacts(ctx context.Context, f store.ContactFilter) (store.ContactPage, error) {
	after, err := store.DecodeCursor(f.After)
	if err != nil {
		return store.ContactPage{}, err
	}
	by := f.ByHandoff()
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	base := bson.D{}
	if f.Handoff != nil {
		base = append(base, bson.E{Key: "handoff_since", Value: bson.D{{Key: "$exists", Value: *f.Handoff}}})
	}
	if f.Queue != "" {
		base = append(base, bson.E{Key: "handoff", Value: f.Queue})
	}
	if f.Flow != "" {
		base = append(base, bson.E{Key: "flow", Value: f.Flow})
	}
	if f.Step != "" {
		base = append(base, bson.E{Key: "step", Value: f.Step})
	}
	switch f.Window {
	case "open":
		base = append(base, bson.E{Key: "window_until", Value: bson.D{{Key: "$gt", Value: f.Now}}})
	case "closed":
		base = append(base, bson.E{Key: "$or", Value: bson.A{
			bson.D{{Key: "window_until", Value: bson.D{{Key: "$exists", Value: false}}}},
			bson.D{{Key: "window_until", Value: bson.D{{Key: "$lte", Value: f.Now}}}}}})
	}
	order := bson.D{{Key: "contact", Value: 1}, {Key: "version", Value: -1}}
	if by {
		order = bson.D{{Key: "handoff_since", Value: 1}, {Key: "contact", Value: 1}, {Key: "version", Value: -1}}
	}
	var page store.ContactPage
	cur := after
	started := f.After != ""
	for round := 0; round < 50 && len(page.States) <= limit; round++ {
		filter := append(bson.D{}, base...)
		if started {
			if by {
				filter = append(filter, bson.E{Key: "$and", Value: bson.A{bson.D{{Key: "$or", Value: bson.A{
					bson.D{{Key: "handoff_since", Value: bson.D{{Key: "$gt", Value: cur.Since}}}},
					bson.D{{Key: "handoff_since", Value: cur.Since}, {Key: "contact", Value: bson.D{{Key: "$gt", Value: cur.ID}}}}}}}}})
			} else {
				filter = append(filter, bson.E{Key: "contact", Value: bson.D{{Key: "$gt", Value: cur.ID}}})
			}
		}
		want := int64(2*(limit+1-len(page.States)) + 16)
		c, err := s.states.Find(ctx, filter, options.Find().SetSort(order).SetLimit(want).
			SetProjection(bson.D{{Key: "contact", Value: 1}, {Key: "version", Value: 1}, {Key: "handoff_since", Value: 1}}))
		if err != nil {
			return page, fmt.Errorf("mongodb: listing contacts: %w", err)
		}
		var docs []struct {
			Contact string     `bson:"contact"`
			Version int64      `bson:"version"`
			Since   *time.Time `bson:"handoff_since"`
		}
		if err := c.All(ctx, &docs); err != nil {
			return page, fmt.Errorf("mongodb: listing contacts: %w", err)
		}
		if len(docs) == 0 {
			break
		}
		names := make([]string, 0, len(docs))
		sinceOf := map[string]time.Time{} // where the scan met the contact
		for _, d := range docs {
			if _, ok := sinceOf[d.Contact]; !ok {
				sinceOf[d.Contact] = time.Time{}
				if d.Since != nil {
					sinceOf[d.Contact] = *d.Since
				}
				names = append(names, d.Contact)
			}
		}
		latest, err := s.findLatest(ctx, names)
		if err != nil {
			return page, fmt.Errorf("mongodb: listing contacts: %w", err)
		}
		for i, l := range latest {
			if l == nil || l.state == nil {
				continue
			}
			st := l.state.Clone()
			st.Version = l.version
			if st.Contact.ID == "" {
				st.Contact.ID = names[i]
			}
			if !f.Matches(st) {
				continue // the latest version no longer matches
			}
			c := store.CursorOf(st, by)
			if started && !cur.Before(c.Since, c.ID, by) || by && !c.Since.Equal(sinceOf[names[i]]) {
				continue // before the page, or met again where its latest handoff sorts
			}
			page.States = append(page.States, st)
		}
		last := docs[len(docs)-1]
		cur, started = store.ContactCursor{ID: last.Contact}, true
		if by && last.Since != nil {
			cur.Since = *last.Since
		}
		if int64(len(docs)) < want {
			break // nothing more matches
		}
	}
	sortStates(page.States, by)
	if len(page.States) > limit {
		page.States = page.States[:limit]
		page.Next = store.CursorOf(page.States[limit-1], by).Encode()
	}
	return page, nil
}

func sortStates(sts []*conversation.Record, by bool) {
	sort.Slice(sts, func(i, j int) bool {
		a, b := store.CursorOf(sts[i], by), store.CursorOf(sts[j], by)
		return a.Before(b.Since, b.ID, by)
	})
}
