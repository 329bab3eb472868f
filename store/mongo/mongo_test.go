package mongo_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/store"
	mstore "github.com/flowbot/flowbot/store/mongo"
	"github.com/flowbot/flowbot/store/mongo/mongotest"
	"github.com/flowbot/flowbot/store/storetest"
)

func server(t *testing.T) string { return mongotest.URI(t) }

var dbSeq atomic.Int64

func TestConformance(t *testing.T) {
	uri := server(t)
	client, err := mongo.Connect(options.Client().ApplyURI(uri).SetBSONOptions(&options.BSONOptions{DefaultDocumentMap: true}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Disconnect(context.Background()) })
	run := fmt.Sprintf("flowbot_test_%d", time.Now().UnixNano())
	storetest.Run(t, func(t *testing.T) store.Store {
		db := client.Database(fmt.Sprintf("%s_%d", run, dbSeq.Add(1)))
		t.Cleanup(func() { db.Drop(context.Background()) })
		s, err := mstore.New(context.Background(), db)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close(context.Background()) })
		return s
	})
}

func TestOpen(t *testing.T) {
	uri := server(t)
	ctx := context.Background()
	s, err := mstore.Open(ctx, uri)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	if err := s.Ping(ctx); err != nil || s.Name() != "mongodb" {
		t.Fatalf("ping %v, name %s", err, s.Name())
	}
	if _, err := mstore.Open(ctx, "not a uri"); err == nil {
		t.Fatal("a bad connection string was accepted")
	}
}

// TestVersionsAndValues: superseded versions are deleted behind the
// writes, and variables come back as the engine's plain types.
func TestVersionsAndValues(t *testing.T) {
	uri := server(t)
	ctx := context.Background()
	client, err := mongo.Connect(options.Client().ApplyURI(uri).SetBSONOptions(&options.BSONOptions{DefaultDocumentMap: true}))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(ctx)
	db := client.Database(fmt.Sprintf("flowbot_versions_%d", time.Now().UnixNano()))
	defer db.Drop(ctx)
	s, err := mstore.New(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	st := engine.NewState("c")
	st.Vars = map[string]any{"n": 3, "f": 2.5, "list": []any{1, "two", map[string]any{"x": 1}}, "m": map[string]any{"id": "A-17", "nested": map[string]any{"k": true}}}
	for i := 0; i < 5; i++ {
		if err := s.Save(ctx, st); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Load(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != 5 {
		t.Fatalf("version %d, want 5", got.Version)
	}
	want := fmt.Sprint(st.Vars)
	if fmt.Sprint(got.Vars) != want {
		t.Fatalf("vars came back as %v, want %v", got.Vars, want)
	}
	if _, ok := got.Vars["list"].([]any)[2].(map[string]any); !ok || got.Vars["n"] != 3 {
		t.Fatalf("types: %T %T", got.Vars["list"], got.Vars["n"])
	}
	s.Close(ctx) // flushes the pruning
	n, err := db.Collection("states").CountDocuments(ctx, bson.D{{Key: "state", Value: bson.D{{Key: "$exists", Value: true}}}})
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("%d states kept after 5 versions, want only the latest", n)
	}
	// The superseded versions stay as tombstones, so that a writer that
	// loaded one of them cannot write its successor again.
	stale := *got
	stale.Version = 2
	s2, err := mstore.New(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close(ctx)
	if err := s2.Save(ctx, &stale); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a write based on a superseded version: %v, want a conflict", err)
	}
}
