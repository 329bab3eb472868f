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
// rolled up (FLOWBOT_FACTS_PER_HOUR contacts' facts each, default 1,400:
// a million contacts' facts over the month), the current hour's facts
// not rolled up yet, and FLOWBOT_FACT_STUBS ids of older facts (default
// 20,000) in the facts collection. Reported: the query's time.
//
//	go test ./store/mongo -run '^$' -bench FlowFactsMonth -benchtime 20x
func BenchmarkFlowFactsMonth(b *testing.B) {
	perHour, stubs := 1400, 20000
	if n, err := strconv.Atoi(os.Getenv("FLOWBOT_FACTS_PER_HOUR")); err == nil {
		perHour = n
	}
	if n, err := strconv.Atoi(os.Getenv("FLOWBOT_FACT_STUBS")); err == nil {
		stubs = n
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
	counts := func(n int64) conversation.FlowCounts {
		return conversation.FlowCounts{Started: n, Ended: n, Converted: n / 2, Cost: conversation.CostCounts{Marketing: 0.01 * float64(n)},
			Steps: map[string]*conversation.StepCounts{"welcome": {Entered: n, Exits: map[string]int64{"ask": n}, Edges: map[string]int64{"0": n}},
				"ask":  {Entered: n, Exits: map[string]int64{"done": n / 2, "give_up": n / 2}, Answers: make([]int64, len(conversation.AnswerBounds)+1)},
				"done": {Entered: n / 2, Exits: map[string]int64{"end": n / 2}}}}
	}
	for h := 1; h <= 720; h++ {
		facts := []conversation.FlowFacts{{Flow: "appointments", BotVersion: "v1", FlowCounts: counts(int64(perHour))}}
		if err := s.PutFactHour(ctx, "appointments", now.Add(-time.Duration(h)*time.Hour), int64(perHour), facts); err != nil {
			b.Fatal(err)
		}
	}
	for i := 0; i < stubs; i += 1000 {
		if err := s.PutFactStubs(ctx, "appointments", now.Add(-100*time.Hour), i, min(1000, stubs-i)); err != nil {
			b.Fatal(err)
		}
	}
	var current []conversation.TallyOut // the hour under way: facts not rolled up
	for i := 0; i < 50; i++ {
		current = append(current, conversation.TallyOut{Version: int64(i + 1), At: now.Add(time.Minute), Flows: []conversation.FlowFacts{{Flow: "appointments", BotVersion: "v1", FlowCounts: counts(1)}}})
	}
	if err := s.DrainTallies(ctx, "c", current); err != nil {
		b.Fatal(err)
	}
	q := store.FactQuery{Flow: "appointments", From: now.Add(-720 * time.Hour), To: now.Add(time.Hour)}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := s.FlowFacts(ctx, q)
		if err != nil || c.Started != int64(720*perHour+50) {
			b.Fatalf("%d started, %v", c.Started, err)
		}
	}
}
