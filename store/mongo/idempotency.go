package mongo

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/flowbot/flowbot/store"
)

// answerDoc is an Idempotency-Key's reservation and, once given, the
// answer.
type answerDoc struct {
	ID          string    `bson:"_id"`
	Fingerprint string    `bson:"fingerprint"`
	At          time.Time `bson:"at"`
	Done        bool      `bson:"done"`
	Status      int       `bson:"status,omitempty"`
	Body        []byte    `bson:"body,omitempty"`
}

// Reserve implements store.Idempotency. The reservation is an insert: of
// two requests with one key, on any instances, one gets the key.
func (s *Store) Reserve(ctx context.Context, key, fingerprint string, now time.Time) (*store.Answer, error) {
	now = now.Truncate(time.Millisecond) // as the server keeps it
	for attempt := 0; attempt < 3; attempt++ {
		_, err := s.answers.InsertOne(ctx, answerDoc{ID: key, Fingerprint: fingerprint, At: now})
		if err == nil {
			return nil, nil
		}
		if !mongo.IsDuplicateKeyError(err) {
			return nil, fmt.Errorf("mongodb: reserving an idempotency key: %w", err)
		}
		var d answerDoc
		err = s.answers.FindOne(ctx, bson.D{{Key: "_id", Value: key}}).Decode(&d)
		if errors.Is(err, mongo.ErrNoDocuments) {
			continue // forgotten meanwhile: try again
		}
		if err != nil {
			return nil, fmt.Errorf("mongodb: reading an idempotency key: %w", err)
		}
		expired := now.Sub(d.At) > store.IdempotencyWindow
		if expired || !d.Done && now.Sub(d.At) > store.AbandonedAfter {
			// Take it over: delete that very document (by its time), then
			// insert again; a rival taking it over too loses the insert.
			if _, err := s.answers.DeleteOne(ctx, bson.D{{Key: "_id", Value: key}, {Key: "at", Value: d.At}}); err != nil {
				return nil, fmt.Errorf("mongodb: taking over an idempotency key: %w", err)
			}
			continue
		}
		if !d.Done {
			return nil, store.ErrInProgress
		}
		return &store.Answer{Fingerprint: d.Fingerprint, Status: d.Status, Body: d.Body, At: d.At}, nil
	}
	return nil, store.ErrInProgress
}

// Answer implements store.Idempotency: the update matches the very
// reservation (its time), not yet answered.
func (s *Store) Answer(ctx context.Context, key string, reservedAt time.Time, a store.Answer) error {
	res, err := s.answers.UpdateOne(ctx, reservation(key, reservedAt),
		bson.D{{Key: "$set", Value: bson.D{{Key: "done", Value: true}, {Key: "status", Value: a.Status}, {Key: "body", Value: a.Body}}}})
	if err != nil {
		return fmt.Errorf("mongodb: recording an idempotent answer: %w", err)
	}
	if res.MatchedCount == 0 {
		return store.ErrConflict
	}
	return nil
}

// Forget implements store.Idempotency.
func (s *Store) Forget(ctx context.Context, key string, reservedAt time.Time) error {
	res, err := s.answers.DeleteOne(ctx, reservation(key, reservedAt))
	if err != nil {
		return fmt.Errorf("mongodb: forgetting an idempotency key: %w", err)
	}
	if res.DeletedCount == 0 {
		return store.ErrConflict
	}
	return nil
}

// reservation matches a key's reservation made at reservedAt, not yet
// answered.
func reservation(key string, reservedAt time.Time) bson.D {
	return bson.D{{Key: "_id", Value: key}, {Key: "at", Value: reservedAt.Truncate(time.Millisecond)}, {Key: "done", Value: false}}
}
