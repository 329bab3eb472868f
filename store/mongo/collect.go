package mongo

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/flowbot/flowbot/store"
)

// collector deletes superseded state versions and expired update ids,
// off the hot path.
func (s *Store) collector() {
	defer close(s.done)
	t := time.NewTicker(gcInterval)
	defer t.Stop()
	roll := time.NewTicker(rollEvery)
	defer roll.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-roll.C:
			ctx, cancel := context.WithTimeout(context.Background(), 10*rollEvery)
			if _, err := s.RollFacts(ctx, time.Now(), 10_000); err != nil {
				s.logger.Load().Warn("rolling up the analytics' facts", "err", err)
			}
			cancel()
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), 10*gcInterval)
			if _, err := s.collect(ctx, time.Now()); err != nil {
				s.logger.Load().Warn("collecting old state versions", "err", err)
			}
			cancel()
		}
	}
}

// superseded is a version this instance replaced, to delete once no
// writer can hold it.
type superseded struct {
	id    string
	after time.Time
}

// supersede notes that a Save replaced the contact's version v.
func (s *Store) supersede(contact string, v int64, at time.Time) {
	if v < 1 {
		return
	}
	s.gcMu.Lock()
	s.gcDue = append(s.gcDue, superseded{versionID(contact, v), at.Add(retention)})
	s.gcMu.Unlock()
}

// collect deletes the versions this instance superseded more than the
// retention ago; hourly (and on the first run) it also goes through all
// versions for those no instance noted (its instance died, or they were
// written by an earlier flowbot), and deletes the update ids older than
// the dedupe window. Errors wait for the next round.
func (s *Store) collect(ctx context.Context, now time.Time) (deleted int, err error) {
	s.gcMu.Lock()
	n := 0
	for n < len(s.gcDue) && !s.gcDue[n].after.After(now) {
		n++
	}
	due := s.gcDue[:n:n]
	s.gcMu.Unlock()
	for len(due) > 0 {
		k := min(len(due), 1000)
		ids := make(bson.A, k)
		for i := range ids {
			ids[i] = due[i].id
		}
		n, err := deleteByID(ctx, s.states, ids)
		deleted += n
		if err != nil {
			return deleted, fmt.Errorf("mongodb: deleting old versions: %w", err)
		}
		due = due[k:]
		s.gcMu.Lock()
		s.gcDue = s.gcDue[k:]
		s.gcMu.Unlock()
	}
	if now.Sub(s.lastFullGC) > time.Hour {
		n, err := s.collectAll(ctx, now)
		deleted += n
		if err != nil {
			return deleted, err
		}
		if _, err := s.inbox.DeleteMany(ctx, bson.D{{Key: "received", Value: bson.D{{Key: "$lt", Value: now.Add(-dedupeWindow)}}}}); err != nil {
			return deleted, fmt.Errorf("mongodb: deleting expired update ids: %w", err)
		}
		if _, err := s.answers.DeleteMany(ctx, bson.D{{Key: "at", Value: bson.D{{Key: "$lt", Value: now.Add(-store.IdempotencyWindow)}}}}); err != nil {
			return deleted, fmt.Errorf("mongodb: deleting expired idempotency keys: %w", err)
		}
		if _, err := s.events.DeleteMany(ctx, bson.D{{Key: "done_at", Value: bson.D{{Key: "$lt", Value: now.Add(-store.EventsRemembered)}}}}); err != nil {
			return deleted, fmt.Errorf("mongodb: deleting the ids of delivered events: %w", err)
		}
		s.lastFullGC = now
	}
	return deleted, nil
}

// collectAll goes through every version, by contact, latest first, and
// deletes those whose successor was saved more than the retention ago
// (documents of an earlier flowbot have no saved time: they count as
// old).
func (s *Store) collectAll(ctx context.Context, now time.Time) (deleted int, err error) {
	cur, err := s.states.Find(ctx, bson.D{}, options.Find().
		SetProjection(bson.D{{Key: "contact", Value: 1}, {Key: "version", Value: 1}, {Key: "saved", Value: 1}}).
		SetSort(bson.D{{Key: "contact", Value: 1}, {Key: "version", Value: -1}})) // the "latest" index
	if err != nil {
		return 0, fmt.Errorf("mongodb: listing old versions: %w", err)
	}
	defer cur.Close(ctx)
	cutoff := now.Add(-retention)
	var ids bson.A
	flush := func() error {
		n, err := deleteByID(ctx, s.states, ids)
		deleted += n
		ids = ids[:0]
		if err != nil {
			return fmt.Errorf("mongodb: deleting old versions: %w", err)
		}
		return nil
	}
	type ref struct {
		ID      string    `bson:"_id"`
		Contact string    `bson:"contact"`
		Version int64     `bson:"version"`
		Saved   time.Time `bson:"saved"`
	}
	var prev ref
	for cur.Next(ctx) {
		var d ref
		if err := cur.Decode(&d); err != nil {
			return deleted, fmt.Errorf("mongodb: listing old versions: %w", err)
		}
		if prev.Contact == d.Contact && prev.Saved.Before(cutoff) {
			ids = append(ids, d.ID) // its successor came before the cutoff
			if len(ids) == 1000 {
				if err := flush(); err != nil {
					return deleted, err
				}
			}
		}
		prev = d
	}
	if err := cur.Err(); err != nil {
		return deleted, fmt.Errorf("mongodb: listing old versions: %w", err)
	}
	return deleted, flush()
}

// deleteByID deletes a collection's documents with these ids, in one
// command.
func deleteByID(ctx context.Context, c *mongo.Collection, ids bson.A) (int, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	res, err := c.DeleteMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}})
	if err != nil {
		return 0, err
	}
	return int(res.DeletedCount), nil
}
