package mongo_test

import (
	"context"
	"encoding/json"
	"flag"
	"github.com/flowbot/flowbot/engine/conversation"
	"os"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/flowbot/flowbot/actions"
	"github.com/flowbot/flowbot/engine"
	mstore "github.com/flowbot/flowbot/store/mongo"
)

var updateFixture = flag.Bool("update", false, "rewrite testdata/state_v2.json from this version")

// fixtureState is a state with everything version 2 keeps: contact
// fields, a subflow's stack, an unasked question, command outcomes,
// timers, an outbox under a claim, deliveries and the log.
func fixtureState() *conversation.Record {
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	st := conversation.NewRecord("15550001111")
	st.Contact = engine.Contact{ID: "15550001111", Name: "Ana", Language: "es", Fields: map[string]any{"email": "ana@example.com", "visits": 3, "vip": true}}
	st.Flow, st.Step, st.Waiting, st.Unasked, st.AskedAt, st.LastInbound = "collect_email", "ask", "ask", true, at, at
	st.Vars = map[string]any{"email": "", "reason": "your receipt"}
	st.Stack = []engine.Frame{{Flow: "order", Step: "get_email", Vars: map[string]any{"item": "tea", "n": 2}}}
	st.Timers = []engine.Timer{{ID: "15550001111:t1", Kind: engine.TimerTimeout, Due: at.Add(2 * time.Hour), Flow: "collect_email", Step: "ask", Seq: 1}}
	st.Outbox = []conversation.Pending{{Outbound: engine.Outbound{ID: "15550001111:m2", To: "15550001111", Via: engine.ViaSession, Message: actions.Message{Kind: "text", Text: "¿Tu email?"},
		Flow: "collect_email", Step: "ask", At: at}, ClaimedBy: "web-1", ClaimedAt: at, ClaimUntil: at.Add(2 * time.Minute)}}
	st.Recent = []conversation.Delivery{{ID: "15550001111:m1", WAMID: "wamid.1", Via: engine.ViaSession, Summary: "Hola", At: at, Status: "read"}}
	st.Log = []engine.Record{{At: at, Kind: engine.RecFlowStart, Flow: "order", Detail: "keyword \"buy\""}}
	st.Processed = []string{"wamid.in.1", "cmd:abc"}
	st.Outcomes = []conversation.Outcome{{Key: "cmd:abc"}}
	st.Cost.Service.Amount, st.Cost.Service.Messages = 0.004, 1
	st.Seq, st.Batch = 2, 3
	return st
}

// A state document written by this version loads back whole from a
// stored fixture: a later version that changes the state's shape must
// keep loading what is in databases now.
func TestStoredStateFixtureLoads(t *testing.T) {
	ctx := context.Background()
	db := testDB(t, "fixture")
	s, err := mstore.New(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	const path = "testdata/state_v2.json"
	if *updateFixture {
		if err := s.Save(ctx, fixtureState()); err != nil {
			t.Fatal(err)
		}
		var doc bson.D
		if err := db.Collection("states").FindOne(ctx, bson.D{{Key: "_id", Value: "15550001111#1"}}).Decode(&doc); err != nil {
			t.Fatal(err)
		}
		b, err := bson.MarshalExtJSONIndent(doc, true, false, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./store/mongo -run Fixture -update writes it)", err)
	}
	var doc bson.D
	if err := bson.UnmarshalExtJSON(src, true, &doc); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Collection("states").InsertOne(ctx, doc); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load(ctx, "15550001111")
	if err != nil {
		t.Fatal(err)
	}
	want := fixtureState()
	want.Version = 1
	gj, _ := json.Marshal(got)
	wj, _ := json.Marshal(want)
	if string(gj) != string(wj) {
		t.Fatalf("the stored fixture loads as\n%s\nwant\n%s", gj, wj)
	}
}
