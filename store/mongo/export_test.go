package mongo

import (
	"context"
	"fmt"
	"time"

	"github.com/flowbot/flowbot/engine/conversation"
)

// Collect runs the collector as it would run at now.
func (s *Store) Collect(ctx context.Context, now time.Time) (int, error) { return s.collect(ctx, now) }

// Retention is how long superseded versions are kept.
const Retention = retention

// PutFactHour stores a flow's rolled-up hour as RollFacts would (for
// benchmarks that need a month of them without rolling it up).
func (s *Store) PutFactHour(ctx context.Context, flow string, hour time.Time, n int64, facts []conversation.FlowFacts) error {
	_, err := s.factHours.InsertOne(ctx, hourDoc{ID: hourID(flow, hour), Flow: flow, Hour: hour, N: n, Facts: facts})
	return err
}

// PutFactStubs stores n facts' ids, as the facts of old hours are kept.
func (s *Store) PutFactStubs(ctx context.Context, flow string, hour time.Time, from, n int) error {
	docs := make([]any, n)
	for i := range docs {
		docs[i] = factDoc{ID: fmt.Sprintf("stub%d#1/%s", from+i, flow), Flow: flow, Hour: hour, Rolled: true, Stub: true}
	}
	_, err := s.facts.InsertMany(ctx, docs)
	return err
}
