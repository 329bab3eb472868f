package mongo

import (
	"context"
	"fmt"
	"sort"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/flowbot/flowbot/engine/conversation"
	"github.com/flowbot/flowbot/store"
)

// ListContacts implements store.Lister, in the order store.ContactCursor
// defines: the contacts in a handoff first, oldest first, through the
// "handoff" index; then the others by id, through the "latest" and
// "flow_step" indexes. Each part is read a page's worth at a time; the
// versions that are not their contact's latest are left out, and the
// latest ones are read whole and checked against the filter once more.
func (s *Store) ListContacts(ctx context.Context, f store.ContactFilter) (store.ContactPage, error) {
	after, err := store.DecodeCursor(f.After)
	if err != nil {
		return store.ContactPage{}, err
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	base := bson.D{}
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
	// The parts to read: in a handoff, then not.
	parts := []bool{true, false}
	switch {
	case f.Handoff != nil && *f.Handoff || f.Queue != "":
		parts = []bool{true}
	case f.Handoff != nil:
		parts = []bool{false}
	}
	var page store.ContactPage
	for _, inHandoff := range parts {
		started := f.After != ""
		if started && inHandoff && after.Since.IsZero() {
			continue // the cursor is past the contacts in a handoff
		}
		if started && !inHandoff && !after.Since.IsZero() {
			started = false // the cursor was in the first part: this one starts from its beginning
		}
		got, err := s.listPart(ctx, f, base, inHandoff, after, started, limit+1-len(page.States))
		if err != nil {
			return page, err
		}
		page.States = append(page.States, got...)
		if len(page.States) > limit {
			break
		}
	}
	sort.Slice(page.States, func(i, j int) bool {
		a, b := store.CursorOf(page.States[i]), store.CursorOf(page.States[j])
		return a.Before(b.Since, b.ID)
	})
	if len(page.States) > limit {
		page.States = page.States[:limit]
		page.Next = store.CursorOf(page.States[limit-1]).Encode()
	}
	return page, nil
}

// listPart reads at least want contacts of one part (in a handoff or not)
// after the cursor (when started), or all there are.
func (s *Store) listPart(ctx context.Context, f store.ContactFilter, base bson.D, inHandoff bool, cur store.ContactCursor, started bool, want int) ([]*conversation.Record, error) {
	order := bson.D{{Key: "contact", Value: 1}, {Key: "version", Value: -1}}
	if inHandoff {
		order = bson.D{{Key: "handoff_since", Value: 1}, {Key: "contact", Value: 1}, {Key: "version", Value: -1}}
	}
	var out []*conversation.Record
	for round := 0; round < 50 && len(out) < want; round++ {
		filter := append(bson.D{{Key: "handoff_since", Value: bson.D{{Key: "$exists", Value: inHandoff}}}}, base...)
		if started {
			if inHandoff {
				filter = append(filter, bson.E{Key: "$and", Value: bson.A{bson.D{{Key: "$or", Value: bson.A{
					bson.D{{Key: "handoff_since", Value: bson.D{{Key: "$gt", Value: cur.Since}}}},
					bson.D{{Key: "handoff_since", Value: cur.Since}, {Key: "contact", Value: bson.D{{Key: "$gt", Value: cur.ID}}}}}}}}})
			} else {
				filter = append(filter, bson.E{Key: "contact", Value: bson.D{{Key: "$gt", Value: cur.ID}}})
			}
		}
		batch := int64(2*(want-len(out)) + 16)
		c, err := s.states.Find(ctx, filter, options.Find().SetSort(order).SetLimit(batch).
			SetProjection(bson.D{{Key: "contact", Value: 1}, {Key: "version", Value: 1}, {Key: "handoff_since", Value: 1}}))
		if err != nil {
			return nil, fmt.Errorf("mongodb: listing contacts: %w", err)
		}
		var docs []struct {
			Contact string     `bson:"contact"`
			Version int64      `bson:"version"`
			Since   *time.Time `bson:"handoff_since"`
		}
		if err := c.All(ctx, &docs); err != nil {
			return nil, fmt.Errorf("mongodb: listing contacts: %w", err)
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
			return nil, fmt.Errorf("mongodb: listing contacts: %w", err)
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
			if !f.Matches(st) || (st.Handoff != nil) != inHandoff {
				continue // the latest version no longer matches, or is in the other part
			}
			c := store.CursorOf(st)
			if started && !cur.Before(c.Since, c.ID) || !c.Since.Equal(sinceOf[names[i]]) {
				continue // before the page, or met again where its latest handoff sorts
			}
			out = append(out, st)
		}
		last := docs[len(docs)-1]
		cur, started = store.ContactCursor{ID: last.Contact}, true
		if last.Since != nil {
			cur.Since = *last.Since
		}
		if int64(len(docs)) < batch {
			break // nothing more matches
		}
	}
	return out, nil
}
