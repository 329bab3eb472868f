package mongo

import (
	"context"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/flowbot/flowbot/store"
)

// UpdateTemplate implements store.Templates: one document per template
// and language, keyed "name/language"; an event sets only the fields it
// carries, so that a category event keeps the status another one set,
// and each field only when the event is newer than the one that set it
// (the filter says so; on an older event the upsert's insert fails on
// the taken id, and nothing is written).
func (s *Store) UpdateTemplate(ctx context.Context, u store.TemplateState) (bool, error) {
	applied := false
	for _, f := range []struct {
		name  string
		value string
		more  bson.D
	}{
		{"status", u.Status, bson.D{{Key: "reason", Value: u.Reason}}},
		{"category", u.Category, nil},
		{"quality", u.Quality, nil},
	} {
		if f.value == "" {
			continue
		}
		at := f.name + "_at"
		set := append(bson.D{{Key: "name", Value: u.Name}, {Key: "language", Value: u.Language}, {Key: "updated_at", Value: u.UpdatedAt},
			{Key: f.name, Value: f.value}, {Key: at, Value: u.UpdatedAt}}, f.more...)
		filter := bson.D{{Key: "_id", Value: u.Name + "/" + u.Language}, {Key: "$or", Value: bson.A{
			bson.D{{Key: at, Value: bson.D{{Key: "$exists", Value: false}}}},
			bson.D{{Key: at, Value: bson.D{{Key: "$lt", Value: u.UpdatedAt}}}},
		}}}
		_, err := s.templates.UpdateOne(ctx, filter, bson.D{{Key: "$set", Value: set}}, options.UpdateOne().SetUpsert(true))
		if mongo.IsDuplicateKeyError(err) {
			continue // an event as recent or more set it
		}
		if err != nil {
			return applied, fmt.Errorf("mongodb: recording template %s/%s: %w", u.Name, u.Language, err)
		}
		applied = true
	}
	return applied, nil
}

// TemplateStates implements store.Templates. The collection holds one
// small document per template and language: it is read whole.
func (s *Store) TemplateStates(ctx context.Context) ([]store.TemplateState, error) {
	cur, err := s.templates.Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("mongodb: reading the templates' states: %w", err)
	}
	var out []store.TemplateState
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("mongodb: reading the templates' states: %w", err)
	}
	return out, nil
}

// UpdateAccount implements store.Account: one document per key, replaced
// by a newer event only (the filter says so; on an older event the
// upsert's insert fails on the taken id, and nothing is written).
func (s *Store) UpdateAccount(ctx context.Context, a store.AccountState) (bool, error) {
	filter := bson.D{{Key: "_id", Value: a.Key}, {Key: "updated_at", Value: bson.D{{Key: "$lt", Value: a.UpdatedAt}}}}
	_, err := s.account.ReplaceOne(ctx, filter, a, options.Replace().SetUpsert(true))
	if mongo.IsDuplicateKeyError(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("mongodb: recording the account's %s: %w", a.Key, err)
	}
	return true, nil
}

// AccountStates implements store.Account: a few small documents, read
// whole.
func (s *Store) AccountStates(ctx context.Context) ([]store.AccountState, error) {
	cur, err := s.account.Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("mongodb: reading the account's states: %w", err)
	}
	var out []store.AccountState
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("mongodb: reading the account's states: %w", err)
	}
	return out, nil
}
