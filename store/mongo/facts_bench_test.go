package mongo_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/flowbot/flowbot/engine/conversation"
	"github.com/flowbot/flowbot/store"
	mstore "github.com/flowbot/flowbot/store/mongo"
)

// BenchmarkFlowFactsMonth reads a month of a flow's analytics: 720 hours
// rolled up, FLOWBOT_FACTS_PER_HOUR facts each (default 20; a million
// contacts' facts over a month is about 1,400), the last 8 days' facts
// still kept beside their roll-ups. Reported: the query's time.
//
//	go test ./store/mongo -run '^$' -bench FlowFactsMonth -benchtime 20x
func BenchmarkFlowFactsMonth(b *testing.B) {
	perHour := 20
	if n, err := strconv.Atoi(os.Getenv("FLOWBOT_FACTS_PER_HOUR")); err == nil {
		perHour = n
	}
	ctx := context.Background()
	client, err := mongo.Connect(options.Client().ApplyURI(server(&testing.T{})).SetBSONOptions(&options.BSONOptions{DefaultDocumentMap: true}))
	if err != nil {
		b.Fatal(err)
	}
	defer client.Disconnect(ctx)
	db := client.Database(fmt.Sprintf("flowbot_bench_facts_%d", time.Now().UnixNano()))
	defer db.Drop(ctx)
	s, err := mstore.New(ctx, db)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close(ctx)
	now := time.Now().UTC().Truncate(time.Hour)
	steps := func() map[string]*conversation.StepCounts {
		return map[string]*conversation.StepCounts{"welcome": {Entered: 1, Exits: map[string]int64{"ask": 1}}, "ask": {Entered: 1, Exits: map[string]int64{"done": 1}, Answers: make([]int64, len(conversation.AnswerBounds)+1)},
			"done": {Entered: 1, Exits: map[string]int64{"end": 1}}}
	}
	for h := 0; h < 720; h++ {
		at := now.Add(-time.Duration(h) * time.Hour)
		var t []conversation.TallyOut // a contact's versions, one drain
		for i := 0; i < perHour; i++ {
			t = append(t, conversation.TallyOut{Version: int64(h*perHour + i + 1), At: at, Flows: []conversation.FlowFacts{{Flow: "appointments",
				FlowCounts: conversation.FlowCounts{Started: 1, Ended: 1, Converted: 1, Steps: steps(), Cost: conversation.CostCounts{Marketing: 0.01}}}}})
		}
		if err := s.DrainTallies(ctx, "c", t); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := s.RollFacts(ctx, now.Add(30*time.Minute), 1_000_000); err != nil {
		b.Fatal(err)
	}
	q := store.FactQuery{Flow: "appointments", From: now.Add(-720 * time.Hour), To: now.Add(time.Hour)}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := s.FlowFacts(ctx, q)
		if err != nil || c.Started != int64(720*perHour) {
			b.Fatalf("%d started, %v", c.Started, err)
		}
	}
}
