package mongo

import (
	"context"
	"fmt"
	"github.com/flowbot/flowbot/engine/conversation"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/store/mongo/mongotest"
)

// TestPendingForSeveralContacts: one read serves several contacts, each
// up to its own limit, also when the read's overall limit cut a contact
// short.
func TestPendingForSeveralContacts(t *testing.T) {
	ctx := context.Background()
	client, err := mongo.Connect(options.Client().ApplyURI(mongotest.URI(t)).SetBSONOptions(&options.BSONOptions{DefaultDocumentMap: true}))
	if err != nil {
		t.Fatal(err)
	}
	db := client.Database(fmt.Sprintf("flowbot_pending_%d", time.Now().UnixNano()))
	t.Cleanup(func() { db.Drop(ctx); client.Disconnect(ctx) })
	s, err := New(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	base := time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	var items []conversation.Item
	add := func(contact string, n int, from time.Duration) {
		for i := 0; i < n; i++ {
			key := fmt.Sprintf("%s%d", contact, i)
			at := base.Add(from + time.Duration(i)*time.Second)
			items = append(items, conversation.Item{Key: key, Contact: contact, Kind: conversation.ItemMessage, Timestamp: at, Received: at,
				Message: &engine.Inbound{ID: key, Type: "text", Text: key, Timestamp: at}})
		}
	}
	add("a", 5, 0)           // the earliest: they fill the overall limit
	add("b", 3, time.Hour)   // cut short by it
	add("c", 2, 2*time.Hour) // none left for it
	if _, err := s.Enqueue(ctx, items); err != nil {
		t.Fatal(err)
	}
	out, err := s.findPending(ctx, []pendingReq{{"a", 3}, {"b", 3}, {"c", 3}})
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(keysOf(out[0]), keysOf(out[1]), keysOf(out[2]))
	if got != "[a0 a1 a2] [b0 b1 b2] [c0 c1]" {
		t.Fatalf("pending = %s", got)
	}
}

func keysOf(items []conversation.Item) []string {
	var out []string
	for _, it := range items {
		out = append(out, it.Key)
	}
	return out
}
