package mongo

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/flowbot/flowbot/engine/conversation"
	"sort"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// queueDoc is a queued update: the fields the queue is read by, and the
// update itself as JSON (one string for the server to store and hand
// back, rather than a tree of fields it would decode on every read of
// the queue).
type queueDoc struct {
	Key       string    `bson:"_id"`
	Contact   string    `bson:"contact"`
	Timestamp time.Time `bson:"timestamp"`
	Seq       int64     `bson:"seq"`
	Item      string    `bson:"item"`
}

func newQueueDoc(it conversation.Item) (queueDoc, error) {
	b, err := json.Marshal(it)
	if err != nil {
		return queueDoc{}, err
	}
	return queueDoc{Key: it.Key, Contact: it.Contact, Timestamp: it.Timestamp, Seq: it.Seq, Item: string(b)}, nil
}

// seenDoc records an update's id in the inbox, for the dedupe window.
type seenDoc struct {
	Key      string    `bson:"_id"`
	Contact  string    `bson:"contact"`
	Received time.Time `bson:"received"`
}

// Enqueue implements store.Inbox. An update goes into the queue first
// (whose ids catch a redelivery while the first is in flight), then its
// id into the inbox (which catches one after it was applied, and then
// takes it out of the queue again). A crash between the two leaves the
// update queued and its id unrecorded: the webhook was not answered, and
// its redelivery is caught by the contact's recently applied ids.
func (s *Store) Enqueue(ctx context.Context, items []conversation.Item) ([]conversation.Item, error) {
	if len(items) == 0 {
		return nil, nil
	}
	docs := make([]any, len(items))
	for i := range items {
		items[i].Seq = s.seq.Add(1)
		doc, err := newQueueDoc(items[i])
		if err != nil {
			return nil, fmt.Errorf("mongodb: queueing update %s: %w", items[i].Key, err)
		}
		docs[i] = doc
	}
	errs, err := s.insertQueue.do(ctx, docs)
	if err != nil {
		return nil, fmt.Errorf("mongodb: queueing updates: %w", err)
	}
	var queued []conversation.Item
	var seen []any
	for i, err := range errs {
		switch {
		case err == nil:
			queued = append(queued, items[i])
			seen = append(seen, seenDoc{Key: items[i].Key, Contact: items[i].Contact, Received: items[i].Received})
		case !mongo.IsDuplicateKeyError(err):
			return nil, fmt.Errorf("mongodb: queueing update %s: %w", items[i].Key, err)
		}
	}
	if len(queued) == 0 {
		return nil, nil
	}
	errs, err = s.insertInbox.do(ctx, seen)
	if err != nil {
		return nil, fmt.Errorf("mongodb: recording update ids: %w", err)
	}
	var fresh []conversation.Item
	var dup []string
	for i, err := range errs {
		switch {
		case err == nil:
			fresh = append(fresh, queued[i])
		case mongo.IsDuplicateKeyError(err):
			dup = append(dup, queued[i].Key)
		default:
			return nil, fmt.Errorf("mongodb: recording update id %s: %w", queued[i].Key, err)
		}
	}
	if len(dup) > 0 {
		if _, err := s.dequeue.do(ctx, dup); err != nil {
			return nil, fmt.Errorf("mongodb: dropping redelivered updates: %w", err)
		}
	}
	return fresh, nil
}

// pendingReq asks for a contact's queued updates.
type pendingReq struct {
	contact string
	limit   int
}

