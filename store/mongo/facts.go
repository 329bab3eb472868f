package mongo

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/flowbot/flowbot/engine/conversation"
	"github.com/flowbot/flowbot/store"
)

// The analytics' facts (store.Facts) are kept in two collections:
//
//   - facts: one document per version of a contact's record and flow,
//     whose id is store.FactKey and the flow, so that draining it again
//     is a duplicate insert, which every MongoDB-compatible server refuses
//     atomically. Each is "rolled" once an hour's roll-up holds it, and
//     keeps only its id factRetention after its hour.
//   - fact_hours: one document per flow and hour, the sum of the facts of
//     that hour (per bot version and number), with n, how many facts it
//     sums. A roll-up is computed from all the hour's facts, never added
//     to, so that doing it again (a crash before the facts were marked
//     rolled, two instances at once) gives the same document; it replaces
//     the stored one only when it sums at least as many facts, so that a
//     slower instance's older roll-up never replaces a newer one.
//
// A query reads the hours that have a roll-up from it and the others (the
// current hour, those not rolled yet) from the facts: an hour is never
// read from both, and a month of a flow is 720 documents at most.

// factDoc is one version's facts in one flow.
type factDoc struct {
	ID     string    `bson:"_id"`
	Flow   string    `bson:"flow"`
	Hour   time.Time `bson:"hour"`
	Rolled bool      `bson:"rolled"`
	// Stub: only the id is kept (factRetention).
	Stub  bool                   `bson:"stub,omitempty"`
	Facts conversation.FlowFacts `bson:"facts"`
}

// hourDoc is a flow's facts of an hour, summed per bot version and number.
type hourDoc struct {
	ID    string                   `bson:"_id"`
	Flow  string                   `bson:"flow"`
	Hour  time.Time                `bson:"hour"`
	N     int64                    `bson:"n"`
	Facts []conversation.FlowFacts `bson:"facts"`
}

// rollEvery is how often the collector rolls up the hours past.
const rollEvery = time.Minute

// factRetention is how long a fact keeps its counts once its hour is
// rolled up: then only its id stays (stub), so that the version drained
// again (a record carries its tallies until its next write, which may
// come on another instance days later) is still a duplicate, while the
// collection's documents stay small (FerretDB reads a collection whole
// for most queries). A fact drained into an hour that old is added to the
// hour's roll-up instead of recomputing it (rollHour).
const factRetention = 3 * time.Hour

// factIDsKept is how long a fact's id is kept: longer than
// store.FactsFinal, after which a host drains a version's facts no more.
const factIDsKept = store.FactsFinal + 24*time.Hour

func hourID(flow string, hour time.Time) string {
	return flow + "@" + hour.UTC().Format(time.RFC3339)
}

// factIndexes creates the indexes of the facts' collections.
func (s *Store) factIndexes(ctx context.Context) error {
	if err := ensureIndexes(ctx, s.facts,
		index{"flow_hour", bson.D{{Key: "flow", Value: 1}, {Key: "hour", Value: 1}}, options.Index()},
		index{"unrolled", bson.D{{Key: "rolled", Value: 1}, {Key: "hour", Value: 1}}, options.Index()},
	); err != nil {
		return err
	}
	return ensureIndexes(ctx, s.factHours, index{"flow_hour", bson.D{{Key: "flow", Value: 1}, {Key: "hour", Value: 1}}, options.Index()})
}

// factDocs are the documents of a contact's tallies' facts.
func factDocs(contact string, tallies []conversation.TallyOut) []any {
	var docs []any
	for _, t := range tallies {
		for _, f := range t.Flows {
			docs = append(docs, factDoc{ID: store.FactKey(contact, t.Version) + "/" + f.Flow, Flow: f.Flow,
				Hour: t.At.UTC().Truncate(time.Hour), Facts: f})
		}
	}
	return docs
}

// FlowFacts implements store.Facts.
func (s *Store) FlowFacts(ctx context.Context, q store.FactQuery) (conversation.FlowCounts, error) {
	var sum conversation.FlowCounts
	add := func(f conversation.FlowFacts) {
		if q.Matches(f.Number, f.BotVersion) {
			sum.Add(f.FlowCounts)
		}
	}
	hours := bson.D{{Key: "$gte", Value: q.FirstHour()}, {Key: "$lt", Value: q.To}}
	cur, err := s.factHours.Find(ctx, bson.D{{Key: "flow", Value: q.Flow}, {Key: "hour", Value: hours}})
	if err != nil {
		return sum, fmt.Errorf("mongodb: reading flow %s's analytics: %w", q.Flow, err)
	}
	var rolled []hourDoc
	if err := cur.All(ctx, &rolled); err != nil {
		return sum, fmt.Errorf("mongodb: reading flow %s's analytics: %w", q.Flow, err)
	}
	covered := bson.A{}
	for _, h := range rolled {
		covered = append(covered, h.Hour)
		for _, f := range h.Facts {
			add(f)
		}
	}
	cur, err = s.facts.Find(ctx, bson.D{{Key: "flow", Value: q.Flow}, {Key: "hour", Value: hours}, {Key: "hour", Value: bson.D{{Key: "$nin", Value: covered}}}},
		options.Find().SetProjection(bson.D{{Key: "facts", Value: 1}}))
	if err != nil {
		return sum, fmt.Errorf("mongodb: reading flow %s's facts: %w", q.Flow, err)
	}
	defer cur.Close(ctx)
	for cur.Next(ctx) {
		var d factDoc
		if err := cur.Decode(&d); err != nil {
			return sum, fmt.Errorf("mongodb: reading flow %s's facts: %w", q.Flow, err)
		}
		add(d.Facts)
	}
	return sum, cur.Err()
}

