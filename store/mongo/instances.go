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

// instanceDoc is an instance id's heartbeat.
type instanceDoc struct {
	ID    string    `bson:"_id"`
	Nonce string    `bson:"nonce"`
	Until time.Time `bson:"until"`
}

// Beat implements store.Instances. The write matches the id only when
// this process holds it or its holder's heartbeat has lapsed; otherwise
// the upsert's insert fails on the taken _id, which every
// MongoDB-compatible server enforces atomically.
func (s *Store) Beat(ctx context.Context, id, nonce string, now, until time.Time) error {
	filter := bson.D{{Key: "_id", Value: id}, {Key: "$or", Value: bson.A{
		bson.D{{Key: "nonce", Value: nonce}},
		bson.D{{Key: "until", Value: bson.D{{Key: "$lte", Value: now}}}},
	}}}
	_, err := s.instances.ReplaceOne(ctx, filter, instanceDoc{ID: id, Nonce: nonce, Until: until}, options.Replace().SetUpsert(true))
	if err == nil {
		return nil
	}
	if !mongo.IsDuplicateKeyError(err) {
		return fmt.Errorf("mongodb: instance heartbeat: %w", err)
	}
	var held instanceDoc
	if err := s.instances.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&held); err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
		return fmt.Errorf("mongodb: instance heartbeat: %w", err)
	}
	return &store.HeldError{ID: id, Until: held.Until}
}

// Leave implements store.Instances.
func (s *Store) Leave(ctx context.Context, id, nonce string) error {
	if _, err := s.instances.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "nonce", Value: nonce}}); err != nil {
		return fmt.Errorf("mongodb: leaving instance id %s: %w", id, err)
	}
	return nil
}

// Claimed implements store.Contacts: the latest versions whose first
// unsent message the instance claimed (the claimed_by summary field).
func (s *Store) Claimed(ctx context.Context, instance string, limit int) ([]string, error) {
	opts := options.Find().SetProjection(bson.D{{Key: "contact", Value: 1}, {Key: "version", Value: 1}})
	if limit > 0 {
		opts.SetLimit(int64(limit) * 2) // superseded versions may still say so
	}
	cur, err := s.states.Find(ctx, bson.D{{Key: "claimed_by", Value: instance}}, opts)
	if err != nil {
		return nil, fmt.Errorf("mongodb: listing claimed contacts: %w", err)
	}
	var docs []versionRef
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("mongodb: listing claimed contacts: %w", err)
	}
	latest, err := s.keepLatest(ctx, docs)
	if err != nil {
		return nil, fmt.Errorf("mongodb: listing claimed contacts: %w", err)
	}
	var out []string
	for _, d := range latest {
		if limit <= 0 || len(out) < limit {
			out = append(out, d.Contact)
		}
	}
	return out, nil
}
