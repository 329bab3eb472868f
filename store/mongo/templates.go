package mongo

import (
	"context"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/flowbot/flowbot/store"
)

// UpdateTemplate implements store.Templates: one document per template
// and language, keyed "name/language"; an event sets only the fields it
// carries, so that a category event keeps the status another one set.
func (s *Store) UpdateTemplate(ctx context.Context, u store.TemplateState) error {
	set := bson.D{{Key: "name", Value: u.Name}, {Key: "language", Value: u.Language}, {Key: "updated_at", Value: u.UpdatedAt}}
	if u.Status != "" {
		set = append(set, bson.E{Key: "status", Value: u.Status}, bson.E{Key: "reason", Value: u.Reason})
	}
	if u.Category != "" {
		set = append(set, bson.E{Key: "category", Value: u.Category})
	}
	if u.Quality != "" {
		set = append(set, bson.E{Key: "quality", Value: u.Quality})
	}
	_, err := s.templates.UpdateOne(ctx, bson.D{{Key: "_id", Value: u.Name + "/" + u.Language}},
		bson.D{{Key: "$set", Value: set}}, options.UpdateOne().SetUpsert(true))
	if err != nil {
		return fmt.Errorf("mongodb: recording template %s/%s: %w", u.Name, u.Language, err)
	}
	return nil
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
