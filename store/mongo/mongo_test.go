package mongo_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/flowbot/flowbot/engine/conversation"
	"os"
	"strconv"
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
	// FerretDB reads its whole collection for nearly every query: the
	// listing test stores 1,000 contacts there (10,000 take 85 s), and
	// 10,000 on a MongoDB, or when FLOWBOT_LIST_CONTACTS says so.
	if os.Getenv("MONGODB_URI") == "" {
		storetest.ListContactsN = 1000
	}
	if n, err := strconv.Atoi(os.Getenv("FLOWBOT_LIST_CONTACTS")); err == nil {
		storetest.ListContactsN = n
	}
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

// TestVersionsAndValues: superseded versions are deleted once no writer
// can hold them, and variables come back as the engine's plain types.
func TestVersionsAndValues(t *testing.T) {
	ctx := context.Background()
	db := testDB(t, "versions")
	s, err := mstore.New(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	st := conversation.NewRecord("c")
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
	// A write based on a superseded version fails on the taken id.
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
	// Superseded versions stay until the retention has passed, then go;
	// the latest stays, however old.
	if n, err := s.Collect(ctx, time.Now()); err != nil || n != 0 {
		t.Fatalf("collected %d (%v) versions at once, want none yet", n, err)
	}
	if n, err := s.Collect(ctx, time.Now().Add(mstore.Retention+time.Minute)); err != nil || n != 4 {
		t.Fatalf("collected %d (%v) versions after the retention, want the 4 superseded", n, err)
	}
	if n, err := db.Collection("states").CountDocuments(ctx, bson.D{}); err != nil || n != 1 {
		t.Fatalf("%d versions kept (%v), want only the latest", n, err)
	}
	// The latest stays, however old and however often collected.
	if n, err := s.Collect(ctx, time.Now().Add(24*time.Hour)); err != nil || n != 0 {
		t.Fatalf("collected %d (%v) more", n, err)
	}
	if got, err := s2.Load(ctx, "c"); err != nil || got.Version != 5 {
		t.Fatalf("after collecting: version %v, %v", got, err)
	}
	// A writer that held version 2 all that time finds out by asking,
	// though the id of version 3 is free again.
	stale.LoadedAt = time.Now().Add(-mstore.Retention)
	if err := s2.Save(ctx, &stale); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a write based on a state held past the retention: %v, want a conflict", err)
	}
	// One that held the latest that long (a slow integration) saves.
	slow, err := s.Load(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	slow.LoadedAt = time.Now().Add(-mstore.Retention)
	if err := s.Save(ctx, slow); err != nil || slow.Version != 6 {
		t.Fatalf("a write based on the latest state, held long: %v (version %d)", err, slow.Version)
	}
}

// TestMigratesQueuedInbox: updates an earlier flowbot left queued in the
// inbox (done: false) are in the queue after start-up, and both the
// queued and the processed ones are still duplicates.
func TestMigratesQueuedInbox(t *testing.T) {
	ctx := context.Background()
	db := testDB(t, "migrate")
	at := time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	legacy := func(key string, done bool) bson.D {
		return bson.D{{Key: "_id", Value: key}, {Key: "contact", Value: "a"}, {Key: "kind", Value: "message"},
			{Key: "timestamp", Value: at}, {Key: "seq", Value: int64(1)}, {Key: "received", Value: at},
			{Key: "message", Value: bson.D{{Key: "id", Value: key}, {Key: "type", Value: "text"}, {Key: "text", Value: "hi " + key}}},
			{Key: "done", Value: done}}
	}
	if _, err := db.Collection("inbox").InsertMany(ctx, []any{legacy("old-queued", false), legacy("old-done", true)}); err != nil {
		t.Fatal(err)
	}
	s, err := mstore.New(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	got, err := s.Pending(ctx, "a", 10)
	if err != nil || len(got) != 1 || got[0].Key != "old-queued" || got[0].Message == nil || got[0].Message.Text != "hi old-queued" {
		t.Fatalf("pending after the migration = %+v, %v", got, err)
	}
	fresh, err := s.Enqueue(ctx, []conversation.Item{
		{Key: "old-queued", Contact: "a", Kind: conversation.ItemMessage, Timestamp: at, Received: at, Message: &engine.Inbound{ID: "old-queued", Type: "text"}},
		{Key: "old-done", Contact: "a", Kind: conversation.ItemMessage, Timestamp: at, Received: at, Message: &engine.Inbound{ID: "old-done", Type: "text"}},
	})
	if err != nil || len(fresh) != 0 {
		t.Fatalf("redeliveries of migrated updates: fresh %d, %v", len(fresh), err)
	}
	// A second start-up finds nothing more to move.
	s2, err := mstore.New(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close(ctx)
	if n, _ := s2.Depth(ctx); n != 1 {
		t.Fatalf("depth %d after a second start-up, want 1", n)
	}
}

// testDB is a new database on the test server, dropped at the end.
func testDB(t *testing.T, name string) *mongo.Database {
	t.Helper()
	client, err := mongo.Connect(options.Client().ApplyURI(server(t)).SetBSONOptions(&options.BSONOptions{DefaultDocumentMap: true}))
	if err != nil {
		t.Fatal(err)
	}
	db := client.Database(fmt.Sprintf("flowbot_%s_%d", name, time.Now().UnixNano()))
	t.Cleanup(func() {
		db.Drop(context.Background())
		client.Disconnect(context.Background())
	})
	return db
}

// TestCollectsWhatADeadInstanceLeft: versions superseded by an instance
// that stopped before deleting them, and tombstones of an earlier
// flowbot, are found by the next instance's pass through all versions.
func TestCollectsWhatADeadInstanceLeft(t *testing.T) {
	ctx := context.Background()
	db := testDB(t, "collect")
	dead, err := mstore.New(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	st := conversation.NewRecord("d")
	for i := 0; i < 3; i++ {
		if err := dead.Save(ctx, st); err != nil {
			t.Fatal(err)
		}
	}
	dead.Close(ctx)
	// An earlier flowbot's tombstone, superseded by a version of ours.
	if _, err := db.Collection("states").InsertOne(ctx, bson.D{{Key: "_id", Value: "e#1"}, {Key: "contact", Value: "e"}, {Key: "version", Value: int64(1)}, {Key: "tombstone", Value: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	s, err := mstore.New(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	e := conversation.NewRecord("e")
	e.Version = 1
	if err := s.Save(ctx, e); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Collect(ctx, time.Now().Add(mstore.Retention+time.Minute)); err != nil || n != 3 {
		t.Fatalf("collected %d (%v), want d#1, d#2 and e#1", n, err)
	}
	for _, c := range []string{"d", "e"} {
		if got, err := s.Load(ctx, c); err != nil || got.Version == 0 {
			t.Fatalf("%s after collecting: %v, %v", c, got, err)
		}
	}
	if n, _ := db.Collection("states").CountDocuments(ctx, bson.D{}); n != 2 {
		t.Fatalf("%d versions left, want the latest of each contact", n)
	}
}

// TestStateDocuments: a version carries a readable summary beside the
// state, and versions an earlier flowbot wrote (the state as an embedded
// document) still load.
func TestStateDocuments(t *testing.T) {
	ctx := context.Background()
	db := testDB(t, "docs")
	s, err := mstore.New(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	st := conversation.NewRecord("g")
	st.Flow, st.Step, st.Waiting = "booking", "pick_day", "ask"
	st.Handoff = &engine.HandoffState{Queue: "billing"}
	if err := s.Save(ctx, st); err != nil {
		t.Fatal(err)
	}
	var doc bson.M
	if err := db.Collection("states").FindOne(ctx, bson.D{{Key: "_id", Value: "g#1"}}).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if doc["flow"] != "booking" || doc["step"] != "pick_day" || doc["waiting"] != "ask" || doc["handoff"] != "billing" || doc["contact"] != "g" {
		t.Fatalf("summary = %v", doc)
	}

	legacy := bson.D{{Key: "_id", Value: "f#1"}, {Key: "contact", Value: "f"}, {Key: "version", Value: int64(1)},
		{Key: "state", Value: bson.D{{Key: "contact", Value: bson.D{{Key: "id", Value: "f"}}}, {Key: "flow", Value: "booking"},
			{Key: "vars", Value: bson.D{{Key: "n", Value: int32(3)}, {Key: "m", Value: bson.D{{Key: "k", Value: "v"}}}}}}}}
	if _, err := db.Collection("states").InsertOne(ctx, legacy); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load(ctx, "f")
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != 1 || got.Flow != "booking" || got.Vars["n"] != 3 || got.Vars["m"].(map[string]any)["k"] != "v" {
		t.Fatalf("legacy state loaded as %+v", got)
	}
	if err := s.Save(ctx, got); err != nil || got.Version != 2 {
		t.Fatalf("saving on a legacy version: %v", err)
	}
}

// TestDueWorkIsNotHiddenByTheCache: a contact due in a version another
// instance wrote is loaded at that version, not at the older one this
// instance cached (a round on it would find nothing due and, saving
// nothing, never learn better).
func TestDueWorkIsNotHiddenByTheCache(t *testing.T) {
	ctx := context.Background()
	db := testDB(t, "duecache")
	here, err := mstore.New(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer here.Close(ctx)
	there, err := mstore.New(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer there.Close(ctx)
	if err := here.Save(ctx, conversation.NewRecord("x")); err != nil {
		t.Fatal(err)
	}
	st, err := there.Load(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	due := time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	st.Timers = []engine.Timer{{ID: "t", Kind: engine.TimerWait, Due: due, Seq: 1}}
	if err := there.Save(ctx, st); err != nil {
		t.Fatal(err)
	}
	ds, err := here.Due(ctx, due, 10)
	if err != nil || len(ds) != 1 || ds[0].Contact != "x" {
		t.Fatalf("due = %v, %v", ds, err)
	}
	got, err := here.Load(ctx, "x")
	if err != nil || got.Version != 2 || len(got.Timers) != 1 {
		t.Fatalf("loaded %+v, %v; want version 2 with its timer", got, err)
	}
}

// Superseded versions that still say they are due (the collector has not
// deleted them yet) do not crowd out the contacts whose latest version is
// due: Due reads on past them.
func TestDueReadsPastSupersededVersions(t *testing.T) {
	ctx := context.Background()
	s, err := mstore.New(ctx, testDB(t, "due_superseded"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	busy := conversation.NewRecord("busy")
	for i := 0; i < 150; i++ { // each version due a second later than the one before
		busy.Timers = []engine.Timer{{ID: "busy:t", Kind: engine.TimerWait, Due: at.Add(time.Duration(i) * time.Second)}}
		if err := s.Save(ctx, busy); err != nil {
			t.Fatal(err)
		}
	}
	late := conversation.NewRecord("late")
	late.Timers = []engine.Timer{{ID: "late:t", Kind: engine.TimerWait, Due: at.Add(time.Hour)}}
	if err := s.Save(ctx, late); err != nil {
		t.Fatal(err)
	}
	due, err := s.Due(ctx, at.Add(2*time.Hour), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(due) != 2 || due[0].Contact != "busy" || due[1].Contact != "late" || !due[0].At.Equal(at.Add(149*time.Second)) {
		t.Fatalf("due: %+v, want busy (its latest version) then late", due)
	}
}
