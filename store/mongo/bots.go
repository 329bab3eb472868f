package mongo

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/flowbot/flowbot/store"
)

// botDoc is a bot version's files; names hold dots, which keys may not.
type botDoc struct {
	ID    string    `bson:"_id"`
	Files []botFile `bson:"files"`
	Saved time.Time `bson:"saved"`
}

type botFile struct {
	Name string `bson:"name"`
	Data []byte `bson:"data"`
}

// SaveBot implements store.Bots.
func (s *Store) SaveBot(ctx context.Context, version string, files map[string][]byte) error {
	doc := botDoc{ID: version, Saved: time.Now()}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		doc.Files = append(doc.Files, botFile{Name: n, Data: files[n]})
	}
	_, err := s.bots.InsertOne(ctx, doc)
	if err != nil && !mongo.IsDuplicateKeyError(err) {
		return fmt.Errorf("mongodb: saving bot version %s: %w", version, err)
	}
	return nil
}

// LoadBot implements store.Bots.
func (s *Store) LoadBot(ctx context.Context, version string) (map[string][]byte, error) {
	var doc botDoc
	err := s.bots.FindOne(ctx, bson.D{{Key: "_id", Value: version}}).Decode(&doc)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("mongodb: loading bot version %s: %w", version, err)
	}
	files := make(map[string][]byte, len(doc.Files))
	for _, f := range doc.Files {
		files[f.Name] = f.Data
	}
	return files, nil
}

var _ store.Bots = (*Store)(nil)
