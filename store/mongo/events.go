package mongo

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/flowbot/flowbot/store"
)

// The events out are one document each in "events", until delivered:
// indexed by due time (what to try next) and by key and order (which is
// each key's first).

func (s *Store) eventIndexes(ctx context.Context) error {
	if err := ensureIndexes(ctx, s.events,
		index{"due", bson.D{{Key: "next_at", Value: 1}}, options.Index()},
		index{"head", bson.D{{Key: "key", Value: 1}, {Key: "order", Value: 1}}, options.Index()}); err != nil {
		return err
	}
	// Delivered events' ids expire where the server can (MongoDB); where
	// it cannot (FerretDB), the collector deletes them.
	ensureIndexes(ctx, s.events, index{"forget", bson.D{{Key: "done_at", Value: 1}}, options.Index().SetExpireAfterSeconds(int32(store.EventsRemembered / time.Second))})
	return nil
}

// doneForever stands for "never due" in a delivered event's next_at.
var doneForever = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

// PutEvents implements store.Events.
func (s *Store) PutEvents(ctx context.Context, events []store.OutEvent) error {
	if len(events) == 0 {
		return nil
	}
	docs := make([]any, len(events))
	for i, e := range events {
		docs[i] = e
	}
	_, err := s.events.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	var bw mongo.BulkWriteException
	if errors.As(err, &bw) {
		for _, we := range bw.WriteErrors {
			if !mongo.IsDuplicateKeyError(we) {
				return fmt.Errorf("mongodb: queueing events: %w", err)
			}
		}
		return nil
	}
	if err != nil && !mongo.IsDuplicateKeyError(err) {
		return fmt.Errorf("mongodb: queueing events: %w", err)
	}
	return nil
}

// NextEvents implements store.Events: the due events, then of their keys
// the first of each (a key whose first is waiting for a retry waits).
func (s *Store) NextEvents(ctx context.Context, now time.Time, limit int) ([]store.OutEvent, error) {
	cur, err := s.events.Find(ctx, bson.D{{Key: "next_at", Value: bson.D{{Key: "$lte", Value: now}}}},
		options.Find().SetSort(bson.D{{Key: "next_at", Value: 1}}).SetLimit(int64(max(limit, 1)*4)).SetProjection(bson.D{{Key: "key", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("mongodb: reading due events: %w", err)
	}
	var due []struct {
		Key string `bson:"key"`
	}
	if err := cur.All(ctx, &due); err != nil {
		return nil, fmt.Errorf("mongodb: reading due events: %w", err)
	}
	seen := map[string]bool{}
	var out []store.OutEvent
	for _, d := range due {
		if seen[d.Key] || len(out) >= limit {
			continue
		}
		seen[d.Key] = true
		var head store.OutEvent
		err := s.events.FindOne(ctx, bson.D{{Key: "key", Value: d.Key}, {Key: "done_at", Value: bson.D{{Key: "$exists", Value: false}}}}, options.FindOne().SetSort(bson.D{{Key: "order", Value: 1}})).Decode(&head)
		if errors.Is(err, mongo.ErrNoDocuments) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("mongodb: reading due events: %w", err)
		}
		if !head.NextAt.After(now) {
			out = append(out, head)
		}
	}
	return out, nil
}

// EventDone implements store.Events.
func (s *Store) EventDone(ctx context.Context, id string) error {
	// The id stays (for EventsRemembered, by the TTL index), so that the
	// event queued again is dropped.
	if _, err := s.events.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, bson.D{
		{Key: "$set", Value: bson.D{{Key: "done_at", Value: time.Now()}, {Key: "next_at", Value: doneForever}}},
		{Key: "$unset", Value: bson.D{{Key: "body", Value: ""}}}}); err != nil {
		return fmt.Errorf("mongodb: taking event %s off the queue: %w", id, err)
	}
	return nil
}

// EventRetry implements store.Events.
func (s *Store) EventRetry(ctx context.Context, id string, was time.Time, attempts int, next time.Time, lastErr string) error {
	res, err := s.events.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "next_at", Value: was.Truncate(time.Millisecond)}}, bson.D{{Key: "$set", Value: bson.D{
		{Key: "attempts", Value: attempts}, {Key: "next_at", Value: next}, {Key: "last_error", Value: lastErr}}}})
	if err != nil {
		return fmt.Errorf("mongodb: recording event %s's attempt: %w", id, err)
	}
	if res.MatchedCount == 0 {
		return store.ErrConflict
	}
	return nil
}
