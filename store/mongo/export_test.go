package mongo

import (
	"context"
	"time"
)

// Collect runs the collector as it would run at now.
func (s *Store) Collect(ctx context.Context, now time.Time) (int, error) { return s.collect(ctx, now) }

// Retention is how long superseded versions are kept.
const Retention = retention