// findPending reads the queued updates of several contacts in one query.
func (s *Store) findPending(ctx context.Context, reqs []pendingReq) ([][]conversation.Item, error) {
	var contacts bson.A
	total, unlimited := 0, false
	for _, r := range reqs {
		contacts = append(contacts, r.contact)
		total += r.limit
		unlimited = unlimited || r.limit <= 0
	}
	if unlimited {
		total = 0 // one without a limit: no limit
	}
	opts := options.Find().SetSort(bson.D{{Key: "timestamp", Value: 1}, {Key: "seq", Value: 1}})
	if total > 0 {
		opts.SetLimit(int64(total))
	}
	cur, err := s.queue.Find(ctx, bson.D{{Key: "contact", Value: bson.D{{Key: "$in", Value: contacts}}}}, opts)
	if err != nil {
		return nil, err
	}
	var docs []queueDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, err
	}
	items := make([]conversation.Item, len(docs))
	for i, d := range docs {
		if err := json.Unmarshal([]byte(d.Item), &items[i]); err != nil {
			return nil, fmt.Errorf("queued update %s: %w", d.Key, err)
		}
	}
	byContact := map[string][]conversation.Item{}
	for _, it := range items {
		byContact[it.Contact] = append(byContact[it.Contact], it)
	}
	out := make([][]conversation.Item, len(reqs))
	for i, r := range reqs {
		got := byContact[r.contact]
		// Equal timestamps keep arrival order whatever the server's sort.
		sort.SliceStable(got, func(i, j int) bool {
			if !got[i].Timestamp.Equal(got[j].Timestamp) {
				return got[i].Timestamp.Before(got[j].Timestamp)
			}
			return got[i].Seq < got[j].Seq
		})
		if r.limit > 0 && len(got) > r.limit {
			got = got[:r.limit]
		}
		out[i] = got
	}
	if total > 0 && len(items) == total {
		// The limit cut the answer: a contact short of its own limit may
		// have more; ask for those alone.
		for i, r := range reqs {
			if len(out[i]) < r.limit {
				if out[i], err = s.findPendingOne(ctx, r); err != nil {
					return nil, err
				}
			}
		}
	}
	return out, nil
}

func (s *Store) findPendingOne(ctx context.Context, r pendingReq) ([]conversation.Item, error) {
	// Alone, a cut answer is exactly the request's limit: no further
	// query.
	out, err := s.findPending(ctx, []pendingReq{r})
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// Pending implements store.Inbox.
func (s *Store) Pending(ctx context.Context, contact string, limit int) ([]conversation.Item, error) {
	items, err := s.pending.do(ctx, pendingReq{contact: contact, limit: limit})
	if err != nil {
		return nil, fmt.Errorf("mongodb: reading the queue: %w", err)
	}
	return items, nil
}

// deleteQueued takes updates out of the queue, by id.
func (s *Store) deleteQueued(ctx context.Context, reqs [][]string) ([]struct{}, error) {
	var keys bson.A
	for _, r := range reqs {
		for _, k := range r {
			keys = append(keys, k)
		}
	}
	if _, err := deleteByID(ctx, s.queue, keys); err != nil {
		return nil, err
	}
	return make([]struct{}, len(reqs)), nil
}

// Ack implements store.Inbox: the updates leave the queue; their ids stay
// in the inbox.
func (s *Store) Ack(ctx context.Context, contact string, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	if _, err := s.dequeue.do(ctx, keys); err != nil {
		return fmt.Errorf("mongodb: acknowledging updates: %w", err)
	}
	return nil
}

// Depth implements store.Inbox.
func (s *Store) Depth(ctx context.Context) (int, error) {
	n, err := s.queue.CountDocuments(ctx, bson.D{})
	if err != nil {
		return 0, fmt.Errorf("mongodb: counting the queue: %w", err)
	}
	return int(n), nil
}

// Backlog implements store.Inbox.
func (s *Store) Backlog(ctx context.Context, limit int) ([]string, error) {
	opts := options.Find().SetProjection(bson.D{{Key: "contact", Value: 1}}).SetSort(bson.D{{Key: "contact", Value: 1}})
	if limit > 0 {
		opts.SetLimit(int64(limit) * 8)
	}
	cur, err := s.queue.Find(ctx, bson.D{}, opts)
	if err != nil {
		return nil, fmt.Errorf("mongodb: listing the backlog: %w", err)
	}
	var docs []struct {
		Contact string `bson:"contact"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("mongodb: listing the backlog: %w", err)
	}
	var contacts []string
	for _, d := range docs {
		if len(contacts) == 0 || contacts[len(contacts)-1] != d.Contact {
			contacts = append(contacts, d.Contact)
		}
	}
	if limit > 0 && len(contacts) > limit {
		contacts = contacts[:limit]
	}
	return contacts, nil
}