// RollFacts rolls up the hours before now's whose facts are not all
// rolled (at most limit facts' hours at once), and reports how many
// hours it rolled.
func (s *Store) RollFacts(ctx context.Context, now time.Time, limit int) (int, error) {
	cur, err := s.facts.Find(ctx, bson.D{{Key: "rolled", Value: false}, {Key: "hour", Value: bson.D{{Key: "$lt", Value: now.UTC().Truncate(time.Hour)}}}},
		options.Find().SetProjection(bson.D{{Key: "flow", Value: 1}, {Key: "hour", Value: 1}}).SetLimit(int64(limit)))
	if err != nil {
		return 0, fmt.Errorf("mongodb: finding facts to roll up: %w", err)
	}
	var docs []factDoc
	if err := cur.All(ctx, &docs); err != nil {
		return 0, fmt.Errorf("mongodb: finding facts to roll up: %w", err)
	}
	type key struct {
		flow string
		hour time.Time
	}
	seen := map[key]bool{}
	n := 0
	for _, d := range docs {
		k := key{d.Flow, d.Hour.UTC()}
		if seen[k] {
			continue
		}
		seen[k] = true
		if err := s.rollHour(ctx, k.flow, k.hour, now); err != nil {
			return n, err
		}
		n++
	}
	_, err = s.facts.UpdateMany(ctx, bson.D{{Key: "rolled", Value: true}, {Key: "stub", Value: bson.D{{Key: "$ne", Value: true}}}, {Key: "hour", Value: bson.D{{Key: "$lt", Value: now.Add(-factRetention)}}}},
		bson.D{{Key: "$unset", Value: bson.D{{Key: "facts", Value: ""}}}, {Key: "$set", Value: bson.D{{Key: "stub", Value: true}}}})
	if err != nil {
		return n, fmt.Errorf("mongodb: keeping only the ids of rolled-up facts: %w", err)
	}
	if _, err := s.facts.DeleteMany(ctx, bson.D{{Key: "stub", Value: true}, {Key: "hour", Value: bson.D{{Key: "$lt", Value: now.Add(-factIDsKept)}}}}); err != nil {
		return n, fmt.Errorf("mongodb: deleting the ids of old facts: %w", err)
	}
	return n, nil
}

// rollHour computes a flow's hour from its facts, stores it unless a
// roll-up of more facts is there, and marks the facts it summed rolled.
// An hour whose rolled facts may be stubs (older than the retention) gets
// its facts not rolled yet added to its roll-up instead, on the condition
// that the roll-up is still the one read.
func (s *Store) rollHour(ctx context.Context, flow string, hour, now time.Time) error {
	cur, err := s.facts.Find(ctx, bson.D{{Key: "flow", Value: flow}, {Key: "hour", Value: hour}})
	if err != nil {
		return fmt.Errorf("mongodb: rolling up flow %s's %s: %w", flow, hour, err)
	}
	var docs []factDoc
	if err := cur.All(ctx, &docs); err != nil {
		return fmt.Errorf("mongodb: rolling up flow %s's %s: %w", flow, hour, err)
	}
	h := hourDoc{ID: hourID(flow, hour), Flow: flow, Hour: hour}
	var stored hourDoc
	incremental := false
	if hour.Before(now.Add(-factRetention)) {
		switch err := s.factHours.FindOne(ctx, bson.D{{Key: "_id", Value: h.ID}}).Decode(&stored); {
		case err == nil:
			incremental = true
			h.N, h.Facts = stored.N, stored.Facts
		case !errors.Is(err, mongo.ErrNoDocuments):
			return fmt.Errorf("mongodb: rolling up flow %s's %s: %w", flow, hour, err)
		}
	}
	var unrolled bson.A
	for _, d := range docs {
		if !d.Rolled {
			unrolled = append(unrolled, d.ID)
		} else if incremental {
			continue // in the stored roll-up already
		}
		h.N++
		merged := false
		for i := range h.Facts {
			if h.Facts[i].BotVersion == d.Facts.BotVersion && h.Facts[i].Number == d.Facts.Number {
				h.Facts[i].Add(d.Facts.FlowCounts)
				merged = true
				break
			}
		}
		if !merged {
			f := d.Facts
			f.FlowCounts = f.FlowCounts.Clone()
			h.Facts = append(h.Facts, f)
		}
	}
	if incremental {
		if len(unrolled) == 0 {
			return nil
		}
		res, err := s.factHours.ReplaceOne(ctx, bson.D{{Key: "_id", Value: h.ID}, {Key: "n", Value: stored.N}}, h)
		if err != nil {
			return fmt.Errorf("mongodb: rolling up flow %s's %s: %w", flow, hour, err)
		}
		if res.MatchedCount == 0 {
			return nil // another roll-up came first: the next round looks again
		}
	} else {
		_, err = s.factHours.ReplaceOne(ctx, bson.D{{Key: "_id", Value: h.ID}, {Key: "n", Value: bson.D{{Key: "$lte", Value: h.N}}}}, h, options.Replace().SetUpsert(true))
		if err != nil && !mongo.IsDuplicateKeyError(err) { // a duplicate: a roll-up of more facts is there
			return fmt.Errorf("mongodb: rolling up flow %s's %s: %w", flow, hour, err)
		}
	}
	if len(unrolled) == 0 {
		return nil
	}
	if _, err := s.facts.UpdateMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: unrolled}}}}, bson.D{{Key: "$set", Value: bson.D{{Key: "rolled", Value: true}}}}); err != nil {
		return fmt.Errorf("mongodb: rolling up flow %s's %s: %w", flow, hour, err)
	}
	return nil
}
